package test

import (
	"encoding/json"
	"os"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestSIGHUPReloadsAgentsAndKeepsOldConfigOnError: a new agent counts after SIGHUP (its
// first reply opens the ticket, T4); a broken file is logged and the running config kept.
func TestSIGHUPReloadsAgentsAndKeepsOldConfigOnError(t *testing.T) {
	d := startDaemon(t, options{})
	send := func(from, id string) {
		t.Helper()
		msg := mail(map[string]string{"From": from, "To": "jane@customer.test", "Subject": "s", "Message-ID": id}, "x\n")
		if err := sendSMTP(d.smtpAddr, from, []string{"support@example.com"}, msg); err != nil {
			t.Fatal(err)
		}
	}
	send("jane@customer.test", "<r1@customer.test>")
	reply := d.ticket(1).ReplyAddress
	raw, _ := os.ReadFile(d.configPath)
	orig := string(raw)

	broken := strings.Replace(orig, "agents:", "agents: [\n", 1)
	os.WriteFile(d.configPath, []byte(broken), 0o600)
	d.cmd.Process.Signal(syscall.SIGHUP)
	waitFor(t, "the refused reload to be logged", 5*time.Second, func() bool { return strings.Contains(d.logs.String(), "reload refused") })

	added := strings.Replace(orig, "agents:\n", "agents:\n  - {email: erin@example.com, name: Erin, role: agent}\n", 1)
	os.WriteFile(d.configPath, []byte(added), 0o600)
	d.cmd.Process.Signal(syscall.SIGHUP)
	waitFor(t, "the reload", 5*time.Second, func() bool { return strings.Contains(d.logs.String(), "config reloaded") })

	msg := mail(map[string]string{"From": "erin@example.com", "To": "jane@customer.test", "Subject": "Re", "Message-ID": "<r2@example.com>"}, "on it\n")
	if err := sendSMTP(d.smtpAddr, "erin@example.com", []string{reply}, msg); err != nil {
		t.Fatal(err)
	}
	if st := d.ticket(1).Status; st != "open" {
		t.Fatalf("status %q: the agent added by SIGHUP was not recognised", st)
	}
	if code, _ := d.api("GET", "/healthz", nil, false); code != 200 {
		t.Fatal("daemon unhealthy after reloads")
	}
}

func TestSIGHUPLowersLimitsAtOnce(t *testing.T) {
	d := startDaemon(t, options{extraYAML: "limits: {max_message_bytes: 1MiB, max_recipients: 10}"})
	big := mail(map[string]string{"From": "jane@customer.test", "To": "support@example.com", "Subject": "big"}, strings.Repeat("0123456789abcdef\n", 300))
	if err := sendSMTP(d.smtpAddr, "jane@customer.test", []string{"support@example.com"}, big); err != nil {
		t.Fatalf("5 KiB under a 1 MiB limit: %v", err)
	}
	raw, _ := os.ReadFile(d.configPath)
	os.WriteFile(d.configPath, []byte(strings.Replace(string(raw), "max_message_bytes: 1MiB, max_recipients: 10", "max_message_bytes: 2KiB, max_recipients: 1", 1)), 0o600)
	d.cmd.Process.Signal(syscall.SIGHUP)
	waitFor(t, "the reload", 5*time.Second, func() bool { return strings.Contains(d.logs.String(), "config reloaded") })
	err := sendSMTP(d.smtpAddr, "jane@customer.test", []string{"support@example.com"}, big)
	if code, msg := smtpCode(err); code != 552 || !strings.Contains(msg, "5.3.4") {
		t.Fatalf("after lowering max_message_bytes: %v, want 552 5.3.4", err)
	}
	small := mail(map[string]string{"From": "jane@customer.test", "To": "support@example.com", "Subject": "s"}, "x\n")
	err = sendSMTP(d.smtpAddr, "jane@customer.test", []string{"support@example.com", "billing@example.com"}, small)
	if code, msg := smtpCode(err); code != 452 || !strings.Contains(msg, "4.5.3") {
		t.Fatalf("after lowering max_recipients: %v, want 452 4.5.3", err)
	}
}

// deskgate reload without --pid asks the running daemon over its admin API and returns once
// the new config is live; a broken file is refused, named by its key, and the running config
// serves on. SIGHUP and the API share one reload: both count in deskgate_config_reloads_total.
func TestReloadCommandAsksTheDaemon(t *testing.T) {
	d := startDaemon(t, options{})
	send := func(from, to, id string) error {
		msg := mail(map[string]string{"From": from, "To": "jane@customer.test", "Subject": "Printer", "Message-ID": id}, "words of "+from+"\n")
		return sendSMTP(d.smtpAddr, from, []string{to}, msg)
	}
	if err := send("jane@customer.test", "support@example.com", "<q1@customer.test>"); err != nil {
		t.Fatal(err)
	}
	reply := d.ticket(1).ReplyAddress
	raw, _ := os.ReadFile(d.configPath)
	orig := string(raw)

	added := strings.Replace(orig, "agents:\n", "agents:\n  - {email: erin@example.com, name: Erin, role: agent}\n", 1)
	os.WriteFile(d.configPath, []byte(added), 0o600)
	out, stderr, code := d.cli("reload")
	if code != 0 || !strings.Contains(out, "config reloaded") {
		t.Fatalf("reload without --pid: exit %d, stdout %q, stderr %q", code, out, stderr)
	}
	// The harness runs agent_identity none: the reload says so, as the start did.
	if !strings.Contains(out+stderr, "warning: authentication.agent_identity: none") {
		t.Errorf("reload did not pass on the config's warning: stdout %q, stderr %q", out, stderr)
	}
	// Live when the command returns: no waiting here.
	if err := send("erin@example.com", reply, "<q2@example.com>"); err != nil {
		t.Fatal(err)
	}
	tk := d.ticket(1)
	if tk.Status != "open" || !tk.Comments[len(tk.Comments)-1].Public {
		t.Fatalf("after the reload, erin's reply: status %q, comment %+v; the new agent is not live", tk.Status, tk.Comments[len(tk.Comments)-1])
	}

	os.WriteFile(d.configPath, []byte(added+"limits: {max_ccs: lots}\n"), 0o600)
	out, stderr, code = d.cli("reload")
	if code != 1 || !strings.Contains(stderr, "refused") || !strings.Contains(stderr, "limits.max_ccs") || strings.Contains(out, "config reloaded") {
		t.Errorf("reload of a broken file: exit %d, stdout %q, stderr %q; want exit 1 naming limits.max_ccs", code, out, stderr)
	}
	code, body := d.api("POST", "/api/v1/reload", nil, true)
	var refused struct {
		Error    string `json:"error"`
		Problems []struct{ Key, Message string }
	}
	if err := json.Unmarshal(body, &refused); err != nil || code != 422 || len(refused.Problems) != 1 || refused.Problems[0].Key != "limits.max_ccs" {
		t.Errorf("POST /api/v1/reload of a broken file: %d %s", code, body)
	}
	// A file that does not parse names no admin address to ask: the command says what is
	// wrong with it, and that nothing was reloaded.
	os.WriteFile(d.configPath, []byte(strings.Replace(added, "agents:", "agents: [\n", 1)), 0o600)
	out, stderr, code = d.cli("reload")
	if code != 1 || !strings.Contains(stderr, "not reloaded") || !strings.Contains(stderr, "yaml") || strings.Contains(out, "config reloaded") {
		t.Errorf("reload of a file that does not parse: exit %d, stdout %q, stderr %q", code, out, stderr)
	}
	// The running config is the last good one: erin still counts, and mail still flows.
	if err := send("erin@example.com", reply, "<q3@example.com>"); err != nil {
		t.Fatalf("mail after a refused reload: %v", err)
	}
	if c := d.ticket(1).Comments; len(c) != 3 || !c[2].Public {
		t.Errorf("after the refused reload, erin's second reply: %+v", c)
	}

	// SIGHUP takes the same way: it counts with the API's reloads.
	os.WriteFile(d.configPath, []byte(added), 0o600)
	d.cmd.Process.Signal(syscall.SIGHUP)
	waitFor(t, "the SIGHUP reload to count", 5*time.Second, func() bool { return d.metrics()[`deskgate_config_reloads_total{result="ok"}`] == 2 })
	if m := d.metrics(); m[`deskgate_config_reloads_total{result="refused"}`] != 2 {
		t.Errorf("refused reloads counted: %v, want 2", m[`deskgate_config_reloads_total{result="refused"}`])
	}
}

// Without a daemon to ask, deskgate reload fails and says how else to reload.
func TestReloadCommandWithoutDaemon(t *testing.T) {
	d := writeDaemonConfig(t, options{})
	out, stderr, code := d.cli("reload")
	if code != 1 || strings.Contains(out, "config reloaded") || !strings.Contains(stderr, "--pid") {
		t.Errorf("reload with no daemon running: exit %d, stdout %q, stderr %q", code, out, stderr)
	}
}
