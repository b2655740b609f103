package test

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestA1_PostfixWithOpenDKIMInFront is case (g) with the real thing in front: Postfix
// runs OpenDKIM as a milter, OpenDKIM looks the keys up in the test DNS (through its
// libunbound, forwarded to loopback), writes Authentication-Results, and Postfix hands
// the mail to deskgate over LMTP under agent_identity: trusted_relay.
func TestA1_PostfixWithOpenDKIMInFront(t *testing.T) {
	opendkim := needTool(t, "opendkim", "opendkim")
	publishAgentDomain(t)
	dir, err := os.MkdirTemp("", "deskgate-opendkim-")
	if err != nil {
		t.Fatal(err)
	}
	os.Chmod(dir, 0o755)
	t.Cleanup(func() { os.RemoveAll(dir) })

	milter := freePort(t)
	port := strings.TrimPrefix(milter, "127.0.0.1:")
	unbound := fmt.Sprintf("server:\n  do-not-query-localhost: no\nforward-zone:\n  name: \".\"\n  forward-addr: %s\n",
		strings.Replace(testDNS.Addr, ":", "@", 1))
	os.WriteFile(filepath.Join(dir, "unbound.conf"), []byte(unbound), 0o644)
	conf := fmt.Sprintf(`Mode                  v
Socket                inet:%s@127.0.0.1
AuthservID            mx.example.com
AlwaysAddARHeader     yes
ResolverConfiguration %s/unbound.conf
Background            no
Syslog                no
PidFile               %s/opendkim.pid
`, port, dir, dir)
	os.WriteFile(filepath.Join(dir, "opendkim.conf"), []byte(conf), 0o644)
	od := exec.Command(opendkim, "-f", "-x", filepath.Join(dir, "opendkim.conf"))
	odLog := &syncBuffer{}
	od.Stdout, od.Stderr = odLog, odLog
	if err := od.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		od.Process.Kill()
		od.Wait()
		if t.Failed() {
			t.Logf("opendkim:\n%s", odLog.String())
		}
	})
	waitListening(t, "opendkim", milter)

	d := startDaemon(t, options{auth: `{agent_identity: trusted_relay, trusted_authserv_ids: [mx.example.com]}`})
	masked := openTicket(t, d)
	pf := startPostfixCF(t, fmt.Sprintf(`relay_domains = example.com
transport_maps = inline:{ example.com=lmtp:inet:%s }
smtpd_relay_restrictions = permit_mynetworks, reject_unauth_destination
smtpd_milters = inet:%s
milter_default_action = tempfail
`, d.lmtpAddr, milter), "")

	cases := []struct {
		name  string
		msg   []byte
		agent bool
		a1    string
	}{
		{"signed by example.com", dkimSign(t, agentReply(masked, "Alice <alice@example.com>", "od-signed", "Through OpenDKIM, signed."), "example.com"),
			true, "agent: dkim=pass header.d=example.com header.from=example.com (Authentication-Results of mx.example.com)"},
		{"unsigned, with a forged pass", append([]byte("Authentication-Results: mx.example.com; dmarc=pass header.from=example.com\r\n"),
			agentReply(masked, "Alice <alice@example.com>", "od-forged", "Through OpenDKIM, forged.")...), false, "spoofed agent"},
	}
	for _, tc := range cases {
		n := len(d.ticket(1).Comments)
		if err := sendSMTP(pf.smtpAddr, "alice@example.com", []string{masked}, tc.msg); err != nil {
			t.Fatalf("%s: Postfix refused: %v", tc.name, err)
		}
		waitFor(t, tc.name+" through Postfix", 20*time.Second, func() bool { return len(d.ticket(1).Comments) > n })
		c := d.lastComment(1)
		if a1 := d.explain(c.ID).a1(); c.Public != tc.agent || !strings.Contains(a1, tc.a1) {
			t.Errorf("%s: public=%v A1 %q, want %q", tc.name, c.Public, a1, tc.a1)
		}
	}
}
