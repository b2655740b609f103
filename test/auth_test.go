package test

import (
	"bytes"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/emersion/go-msgauth/dkim"
	gosmtp "github.com/emersion/go-smtp"

	"github.com/deskgate/deskgate/internal/dnstest"
)

// The test domains, published once in testDNS:
//   - example.com, the agents' domain: a DKIM key (selector e2e), DMARC p=reject and an
//     SPF record that allows nobody, so only a signature can prove an agent;
//   - evil.test and x.test: an attacker's domains with keys of their own.
var (
	publishOnce sync.Once
	agentKey    *rsa.PrivateKey
	agentKeyPEM string // PKCS#8, for dkimpy and deskgate's own dkim block
	agentKeyTXT string
)

func publishAgentDomain(t *testing.T) {
	t.Helper()
	publishOnce.Do(func() {
		agentKey, _ = rsa.GenerateKey(rand.Reader, 2048)
		der, _ := x509.MarshalPKCS8PrivateKey(agentKey)
		agentKeyPEM = string(pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}))
		pub, _ := x509.MarshalPKIXPublicKey(&agentKey.PublicKey)
		agentKeyTXT = "v=DKIM1; k=rsa; p=" + base64.StdEncoding.EncodeToString(pub)
		for _, d := range []string{"example.com", "evil.test", "x.test"} {
			testDNS.TXT("e2e._domainkey."+d, agentKeyTXT)
		}
		testDNS.TXT("_dmarc.example.com", "v=DMARC1; p=reject; rua=mailto:dmarc@example.com")
		testDNS.TXT("example.com", "v=spf1 -all")
		testDNS.TXT("_dmarc.x.test", "v=DMARC1; p=none")
	})
}

func dkimSign(t *testing.T, msg []byte, domain string) []byte {
	t.Helper()
	var out bytes.Buffer
	err := dkim.Sign(&out, bytes.NewReader(msg), &dkim.SignOptions{Domain: domain, Selector: "e2e", Signer: agentKey,
		HeaderCanonicalization: dkim.CanonicalizationRelaxed, BodyCanonicalization: dkim.CanonicalizationRelaxed})
	if err != nil {
		t.Fatal(err)
	}
	return out.Bytes()
}

type explained struct {
	Author string `json:"author"`
	Public bool   `json:"public"`
	Trace  []struct {
		Rule, Step, Detail string
	} `json:"trace"`
}

func (d *daemon) explain(id uint64) explained {
	d.t.Helper()
	var e explained
	d.getJSON(fmt.Sprintf("/api/v1/explain/%d", id), &e)
	return e
}

func (e explained) a1() string {
	for _, s := range e.Trace {
		if s.Rule == "A1" {
			return s.Step + ": " + s.Detail
		}
	}
	return ""
}

// openTicket makes ticket 1 from jane, with alice as a follower who got a copy of an
// internal note, and returns the masked address that stands for jane in that copy: what
// alice's Reply-all goes to, and what makes her answer public (V3).
func openTicket(t *testing.T, d *daemon) string {
	t.Helper()
	msg := mail(map[string]string{"From": "Jane <jane@customer.test>", "To": "support@example.com", "Subject": "Printer on fire",
		"Message-ID": "<open-" + filepath.Base(d.dir) + "@customer.test>"}, "It burns.\n")
	if err := sendSMTP(d.smtpAddr, "jane@customer.test", []string{"support@example.com"}, msg); err != nil {
		t.Fatal(err)
	}
	d.must("", "followers", "add", "1", "alice@example.com")
	d.must("Alice, can you take this?", "reply", "1", "--as", "carol@example.com", "--internal")
	copies := to(d.outbox(), "alice@example.com")
	if len(copies) != 1 {
		t.Fatalf("alice got %d copies", len(copies))
	}
	masked := copies[0].addresses("To")
	if len(masked) != 1 || !strings.Contains(masked[0], "-p") {
		t.Fatalf("alice's copy is to %v, want jane's masked address", masked)
	}
	return masked[0]
}

// agentReply is an agent's Reply-all to her copy: to the masked requester.
func agentReply(masked, from, id, body string) []byte {
	return mail(map[string]string{"From": from, "To": "Jane <" + masked + ">",
		"Subject": "Re: Printer on fire", "Message-ID": "<" + id + "@example.com>"}, body+"\n")
}

// reached reports whether a message with text in its body went to rcpt.
func reached(d *daemon, rcpt, text string) bool {
	for _, m := range d.outbox() {
		if m.rcpt == rcpt && strings.Contains(m.body, text) {
			return true
		}
	}
	return false
}

