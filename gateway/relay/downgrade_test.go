package relay

import (
	"bytes"
	"net/mail"
	"strings"
	"testing"

	gomail "github.com/emersion/go-message/mail"

	"github.com/deskgate/deskgate/gateway/addr"
)

const utf8Message = "From: \"Alice via Example Support\" <support@example.com>\r\n" +
	"Reply-To: \"Example Support\" <support+7-abc@example.com>\r\n" +
	"To: =?utf-8?q?Zo=C3=AB?= <zoë@例え.テスト>\r\n" +
	"Cc: \"Joe, Jr.\" <jöe@bücher.test>, kim@customer.test,\r\n Jürgen <jurgen@bücher.test>\r\n" +
	"Subject: Grüße aus Köln [#7-abc]\r\n" +
	"Message-Id: <0190aa@mx.test>\r\n" +
	"In-Reply-To: <root@customer.test>\r\n" +
	"X-Loop: support@example.com\r\n" +
	"Content-Type: text/plain; charset=utf-8\r\n" +
	"Content-Transfer-Encoding: quoted-printable\r\n" +
	"\r\n" +
	"Gr=C3=BC=C3=9Fe\r\n"

func headerOf(t *testing.T, msg []byte) mail.Header {
	t.Helper()
	m, err := mail.ReadMessage(bytes.NewReader(msg))
	if err != nil {
		t.Fatalf("the downgraded message does not parse: %v\n%s", err, msg)
	}
	return m.Header
}

func TestDowngrade7BitRewritesHeadersAsRFC6857Says(t *testing.T) {
	out := Downgrade7Bit([]byte(utf8Message))
	end := headerEnd(out)
	if !addr.IsASCII(string(out[:end])) {
		t.Fatalf("the header is not seven-bit:\n%s", out)
	}
	if !bytes.HasSuffix(out, []byte("\r\n\r\nGr=C3=BC=C3=9Fe\r\n")) {
		t.Errorf("the body changed:\n%s", out)
	}
	h := headerOf(t, out)
	gh := goHeader(h)

	// An address without an ASCII form is an empty group named after it, in encoded words,
	// so that a reader still sees whom the message went to.
	to, err := gh.AddressList("To")
	if err != nil || len(to) != 0 {
		t.Errorf("To: %v %v, want an empty group", to, err)
	}
	if !strings.HasPrefix(h.Get("To"), "=?utf-8?q?") || !strings.HasSuffix(h.Get("To"), ":;") {
		t.Errorf("To: %q", h.Get("To"))
	}
	if shown, _ := wordDecoder.DecodeHeader(strings.TrimSuffix(h.Get("To"), ":;")); shown != "Zoë <zoë@例え.テスト>" {
		t.Errorf("the group of To shows %q", shown)
	}

	// In Cc: the non-ASCII local part becomes a group, the IDN domain goes in A-labels, the
	// ASCII address stays, and the names are encoded words.
	cc, err := gh.AddressList("Cc")
	if err != nil {
		t.Fatalf("Cc does not parse: %v (%q)", err, h.Get("Cc"))
	}
	var got []string
	for _, a := range cc {
		got = append(got, a.Name+"|"+a.Address)
	}
	if strings.Join(got, " ") != "|kim@customer.test Jürgen|jurgen@xn--bcher-kva.test" {
		t.Errorf("Cc addresses: %q (%q)", got, h.Get("Cc"))
	}
	if shown, _ := wordDecoder.DecodeHeader(h.Get("Cc")); !strings.Contains(shown, `Joe, Jr. <jöe@bücher.test>:;`) {
		t.Errorf("Cc shows %q", shown)
	}

	if s, _ := wordDecoder.DecodeHeader(h.Get("Subject")); s != "Grüße aus Köln [#7-abc]" {
		t.Errorf("Subject decodes to %q", s)
	}
	// What was ASCII is kept byte for byte.
	for _, line := range []string{"From: \"Alice via Example Support\" <support@example.com>\r\n", "Message-Id: <0190aa@mx.test>\r\n",
		"In-Reply-To: <root@customer.test>\r\n", "X-Loop: support@example.com\r\n", "Content-Type: text/plain; charset=utf-8\r\n"} {
		if !bytes.Contains(out, []byte(line)) {
			t.Errorf("%q changed:\n%s", line, out)
		}
	}
	for _, line := range strings.Split(string(out[:end]), "\r\n") {
		if len(line) > 78 {
			t.Errorf("a line of %d characters: %q", len(line), line)
		}
	}
	if again := Downgrade7Bit(out); !bytes.Equal(again, out) {
		t.Errorf("downgrading twice changes the message:\n%s\n---\n%s", out, again)
	}
}

