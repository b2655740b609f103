package test

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// postfixInstance is a private Postfix (its own config, queue and log under a temp dir)
// that relays example.com to deskgate over LMTP, as an operator's main.cf would.
type postfixInstance struct {
	t        *testing.T
	dir      string
	smtpAddr string
}

func (p *postfixInstance) configDir() string { return filepath.Join(p.dir, "etc") }

// The services a relay-only Postfix needs; chroot is off so paths under /tmp work.
const postfixMasterCF = `%s inet n - n - - smtpd
pickup    unix  n       -       n       60      1       pickup
cleanup   unix  n       -       n       -       0       cleanup
qmgr      unix  n       -       n       300     1       qmgr
rewrite   unix  -       -       n       -       -       trivial-rewrite
bounce    unix  -       -       n       -       0       bounce
defer     unix  -       -       n       -       0       bounce
trace     unix  -       -       n       -       0       bounce
verify    unix  -       -       n       -       1       verify
flush     unix  n       -       n       1000?   0       flush
proxymap  unix  -       -       n       -       -       proxymap
smtp      unix  -       -       n       -       -       smtp
relay     unix  -       -       n       -       -       smtp
showq     unix  n       -       n       -       -       showq
error     unix  -       -       n       -       -       error
retry     unix  -       -       n       -       -       error
discard   unix  -       -       n       -       -       discard
lmtp      unix  -       -       n       -       -       lmtp
anvil     unix  -       -       n       -       1       anvil
scache    unix  -       -       n       -       1       scache
postlog   unix-dgram n  -       n       -       1       postlogd
`

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
	mainCF := fmt.Sprintf(`compatibility_level = 3.6
queue_directory = %[1]s/queue
data_directory = %[1]s/data
mail_owner = postfix
setgid_group = postdrop
myhostname = postfix.deskgate.test
mydomain = deskgate.test
myorigin = $myhostname
mydestination =
inet_interfaces = 127.0.0.1
inet_protocols = ipv4
mynetworks = 127.0.0.0/8
alias_maps =
alias_database =
smtputf8_enable = no
biff = no
maillog_file = %[1]s/maillog
maillog_file_prefixes = %[1]s
%[2]s`, dir, strings.ReplaceAll(extraMain, "{{dir}}", dir))
	if err := os.WriteFile(filepath.Join(dir, "etc", "main.cf"), []byte(mainCF), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "etc", "master.cf"), []byte(fmt.Sprintf(postfixMasterCF, p.smtpAddr)+extraMaster), 0o644); err != nil {
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