// TestA1_AgentsProveThemselvesByDMARC runs the end-to-end cases (a)-(e) over
// SMTP under agent_identity: dmarc, the example config's default.
func TestA1_AgentsProveThemselvesByDMARC(t *testing.T) {
	publishAgentDomain(t)
	// accept: what these cases check is how a failed proof is filed; refusing under
	// p=reject is TestA1_DMARCReject_ForgedMailIsRefused's.
	d := startDaemon(t, options{auth: `{agent_identity: dmarc, dmarc_reject: accept, timeout: 5s}`})
	reply := openTicket(t, d)

	cases := []struct {
		name     string
		msg      func(id, body string) []byte
		mailFrom string
		agent    bool
		a1       string
	}{
		{"(a) signed for example.com", func(id, body string) []byte {
			return dkimSign(t, agentReply(reply, "Alice <alice@example.com>", id, body), "example.com")
		}, "alice@example.com", true, "agent: dmarc=pass (p=reject) header.from=example.com, aligned dkim=pass"},
		{"(b) unsigned under p=reject", func(id, body string) []byte {
			return agentReply(reply, "Alice <alice@example.com>", id, body)
		}, "alice@example.com", false, "end user: spoofed agent: dmarc=fail (p=reject) header.from=example.com"},
		{"(c) signed by evil.test", func(id, body string) []byte {
			return dkimSign(t, agentReply(reply, "Alice <alice@example.com>", id, body), "evil.test")
		}, "bounce@evil.test", false, "not aligned with example.com"},
		{"(e) body changed after signing", func(id, body string) []byte {
			signed := dkimSign(t, agentReply(reply, "Alice <alice@example.com>", id, "Original words."), "example.com")
			return bytes.Replace(signed, []byte("Original words."), []byte(body), 1)
		}, "alice@example.com", false, "dkim=fail header.d=example.com (body hash did not verify)"},
	}
	for i, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			body := fmt.Sprintf("Reply number %d: unplug it.", i)
			if err := sendSMTP(d.smtpAddr, tc.mailFrom, []string{reply}, tc.msg(fmt.Sprintf("case%d", i), body)); err != nil {
				t.Fatalf("refused: %v", err)
			}
			tk := d.ticket(1)
			c := tk.Comments[len(tk.Comments)-1]
			if !strings.Contains(c.Body, body) {
				t.Fatalf("last comment is not the reply: %+v", c)
			}
			e := d.explain(c.ID)
			if !strings.Contains(e.a1(), tc.a1) {
				t.Errorf("explain A1 = %q, want %q", e.a1(), tc.a1)
			}
			if c.Public != tc.agent {
				t.Errorf("public=%v, agent=%v", c.Public, tc.agent)
			}
			if got := reached(d, "jane@customer.test", body); got != tc.agent {
				t.Errorf("the reply reached the requester: %v, want %v", got, tc.agent)
			}
		})
	}

	out, _, code := d.cli("explain", fmt.Sprint(d.ticket(1).Comments[3].ID))
	if code != 0 || !strings.Contains(out, "spoofed agent: dmarc=fail (p=reject) header.from=example.com") {
		t.Errorf("deskgate explain of the spoofed reply:\n%s", out)
	}
	out, _, _ = d.cli("tickets", "show", "1")
	if !strings.Contains(out, "Sender:     agent: dmarc=pass") || !strings.Contains(out, "Sender:     end user: spoofed agent") {
		t.Errorf("tickets show does not say who proved what:\n%s", out)
	}
	var full struct {
		Comments []struct {
			AuthenticationResults string `json:"authentication_results"`
		} `json:"comments"`
	}
	_, body := d.api("GET", "/api/v1/tickets/1", nil, true)
	json.Unmarshal(body, &full)
	if ar := full.Comments[2].AuthenticationResults; !strings.HasPrefix(ar, "mx.deskgate.test;") || !strings.Contains(ar, "dkim=pass header.d=example.com") || !strings.Contains(ar, "dmarc=pass header.from=example.com") {
		t.Errorf("authentication_results of the signed reply: %q", ar)
	}
	_, metrics := d.api("GET", "/metrics", nil, false)
	for _, want := range []string{`deskgate_agent_claims_total{mode="dmarc",outcome="proven"} 1`, `deskgate_agent_claims_total{mode="dmarc",outcome="spoofed"} 3`,
		`deskgate_sender_auth_total{mode="dmarc",outcome="pass"} 1`, `deskgate_sender_auth_total{mode="dmarc",outcome="fail"} 3`,
		`deskgate_sender_auth_total{mode="dmarc",outcome="none"} 1`} {
		if !strings.Contains(string(metrics), want) {
			t.Errorf("/metrics lacks %s:\n%s", want, metrics)
		}
	}
}

