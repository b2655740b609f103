package test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"mime"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// The customer of these tests writes from an address that is not ASCII in either part.
const (
	joeUTF8  = "jöe@bücher.test"
	joeName  = "Jöe Bücher"
	annIDN   = "ann@bücher.test" // ASCII local part, internationalised domain
	annASCII = "ann@xn--bcher-kva.test"
)

// sendPython hands one message to addr with Python's smtplib, a client nobody here wrote.
// With smtputf8 its MAIL command carries SMTPUTF8 (RFC 6531), as Gmail's and Outlook's
// servers do for such addresses. It returns the code and text of the first refusal, or
// 250 when every recipient was taken.
func sendPython(t *testing.T, addr, from string, to []string, msg []byte, smtputf8 bool) (int, string) {
	t.Helper()
	python := needTool(t, "python3", "python3")
	host, port, _ := strings.Cut(addr, ":")
	const script = `
import smtplib, sys
host, port, sender, utf8, rcpts = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4] == "1", sys.argv[5:]
msg = sys.stdin.buffer.read()
try:
    with smtplib.SMTP(host, port, timeout=20) as s:
        s.ehlo()
        # Without the parameter the commands still go in UTF-8, as a careless client's would.
        s.command_encoding = "utf-8"
        opts = ["SMTPUTF8", "BODY=8BITMIME"] if utf8 else []
        refused = s.sendmail(sender, rcpts, msg, mail_options=opts)
        for rcpt, (code, text) in refused.items():
            print(code, text.decode("utf-8", "replace"))
            sys.exit(0)
        print(250, "ok")
except smtplib.SMTPSenderRefused as e:
    print(e.smtp_code, e.smtp_error.decode("utf-8", "replace"))
except smtplib.SMTPRecipientsRefused as e:
    code, text = list(e.recipients.values())[0]
    print(code, text.decode("utf-8", "replace"))
except smtplib.SMTPDataError as e:
    print(e.smtp_code, e.smtp_error.decode("utf-8", "replace"))
except smtplib.SMTPNotSupportedError as e:
    print(0, "client: " + str(e))
`
	args := append([]string{"-c", script, host, port, from, map[bool]string{true: "1", false: "0"}[smtputf8]}, to...)
	cmd := exec.Command(python, args...)
	cmd.Stdin = bytes.NewReader(msg)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("python smtplib: %v\n%s", err, out)
	}
	codeText, text, _ := strings.Cut(strings.TrimSpace(string(out)), " ")
	code, err := strconv.Atoi(codeText)
	if err != nil {
		t.Fatalf("python smtplib said %q", out)
	}
	return code, text
}

// utf8Mail is a message whose header fields carry raw UTF-8 (RFC 6532), as a client that
// speaks SMTPUTF8 writes them.
func utf8Mail(from, to, subject, messageID, inReplyTo, body string) []byte {
	var b strings.Builder
	fmt.Fprintf(&b, "From: %s\r\nTo: %s\r\nSubject: %s\r\nMessage-ID: %s\r\nDate: %s\r\n", from, to, subject, messageID, time.Now().Format(time.RFC1123Z))
	if inReplyTo != "" {
		fmt.Fprintf(&b, "In-Reply-To: %s\r\nReferences: %s\r\n", inReplyTo, inReplyTo)
	}
	b.WriteString("MIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: 8bit\r\n\r\n")
	b.WriteString(strings.ReplaceAll(body, "\n", "\r\n"))
	return []byte(b.String())
}

// postfixMailboxes is a private Postfix that takes mail for customer.test and bücher.test
// and files all of it in one Maildir, with SMTPUTF8 on or off: the upstream of these tests.
func postfixMailboxes(t *testing.T, smtputf8 bool) (*postfixInstance, string) {
	t.Helper()
	domains := "customer.test, xn--bcher-kva.test"
	if smtputf8 {
		domains += ", bücher.test"
	}
	pf := startPostfixCF(t, "smtputf8_enable = "+map[bool]string{true: "yes", false: "no"}[smtputf8]+"\n"+virtualMaildirCF(t, domains), virtualService)
	return pf, filepath.Join(pf.dir, "vmail", "all", "new")
}

