package mailparse

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/deskgate/deskgate/gateway/addr"
)

func parseFile(t *testing.T, name string) *Message {
	t.Helper()
	raw, err := os.ReadFile(filepath.Join("testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	m, err := Parse(raw, "mx.test")
	if err != nil {
		t.Fatalf("%s: %v", name, err)
	}
	return m
}

func TestPlain(t *testing.T) {
	m := parseFile(t, "plain.eml")
	if m.From == nil || m.From.Email != "jane@customer.test" || m.From.Name != "Jane Doe" {
		t.Errorf("From = %+v", m.From)
	}
	if len(m.Cc) != 1 || m.Cc[0].Email != "joe@customer.test" || m.Cc[0].Name != "Joe" {
		t.Errorf("Cc = %+v", m.Cc)
	}
	if m.Subject != "Printer on fire" || m.MessageID != "plain-1@customer.test" || m.MessageIDGenerated {
		t.Errorf("subject %q id %q", m.Subject, m.MessageID)
	}
	if strings.TrimSpace(m.Text) != "It is burning." {
		t.Errorf("text = %q", m.Text)
	}
}

func TestHTMLOnlyBodyBecomesText(t *testing.T) {
	m := parseFile(t, "html.eml")
	if m.Subject != "Hélène" {
		t.Errorf("encoded-word subject = %q", m.Subject)
	}
	if m.Text != "Hello world & friends\nsecond line" {
		t.Errorf("text = %q", m.Text)
	}
}

func TestMultipartWithAttachmentAndCharset(t *testing.T) {
	m := parseFile(t, "attachment.eml")
	if strings.TrimSpace(m.Text) != "Café is broken." {
		t.Errorf("plain part not preferred or charset not decoded: %q", m.Text)
	}
	if len(m.Attachments) != 1 || m.Attachments[0].Name != "invoice.pdf" || m.Attachments[0].ContentType != "application/pdf" || m.Attachments[0].Size != 9 {
		t.Errorf("attachments = %+v", m.Attachments)
	}
	if m.InReplyTo != "prev@example.com" || len(m.References) != 2 || m.References[0] != "root@example.com" {
		t.Errorf("in-reply-to %q references %q", m.InReplyTo, m.References)
	}
}

func TestEightBitHeadersKeepWhatTheyCan(t *testing.T) {
	m := parseFile(t, "eightbit.eml")
	if m.From == nil || m.From.Email != "juergen@customer.test" {
		t.Fatalf("From = %+v", m.From)
	}
	if !strings.HasPrefix(m.Subject, "Grüße") || !strings.Contains(m.Text, "Raw 8-bit") {
		t.Errorf("subject %q text %q", m.Subject, m.Text)
	}
	if !m.MessageIDGenerated || !strings.HasSuffix(m.MessageID, "@mx.test") {
		t.Errorf("missing Message-ID not made: %q", m.MessageID)
	}
}

func TestGeneratedMessageIDIsStableForTheSameBytes(t *testing.T) {
	raw, _ := os.ReadFile("testdata/eightbit.eml")
	a, _ := Parse(raw, "mx.test")
	b, _ := Parse(raw, "mx.test")
	c, _ := Parse(append(raw, 'x'), "mx.test")
	if a.MessageID != b.MessageID || a.MessageID == c.MessageID {
		t.Errorf("ids %q %q %q", a.MessageID, b.MessageID, c.MessageID)
	}
}

func TestBrokenMIMEIsBestEffort(t *testing.T) {
	m := parseFile(t, "broken-mime.eml")
	if m.From != nil {
		t.Errorf("From = %+v, want none", m.From)
	}
	if !strings.Contains(m.Text, "body without end") {
		t.Errorf("text = %q", m.Text)
	}
}

func TestNoHeader(t *testing.T) {
	m := parseFile(t, "no-header.eml")
	if m.From != nil || !strings.Contains(m.Text, "just text") {
		t.Errorf("headerless mail = %+v", m)
	}
	if _, err := Parse([]byte("  \r\n"), "mx.test"); err != ErrNoHeader {
		t.Errorf("empty data: %v", err)
	}
}

func TestHugeHeaderIsRefused(t *testing.T) {
	var b strings.Builder
	b.WriteString("From: a@b\r\n")
	for b.Len() < MaxHeaderBytes+10 {
		b.WriteString("X-Filler: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\n")
	}
	b.WriteString("\r\nbody\r\n")
	if _, err := Parse([]byte(b.String()), "mx.test"); err != ErrHeaderTooLarge {
		t.Fatalf("huge header: err = %v, want ErrHeaderTooLarge", err)
	}
}

func FuzzParse(f *testing.F) {
	files, _ := filepath.Glob("testdata/*.eml")
	for _, name := range files {
		raw, err := os.ReadFile(name)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(raw)
	}
	f.Fuzz(func(t *testing.T, raw []byte) {
		m, err := Parse(raw, "mx.test")
		if err != nil {
			return
		}
		if m.MessageID == "" {
			t.Fatal("parsed message without a Message-ID")
		}
		if strings.ContainsAny(m.Subject, "\r\n") || strings.ContainsAny(m.MessageID, "\r\n") {
			t.Fatalf("line break survived in a header value: %q %q", m.Subject, m.MessageID)
		}
		if m.From != nil && strings.ContainsAny(m.From.Email, "\r\n") {
			t.Fatalf("line break in From: %q", m.From.Email)
		}
		// Every address comes out in the one form deskgate compares.
		all := append(append(append([]Address(nil), m.To...), m.Cc...), m.ReplyTo...)
		if m.From != nil {
			all = append(all, *m.From)
		}
		for _, a := range all {
			if c, err := addr.Canonical(a.Email); err != nil || c != a.Email {
				t.Fatalf("address %q is not canonical (%q, %v)", a.Email, c, err)
			}
		}
		// tickets show prints each problem on one line.
		for _, p := range m.Problems {
			if strings.ContainsAny(p, "\r\n") || len(p) > maxProblemBytes+len("…") {
				t.Fatalf("problem is not one bounded line: %q", p)
			}
		}
	})
}

func TestUnparseableFromTakesTheAngleAddress(t *testing.T) {
	for _, from := range []string{"alice@example.com <evil@x.test>", "alice@example.com (agent) <evil@x.test>"} {
		m, err := Parse([]byte("From: "+from+"\r\nSubject: x\r\n\r\nbody\r\n"), "h.test")
		if err != nil {
			t.Fatal(err)
		}
		if m.From == nil || m.From.Email != "evil@x.test" {
			t.Errorf("From: %s was read as %+v, not as the mailbox a mail client shows", from, m.From)
		}
	}
}

// A message/global mail (RFC 6532): addresses and display names in raw UTF-8 come out, each
// address in its canonical form; an address that is no valid address is no participant, and
// the comment says so.
func TestInternationalisedAddresses(t *testing.T) {
	m := parseFile(t, "global.eml")
	if m.From == nil || m.From.Email != "Jöe@bücher.test" || m.From.Name != "Jöe Bäcker" {
		t.Errorf("From = %+v, want Jöe Bäcker <Jöe@bücher.test>", m.From)
	}
	want := func(field string, got []Address, emails ...string) {
		t.Helper()
		var list []string
		for _, a := range got {
			list = append(list, a.Email)
		}
		if strings.Join(list, ",") != strings.Join(emails, ",") {
			t.Errorf("%s = %q, want %q", field, list, emails)
		}
	}
	want("To", m.To, "support@example.com", "zoë@bücher.test")
	if len(m.To) == 2 && m.To[1].Name != "Zoë" {
		t.Errorf("To[1].Name = %q", m.To[1].Name)
	}
	want("Cc", m.Cc, "x@bücher.test", "ok@example.org")
	want("Reply-To", m.ReplyTo, "jöe@bücher.test")
	if m.Subject != "Grüße" || m.MessageID != "global-1@bücher.test" || strings.TrimSpace(m.Text) != "Hallo aus München." {
		t.Errorf("subject %q id %q text %q", m.Subject, m.MessageID, m.Text)
	}
	problems := strings.Join(m.Problems, "\n")
	if !strings.Contains(problems, `Cc: not a valid address, so not taken as a participant: the domain of "bad@xn--zz.test" is not a valid domain name`) {
		t.Errorf("problems do not name the invalid Cc: %q", m.Problems)
	}
}

func TestInvalidFromIsNoAuthor(t *testing.T) {
	for _, from := range []string{"Mallory <m@xn--zz.test>", "m@exa!mple.test", "Ctl <m@b\x01.test>"} {
		m, err := Parse([]byte("From: "+from+"\r\nSubject: x\r\n\r\nbody\r\n"), "h.test")
		if err != nil {
			t.Fatal(err)
		}
		if m.From != nil {
			t.Errorf("From: %q was read as %+v, want no author", from, m.From)
		}
		if len(m.Problems) == 0 || !strings.HasPrefix(m.Problems[len(m.Problems)-1], "From: ") {
			t.Errorf("From: %q: problems %q do not say why there is no author", from, m.Problems)
		}
	}
}