// TestA1_SPFAloneProvesUnderDMARC is case (d): no signature, but the agents' domain
// lets 127.0.0.1 send for it, and MAIL FROM is in that domain.
func TestA1_SPFAloneProvesUnderDMARC(t *testing.T) {
	own, err := dnstest.Start()
	if err != nil {
		t.Fatal(err)
	}
	defer own.Close()
	own.TXT("example.com", "v=spf1 ip4:127.0.0.1 -all")
	own.TXT("_dmarc.example.com", "v=DMARC1; p=reject")
	// accept: the unaligned case below is filed, not refused, so that explain can be read.
	d := startDaemon(t, options{auth: fmt.Sprintf(`{agent_identity: dmarc, dmarc_reject: accept, dns_resolver: "%s"}`, own.Addr)})
	reply := openTicket(t, d)
	if err := sendSMTP(d.smtpAddr, "alice@example.com", []string{reply}, agentReply(reply, "alice@example.com", "spf1", "Sent from an allowed host.")); err != nil {
		t.Fatal(err)
	}
	c := d.lastComment(1)
	if a1 := d.explain(c.ID).a1(); !c.Public || !strings.Contains(a1, "agent: dmarc=pass (p=reject) header.from=example.com, aligned spf=pass") {
		t.Errorf("SPF-only pass: public=%v, A1 %q", c.Public, a1)
	}
	// The same mail from an envelope outside the domain is not aligned.
	if err := sendSMTP(d.smtpAddr, "someone@customer.test", []string{reply}, agentReply(reply, "alice@example.com", "spf2", "Envelope elsewhere.")); err != nil {
		t.Fatal(err)
	}
	if c := d.lastComment(1); c.Public || !strings.Contains(d.explain(c.ID).a1(), "spoofed agent") {
		t.Errorf("an unaligned envelope proved alice: %+v", c)
	}
}

// TestA1_DNSDownDefersAgentsOnly is case (f).
func TestA1_DNSDownDefersAgentsOnly(t *testing.T) {
	down, err := dnstest.Start()
	if err != nil {
		t.Fatal(err)
	}
	defer down.Close()
	down.SetMode(dnstest.Drop)
	d := startDaemon(t, options{auth: fmt.Sprintf(`{agent_identity: dmarc, dns_resolver: "%s", timeout: 1s}`, down.Addr)})
	publishAgentDomain(t)
	msg := dkimSign(t, mail(map[string]string{"From": "alice@example.com", "To": "support@example.com", "Subject": "from alice", "Message-ID": "<dnsdown@example.com>"}, "hi\n"), "example.com")
	start := time.Now()
	err = sendSMTP(d.smtpAddr, "alice@example.com", []string{"support@example.com"}, msg)
	if code, text := smtpCode(err); code != 451 || !strings.Contains(text, "4.7.5") {
		t.Fatalf("an agent's mail with DNS down: %v, want 451 4.7.5", err)
	}
	if took := time.Since(start); took > 5*time.Second {
		t.Errorf("the deferral took %s with authentication.timeout 1s", took)
	}
	if n := len(d.tickets()); n != 0 {
		t.Errorf("a deferred mail made %d tickets", n)
	}
	msg = mail(map[string]string{"From": "jane@customer.test", "To": "support@example.com", "Subject": "from jane", "Message-ID": "<dnsdown@customer.test>"}, "hi\n")
	if err := sendSMTP(d.smtpAddr, "jane@customer.test", []string{"support@example.com"}, msg); err != nil {
		t.Fatalf("an end user's mail with DNS down: %v", err)
	}
	_, metrics := d.api("GET", "/metrics", nil, false)
	if !strings.Contains(string(metrics), `deskgate_agent_claims_total{mode="dmarc",outcome="deferred"} 1`) {
		t.Errorf("/metrics:\n%s", metrics)
	}
}