// maildirFiles reads every message in dir once at least n are there.
func maildirFiles(t *testing.T, dir string, n int, what string) [][]byte {
	t.Helper()
	var msgs [][]byte
	waitFor(t, what, 30*time.Second, func() bool {
		entries, _ := os.ReadDir(dir)
		msgs = msgs[:0]
		for _, e := range entries {
			if raw, err := os.ReadFile(filepath.Join(dir, e.Name())); err == nil {
				msgs = append(msgs, raw)
			}
		}
		return len(msgs) >= n
	})
	return msgs
}

func headerBlock(raw []byte) []byte {
	if i := bytes.Index(raw, []byte("\r\n\r\n")); i >= 0 {
		return raw[:i]
	}
	if i := bytes.Index(raw, []byte("\n\n")); i >= 0 {
		return raw[:i]
	}
	return raw
}

// deliveredTo is the Delivered-To that Postfix's virtual agent wrote on a message.
func deliveredTo(raw []byte) string {
	for _, line := range strings.Split(string(headerBlock(raw)), "\n") {
		if v, ok := strings.CutPrefix(line, "Delivered-To: "); ok {
			return strings.TrimSpace(v)
		}
	}
	return ""
}

// A customer whose address is not ASCII writes with SMTPUTF8 from Python's smtplib, the
// acknowledgement and an agent's answer reach her through a Postfix upstream that speaks
// SMTPUTF8, and her replies thread to the same ticket however her address is spelt.
func TestSMTPUTF8_CustomerWithAUTF8AddressGetsEveryAnswer(t *testing.T) {
	pf, maildir := postfixMailboxes(t, true)
	d := startDaemon(t, options{upstream: fmt.Sprintf(`{address: "%s", tls: none, retry_min: 1s, retry_max: 2s}`, pf.smtpAddr)})

	// Without the SMTPUTF8 parameter her address is refused, as RFC 6531 3.4 asks.
	msg := utf8Mail(joeName+" <"+joeUTF8+">", "support@example.com", "Grüße aus Köln", "<first@bücher.test>", "", "Mein Drucker druckt nicht.\n")
	if code, text := sendPython(t, d.smtpAddr, joeUTF8, []string{"support@example.com"}, msg, false); code != 553 || !strings.Contains(text, "5.6.7") || !strings.Contains(text, "SMTPUTF8") {
		t.Fatalf("MAIL without SMTPUTF8: %d %s, want 553 5.6.7 naming SMTPUTF8", code, text)
	}
	if code, text := sendPython(t, d.smtpAddr, joeUTF8, []string{"support@example.com"}, msg, true); code != 250 {
		t.Fatalf("MAIL with SMTPUTF8: %d %s", code, text)
	}
	list := d.tickets()
	if len(list) != 1 {
		t.Fatalf("want 1 ticket, have %d", len(list))
	}
	id := list[0].ID
	tk := d.ticket(id)
	if tk.Requester.Email != joeUTF8 || tk.Requester.Name != joeName || tk.Subject != "Grüße aus Köln" {
		t.Fatalf("the ticket has requester %+v, subject %q", tk.Requester, tk.Subject)
	}
	if out := d.must("", "tickets", "show", fmt.Sprint(id)); !strings.Contains(out, joeUTF8) {
		t.Errorf("tickets show does not print her address as %s:\n%s", joeUTF8, out)
	}

	// The acknowledgement went to Postfix with SMTPUTF8 on MAIL: Postfix says so in its
	// Received field ("with UTF8SMTP", RFC 6531 4.3) and delivered it to her.
	ack := maildirFiles(t, maildir, 1, "the acknowledgement to reach Postfix's mailbox")[0]
	head := string(headerBlock(ack))
	if !strings.Contains(head, "with UTF8SMTP") {
		t.Errorf("Postfix did not receive the acknowledgement with SMTPUTF8:\n%s", head)
	}
	if deliveredTo(ack) != joeUTF8 || !strings.Contains(head, "To: "+mime.QEncoding.Encode("utf-8", joeName)+" <"+joeUTF8+">") {
		t.Errorf("the acknowledgement is not addressed to %s as she wrote it:\n%s", joeUTF8, head)
	}

	// An agent answers; the answer reaches her too.
	d.must("Der Drucker ist repariert.", "reply", fmt.Sprint(id), "--as", "alice@example.com")
	msgs := maildirFiles(t, maildir, 2, "the agent's answer to reach her")
	answered := false
	for _, m := range msgs {
		if bytes.Contains(m, []byte("repariert")) && deliveredTo(m) == joeUTF8 {
			answered = true
		}
	}
	if !answered {
		t.Fatal("the agent's answer did not reach her")
	}

	// She answers from her address spelt in capitals, then in A-labels with a decomposed ö:
	// both are her, on the same ticket, and nobody new joins it.
	for i, from := range []string{"JÖE@BÜCHER.TEST", "jo\u0308e@xn--bcher-kva.test"} {
		reply := utf8Mail(from, tk.ReplyAddress, "Re: Grüße aus Köln", fmt.Sprintf("<reply-%d@bücher.test>", i), "", fmt.Sprintf("Danke! (%d)\n", i))
		if code, text := sendPython(t, d.smtpAddr, from, []string{tk.ReplyAddress}, reply, true); code != 250 {
			t.Fatalf("reply from %s: %d %s", from, code, text)
		}
	}
	if n := len(d.tickets()); n != 1 {
		t.Fatalf("her replies opened %d tickets, want them on ticket %d", n, id)
	}
	tk = d.ticket(id)
	if len(tk.CCs) != 0 || len(tk.Followers) != 0 {
		t.Errorf("her own replies added participants: CCs %+v, followers %+v", tk.CCs, tk.Followers)
	}
	var mine int
	for _, c := range tk.Comments {
		if strings.Contains(c.Body, "Danke!") {
			mine++
			if !strings.EqualFold(c.Author, joeUTF8) {
				t.Errorf("comment %d is by %q, want the requester %s", c.ID, c.Author, joeUTF8)
			}
			if !c.Public {
				t.Errorf("the requester's reply %d is not public", c.ID)
			}
		}
	}
	if mine != 2 {
		t.Fatalf("want her 2 replies on ticket %d, have %d: %+v", id, mine, tk.Comments)
	}
}

