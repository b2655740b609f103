package test

import (
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