// TestA1_TrustedRelayOverLMTP is case (g): Authentication-Results from the MTA in front.
func TestA1_TrustedRelayOverLMTP(t *testing.T) {
	d := startDaemon(t, options{auth: `{agent_identity: trusted_relay, trusted_authserv_ids: [mx.example.com]}`})
	reply := openTicket(t, d)
	trusted := "Authentication-Results: mx.example.com; dkim=pass (2048-bit key; unprotected) header.d=example.com header.i=@example.com header.b=abc;\r\n\tdmarc=pass (p=reject dis=none) header.from=example.com\r\n"
	received := "Received: from client.customer.test (client [192.0.2.7]) by mx.example.com (Postfix) with ESMTPS id 4Xyz for <" + reply + ">; Tue, 24 Nov 2026 10:00:00 +0000\r\n"
	forged := "Authentication-Results: mx.example.com; dmarc=pass header.from=example.com\r\n"
	cases := []struct {
		name  string
		top   string
		agent bool
		a1    string
	}{
		{"trusted header on top", trusted + received, true, "agent: dmarc=pass header.from=example.com (Authentication-Results of mx.example.com)"},
		{"the same header below a forged one", received + forged, false, "spoofed agent: trusted relay: no Authentication-Results of a trusted_authserv_id at the top"},
		{"an untrusted authserv-id", strings.Replace(trusted, "mx.example.com", "mx.evil.test", 1) + received, false, "spoofed agent"},
	}
	for i, tc := range cases {
		body := fmt.Sprintf("LMTP reply %d.", i)
		raw := append([]byte(tc.top), agentReply(reply, "Alice <alice@example.com>", fmt.Sprintf("lmtp%d", i), body)...)
		lmtpSend(t, d.lmtpAddr, "alice@example.com", reply, raw)
		tk := d.ticket(1)
		c := tk.Comments[len(tk.Comments)-1]
		if !strings.Contains(c.Body, body) {
			t.Fatalf("%s: not stored: %+v", tc.name, c)
		}
		if a1 := d.explain(c.ID).a1(); c.Public != tc.agent || !strings.Contains(a1, tc.a1) {
			t.Errorf("%s: public=%v A1 %q", tc.name, c.Public, a1)
		}
	}
	// Over SMTP the trusted header counts for nothing.
	raw := append([]byte(trusted), agentReply(reply, "Alice <alice@example.com>", "smtp-forged", "Over SMTP.")...)
	if err := sendSMTP(d.smtpAddr, "alice@example.com", []string{reply}, raw); err != nil {
		t.Fatal(err)
	}
	tk := d.ticket(1)
	if c := tk.Comments[len(tk.Comments)-1]; c.Public || !strings.Contains(d.explain(c.ID).a1(), "count only on LMTP") {
		t.Errorf("an Authentication-Results header over SMTP proved alice: %+v", c)
	}
}

// lmtpSend speaks LMTP by hand and fails the test unless the recipient gets a 250.
func lmtpSend(t *testing.T, addr, from, rcpt string, raw []byte) {
	t.Helper()
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(20 * time.Second))
	buf := make([]byte, 4096)
	read := func() string {
		n, _ := conn.Read(buf)
		return string(buf[:n])
	}
	read()
	for _, cmd := range []string{"LHLO postfix.test", "MAIL FROM:<" + from + ">", "RCPT TO:<" + rcpt + ">", "DATA"} {
		fmt.Fprintf(conn, "%s\r\n", cmd)
		for r := read(); !strings.Contains(r, "\r\n") || strings.Contains(lastLine(r), "-"); r += read() {
		}
	}
	conn.Write(raw)
	if !bytes.HasSuffix(raw, []byte("\r\n")) {
		conn.Write([]byte("\r\n"))
	}
	conn.Write([]byte(".\r\n"))
	if r := read(); !strings.HasPrefix(r, "250") {
		t.Fatalf("LMTP recipient answer: %q", r)
	}
}

func lastLine(s string) string {
	lines := strings.Split(strings.TrimRight(s, "\r\n"), "\r\n")
	l := lines[len(lines)-1]
	if len(l) > 3 {
		return l[3:4]
	}
	return ""
}

// TestA1_AmbiguousFromIsNeverAnAgent: a From that parsers read differently, or that
// names two mailboxes, makes nobody an agent, even when DMARC passes for a domain.
func TestA1_AmbiguousFromIsNeverAnAgent(t *testing.T) {
	publishAgentDomain(t)
	// example.com publishes p=reject: under dmarc_reject: refuse a From filed under
	// alice@example.com is refused outright (TestA1_DMARCReject_AmbiguousFromIsRefused);
	// what is filed is what this test is about.
	d := startDaemon(t, options{auth: `{agent_identity: dmarc, dmarc_reject: accept}`})
	reply := openTicket(t, d)
	for i, from := range []string{"alice@example.com <evil@x.test>", "alice@example.com, evil@x.test"} {
		body := fmt.Sprintf("Two-faced %d.", i)
		msg := dkimSign(t, agentReply(reply, from, fmt.Sprintf("amb%d", i), body), "x.test")
		if err := sendSMTP(d.smtpAddr, "evil@x.test", []string{reply}, msg); err != nil {
			t.Fatal(err)
		}
		tk := d.ticket(1)
		c := tk.Comments[len(tk.Comments)-1]
		if c.Public || reached(d, "jane@customer.test", body) || !strings.Contains(d.explain(c.ID).a1(), "end user") {
			t.Errorf("From: %s got through: %+v", from, c)
		}
		if i == 0 && c.Author != "evil@x.test" {
			t.Errorf("From: %s is filed under %q, not the mailbox in angle brackets", from, c.Author)
		}
	}
	out, _, _ := d.cli("tickets", "show", "1")
	if strings.Contains(out, "alice@example.com <evil@x.test>") {
		t.Errorf("tickets show prints the ambiguous display text:\n%s", out)
	}
}