// An upstream without SMTPUTF8 gets only what it can carry: the ASCII recipients (an
// internationalised domain in A-labels) get copies whose header fields are seven bits, with
// the address that has no ASCII form still in view as encoded words, and the recipient
// whose address is not ASCII fails at once with the reason, and T6 flags it.
func TestSMTPUTF8_UpstreamWithoutItGetsSevenBits(t *testing.T) {
	pf, maildir := postfixMailboxes(t, false)
	d := startDaemon(t, options{upstream: fmt.Sprintf(`{address: "%s", tls: none, retry_min: 1s, retry_max: 2s}`, pf.smtpAddr)})

	open := utf8Mail("Jane <jane@customer.test>", "support@example.com", "Printer", "<open-7bit@customer.test>", "", "Please help.\n")
	open = bytes.Replace(open, []byte("To: support@example.com\r\n"),
		[]byte("To: support@example.com\r\nCc: "+joeName+" <"+joeUTF8+">, Ann <"+annIDN+">\r\n"), 1)
	if code, text := sendPython(t, d.smtpAddr, "jane@customer.test", []string{"support@example.com"}, open, true); code != 250 {
		t.Fatalf("open: %d %s", code, text)
	}
	id := d.tickets()[0].ID
	if tk := d.ticket(id); len(tk.CCs) != 2 {
		t.Fatalf("want both CCs on the ticket, have %+v", tk.CCs)
	}
	d.must("Fixed it.", "reply", fmt.Sprint(id), "--as", "alice@example.com")

	// jane gets the acknowledgement and the answer, ann the answer, in A-labels.
	maildirFiles(t, maildir, 3, "three copies for jane and ann")
	waitFor(t, "the answer's delivery to settle", 20*time.Second, func() bool {
		for _, e := range d.queue() {
			if e.State == "queued" {
				return false
			}
		}
		return true
	})
	msgs := maildirFiles(t, maildir, 3, "every copy")
	got := map[string]int{}
	for _, m := range msgs {
		got[deliveredTo(m)]++
		head := headerBlock(m)
		for i, c := range head {
			if c >= 0x80 {
				t.Errorf("a copy for %s has an 8-bit header byte at %d:\n%s", deliveredTo(m), i, head)
				break
			}
		}
		if !bytes.Contains(m, []byte("Fixed it")) {
			continue
		}
		var cc string
		unfolded := strings.NewReplacer("\r\n", "\n").Replace(string(head))
		unfolded = strings.NewReplacer("\n ", " ", "\n\t", " ").Replace(unfolded)
		for _, line := range strings.Split(unfolded, "\n") {
			if v, ok := strings.CutPrefix(line, "Cc: "); ok {
				cc = v
			}
		}
		decoded, err := new(mime.WordDecoder).DecodeHeader(cc)
		if err != nil || !strings.Contains(cc, annASCII) || !strings.Contains(decoded, joeUTF8) || !strings.Contains(cc, ":;") {
			t.Errorf("Cc of the answer to %s: %q (decoded %q, %v); want %s and %s as an empty group", deliveredTo(m), cc, decoded, err, annASCII, joeUTF8)
		}
	}
	if got["jane@customer.test"] != 2 || got[annASCII] != 1 || len(got) != 2 {
		t.Errorf("copies by recipient: %v; want jane 2, %s 1", got, annASCII)
	}
	failed := false
	for _, e := range d.queue() {
		for _, r := range e.Recipients {
			if r.Email == joeUTF8 {
				if r.State != "failed" || !strings.Contains(r.Reply, "SMTPUTF8") {
					t.Errorf("the delivery to %s is %s: %q; want failed, saying the upstream lacks SMTPUTF8", joeUTF8, r.State, r.Reply)
				}
				failed = failed || r.State == "failed"
			}
		}
	}
	if !failed {
		t.Fatalf("no failed delivery to %s in the queue: %+v", joeUTF8, d.queue())
	}
	if out := d.must("", "tickets", "show", fmt.Sprint(id)); !strings.Contains(out, "DELIVERY FAILED") {
		t.Errorf("tickets show does not flag the failed delivery:\n%s", out)
	}
	// Postfix never saw an 8-bit transaction to refuse.
	if log := pf.log(); strings.Contains(log, "reject") || strings.Contains(log, "bücher") {
		t.Errorf("Postfix refused something or saw raw UTF-8:\n%s", log)
	}
}

