package mailparse

import (
	"fmt"
	"strings"
	"testing"
)

func mustParse(t *testing.T, raw string) *Message {
	t.Helper()
	m, err := Parse([]byte(raw), "mx.test")
	if err != nil {
		t.Fatalf("Parse: %v", err)
	}
	return m
}

// Each problem is named once: no "multipart: multipart: ..." where an error already says
// where it comes from.
func TestM1_ProblemNamedOnce(t *testing.T) {
	for _, raw := range []string{
		"From: jane@customer.test\r\nSubject: x\r\nContent-Type: multipart/mixed\r\n\r\n--x\r\nThe printer.\r\n--x--\r\n",
		"From: jane@customer.test\r\nSubject: x\r\nContent-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\nContent-Type: multipart/alternative\r\n\r\nfoo\r\n--b--\r\n",
	} {
		m := mustParse(t, raw)
		if len(m.Problems) != 1 || m.Problems[0] != "multipart: boundary is empty" {
			t.Errorf("problems = %q, want [\"multipart: boundary is empty\"]", m.Problems)
		}
	}
}

// A mail without a header is kept as text, with one problem on one line that says so.
func TestM1_NoHeaderIsOneProblemOnOneLine(t *testing.T) {
	for _, raw := range []string{
		"just a body\r\nno header\r\n",
		"just a body\nno header\n",
		"\r\nFrom: x@y.test\r\n\r\nbody\r\n",
		"\nbody only\n",
		strings.Repeat("x", 5000) + "\r\nmore\r\n",
	} {
		m := mustParse(t, raw)
		if m.From != nil || m.Text == "" {
			t.Errorf("%q: From %+v, text %q", raw[:min(len(raw), 20)], m.From, m.Text)
		}
		if len(m.Problems) != 1 || !strings.HasPrefix(m.Problems[0], "no header") {
			t.Errorf("%q: problems = %q, want one that says there is no header", raw[:min(len(raw), 20)], m.Problems)
		}
		for _, p := range m.Problems {
			if strings.ContainsAny(p, "\r\n") || len(p) > 200 {
				t.Errorf("problem is not one short line: %q", p)
			}
		}
	}
}

// An attachment whose base64 does not decode carries its problem, and the mail records it.
func TestM1_UndecodableAttachmentNamesItsProblem(t *testing.T) {
	for body, want := range map[string]string{"JVBE!!!!xyz": "illegal base64 data at input byte 4", "!!!!": "illegal base64 data at input byte 0"} {
		m := mustParse(t, "From: jane@customer.test\r\nSubject: att\r\nContent-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\nContent-Type: text/plain\r\n\r\nhello\r\n"+
			"--b\r\nContent-Type: application/pdf; name=x.pdf\r\nContent-Disposition: attachment; filename=x.pdf\r\nContent-Transfer-Encoding: base64\r\n\r\n"+body+"\r\n--b--\r\n")
		if len(m.Attachments) != 1 || m.Attachments[0].Name != "x.pdf" || m.Attachments[0].Problem != want {
			t.Errorf("attachments = %+v, want x.pdf with problem %q", m.Attachments, want)
		}
		if len(m.Problems) != 1 || m.Problems[0] != `attachment "x.pdf" (application/pdf): `+want {
			t.Errorf("problems = %q", m.Problems)
		}
		if m.Unreadable() {
			t.Error("a mail with readable text is not unreadable")
		}
	}
	good := parseFile(t, "attachment.eml")
	if good.Attachments[0].Problem != "" || len(good.Problems) != 0 {
		t.Errorf("a good attachment has a problem: %+v %q", good.Attachments[0], good.Problems)
	}
}

