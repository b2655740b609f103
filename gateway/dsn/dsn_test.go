package dsn

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"unicode"
)

func TestT6_RFC3464Report(t *testing.T) {
	raw, _ := os.ReadFile("testdata/postfix-dsn.eml")
	rep := Parse(raw)
	if len(rep.Recipients) != 2 {
		t.Fatalf("recipients = %+v", rep.Recipients)
	}
	joe := rep.Recipients[0]
	if joe.Email != "joe@customer.test" || joe.Action != "failed" || joe.Status != "5.1.1" || !strings.Contains(joe.Diagnostic, "User unknown") {
		t.Errorf("joe = %+v", joe)
	}
	if k := rep.Recipients[1]; k.Email != "kim@customer.test" || k.Action != "delayed" || k.Status != "4.4.1" {
		t.Errorf("kim = %+v", k)
	}
	if !strings.Contains(rep.Text, "could not") {
		t.Errorf("text = %q", rep.Text)
	}
	if !rep.DSN || joe.Original != "joe@customer.test" || rep.Header["Auto-Submitted"] != "auto-replied" {
		t.Errorf("DSN %v, original %q, header %v", rep.DSN, joe.Original, rep.Header)
	}
}

func TestT6_PlainBounce(t *testing.T) {
	raw, _ := os.ReadFile("testdata/plain-bounce.eml")
	rep := Parse(raw)
	if len(rep.Recipients) != 0 || rep.DSN || !strings.Contains(rep.Text, "lee@customer.test") {
		t.Fatalf("plain bounce = %+v", rep)
	}
}

func TestT6_OutOfOfficeIsNoDSN(t *testing.T) {
	raw, _ := os.ReadFile("testdata/out-of-office.eml")
	rep := Parse(raw)
	if rep.DSN || len(rep.Recipients) != 0 || rep.Header["Auto-Submitted"] != "auto-replied" || rep.Header["From"] == "" {
		t.Fatalf("out-of-office = %+v", rep)
	}
}

// Exchange sends its DSNs with a multipart/alternative text part, a quoted report-type in
// capitals, Original-Recipient before Final-Recipient and a comment after the action.
func TestT6_ExchangeDSN(t *testing.T) {
	raw, _ := os.ReadFile("testdata/exchange-dsn.eml")
	rep := Parse(raw)
	if !rep.DSN || len(rep.Recipients) != 1 {
		t.Fatalf("exchange = %+v", rep)
	}
	r := rep.Recipients[0]
	if r.Email != "Joe.Smith@customer.test" || r.Original != "JOE@customer.test" || r.Action != "failed" || r.Status != "5.1.10" {
		t.Errorf("recipient = %+v", r)
	}
	if !strings.Contains(rep.Text, "Delivery has failed") || strings.Contains(rep.Text, "<html>") {
		t.Errorf("text = %q", rep.Text)
	}
}

// RFC 6533: internationalised addresses in a message/global-delivery-status.
func TestT6_GlobalDSN(t *testing.T) {
	raw, _ := os.ReadFile("testdata/global-dsn.eml")
	rep := Parse(raw)
	if !rep.DSN || len(rep.Recipients) != 1 || rep.Recipients[0].Email != "josé@customer.test" || rep.Recipients[0].Action != "failed" {
		t.Fatalf("global DSN = %+v", rep)
	}
}

// Only the delivery-status part of a multipart/report of report-type delivery-status is
// read: anybody can put such a part in other mail.
func TestT6_StatusOutsideAReportIsNoDSN(t *testing.T) {
	raw, _ := os.ReadFile("testdata/status-outside-report.eml")
	nested := strings.Replace(string(raw), `multipart/mixed; boundary="M1"`,
		`multipart/report; report-type=delivery-status; boundary="R0"`+"\r\n\r\n--R0\r\nContent-Type: multipart/mixed; boundary=\"M1\"", 1) + "\r\n--R0--\r\n"
	other := strings.Replace(string(raw), `multipart/mixed;`, `multipart/report; report-type=feedback-report;`, 1)
	for name, m := range map[string]string{"in multipart/mixed": string(raw), "nested in a report": nested, "in a feedback report": other} {
		rep := Parse([]byte(m))
		if rep.DSN || len(rep.Recipients) != 0 {
			t.Errorf("%s: %+v", name, rep)
		}
		if !strings.Contains(rep.Text, "failed") {
			t.Errorf("%s: text %q", name, rep.Text)
		}
	}
}

