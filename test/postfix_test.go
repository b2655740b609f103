package test

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/deskgate/deskgate/internal/postfixtest"
)

// postfixInstance is a private Postfix (its own config, queue and log under a temp dir)
// that relays example.com to deskgate over LMTP, as an operator's main.cf would.
type postfixInstance struct {
	t        *testing.T
	dir      string
	smtpAddr string
}

func (p *postfixInstance) configDir() string { return filepath.Join(p.dir, "etc") }

// virtualMaildirCF is the main.cf lines of a Postfix that keeps the mail of domains in one
// Maildir, {{dir}}/vmail/all/, as the user nobody, and relays for its own network only. The
// master.cf line virtualService goes with it. It skips the test where there is no nobody.
func virtualMaildirCF(t *testing.T, domains string) string {
	t.Helper()
	nobody, err := user.Lookup("nobody")
	if err != nil {
		t.Skip("no user nobody for Postfix's virtual delivery")
	}
	return fmt.Sprintf(`virtual_mailbox_domains = %s
virtual_mailbox_base = {{dir}}/vmail
virtual_mailbox_maps = static:all/
virtual_uid_maps = static:%s
virtual_gid_maps = static:%s
virtual_minimum_uid = 1
smtpd_relay_restrictions = permit_mynetworks, reject
`, domains, nobody.Uid, nobody.Gid)
}

// virtualService is the master.cf line of Postfix's virtual delivery agent.
const virtualService = "virtual   unix  -       n       n       -       -       virtual\n"

func startPostfix(t *testing.T, lmtpDest string) *postfixInstance {
	t.Helper()
	return startPostfixCF(t, fmt.Sprintf(`# The hand-off under test: the support domain goes to deskgate over LMTP.
relay_domains = example.com
transport_maps = inline:{ example.com=lmtp:%s }
smtpd_relay_restrictions = permit_mynetworks, reject_unauth_destination
`, lmtpDest), "")
}

// startPostfixCF starts a private Postfix with extra main.cf and master.cf lines.
func startPostfixCF(t *testing.T, extraMain, extraMaster string) *postfixInstance {
	t.Helper()
	postfix := needTool(t, "postfix", "postfix")
	if os.Geteuid() != 0 {
		t.Skip("a private Postfix instance must be started as root (Postfix's own rule); CI runs as root")
	}
	// Postfix's daemons run as the postfix user, so everything they touch sits in a
	// world-traversable directory instead of t.TempDir's private one.
	dir, err := os.MkdirTemp("", "deskgate-postfix-")
	if err != nil {
		t.Fatal(err)
	}
	os.Chmod(dir, 0o755)
	p := &postfixInstance{t: t, dir: dir, smtpAddr: freePort(t)}
	for _, sub := range []string{"etc", "queue", "data"} {
		if err := os.MkdirAll(filepath.Join(dir, sub), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if out, err := exec.Command("chown", "postfix", filepath.Join(dir, "data")).CombinedOutput(); err != nil {
		t.Fatalf("chown: %v %s", err, out)
	}
	mainCF := postfixtest.MainCF(dir) + strings.ReplaceAll(extraMain, "{{dir}}", dir)
	if err := os.WriteFile(filepath.Join(dir, "etc", "main.cf"), []byte(mainCF), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "etc", "master.cf"), []byte(postfixtest.MasterCF(p.smtpAddr)+extraMaster), 0o644); err != nil {
		t.Fatal(err)
	}
	if strings.Contains(extraMain, "virtual_mailbox_base") {
		vmail := filepath.Join(dir, "vmail")
		os.MkdirAll(vmail, 0o755)
		exec.Command("chown", "nobody:nogroup", vmail).Run()
	}
	for _, args := range [][]string{{"-c", p.configDir(), "check"}, {"-c", p.configDir(), "start"}} {
		if out, err := exec.Command(postfix, args...).CombinedOutput(); err != nil {
			t.Fatalf("postfix %v: %v\n%s\n%s", args, err, out, p.log())
		}
	}
	t.Cleanup(func() {
		exec.Command(postfix, "-c", p.configDir(), "stop").Run()
		if t.Failed() {
			t.Logf("postfix maillog:\n%s", p.log())
		}
		os.RemoveAll(dir)
	})
	waitListening(t, "postfix smtpd", p.smtpAddr)
	return p
}

func (p *postfixInstance) log() string {
	b, _ := os.ReadFile(filepath.Join(p.dir, "maillog"))
	return string(b)
}

// sendmail submits through Postfix's own sendmail command, as a local program would.
func (p *postfixInstance) sendmail(from string, to []string, msg []byte) {
	p.t.Helper()
	args := append([]string{"-C", p.configDir(), "-f", from}, to...)
	cmd := exec.Command(needTool(p.t, "sendmail", "postfix"), args...)
	cmd.Stdin = bytes.NewReader(msg)
	if out, err := cmd.CombinedOutput(); err != nil {
		p.t.Fatalf("sendmail: %v %s", err, out)
	}
}

func TestPostfixHandsOffOverLMTP(t *testing.T) {
	for _, transport := range []string{"tcp", "unix"} {
		t.Run(transport, func(t *testing.T) {
			dir, err := os.MkdirTemp("", "deskgate-e2e-")
			if err != nil {
				t.Fatal(err)
			}
			os.Chmod(dir, 0o755)
			t.Cleanup(func() { os.RemoveAll(dir) })
			d := startDaemon(t, options{dir: dir, lmtpUnix: transport == "unix"})
			dest := "inet:" + d.lmtpAddr
			if transport == "unix" {
				dest = "unix:" + d.lmtpAddr
			}
			pf := startPostfix(t, dest)

			// Through Postfix's sendmail (pickup, cleanup, qmgr, lmtp).
			pf.sendmail("jane@customer.test", []string{"support@example.com"}, mail(map[string]string{
				"From": "Jane <jane@customer.test>", "To": "support@example.com", "Subject": "Via Postfix sendmail", "Message-ID": "<pf-1@customer.test>"}, "first\n"))
			waitFor(t, "the sendmail message to reach deskgate", 30*time.Second, func() bool { return len(d.tickets()) == 1 })
			reply := d.ticket(1).ReplyAddress

			// Through Postfix's SMTP port, to the ticket's reply address and to an
			// address deskgate refuses, in one transaction.
			err = sendSMTP(pf.smtpAddr, "jane@customer.test", []string{reply, "nobody@example.com"}, mail(map[string]string{
				"From": "Jane <jane@customer.test>", "To": "support@example.com", "Subject": "Re: Via Postfix", "Message-ID": "<pf-2@customer.test>"}, "second\n"))
			if err != nil {
				t.Fatalf("Postfix smtpd refused: %v", err)
			}
			waitFor(t, "the reply to thread into ticket 1", 30*time.Second, func() bool { return len(d.ticket(1).Comments) == 2 })
			waitFor(t, "Postfix to bounce the unknown recipient", 30*time.Second, func() bool {
				return strings.Contains(pf.log(), "to=<nobody@example.com>") && strings.Contains(pf.log(), "status=bounced")
			})
			log := pf.log()
			if !strings.Contains(log, "status=sent (250 2.0.0") || !strings.Contains(log, "550 5.1.1") {
				t.Errorf("Postfix log lacks the LMTP results:\n%s", log)
			}
			tk := d.ticket(1)
			if tk.Subject != "Via Postfix sendmail" || tk.Requester.Name != "Jane" || len(d.tickets()) != 1 {
				t.Fatalf("tickets after the Postfix hand-off: %+v", tk)
			}
		})
	}
}