// TestA1_DkimpyInterop: mail signed by dkimpy proves an agent in deskgate, and what
// deskgate signs verifies in dkimpy.
func TestA1_DkimpyInterop(t *testing.T) {
	publishAgentDomain(t)
	python := pythonWithDkim(t)
	dir := t.TempDir()
	keyFile := filepath.Join(dir, "dkim.key")
	os.WriteFile(keyFile, []byte(agentKeyPEM), 0o600)
	d := startDaemon(t, options{auth: `{agent_identity: dkim}`,
		extraYAML: fmt.Sprintf("dkim: {domain: example.com, selector: e2e, private_key_file: %s}", keyFile)})
	reply := openTicket(t, d)

	unsigned := agentReply(reply, "Alice <alice@example.com>", "dkimpy", "Signed by dkimpy.")
	sign := exec.Command(python, "-c", `
import sys, dkim
msg = sys.stdin.buffer.read()
key = open(sys.argv[1], "rb").read()
sig = dkim.sign(msg, b"e2e", b"example.com", key, canonicalize=(b"relaxed", b"simple"), include_headers=[b"from", b"to", b"cc", b"subject", b"message-id", b"date"])
sys.stdout.buffer.write(sig + msg)
`, keyFile)
	sign.Stdin = bytes.NewReader(unsigned)
	signed, err := sign.Output()
	if err != nil {
		t.Fatalf("dkimpy sign: %v", err)
	}
	if err := sendSMTP(d.smtpAddr, "alice@example.com", []string{reply}, signed); err != nil {
		t.Fatal(err)
	}
	c := d.lastComment(1)
	if a1 := d.explain(c.ID).a1(); !c.Public || !strings.HasPrefix(a1, "agent: dkim=pass header.d=example.com") {
		t.Errorf("dkimpy's signature did not prove alice: public=%v %q", c.Public, a1)
	}

	var toJane []byte
	for _, m := range d.outbox() {
		if m.rcpt == "jane@customer.test" && strings.Contains(m.body, "Signed by dkimpy.") {
			toJane, _ = os.ReadFile(filepath.Join(d.dir, "outbox", "new", m.file))
		}
	}
	if toJane == nil {
		t.Fatal("the agent's reply did not reach jane")
	}
	verify := exec.Command(python, "-c", `
import sys, dkim
txt = sys.argv[1].encode()
def dnsfunc(name, timeout=5):
    return txt if name == b"e2e._domainkey.example.com." else None
msg = sys.stdin.buffer.read()
sys.exit(0 if dkim.verify(msg, dnsfunc=dnsfunc) else 1)
`, agentKeyTXT)
	verify.Stdin = bytes.NewReader(toJane)
	if out, err := verify.CombinedOutput(); err != nil {
		t.Errorf("dkimpy does not verify deskgate's signature: %v %s", err, out)
	}
	tampered := bytes.Replace(toJane, []byte("Signed by dkimpy."), []byte("Signed by nobody."), 1)
	verify = exec.Command(python, verify.Args[1:]...)
	verify.Stdin = bytes.NewReader(tampered)
	if err := verify.Run(); err == nil {
		t.Error("dkimpy verified a tampered copy: the check above proves nothing")
	}
}

// pythonWithDkim is a Python that can import dkimpy (Debian python3-dkim).
func pythonWithDkim(t *testing.T) string {
	t.Helper()
	for _, p := range []string{"/usr/bin/python3", "python3"} {
		if exec.Command(p, "-c", "import dkim").Run() == nil {
			return p
		}
	}
	if os.Getenv("CI") != "" {
		t.Fatal("dkimpy is missing in CI: .ci/run must install the Debian package python3-dkim")
	}
	t.Skip("dkimpy not installed (apt-get install python3-dkim); .ci/run installs it")
	return ""
}

