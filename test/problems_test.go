package test

import (
	"fmt"
	"strings"
	"testing"
)

// Parsing that looked like loss (M1): each problem is named once, on one line of tickets
// show; a file whose base64 does not decode is listed with its problem, not as a smaller
// file; 8-bit Latin-1 header text is read as Windows-1252 and says so. The original of each
// mail is kept as it came.
func TestM1_ProblemsAreShownPlainly(t *testing.T) {
	d := startDaemon(t, options{})
	mails := map[string]string{
		"no boundary": "From: jane@customer.test\r\nTo: support@example.com\r\nSubject: no boundary\r\nMessage-ID: <p1@customer.test>\r\n" +
			"Content-Type: multipart/mixed\r\n\r\n--x\r\nThe printer is on fire.\r\n--x--\r\n",
		"body only":        "The printer is on fire.\r\nPlease help.\r\n",
		"blank line first": "\r\nFrom: jane@customer.test\r\nSubject: x\r\n\r\nThe printer is on fire.\r\n",
		"bad base64": "From: jane@customer.test\r\nTo: support@example.com\r\nSubject: bad base64\r\nMessage-ID: <p4@customer.test>\r\n" +
			"Content-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\nContent-Type: text/plain\r\n\r\nThe invoice is attached.\r\n" +
			"--b\r\nContent-Type: application/pdf; name=x.pdf\r\nContent-Disposition: attachment; filename=x.pdf\r\nContent-Transfer-Encoding: base64\r\n\r\n" +
			"JVBE!!!!xyz\r\n--b--\r\n",
		"latin-1": "From: jane@customer.test\r\nTo: support@example.com\r\nCc: Ren\xe9 <rene@customer.test>\r\nSubject: caf\xe9\r\nMessage-ID: <p5@customer.test>\r\n\r\nThe coffee machine.\r\n",
	}
	for name, raw := range mails {
		if err := sendSMTP(d.smtpAddr, "jane@customer.test", []string{"support@example.com"}, []byte(raw)); err != nil {
			t.Fatalf("%s: %v", name, err)
		}
	}
	shows := map[string]string{}
	for _, s := range d.tickets() {
		tk := d.ticket(s.ID)
		out, stderr, code := d.cli("tickets", "show", fmt.Sprint(tk.ID))
		if code != 0 {
			t.Fatalf("tickets show %d: %s", tk.ID, stderr)
		}
		c := tk.Comments[0]
		var name string
		switch {
		case strings.Contains(c.Body, "invoice"):
			name = "bad base64"
		case strings.Contains(c.Body, "coffee"):
			name = "latin-1"
		case strings.Contains(c.Body, "Please help"):
			name = "body only"
		case strings.Contains(c.Body, "Subject: x"):
			name = "blank line first"
		case tk.Subject == "no boundary":
			name = "no boundary"
		default:
			t.Fatalf("which mail is ticket %d?\n%s", tk.ID, out)
		}
		shows[name] = out
		// Every problem is one line that ends by pointing at the original, which is kept.
		raw := fmt.Sprintf("(the original: deskgate comments raw %d)", c.ID)
		for _, l := range strings.Split(out, "\n") {
			if strings.HasPrefix(l, "    Problem:") && !strings.HasSuffix(l, raw) {
				t.Errorf("%s: a Problem line is broken: %q", name, l)
			}
		}
		if got := strings.Count(out, "    Problem:"); got != len(c.Problems) || got == 0 {
			t.Errorf("%s: %d Problem lines, %d problems:\n%s", name, got, len(c.Problems), out)
		}
		original, _, _ := d.cli("comments", "raw", fmt.Sprint(c.ID))
		if !strings.HasSuffix(original, mails[name]) {
			t.Errorf("%s: the original is not kept whole", name)
		}
		if ex, _, _ := d.cli("explain", fmt.Sprint(c.ID)); !strings.Contains(ex, "  M1  ") {
			t.Errorf("%s: explain has no M1 step:\n%s", name, ex)
		}
	}
	if len(shows) != len(mails) {
		t.Fatalf("%d tickets shown, want %d", len(shows), len(mails))
	}
	want := map[string][]string{
		"no boundary":      {"    Problem:    multipart: boundary is empty (the original"},
		"body only":        {`    Problem:    no header: the first line is not a header field ("The printer is on fire."), so all of it is read as text (the original`},
		"blank line first": {"    Problem:    no header: the message begins with an empty line, so all of it is read as text (the original"},
		"bad base64": {`    Problem:    attachment "x.pdf" (application/pdf): illegal base64 data at input byte 4 (the original`,
			"    Attachment: x.pdf (application/pdf, undecodable: illegal base64 data at input byte 4)\n"},
		"latin-1": {"Ticket #", "  café\n", "CCs:        René <rene@customer.test>\n",
			"    Problem:    Subject: 8-bit text without a charset, read as Windows-1252 (the original",
			"    Problem:    Cc: 8-bit text without a charset, read as Windows-1252 (the original"},
	}
	for name, parts := range want {
		for _, p := range parts {
			if !strings.Contains(shows[name], p) {
				t.Errorf("%s: tickets show lacks %q:\n%s", name, p, shows[name])
			}
		}
	}
	for name, out := range shows {
		for _, l := range strings.Split(out, "\n") {
			problem, ok := strings.CutPrefix(l, "    Problem:    ")
			where, rest, _ := strings.Cut(problem, ": ")
			if ok && strings.HasPrefix(rest, where+":") {
				t.Errorf("%s: a problem repeats its prefix: %q", name, l)
			}
		}
		if strings.Contains(out, "\ufffd") {
			t.Errorf("%s: text was lost to U+FFFD:\n%s", name, out)
		}
	}
	// The broken file is on a public comment: still public, the readable text is there.
	if !strings.Contains(shows["bad base64"], "(public)") {
		t.Errorf("the mail with a broken file is no longer public:\n%s", shows["bad base64"])
	}
}

