package test

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/deskgate/deskgate/store"
)

// needTool skips a test whose real client is missing, saying which package provides it;
// .ci/run installs them all, so in CI nothing is skipped.
func needTool(t *testing.T, name, pkg string) string {
	t.Helper()
	path, err := exec.LookPath(name)
	if err != nil {
		for _, dir := range []string{"/usr/sbin", "/usr/bin"} {
			if p := filepath.Join(dir, name); fileExists(p) {
				return p
			}
		}
		if os.Getenv("CI") != "" {
			t.Fatalf("%s is missing in CI: .ci/run must install the Debian package %s", name, pkg)
		}
		t.Skipf("%s not installed (apt-get install %s); .ci/run installs it", name, pkg)
	}
	return path
}

func fileExists(p string) bool {
	_, err := os.Stat(p)
	return err == nil
}

func swaks(t *testing.T, args ...string) (string, error) {
	t.Helper()
	out, err := exec.Command(needTool(t, "swaks", "swaks"), args...).CombinedOutput()
	return string(out), err
}

func TestSwaksSMTPAndLMTP(t *testing.T) {
	d := startDaemon(t, options{})
	out, err := swaks(t, "--server", d.smtpAddr, "--from", "jane@customer.test", "--to", "support@example.com",
		"--header", "Subject: Sent with swaks", "--header", "Message-Id: <swaks-smtp@customer.test>", "--body", "over SMTP")
	if err != nil || !strings.Contains(out, "<-  250") {
		t.Fatalf("swaks SMTP: %v\n%s", err, out)
	}
	reply := d.ticket(1).ReplyAddress
	out, err = swaks(t, "--protocol", "LMTP", "--server", d.lmtpAddr, "--from", "jane@customer.test", "--to", reply,
		"--header", "Subject: Re: Sent with swaks", "--header", "Message-Id: <swaks-lmtp@customer.test>", "--body", "over LMTP")
	if err != nil || !strings.Contains(out, "LHLO") {
		t.Fatalf("swaks LMTP: %v\n%s", err, out)
	}
	tk := d.ticket(1)
	if len(tk.Comments) != 2 || !strings.Contains(tk.Comments[1].Body, "over LMTP") {
		t.Fatalf("ticket after swaks = %+v", tk)
	}
	// swaks sees a refused recipient as a failure with the server's code.
	out, _ = swaks(t, "--server", d.smtpAddr, "--from", "jane@customer.test", "--to", "stranger@example.com")
	if !strings.Contains(out, "550 5.1.1") {
		t.Fatalf("swaks to a foreign address:\n%s", out)
	}
}

func TestCLITicketsListAndShow(t *testing.T) {
	d := startDaemon(t, options{})
	out, _, code := d.cli("tickets", "list")
	if code != 0 || !strings.Contains(out, "no tickets") {
		t.Fatalf("empty list: %d %q", code, out)
	}
	msg := mail(map[string]string{"From": "Jane Doe <jane@customer.test>", "To": "support@example.com", "Subject": "Printer on fire", "Message-ID": "<cli@customer.test>"}, "It is burning.\n")
	if err := sendSMTP(d.smtpAddr, "jane@customer.test", []string{"support@example.com"}, msg); err != nil {
		t.Fatal(err)
	}
	out, _, code = d.cli("tickets", "list")
	if code != 0 || !strings.Contains(out, "ID") || !strings.Contains(out, "Printer on fire") || !strings.Contains(out, "jane@customer.test") {
		t.Fatalf("list: %d\n%s", code, out)
	}
	out, _, _ = d.cli("tickets", "list", "--status", "solved")
	if !strings.Contains(out, "no tickets") {
		t.Fatalf("--status solved listed the new ticket:\n%s", out)
	}
	out, _, code = d.cli("tickets", "list", "--json")
	var rows []map[string]any
	if code != 0 || json.Unmarshal([]byte(out), &rows) != nil || len(rows) != 1 || rows[0]["subject"] != "Printer on fire" {
		t.Fatalf("list --json: %d %s", code, out)
	}
	out, _, code = d.cli("tickets", "show", "1")
	for _, want := range []string{"Ticket #1", "Printer on fire", "Jane Doe <jane@customer.test>", "public", "It is burning.", "Reply to:"} {
		if code != 0 || !strings.Contains(out, want) {
			t.Fatalf("show lacks %q:\n%s", want, out)
		}
	}
	out, _, code = d.cli("tickets", "show", "1", "--json")
	var tk ticket
	if code != 0 || json.Unmarshal([]byte(out), &tk) != nil || tk.ID != 1 || len(tk.Comments) != 1 {
		t.Fatalf("show --json: %d %s", code, out)
	}
	_, errOut, code := d.cli("tickets", "show", "99")
	if code == 0 || !strings.Contains(errOut, "ticket 99 does not exist") {
		t.Fatalf("show of a missing ticket: %d %q", code, errOut)
	}
}