// publishDMARCTrialDomains adds the domains of the p=reject tests: a customer's domain that
// refuses forgeries, one that only quarantines them, and one still trying p=reject on half
// its mail. None lets 127.0.0.1 send for it.
func publishDMARCTrialDomains() {
	testDNS.TXT("_dmarc.bank.test", "v=DMARC1; p=reject")
	testDNS.TXT("bank.test", "v=spf1 -all")
	testDNS.TXT("_dmarc.quiet.test", "v=DMARC1; p=quarantine")
	testDNS.TXT("_dmarc.trial.test", "v=DMARC1; p=reject; pct=50")
}

// lmtpDeliver sends raw over LMTP to every rcpt and returns each recipient's reply code and
// text (250 for the ones that took it).
func lmtpDeliver(t *testing.T, addr, from string, rcpts []string, raw []byte) map[string]string {
	t.Helper()
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	c := gosmtp.NewClientLMTP(conn)
	defer c.Close()
	if err := c.Hello("postfix.test"); err != nil {
		t.Fatal(err)
	}
	if err := c.Mail(from, nil); err != nil {
		t.Fatal(err)
	}
	for _, rc := range rcpts {
		if err := c.Rcpt(rc, nil); err != nil {
			t.Fatalf("RCPT %s: %v", rc, err)
		}
	}
	w, err := c.Data()
	if err != nil {
		t.Fatal(err)
	}
	w.Write(raw)
	out := map[string]string{}
	resps, err := w.CloseWithLMTPResponse()
	var perRcpt gosmtp.LMTPDataError
	switch {
	case errors.As(err, &perRcpt):
		for rc, se := range perRcpt {
			out[rc] = fmt.Sprintf("%d %d.%d.%d %s", se.Code, se.EnhancedCode[0], se.EnhancedCode[1], se.EnhancedCode[2], se.Message)
		}
	case err != nil:
		t.Fatalf("LMTP DATA: %v", err)
	}
	for rc := range resps {
		out[rc] = "250"
	}
	c.Quit()
	return out
}