// TestM1_DamagedAttachmentIsNotPassedOn: the copies of a comment whose attachment did not
// decode do not carry what little of it did as if it were the file: they say it is not
// attached, and carry the attachments that are whole.
func TestM1_DamagedAttachmentIsNotPassedOn(t *testing.T) {
	d := startDaemon(t, options{})
	id := d.open(jane, nil, "Invoice", "See the next mail.")
	d.must("", "followers", "add", fmt.Sprint(id), carol)
	reply := d.ticket(id).ReplyAddress
	raw := "From: jane@customer.test\r\nTo: " + reply + "\r\nSubject: invoice\r\nMessage-ID: <damaged@customer.test>\r\n" +
		"Content-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\nContent-Type: text/plain\r\n\r\nThe invoice is attached.\r\n" +
		"--b\r\nContent-Type: application/pdf; name=x.pdf\r\nContent-Disposition: attachment; filename=x.pdf\r\nContent-Transfer-Encoding: base64\r\n\r\n" +
		"JVBERi0xLjQKJeLjz9MK!!!!garbage\r\n" +
		"--b\r\nContent-Type: text/plain; name=ok.txt\r\nContent-Disposition: attachment; filename=ok.txt\r\n\r\nfine\r\n--b--\r\n"
	if err := sendSMTP(d.smtpAddr, jane, []string{reply}, []byte(raw)); err != nil {
		t.Fatal(err)
	}
	copies := to(d.outbox(), carol)
	if len(copies) != 1 {
		t.Fatalf("the follower got %d copies, want 1", len(copies))
	}
	got := copies[0]
	if strings.Join(got.files, ",") != "ok.txt" {
		t.Errorf("the copy carries %v, want only the whole ok.txt", got.files)
	}
	if !strings.Contains(got.body, `"x.pdf" arrived damaged and is not attached`) {
		t.Errorf("the copy does not say x.pdf is not attached:\n%s", got.body)
	}
}
