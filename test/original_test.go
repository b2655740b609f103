package test

import (
	"bytes"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// The original of every mail is kept and can be read back; a mail that cannot be decoded
// says so, and is not lost as an empty public comment (M1).
func TestM1_NothingIsLostToTheParser(t *testing.T) {
	d := startDaemon(t, options{})
	broken := map[string]string{
		"base64 garbage": "From: jane@customer.test\r\nTo: support@example.com\r\nSubject: garbage\r\nMessage-ID: <g@customer.test>\r\n" +
			"Content-Transfer-Encoding: base64\r\n\r\n!!!! not base64 at all ####\r\n",
		"no boundary": "From: jane@customer.test\r\nTo: support@example.com\r\nSubject: no boundary\r\nMessage-ID: <nb@customer.test>\r\n" +
			"Content-Type: multipart/mixed\r\n\r\n--x\r\nThe printer is on fire.\r\n--x--\r\n",
		"nested 100 deep": "From: jane@customer.test\r\nTo: support@example.com\r\nSubject: deep\r\nMessage-ID: <deep@customer.test>\r\n" +
			nested(100),
	}
	for name, raw := range broken {
		if err := sendSMTP(d.smtpAddr, "jane@customer.test", []string{"support@example.com"}, []byte(raw)); err != nil {
			t.Fatalf("%s: %v", name, err)
		}
	}
	tickets := d.tickets()
	if len(tickets) != 3 {
		t.Fatalf("%d tickets, want 3", len(tickets))
	}
	for _, summary := range tickets {
		tk := d.ticket(summary.ID)
		c := tk.Comments[0]
		if c.Public || len(c.Problems) == 0 || !strings.Contains(c.Body, "could not decode") {
			t.Errorf("%q: public=%v problems=%q body=%q; want an internal comment that says what failed", tk.Subject, c.Public, c.Problems, c.Body)
		}
		out, _, _ := d.cli("tickets", "show", fmt.Sprint(tk.ID))
		if !strings.Contains(out, "Problem:") || !strings.Contains(out, fmt.Sprintf("deskgate comments raw %d", c.ID)) {
			t.Errorf("tickets show does not list the problems:\n%s", out)
		}
		out, _, _ = d.cli("explain", fmt.Sprint(c.ID))
		if !strings.Contains(out, "M1") {
			t.Errorf("explain has no M1 step:\n%s", out)
		}
		// The original comes back byte for byte, under deskgate's Authentication-Results.
		out, stderr, code := d.cli("comments", "raw", fmt.Sprint(c.ID))
		if code != 0 {
			t.Fatalf("comments raw: %d %s", code, stderr)
		}
		header, rest, _ := strings.Cut(out, "\r\n")
		if !strings.HasPrefix(header, "Authentication-Results: mx.deskgate.test;") || broken[sourceOf(tk.Subject)] != rest {
			t.Errorf("raw of %q:\n%q\nwant the A-R field and then\n%q", tk.Subject, out, broken[sourceOf(tk.Subject)])
		}
	}
	_, metrics := d.api("GET", "/metrics", nil, false)
	if !strings.Contains(string(metrics), "deskgate_undecodable_messages_total 3") {
		t.Errorf("/metrics does not count the undecodable mail")
	}

	// A readable mail keeps its original too, and is public as ever.
	long := mail(map[string]string{"From": "joe@customer.test", "To": "support@example.com", "Subject": "fine"}, strings.Repeat("fine text\n", 300))
	if err := sendSMTP(d.smtpAddr, "joe@customer.test", []string{"support@example.com"}, long); err != nil {
		t.Fatal(err)
	}
	var fine ticket
	for _, s := range d.tickets() {
		if s.Subject == "fine" {
			fine = d.ticket(s.ID)
		}
	}
	if len(fine.Comments) != 1 || !fine.Comments[0].Public || len(fine.Comments[0].Problems) != 0 {
		t.Fatalf("readable mail: %+v", fine.Comments)
	}
	code, raw := d.api("GET", fmt.Sprintf("/api/v1/comments/%d/raw", fine.Comments[0].ID), nil, true)
	if code != 200 || !bytes.HasSuffix(raw, long) {
		t.Errorf("raw of a readable mail: %d, %d bytes", code, len(raw))
	}
	// Comments that did not come by mail have no original; unknown ones do not exist.
	if out, _, code := d.cliIn("A note.", "reply", fmt.Sprint(fine.ID), "--as", "alice@example.com", "--internal"); code != 0 {
		t.Fatal(out)
	}
	note := d.ticket(fine.ID).Comments[1].ID
	if code, body := d.api("GET", fmt.Sprintf("/api/v1/comments/%d/raw", note), nil, true); code != 404 || !strings.Contains(string(body), "no original") {
		t.Errorf("raw of an API comment: %d %s", code, body)
	}
	if code, _ := d.api("GET", "/api/v1/comments/99999/raw", nil, true); code != 404 {
		t.Errorf("raw of a missing comment: %d", code)
	}
}

func sourceOf(subject string) string {
	return map[string]string{"garbage": "base64 garbage", "no boundary": "no boundary", "deep": "nested 100 deep"}[subject]
}

func nested(depth int) string {
	var b strings.Builder
	for i := 0; i < depth; i++ {
		fmt.Fprintf(&b, "Content-Type: multipart/mixed; boundary=b%d\r\n\r\n--b%d\r\n", i, i)
	}
	b.WriteString("Content-Type: text/plain\r\n\r\ndeep down\r\n")
	for i := depth - 1; i >= 0; i-- {
		fmt.Fprintf(&b, "--b%d--\r\n", i)
	}
	return b.String()
}

func TestAPIErrorsInHTTPTerms(t *testing.T) {
	d := startDaemon(t, options{})
	if err := sendSMTP(d.smtpAddr, "jane@customer.test", []string{"support@example.com"},
		mail(map[string]string{"From": "jane@customer.test", "Subject": "api"}, "hi\n")); err != nil {
		t.Fatal(err)
	}
	id := d.tickets()[0].ID
	req, _ := http.NewRequest("DELETE", "http://"+d.adminAddr+"/api/v1/queue", nil)
	req.Header.Set("Authorization", "Bearer "+d.token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 405 || resp.Header.Get("Allow") == "" || !strings.Contains(resp.Header.Get("Allow"), "GET") {
		t.Errorf("wrong method: %d Allow=%q, want 405 with Allow: GET", resp.StatusCode, resp.Header.Get("Allow"))
	}
	if code, _ := d.api("GET", "/api/v1/nothing-here", nil, true); code != 404 {
		t.Errorf("unknown path: %d, want 404", code)
	}
	big := bytes.Repeat([]byte("x"), 11<<20)
	body := append(append([]byte(`{"author": "alice@example.com", "body": "`), big...), `"}`...)
	if code, msg := d.api("POST", fmt.Sprintf("/api/v1/tickets/%d/comments", id), bytes.NewReader(body), true); code != 413 {
		t.Errorf("an 11 MiB body: %d %s, want 413", code, msg)
	}
	code, msg := d.api("PATCH", fmt.Sprintf("/api/v1/tickets/%d/comments/1", id), strings.NewReader(`{"public": "no"}`), true)
	if code != 400 || !strings.Contains(string(msg), "public: must be true or false, not a string") {
		t.Errorf("a string for a bool: %d %s", code, msg)
	}
	if code, msg := d.api("GET", "/api/v1/queue?state=lost", nil, true); code != 400 || !strings.Contains(string(msg), "state") {
		t.Errorf("a bad state filter: %d %s", code, msg)
	}
}

func TestCLIRefusesWhatItDoesNotKnow(t *testing.T) {
	d := startDaemon(t, options{})
	for i := 0; i < 3; i++ {
		if err := sendSMTP(d.smtpAddr, "jane@customer.test", []string{"support@example.com"},
			mail(map[string]string{"From": "jane@customer.test", "Subject": fmt.Sprint("page ", i)}, "hi\n")); err != nil {
			t.Fatal(err)
		}
	}
	if _, stderr, code := d.cli("tickets", "destroy", "5"); code == 0 || !strings.Contains(stderr, `unknown command "destroy"`) {
		t.Errorf("unknown subcommand: exit %d, %q", code, stderr)
	}
	// Paging: the oldest ticket is the one before the second.
	out, _, _ := d.cli("tickets", "list", "--before", "2")
	if !strings.Contains(out, "page 0") || strings.Contains(out, "page 1") {
		t.Errorf("tickets list --before 2:\n%s", out)
	}
	out, _, _ = d.cli("queue", "list", "--limit", "1", "--json")
	if strings.Count(out, `"id"`) != 1 {
		t.Errorf("queue list --limit 1:\n%s", out)
	}
	out, _, _ = d.cli("queue", "list", "--before", "2")
	if !strings.Contains(out, "\n1 ") || strings.Contains(out, "\n2 ") || strings.Contains(out, "\n3 ") {
		t.Errorf("queue list --before 2:\n%s", out)
	}
	// backup does not overwrite a file unless told to.
	file := filepath.Join(t.TempDir(), "keep.db")
	os.WriteFile(file, []byte("precious"), 0o600)
	if _, stderr, code := d.cli("backup", file); code == 0 || !strings.Contains(stderr, "--force") {
		t.Errorf("backup over a file: exit %d %q", code, stderr)
	}
	if b, _ := os.ReadFile(file); string(b) != "precious" {
		t.Errorf("backup overwrote the file")
	}
	if _, stderr, code := d.cli("backup", "--force", file); code != 0 {
		t.Errorf("backup --force: %d %s", code, stderr)
	}
}