// TestA1_DMARCReject_ForgedMailIsRefused: under agent_identity: dmarc with dmarc_reject at
// its default, mail that fails DMARC where the From domain publishes p=reject gets 550 5.7.1
// after DATA, over SMTP and (per recipient) over LMTP, and leaves no ticket, comment or
// outgoing mail behind: a forged agent's reply is no third-party note, a forged agent's mail
// to the support address sends the real agent no acknowledgement, and a forged customer
// opens no ticket. p=quarantine, pct below 100, and an LMTP mail whose SPF deskgate could not
// check are stored as before.
func TestA1_DMARCReject_ForgedMailIsRefused(t *testing.T) {
	publishAgentDomain(t)
	publishDMARCTrialDomains()
	d := startDaemon(t, options{auth: `{agent_identity: dmarc, timeout: 5s}`})
	reply := openTicket(t, d)
	comments, sent, queued := len(d.ticket(1).Comments), len(d.outbox()), len(d.queue())

	refused := func(what, mailFrom string, rcpts []string, msg []byte, domain string) {
		t.Helper()
		err := sendSMTP(d.smtpAddr, mailFrom, rcpts, msg)
		if code, text := smtpCode(err); code != 550 || !strings.Contains(text, "5.7.1 Rejected by DMARC policy for "+domain) {
			t.Errorf("%s: %v, want 550 5.7.1 Rejected by DMARC policy for %s", what, err, domain)
		}
	}
	refused("a forged agent's Reply-all", "evil@evil.test", []string{reply},
		agentReply(reply, "Alice <alice@example.com>", "forged-reply", "Refund them all."), "example.com")
	refused("a forged agent's mail to the support address", "alice@example.com", []string{"support@example.com"},
		mail(map[string]string{"From": "alice@example.com", "To": "support@example.com", "Subject": "urgent", "Message-ID": "<forged-new@example.com>"}, "hi\n"), "example.com")
	refused("a forged customer", "ceo@bank.test", []string{"support@example.com"},
		mail(map[string]string{"From": "CEO <ceo@bank.test>", "To": "support@example.com", "Subject": "wire money", "Message-ID": "<forged@bank.test>"}, "now\n"), "bank.test")
	// Signed by the attacker's own domain: DKIM passes, but not for example.com.
	refused("an agent's From signed by evil.test", "evil@evil.test", []string{reply},
		dkimSign(t, agentReply(reply, "alice@example.com", "forged-signed", "Signed, but not by us."), "evil.test"), "example.com")

	// Over LMTP every recipient of the message gets the refusal. MAIL FROM is outside
	// example.com, so no SPF pass could have been aligned: the fail is proven.
	got := lmtpDeliver(t, d.lmtpAddr, "evil@evil.test", []string{"support@example.com", "billing@example.com"},
		mail(map[string]string{"From": "alice@example.com", "To": "support@example.com", "Subject": "via lmtp", "Message-ID": "<forged-lmtp@example.com>"}, "hi\n"))
	for _, rc := range []string{"support@example.com", "billing@example.com"} {
		if !strings.HasPrefix(got[rc], "550 5.7.1 ") || !strings.Contains(got[rc], "Rejected by DMARC policy for example.com") {
			t.Errorf("LMTP %s: %q, want 550 5.7.1", rc, got[rc])
		}
	}

	if n := len(d.tickets()); n != 1 {
		t.Errorf("refused mail made tickets: %d, want 1", n)
	}
	if n := len(d.ticket(1).Comments); n != comments {
		t.Errorf("refused mail became comments: %d, want %d", n, comments)
	}
	if n := len(d.queue()); n != queued {
		t.Errorf("refused mail queued deliveries: %d, want %d", n, queued)
	}
	if n := len(d.outbox()); n != sent {
		t.Errorf("refused mail sent %d messages (acknowledgements to the forged sender?)", n-sent)
	}
	logs := d.logs.String()
	for _, want := range []string{`msg=refused`, `stage=data code=550 enhanced=5.7.1 reason="Rejected by DMARC policy for example.com"`,
		`reason="Rejected by DMARC policy for bank.test"`, `outcome=refused`} {
		if !strings.Contains(logs, want) {
			t.Errorf("the log lacks %s", want)
		}
	}
	_, metrics := d.api("GET", "/metrics", nil, false)
	for _, want := range []string{`deskgate_smtp_replies_total{code="550",enhanced="5.7.1",proto="smtp"} 4`,
		`deskgate_smtp_replies_total{code="550",enhanced="5.7.1",proto="lmtp"} 2`, "deskgate_dmarc_refused_total 5",
		`deskgate_agent_claims_total{mode="dmarc",outcome="refused"} 4`, `deskgate_messages_received_total{outcome="refused",proto="smtp"} 4`} {
		if !strings.Contains(string(metrics), want) {
			t.Errorf("/metrics lacks %s", want)
		}
	}

	// What the domain did not ask to be refused is stored as before.
	for i, from := range []string{"ops@quiet.test", "ops@trial.test"} {
		msg := mail(map[string]string{"From": from, "To": "support@example.com", "Subject": "kept " + from, "Message-ID": fmt.Sprintf("<kept%d@x>", i)}, "kept\n")
		if err := sendSMTP(d.smtpAddr, from, []string{"support@example.com"}, msg); err != nil {
			t.Errorf("%s (not p=reject at pct=100): %v", from, err)
		}
	}
	if tk := d.tickets(); len(tk) != 3 {
		t.Fatalf("%d tickets, want the two kept mails' as well", len(tk))
	}
	if a1 := d.explain(d.lastComment(3).ID).a1(); !strings.Contains(a1, "(p=reject pct=50)") || !strings.Contains(a1, "not refused: pct=50") {
		t.Errorf("the pct=50 mail's A1: %q", a1)
	}
	// Over LMTP with MAIL FROM in example.com, an SPF pass at the MTA in front could have
	// made DMARC pass: deskgate cannot tell, so it files the mail as a spoofed agent's.
	got = lmtpDeliver(t, d.lmtpAddr, "alice@example.com", []string{reply}, agentReply(reply, "alice@example.com", "lmtp-unsure", "Maybe SPF passed."))
	if got[reply] != "250" {
		t.Fatalf("LMTP with SPF unknown: %q", got[reply])
	}
	c := d.lastComment(1)
	if a1 := d.explain(c.ID).a1(); c.Public || !strings.Contains(a1, "spoofed agent") || !strings.Contains(a1, "SPF could not be checked") {
		t.Errorf("LMTP with SPF unknown: public=%v, A1 %q", c.Public, a1)
	}
}