func TestAdminAPIAuthAndShapes(t *testing.T) {
	d := startDaemon(t, options{})
	if code, body := d.api("GET", "/api/v1/tickets", nil, false); code != 401 || !strings.Contains(string(body), `"error"`) {
		t.Fatalf("no token: %d %s", code, body)
	}
	req := func(path string) (int, string) {
		code, body := d.api("GET", path, nil, true)
		return code, string(body)
	}
	if code, body := req("/api/v1/tickets/12345"); code != 404 || !strings.Contains(body, `"error"`) {
		t.Fatalf("missing ticket: %d %s", code, body)
	}
	if code, _ := req("/api/v1/tickets/abc"); code != 400 {
		t.Fatalf("bad id: %d", code)
	}
	if code, _ := req("/api/v1/tickets?status=closed"); code != 400 {
		t.Fatalf("bad status filter: %d", code)
	}
	if code, _ := req("/api/v1/tickets?limit=5000"); code != 400 {
		t.Fatalf("limit over 1000: %d", code)
	}
	for i := 0; i < 3; i++ {
		msg := mail(map[string]string{"From": "jane@customer.test", "To": "support@example.com", "Subject": "n"}, strings.Repeat("x", i+1)+"\n")
		if err := sendSMTP(d.smtpAddr, "jane@customer.test", []string{"support@example.com"}, msg); err != nil {
			t.Fatal(err)
		}
	}
	_, body := req("/api/v1/tickets?limit=2&before=3")
	var page []map[string]any
	json.Unmarshal([]byte(body), &page)
	if len(page) != 2 || page[0]["id"].(float64) != 2 || page[1]["id"].(float64) != 1 {
		t.Fatalf("paging: %s", body)
	}
	for _, key := range []string{"id", "subject", "status", "requester", "assignee", "updated_at"} {
		if _, ok := page[0][key]; !ok {
			t.Errorf("ticket summary lacks %q: %s", key, body)
		}
	}
	_, body = req("/api/v1/tickets/1")
	var full map[string]any
	json.Unmarshal([]byte(body), &full)
	for _, key := range []string{"id", "subject", "status", "requester", "assignee", "ccs", "followers", "comments"} {
		if _, ok := full[key]; !ok {
			t.Errorf("ticket lacks %q: %s", key, body)
		}
	}
	c := full["comments"].([]any)[0].(map[string]any)
	for _, key := range []string{"id", "author", "public", "third_party", "via", "message_id", "created_at", "body", "notified"} {
		if _, ok := c[key]; !ok {
			t.Errorf("comment lacks %q: %s", key, body)
		}
	}
	if got := d.metrics()[`deskgate_messages_received_total{outcome="accepted",proto="smtp"}`]; got != 3 {
		t.Errorf("metrics: %v accepted, want 3", got)
	}
}

func TestCheckConfigNamesEveryProblem(t *testing.T) {
	d := writeDaemonConfig(t, options{extraYAML: "bogus_key: 1\nlimits: {max_ccs: lots, max_sessions: 0}\ndkim: {domain: example.com, selector: s, private_key_file: /nonexistent/dkim.key}\n"})
	// Make the listen.smtp address unparseable too.
	raw, _ := os.ReadFile(d.configPath)
	os.WriteFile(d.configPath, []byte(strings.Replace(string(raw), d.smtpAddr, "127.0.0.1", 1)), 0o600)

	_, errOut, code := d.cli("check-config")
	if code != 1 {
		t.Fatalf("check-config exit %d, want 1\n%s", code, errOut)
	}
	for _, want := range []string{"bogus_key: unknown key", "limits.max_ccs: wrong type", "limits.max_sessions: must be at least 1",
		"dkim.private_key_file: /nonexistent/dkim.key", "listen.smtp: \"127.0.0.1\""} {
		if !strings.Contains(errOut, want) {
			t.Errorf("check-config output lacks %q:\n%s", want, errOut)
		}
	}
	// serve refuses to start, with the same messages.
	_, serveErr, code := d.cli("serve")
	if code != 1 {
		t.Fatalf("serve on a bad config exited %d", code)
	}
	for _, line := range strings.Split(strings.TrimSpace(errOut), "\n") {
		if !strings.Contains(serveErr, line) {
			t.Errorf("serve does not say %q:\n%s", line, serveErr)
		}
	}
	good := writeDaemonConfig(t, options{})
	if out, errOut, code := good.cli("check-config"); code != 0 || !strings.Contains(out, "ok") {
		t.Fatalf("valid config: %d %s %s", code, out, errOut)
	}
	// DESKGATE_CONFIG is the default config path.
	cmd := exec.Command(binary, "check-config")
	cmd.Env = append(os.Environ(), "DESKGATE_CONFIG="+good.configPath)
	if out, err := cmd.CombinedOutput(); err != nil || !strings.Contains(string(out), good.configPath) {
		t.Fatalf("DESKGATE_CONFIG not used: %v %s", err, out)
	}
}

func TestVersion(t *testing.T) {
	out, err := exec.Command(binary, "version").CombinedOutput()
	if err != nil || !strings.HasPrefix(string(out), "deskgate ") || !strings.Contains(string(out), "go1.") {
		t.Fatalf("version: %v %q", err, out)
	}
}

func TestBackupWhileRunning(t *testing.T) {
	d := startDaemon(t, options{})
	id := d.open(jane, []string{joe}, "Keep me", "x")
	out := filepath.Join(t.TempDir(), "copy.db")
	if got := d.must("", "backup", out); !strings.Contains(got, "bytes") {
		t.Fatalf("backup said %q", got)
	}
	// The copy is a whole database: the store opens it and finds the ticket.
	copyDir := t.TempDir()
	raw, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	os.WriteFile(filepath.Join(copyDir, "deskgate.db"), raw, 0o600)
	st, err := store.Open(copyDir)
	if err != nil {
		t.Fatalf("the backup does not open: %v", err)
	}
	defer st.Close()
	st.View(func(tx *store.Tx) error {
		tk, err := tx.Ticket(id)
		if err != nil || tk.Subject != "Keep me" {
			t.Fatalf("ticket in the backup: %+v %v", tk, err)
		}
		return nil
	})
}