// The Maildir outbox takes UTF-8 as it is; the API and the CLI take an address in any of
// its spellings, keep one, and refuse one that is not an address.
func TestSMTPUTF8_OneFormThroughTheAPIAndCLI(t *testing.T) {
	d := startDaemon(t, options{})
	id := d.open("jane@customer.test", nil, "Printer", "Please help.")
	// A-labels and capitals in, the U-label form kept and shown.
	if code, body := d.api("POST", fmt.Sprintf("/api/v1/tickets/%d/ccs", id), strings.NewReader(`{"email":"Jöe@XN--BCHER-KVA.test"}`), true); code != 201 {
		t.Fatalf("POST ccs: %d %s", code, body)
	}
	if tk := d.ticket(id); len(tk.CCs) != 1 || tk.CCs[0].Email != "Jöe@bücher.test" {
		t.Fatalf("CCs: %+v, want Jöe@bücher.test", tk.CCs)
	}
	if out := d.must("", "tickets", "show", fmt.Sprint(id)); !strings.Contains(out, "Jöe@bücher.test") {
		t.Errorf("tickets show:\n%s", out)
	}
	// The same person again in NFD and lower case is not a second CC.
	if _, errOut, code := d.cli("cc", "add", fmt.Sprint(id), "jo\u0308e@bu\u0308cher.test"); code == 0 || !strings.Contains(errOut, "already a CC") {
		t.Errorf("cc add of the same address in NFD: exit %d, %q; want it refused as already a CC", code, errOut)
	}
	if tk := d.ticket(id); len(tk.CCs) != 1 {
		t.Fatalf("the same address in another spelling became a second CC: %+v", tk.CCs)
	}
	for _, bad := range []string{"jane@xn--zz.test", "ja\u0007ne@example.com", "jane@-bad.test"} {
		body, _ := json.Marshal(map[string]string{"email": bad})
		if code, answer := d.api("POST", fmt.Sprintf("/api/v1/tickets/%d/ccs", id), bytes.NewReader(body), true); code != 422 {
			t.Errorf("POST ccs %q: %d %s, want 422", bad, code, answer)
		}
	}
	// A look-alike of the agent alice@example.com (a dotted capital İ) is a customer: a
	// visible CC, never a hidden follower who gets internal notes.
	if code, body := d.api("POST", fmt.Sprintf("/api/v1/tickets/%d/ccs", id), strings.NewReader(`{"email":"alİce@example.com"}`), true); code != 201 {
		t.Fatalf("POST ccs alİce@example.com: %d %s", code, body)
	}
	if tk := d.ticket(id); len(tk.CCs) != 2 || len(tk.Followers) != 0 {
		t.Fatalf("the look-alike of an agent: CCs %+v, followers %+v; want a second CC", tk.CCs, tk.Followers)
	}

	// The answer to the CC lands in the Maildir outbox in UTF-8, as it is.
	d.must("Fixed it.", "reply", fmt.Sprint(id), "--as", "alice@example.com")
	var found bool
	for _, m := range d.outbox() {
		if strings.EqualFold(m.rcpt, "Jöe@bücher.test") {
			found = true
			if !strings.Contains(m.header.Get("Cc"), "Jöe@bücher.test") {
				t.Errorf("the copy's Cc is %q", m.header.Get("Cc"))
			}
		}
	}
	if !found {
		t.Fatal("no copy for Jöe@bücher.test in the outbox")
	}
}