// TestA1_DMARCReject_AmbiguousFromIsRefused: a From that names two addresses, or two From
// fields, proves nobody; the mail would be filed under the first address, an agent's in a
// p=reject domain, and her real address would get the acknowledgement. It is refused as a
// plain forgery is, and nothing of it is stored or sent.
func TestA1_DMARCReject_AmbiguousFromIsRefused(t *testing.T) {
	publishAgentDomain(t)
	d := startDaemon(t, options{auth: `{agent_identity: dmarc, timeout: 5s}`})
	for name, raw := range map[string]string{
		"two addresses":   "From: alice@example.com, evil@evil.test\r\nTo: support@example.com\r\nSubject: two\r\nMessage-ID: <amb1@evil.test>\r\n\r\nhi\r\n",
		"two From fields": "From: alice@example.com\r\nFrom: evil@evil.test\r\nTo: support@example.com\r\nSubject: fields\r\nMessage-ID: <amb2@evil.test>\r\n\r\nhi\r\n",
	} {
		err := sendSMTP(d.smtpAddr, "evil@evil.test", []string{"support@example.com"}, []byte(raw))
		if code, text := smtpCode(err); code != 550 || !strings.Contains(text, "5.7.1 Rejected by DMARC policy for example.com") {
			t.Errorf("%s: %v, want 550 5.7.1 Rejected by DMARC policy for example.com", name, err)
		}
	}
	if n := len(d.tickets()); n != 0 {
		t.Errorf("ambiguous forged mail opened %d tickets", n)
	}
	if got := to(d.outbox(), alice); len(got) != 0 {
		t.Errorf("the real agent got %d acknowledgements of mail she never sent", len(got))
	}
	// The same ambiguity from a domain without p=reject is filed, as before, as an end user's.
	raw := "From: kim@customer.test, evil@evil.test\r\nTo: support@example.com\r\nSubject: two\r\nMessage-ID: <amb3@evil.test>\r\n\r\nhi\r\n"
	if err := sendSMTP(d.smtpAddr, "kim@customer.test", []string{"support@example.com"}, []byte(raw)); err != nil {
		t.Errorf("an ambiguous From of a domain without p=reject: %v", err)
	}
}

// TestA1_DMARCReject_AcceptKeepsStoring: dmarc_reject: accept keeps the behaviour from before
// the key (a forged agent's mail is filed as an end user's and opens a ticket); a SIGHUP to
// refuse applies to the next mail; a bad value is refused naming the key.
func TestA1_DMARCReject_AcceptKeepsStoring(t *testing.T) {
	publishAgentDomain(t)
	d := startDaemon(t, options{auth: `{agent_identity: dmarc, dmarc_reject: accept, timeout: 5s}`})
	forged := func(n int) []byte {
		return mail(map[string]string{"From": "alice@example.com", "To": "support@example.com", "Subject": "forged",
			"Message-ID": fmt.Sprintf("<forged-%d@example.com>", n)}, "hi\n")
	}
	if err := sendSMTP(d.smtpAddr, "evil@evil.test", []string{"support@example.com"}, forged(1)); err != nil {
		t.Fatalf("accept: %v", err)
	}
	tk := d.ticket(1)
	if tk.Requester.Email != "alice@example.com" || tk.Comments[0].Public != true {
		t.Errorf("accept: %+v", tk)
	}
	if a1 := d.explain(tk.Comments[0].ID).a1(); !strings.Contains(a1, "end user: spoofed agent: dmarc=fail (p=reject)") || !strings.Contains(a1, "not refused: dmarc_reject is accept") {
		t.Errorf("accept: A1 %q", a1)
	}
	if len(to(d.outbox(), "alice@example.com")) != 1 {
		t.Errorf("accept: the acknowledgement did not go to alice, as before")
	}

	raw, _ := os.ReadFile(d.configPath)
	orig := string(raw)
	os.WriteFile(d.configPath, []byte(strings.Replace(orig, "dmarc_reject: accept", "dmarc_reject: maybe", 1)), 0o600)
	d.cmd.Process.Signal(syscall.SIGHUP)
	waitFor(t, "the refused reload", 5*time.Second, func() bool {
		return strings.Contains(d.logs.String(), "reload refused") && strings.Contains(d.logs.String(), "authentication.dmarc_reject")
	})
	if err := sendSMTP(d.smtpAddr, "evil@evil.test", []string{"support@example.com"}, forged(2)); err != nil {
		t.Errorf("after a refused reload the running accept stays: %v", err)
	}

	os.WriteFile(d.configPath, []byte(strings.Replace(orig, "dmarc_reject: accept", "dmarc_reject: refuse", 1)), 0o600)
	d.cmd.Process.Signal(syscall.SIGHUP)
	waitFor(t, "the reload", 5*time.Second, func() bool { return strings.Contains(d.logs.String(), "config reloaded") })
	err := sendSMTP(d.smtpAddr, "evil@evil.test", []string{"support@example.com"}, forged(3))
	if code, text := smtpCode(err); code != 550 || !strings.Contains(text, "5.7.1 Rejected by DMARC policy for example.com") {
		t.Errorf("after SIGHUP to refuse: %v", err)
	}
	if n := len(d.tickets()); n != 2 {
		t.Errorf("%d tickets, want 2", n)
	}
}