// What a DSN's sender writes in its fields reaches the records: no control characters,
// and the action is one lowercased word.
func TestT6_DSNFieldsAreClean(t *testing.T) {
	raw := "From: x@y\r\nContent-Type: multipart/report; report-type=delivery-status; boundary=B\r\n\r\n" +
		"--B\r\nContent-Type: message/delivery-status\r\n\r\nReporting-MTA: dns; y\r\n\r\n" +
		"Final-Recipient: rfc822; <joe@customer.test>\r\nAction: FAILED\x1b[2J\r\nStatus: 5.1.1\r\n" +
		"Diagnostic-Code: smtp; 550\x1b[31m red\x07\r\n\r\n--B--\r\n"
	rep := Parse([]byte(raw))
	if !rep.DSN || len(rep.Recipients) != 1 {
		t.Fatalf("report = %+v", rep)
	}
	r := rep.Recipients[0]
	if r.Email != "joe@customer.test" || r.Action != "failed" || strings.ContainsAny(r.Diagnostic, "\x1b\x07") {
		t.Errorf("recipient = %+q", r)
	}
}

func FuzzParse(f *testing.F) {
	files, _ := filepath.Glob("testdata/*.eml")
	for _, name := range files {
		raw, _ := os.ReadFile(name)
		f.Add(raw)
	}
	f.Fuzz(func(t *testing.T, raw []byte) {
		rep := Parse(raw)
		if len(rep.Text) > maxText*4 {
			t.Fatalf("text not bounded: %d", len(rep.Text))
		}
		if !rep.DSN && len(rep.Recipients) != 0 {
			t.Fatalf("recipients from mail that is no DSN: %+v", rep.Recipients)
		}
		for _, r := range rep.Recipients {
			for _, f := range []string{r.Email, r.Original, r.Action, r.Status, r.Diagnostic} {
				if strings.IndexFunc(f, unicode.IsControl) >= 0 {
					t.Fatalf("control character in recipient field %q", f)
				}
			}
		}
	})
}

// RFC 6533: a message/global-delivery-status report names recipients by the utf-8 address
// type, raw or with \x{HEX} escapes, and each comes out canonical, so that it matches the
// delivery's recipient whichever form the reporting server wrote.
func TestT6_GlobalDeliveryStatus(t *testing.T) {
	raw, _ := os.ReadFile("testdata/global-utf8-dsn.eml")
	rep := Parse(raw)
	if !rep.DSN || len(rep.Recipients) != 3 {
		t.Fatalf("report: DSN %v, recipients %+v", rep.DSN, rep.Recipients)
	}
	if r := rep.Recipients[0]; r.Email != "JÖE@bücher.test" || r.Original != "jöe@bücher.test" || r.Action != "failed" || r.Status != "5.1.1" {
		t.Errorf("first recipient %+v", r)
	}
	if r := rep.Recipients[1]; r.Email != "zoë@bücher.test" {
		t.Errorf("escaped recipient %+v, want zoë@bücher.test", r)
	}
	if r := rep.Recipients[2]; r.Email != `back\slash@bücher.test` || r.Action != "delayed" {
		t.Errorf("escaped backslash %+v", r)
	}
	if !strings.Contains(rep.Text, "jöe@bücher.test") {
		t.Errorf("text %q", rep.Text)
	}
}

// In a seven-bit message/delivery-status the utf-8 type carries its non-ASCII characters as
// \x{HEX} (utf-8-addr-xtext); an escape that is no character, or one cut short, names no
// mailbox rather than a wrong one.
func TestT6_UTF8AddressEscapes(t *testing.T) {
	raw, _ := os.ReadFile("testdata/utf8-xtext-dsn.eml")
	rep := Parse(raw)
	var got []string
	for _, r := range rep.Recipients {
		got = append(got, r.Email+"|"+r.Original)
	}
	want := []string{"jöe@bücher.test|jöe@bücher.test", "Kim@customer.test|"}
	if strings.Join(got, " ") != strings.Join(want, " ") {
		t.Errorf("recipients %q, want %q", got, want)
	}
}