func TestDowngrade7BitKeepsASCIIMessagesAsTheyAre(t *testing.T) {
	for _, msg := range []string{
		"From: a@b.test\r\nSubject: =?utf-8?q?x?=\r\n\r\nbody \xc3\xbc\r\n",
		"Subject: hi\n\nbody\n",
		"",
		"\r\nno header\r\n",
	} {
		if out := Downgrade7Bit([]byte(msg)); string(out) != msg {
			t.Errorf("%q became %q", msg, out)
		}
	}
}

// Hostile headers: invalid UTF-8, control characters, an unparseable address list, a field
// name that is not ASCII, A-label garbage: the result is seven-bit and parses.
func TestDowngrade7BitHostileHeaders(t *testing.T) {
	msg := "From: \"x\xff\xfe\" <a@b.test>\r\n" +
		"To: <jöe@xn--zz>, \"Ünterminated <u@x.test\r\n" +
		"Cc: jöe@ex ample.test\r\n" +
		"Subject: \x01ctl ü\x7f\r\n" +
		"Content-Type: text/plain; name=\"dätei.txt\"\r\n" +
		"X-Ärger: y\r\n" +
		"Reply-To: Zoë <zoë@bücher.test>, Émile <EMILE@BÜCHER.TEST>\r\n" +
		"\r\nbody\r\n"
	out := Downgrade7Bit([]byte(msg))
	end := headerEnd(out)
	if !addr.IsASCII(string(out[:end])) {
		t.Fatalf("not seven-bit:\n%q", out)
	}
	h := headerOf(t, out)
	if _, params, err := goHeader(h).ContentType(); err != nil || params["name"] != "dätei.txt" {
		t.Errorf("Content-Type %q: %v %v", h.Get("Content-Type"), params, err)
	}
	rt, err := goHeader(h).AddressList("Reply-To")
	if err != nil || len(rt) != 1 || rt[0].Address != "EMILE@xn--bcher-kva.test" || rt[0].Name != "Émile" {
		t.Errorf("Reply-To %q: %v %v", h.Get("Reply-To"), rt, err)
	}
	for _, f := range []string{"To", "Cc"} {
		if _, err := goHeader(h).AddressList(f); err != nil {
			t.Errorf("%s %q does not parse: %v", f, h.Get(f), err)
		}
	}
}

// FuzzDowngrade7Bit: whatever the header, the result's header is seven-bit, a message that
// parsed still parses with the same fields in the same order, its address fields that parsed
// still parse, downgrading again changes nothing, and an ASCII header is left as it is.
func FuzzDowngrade7Bit(f *testing.F) {
	f.Add([]byte(utf8Message))
	f.Add([]byte("To: \"Zoë\" <zoë@例え.テスト>\r\nSubject: ü\r\n\r\nx\r\n"))
	f.Add([]byte("Cc: a@b.test\nSubject: plain\n\nbody\n"))
	f.Add([]byte("From: \xff <x@\xc3.test>\r\n\r\n"))
	f.Add([]byte("Content-Disposition: attachment; filename=\"ä.pdf\"\r\n\r\n"))
	f.Fuzz(func(t *testing.T, msg []byte) {
		out := Downgrade7Bit(msg)
		end := headerEnd(out)
		if !addr.IsASCII(string(out[:end])) {
			t.Fatalf("not seven-bit: %q", out[:end])
		}
		if inEnd := headerEnd(msg); !bytes.Equal(out[end:], msg[inEnd:]) {
			t.Fatalf("the body changed: %q -> %q", msg[inEnd:], out[end:])
		}
		if again := Downgrade7Bit(out); !bytes.Equal(again, out) {
			t.Fatalf("not idempotent: %q -> %q", out, again)
		}
		if addr.IsASCII(string(msg[:headerEnd(msg)])) && !bytes.Equal(out, msg) {
			t.Fatalf("an ASCII header changed: %q -> %q", msg, out)
		}
		in, err := mail.ReadMessage(bytes.NewReader(msg))
		if err != nil {
			return
		}
		if count(in.Header) == 0 && !namesAField(out[:headerEnd(out)]) {
			// Its only fields held UTF-8 msg-ids, and were left out: nothing is left to parse
			// but lines without a field name, which net/mail skips.
			return
		}
		got, err := mail.ReadMessage(bytes.NewReader(out))
		if err != nil {
			t.Fatalf("%q parsed, its downgrade %q does not: %v", msg, out, err)
		}
		for k, vs := range got.Header {
			if msgIDFields[strings.ToLower(k)] {
				for _, v := range vs {
					if strings.Contains(v, "=?") && !strings.Contains(in.Header.Get(k), "=?") {
						t.Fatalf("%s has encoded words, which a msg-id cannot: %q", k, v)
					}
				}
			}
		}
		if count(got.Header) != count(in.Header) {
			t.Fatalf("fields %v became %v", in.Header, got.Header)
		}
		for k := range in.Header {
			if !addr.IsASCII(k) {
				continue // a name that is not ASCII cannot be kept
			}
			if len(got.Header[k]) != len(in.Header[k]) && !msgIDFields[strings.ToLower(k)] {
				t.Fatalf("%s: %d fields became %d", k, len(in.Header[k]), len(got.Header[k]))
			}
			if addressFields[strings.ToLower(k)] {
				if _, err := goHeader(in.Header).AddressList(k); err != nil {
					continue
				}
				if _, err := goHeader(got.Header).AddressList(k); err != nil {
					t.Fatalf("%s %q parsed, its downgrade %q does not: %v", k, in.Header.Get(k), got.Header.Get(k), err)
				}
			}
		}
	})
}

