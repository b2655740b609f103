package test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	netmail "net/mail"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	gomail "github.com/emersion/go-message/mail"

	"github.com/deskgate/deskgate/internal/mailtest"
)

// delivered is one file of the Maildir outbox: one message as one recipient got it.
type delivered struct {
	file   string
	rcpt   string
	header netmail.Header
	head   string // the raw header block, lowercased
	body   string // the decoded text part
	files  []string
}

func (m delivered) addresses(key string) []string {
	list, _ := m.header.AddressList(key)
	var out []string
	for _, a := range list {
		out = append(out, strings.ToLower(a.Address))
	}
	return out
}

// settle waits until the outbound queue holds nothing queued.
func (d *daemon) settle() {
	d.t.Helper()
	waitFor(d.t, "the outbound queue to drain", 10*time.Second, func() bool {
		code, body := d.api("GET", "/api/v1/queue", nil, true)
		if code != 200 {
			return false
		}
		var q []struct {
			State string `json:"state"`
		}
		json.Unmarshal(body, &q)
		for _, e := range q {
			if e.State == "queued" {
				return false
			}
		}
		return true
	})
}

// outbox returns every delivered message, oldest first.
func (d *daemon) outbox() []delivered {
	d.t.Helper()
	d.settle()
	dir := filepath.Join(d.dir, "outbox", "new")
	entries, _ := os.ReadDir(dir)
	sort.Slice(entries, func(i, j int) bool { return entries[i].Name() < entries[j].Name() })
	var out []delivered
	for _, e := range entries {
		raw, err := os.ReadFile(filepath.Join(dir, e.Name()))
		if err != nil {
			d.t.Fatal(err)
		}
		out = append(out, parseDelivered(d.t, e.Name(), raw))
	}
	return out
}

func parseDelivered(t testing.TB, name string, raw []byte) delivered {
	m, err := netmail.ReadMessage(bytes.NewReader(raw))
	if err != nil {
		t.Fatalf("%s: %v", name, err)
	}
	dl := delivered{file: name, rcpt: strings.ToLower(m.Header.Get("Delivered-To")), header: m.Header}
	if i := bytes.Index(raw, []byte("\r\n\r\n")); i > 0 {
		dl.head = strings.ToLower(string(raw[:i]))
	}
	mr, err := gomail.CreateReader(bytes.NewReader(raw))
	if err != nil {
		t.Fatalf("%s: %v", name, err)
	}
	for {
		p, err := mr.NextPart()
		if err != nil {
			break
		}
		b, _ := io.ReadAll(p.Body)
		switch h := p.Header.(type) {
		case *gomail.InlineHeader:
			dl.body += string(b)
		case *gomail.AttachmentHeader:
			fn, _ := h.Filename()
			dl.files = append(dl.files, fn)
		}
	}
	return dl
}

// newSince returns the messages delivered after the first n.
func (d *daemon) newSince(n int) []delivered {
	all := d.outbox()
	if n > len(all) {
		return nil
	}
	return all[n:]
}

// to returns the messages among list delivered to rcpt.
func to(list []delivered, rcpt string) []delivered {
	var out []delivered
	for _, m := range list {
		if m.rcpt == strings.ToLower(rcpt) {
			out = append(out, m)
		}
	}
	return out
}

func rcpts(list []delivered) []string {
	var out []string
	for _, m := range list {
		out = append(out, m.rcpt)
	}
	sort.Strings(out)
	return out
}

// reply answers a delivered notification as the recipient's mail client would: Reply
// goes to Reply-To; Reply-all adds the To and Cc (minus oneself). Only the addresses that
// lead back to deskgate are given to deskgate's SMTP; the others are listed in the
// header only, as their own mail servers would have got them directly.
func (d *daemon) reply(note delivered, from string, all bool, body string, extraCc ...string) {
	d.t.Helper()
	replyTo := note.addresses("Reply-To")
	to := append([]string(nil), replyTo...)
	var cc []string
	if all {
		for _, a := range append(note.addresses("To"), note.addresses("Cc")...) {
			if a != strings.ToLower(from) {
				cc = append(cc, a)
			}
		}
	}
	cc = append(cc, extraCc...)
	var env []string
	for _, a := range append(append([]string(nil), to...), cc...) {
		if strings.HasSuffix(a, "@example.com") && strings.HasPrefix(a, "support") {
			env = append(env, a)
		}
	}
	h := map[string]string{"From": from, "To": strings.Join(to, ", "), "Subject": "Re: " + note.header.Get("Subject"),
		"Message-ID": fmt.Sprintf("<reply-%d@client.test>", time.Now().UnixNano()), "In-Reply-To": note.header.Get("Message-Id"),
		"References": note.header.Get("References") + " " + note.header.Get("Message-Id")}
	if len(cc) > 0 {
		h["Cc"] = strings.Join(cc, ", ")
	}
	if err := sendSMTP(d.smtpAddr, from, env, mail(h, body+"\n")); err != nil {
		d.t.Fatalf("reply from %s: %v", from, err)
	}
}

// open starts a ticket by mail and returns its id.
func (d *daemon) open(from string, cc []string, subject, body string) uint64 {
	d.t.Helper()
	h := map[string]string{"From": from, "To": "support@example.com", "Subject": subject,
		"Message-ID": fmt.Sprintf("<open-%d@client.test>", time.Now().UnixNano())}
	if len(cc) > 0 {
		h["Cc"] = strings.Join(cc, ", ")
	}
	if err := sendSMTP(d.smtpAddr, from, []string{"support@example.com"}, mail(h, body+"\n")); err != nil {
		d.t.Fatal(err)
	}
	list := d.tickets()
	return list[0].ID
}

// must runs a CLI command and fails the test on a non-zero exit.
func (d *daemon) must(stdin string, args ...string) string {
	d.t.Helper()
	out, errOut, code := d.cliIn(stdin, args...)
	if code != 0 {
		d.t.Fatalf("deskgate %v: exit %d: %s", args, code, errOut)
	}
	return out
}

// assertNoLeak checks H1/H4 on every message delivered so far: no agent's address in
// any header of a message delivered to anyone else.
func (d *daemon) assertNoLeak() {
	d.t.Helper()
	agents := []string{"alice@example.com", "bob@example.com", "carol@example.com", "dana@example.com"}
	for _, m := range d.outbox() {
		for _, a := range agents {
			if a != m.rcpt && mailtest.HasAddress(m.head, a) {
				d.t.Errorf("%s's address is in a header of %s's copy %s", a, m.rcpt, m.file)
			}
		}
	}
}
