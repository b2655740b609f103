package test

import (
	"encoding/json"
	"strings"
	"syscall"
	"testing"
	"time"
)

// agent_identity none believes every From. deskgate serves under it (tests need it) but says
// so: a warning naming the key at start, at each reload (SIGHUP and API) and in
// check-config (exit 0), and an agent's mail is "unverified", never "proven".
func TestA1_NoneWarnsAndSaysUnverified(t *testing.T) {
	d := startDaemon(t, options{auth: `{agent_identity: none}`})
	warnings := func() int { return strings.Count(d.logs.String(), "key=authentication.agent_identity") }
	waitFor(t, "the warning at start", 5*time.Second, func() bool { return warnings() == 1 })
	for _, line := range strings.Split(d.logs.String(), "\n") {
		if strings.Contains(line, "key=authentication.agent_identity") &&
			(!strings.Contains(line, "level=WARN") || !strings.Contains(line, "anyone can send mail as an agent") || !strings.Contains(line, "tests only")) {
			t.Errorf("the warning does not say what none allows: %s", line)
		}
	}

	out, stderr, code := d.cli("check-config")
	if code != 0 || !strings.Contains(out, ": ok") || !strings.Contains(stderr, "warning: authentication.agent_identity: none: ") || !strings.Contains(stderr, "anyone can send mail as an agent") {
		t.Errorf("check-config under none: exit %d, stdout %q, stderr %q", code, out, stderr)
	}

	d.cmd.Process.Signal(syscall.SIGHUP)
	waitFor(t, "the SIGHUP reload to warn", 5*time.Second, func() bool { return warnings() == 2 })
	code, body := d.api("POST", "/api/v1/reload", nil, true)
	var answer struct {
		Warnings []struct{ Key, Message string }
	}
	json.Unmarshal(body, &answer)
	if code != 200 || len(answer.Warnings) != 1 || answer.Warnings[0].Key != "authentication.agent_identity" {
		t.Errorf("POST /api/v1/reload under none: %d %s", code, body)
	}
	// The log comes through a pipe: it may lag the API's answer a little.
	waitFor(t, "the API reload to warn", 5*time.Second, func() bool { return warnings() == 3 })

	if err := sendSMTP(d.smtpAddr, "jane@customer.test", []string{"support@example.com"},
		mail(map[string]string{"From": "jane@customer.test", "Subject": "Printer", "Message-ID": "<n1@customer.test>"}, "help\n")); err != nil {
		t.Fatal(err)
	}
	reply := d.ticket(1).ReplyAddress
	if err := sendSMTP(d.smtpAddr, "alice@example.com", []string{reply},
		mail(map[string]string{"From": "Alice <alice@example.com>", "To": "jane@customer.test", "Subject": "Re: Printer", "Message-ID": "<n2@example.com>"}, "unplug it\n")); err != nil {
		t.Fatal(err)
	}
	d.settle()
	logs := d.logs.String()
	if !strings.Contains(logs, "outcome=unverified") || strings.Contains(logs, "outcome=proven") {
		t.Errorf("an agent's mail under none is logged as proven, or not as unverified:\n%s", logs)
	}
	if m := d.metrics(); m[`deskgate_agent_claims_total{mode="none",outcome="unverified"}`] != 1 || m[`deskgate_agent_claims_total{mode="none",outcome="proven"}`] != 0 {
		t.Errorf("agent claims under none: unverified %v, proven %v", m[`deskgate_agent_claims_total{mode="none",outcome="unverified"}`], m[`deskgate_agent_claims_total{mode="none",outcome="proven"}`])
	}
	out, _, _ = d.cli("tickets", "show", "1")
	if !strings.Contains(out, "Sender:     agent: unverified (agent_identity is none") {
		t.Errorf("tickets show does not say the agent was not verified:\n%s", out)
	}
	tk := d.ticket(1)
	e := d.explain(tk.Comments[1].ID)
	if a1 := e.a1(); !strings.Contains(a1, "unverified") || strings.Contains(a1, "proven") {
		t.Errorf("explain A1 under none: %q", a1)
	}
}