// namesAField says whether a header holds a line that starts a field with a name.
func namesAField(header []byte) bool {
	for _, line := range bytes.Split(header, []byte("\n")) {
		if i := bytes.IndexByte(line, ':'); i > 0 && line[0] != ' ' && line[0] != '\t' {
			return true
		}
	}
	return false
}

// count counts the fields of h but those with msg-ids, which a downgrade drops when none of
// their ids is ASCII.
func count(h mail.Header) int {
	n := 0
	for k, v := range h {
		if !msgIDFields[strings.ToLower(k)] {
			n += len(v)
		}
	}
	return n
}

// goHeader is h as go-message reads it (encoded words, groups).
func goHeader(h mail.Header) *gomail.Header {
	gh := gomail.HeaderFromMap(h)
	return &gh
}

// A msg-id in UTF-8 (a customer's, at an internationalised domain) cannot be written in
// seven bits, and encoded words in its place are no msg-id: it is left out, deskgate's own
// ASCII ids stay, and a field with none left goes.
func TestDowngrade7BitLeavesOutUTF8MessageIDs(t *testing.T) {
	msg := []byte("From: support@example.com\r\nTo: =?utf-8?q?J=C3=B6e?= <joe@example.com>\r\n" +
		"Message-ID: <n1@mx.example.com>\r\n" +
		"In-Reply-To: <first-joe@bücher.test>\r\n" +
		"References: <first-joe@bücher.test> <n0@mx.example.com>\r\n" +
		"Subject: Grüße\r\n\r\nbody\r\n")
	out := string(Downgrade7Bit(msg))
	head := out[:strings.Index(out, "\r\n\r\n")]
	if !addr.IsASCII(head) {
		t.Fatalf("not 7-bit: %q", head)
	}
	if strings.Contains(head, "In-Reply-To") || strings.Contains(head, "bücher") || strings.Contains(head, "first-joe") {
		t.Errorf("the UTF-8 msg-id is still there:\n%s", head)
	}
	if !strings.Contains(head, "References: <n0@mx.example.com>\r\n") || !strings.Contains(head, "Message-ID: <n1@mx.example.com>\r\n") {
		t.Errorf("deskgate's own ids are not kept as they were:\n%s", head)
	}
}

// headerEnd finds the blank line after the header whichever line breaks the message has,
// and never looks past it.
func TestHeaderEnd(t *testing.T) {
	for msg, want := range map[string]int{
		"A: 1\r\nB: 2\r\n\r\nbody\n\nmore": len("A: 1\r\nB: 2\r\n"),
		"A: 1\nB: 2\n\nbody\r\n\r\n":       len("A: 1\nB: 2\n"),
		"A: 1\r\n\r\n":                     len("A: 1\r\n"),
		"\r\nbody":                         0,
		"A: 1\r\nno blank line":            len("A: 1\r\nno blank line"),
		"A: 1\r\n":                         len("A: 1\r\n"),
	} {
		if got := headerEnd([]byte(msg)); got != want {
			t.Errorf("headerEnd(%q) = %d, want %d", msg, got, want)
		}
	}
}