// 8-bit header text that is not UTF-8 is read as Windows-1252, as mail clients do, and the
// mail records that it was.
func TestM1_EightBitLatin1HeaderReadAsWindows1252(t *testing.T) {
	m := mustParse(t, "From: Ren\xe9 M\xfcller <rene@customer.test>\r\nTo: support@example.com\r\nCc: Fran\xe7oise <fr@customer.test>, joe@customer.test\r\n"+
		"Subject: caf\xe9 \x80 5\r\n\r\nbody\r\n")
	if m.Subject != "café € 5" {
		t.Errorf("subject = %q, want %q", m.Subject, "café € 5")
	}
	if m.From == nil || m.From.Name != "René Müller" || m.From.Email != "rene@customer.test" {
		t.Errorf("From = %+v", m.From)
	}
	if len(m.Cc) != 2 || m.Cc[0].Name != "Françoise" {
		t.Errorf("Cc = %+v", m.Cc)
	}
	for _, field := range []string{"Subject", "From", "Cc"} {
		want := field + ": 8-bit text without a charset, read as Windows-1252"
		found := false
		for _, p := range m.Problems {
			found = found || p == want
		}
		if !found {
			t.Errorf("problems = %q, want %q", m.Problems, want)
		}
	}
	// UTF-8 stays as it is; an encoded word is decoded by its own charset, with no problem.
	m = mustParse(t, "From: jane@customer.test\r\nSubject: caf\xc3\xa9 =?iso-8859-1?q?d=E9j=E0?=\r\n\r\nbody\r\n")
	if m.Subject != "café déjà" || len(m.Problems) != 0 {
		t.Errorf("subject %q problems %q", m.Subject, m.Problems)
	}
	// Valid UTF-8 next to stray bytes: the UTF-8 is kept, the stray bytes are Windows-1252.
	m = parseFile(t, "eightbit.eml")
	if m.Subject != "Grüße ÿþ" {
		t.Errorf("subject = %q", m.Subject)
	}
}

// mailparse reads the first MaxAddresses of To and of Cc, and counts the rest.
func TestC1_AddressesPastTheCapAreCounted(t *testing.T) {
	var cc, loose []string
	for i := 0; i < 5000; i++ {
		cc = append(cc, fmt.Sprintf("u%04d@customer.test", i))
		loose = append(loose, fmt.Sprintf("<v%04d@customer.test>", i))
	}
	m := mustParse(t, "From: jane@customer.test\r\nTo: a@customer.test, b@customer.test\r\nCc: "+strings.Join(cc, ",\r\n ")+"\r\nSubject: many\r\n\r\nbody\r\n")
	if len(m.Cc) != MaxAddresses || len(m.To) != 2 || m.NamesNotRead != 4000 {
		t.Errorf("Cc %d, To %d, not read %d; want %d, 2, 4000", len(m.Cc), len(m.To), m.NamesNotRead, MaxAddresses)
	}
	// A Cc that does not parse is read loosely, and counted the same way.
	m = mustParse(t, "From: jane@customer.test\r\nCc: \"broken "+strings.Join(loose, " ")+"\r\nSubject: many\r\n\r\nbody\r\n")
	if len(m.Cc) != MaxAddresses || m.NamesNotRead != 4000 {
		t.Errorf("loose Cc %d, not read %d", len(m.Cc), m.NamesNotRead)
	}
}

// A mail with two To: or two Cc: fields (RFC 5322 allows one of each, mail clients and scripts
// write more) names everybody in all of them: a name in the second is no less on the mail,
// and reading only the first would drop it without a word, and let C7 remove a CC whom the
// reply did name.
func TestC1_EveryToAndCcFieldIsRead(t *testing.T) {
	m := mustParse(t, "From: jane@customer.test\r\nTo: support@example.com\r\nCc: a1@multi.test, a2@multi.test\r\n"+
		"Cc: b1@multi.test, b2@multi.test\r\nTo: c1@multi.test\r\nSubject: x\r\n\r\nbody\r\n")
	var to, cc []string
	for _, a := range m.To {
		to = append(to, a.Email)
	}
	for _, a := range m.Cc {
		cc = append(cc, a.Email)
	}
	if strings.Join(to, ",") != "support@example.com,c1@multi.test" || strings.Join(cc, ",") != "a1@multi.test,a2@multi.test,b1@multi.test,b2@multi.test" {
		t.Fatalf("To %v, Cc %v: every field's names should be read, in order", to, cc)
	}
	// The cap on names read holds across the fields together.
	many := func(n int) string {
		var names []string
		for i := 0; i < n; i++ {
			names = append(names, fmt.Sprintf("u%d@multi.test", i))
		}
		return strings.Join(names, ", ")
	}
	m = mustParse(t, "From: jane@customer.test\r\nCc: "+many(MaxAddresses-1)+"\r\nCc: "+many(5)+"\r\n\r\nbody\r\n")
	if len(m.Cc) != MaxAddresses || m.NamesNotRead != 4 {
		t.Fatalf("%d Cc read and %d not read, want %d and 4", len(m.Cc), m.NamesNotRead, MaxAddresses)
	}
}