// Postfix in front, with SMTPUTF8 on as it is by default since Postfix 3.0, takes a mail from
// a UTF-8 address and hands it to deskgate over LMTP with SMTPUTF8: deskgate offers it there
// too, so Postfix neither bounces the mail nor needs to downgrade it.
func TestSMTPUTF8_PostfixHandsOffOverLMTP(t *testing.T) {
	d := startDaemon(t, options{})
	pf := startPostfixCF(t, fmt.Sprintf(`smtputf8_enable = yes
relay_domains = example.com
transport_maps = inline:{ example.com=lmtp:inet:%s }
smtpd_relay_restrictions = permit_mynetworks, reject_unauth_destination
`, d.lmtpAddr), "")
	msg := utf8Mail(joeName+" <"+joeUTF8+">", "support@example.com", "Über Postfix", "<pf-utf8@bücher.test>", "", "Hallo.\n")
	if code, text := sendPython(t, pf.smtpAddr, joeUTF8, []string{"support@example.com"}, msg, true); code != 250 {
		t.Fatalf("Postfix smtpd: %d %s", code, text)
	}
	waitFor(t, "the mail to reach deskgate through Postfix's LMTP client", 30*time.Second, func() bool { return len(d.tickets()) == 1 })
	tk := d.ticket(d.tickets()[0].ID)
	if tk.Requester.Email != joeUTF8 || tk.Subject != "Über Postfix" {
		t.Fatalf("the ticket: requester %+v, subject %q", tk.Requester, tk.Subject)
	}
	if log := pf.log(); !strings.Contains(log, "status=sent (250 2.") {
		t.Errorf("Postfix's log does not show the LMTP delivery:\n%s", log)
	}
}
