package test

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"net/smtp"
	"net/textproto"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	gosmtp "github.com/emersion/go-smtp"
)

// sendSMTP delivers one message with Go's net/smtp client and returns the server's error.
func sendSMTP(addr, from string, to []string, msg []byte) error {
	return smtp.SendMail(addr, nil, from, to, msg)
}

func smtpCode(err error) (int, string) {
	var tpErr *textproto.Error
	if errors.As(err, &tpErr) {
		return tpErr.Code, tpErr.Msg
	}
	return 0, fmt.Sprint(err)
}

func TestT1_SMTPOpensTicket(t *testing.T) {
	d := startDaemon(t, options{})
	msg := mail(map[string]string{"From": "Jane Doe <jane@customer.test>", "To": "support@example.com",
		"Cc": "Joe <joe@customer.test>", "Subject": "Printer on fire", "Message-ID": "<t1@customer.test>"}, "It is burning.\n")
	if err := sendSMTP(d.smtpAddr, "jane@customer.test", []string{"support@example.com"}, msg); err != nil {
		t.Fatalf("SMTP delivery refused: %v", err)
	}
	list := d.tickets()
	if len(list) != 1 {
		t.Fatalf("%d tickets, want 1", len(list))
	}
	tk := d.ticket(list[0].ID)
	if tk.Subject != "Printer on fire" || tk.Status != "new" || tk.Requester.Email != "jane@customer.test" || tk.Requester.Name != "Jane Doe" {
		t.Errorf("ticket = %+v", tk)
	}
	if len(tk.Comments) != 1 || !tk.Comments[0].Public || tk.Comments[0].Via != "email" ||
		strings.TrimSpace(tk.Comments[0].Body) != "It is burning." || tk.Comments[0].MessageID != "<t1@customer.test>" {
		t.Errorf("comment = %+v", tk.Comments)
	}
	if !strings.Contains(d.logs.String(), "msg=accepted") || !strings.Contains(d.logs.String(), "ticket=1") {
		t.Errorf("no log line for the accepted message:\n%s", d.logs.String())
	}
}

// TestT2_EveryThreadingWay delivers replies that thread by each of T2's four ways, and
// checks that an invalid token or a stranger's bare tag opens a new ticket instead.
func TestT2_EveryThreadingWay(t *testing.T) {
	d := startDaemon(t, options{})
	first := mail(map[string]string{"From": "jane@customer.test", "To": "support@example.com", "Subject": "Broken", "Message-ID": "<root@customer.test>"}, "first\n")
	if err := sendSMTP(d.smtpAddr, "jane@customer.test", []string{"support@example.com"}, first); err != nil {
		t.Fatal(err)
	}
	tk := d.ticket(1)
	if tk.ReplyAddress == "" || !strings.HasPrefix(tk.ReplyAddress, "support+1-") {
		t.Fatalf("reply address = %q", tk.ReplyAddress)
	}
	token := strings.TrimSuffix(strings.TrimPrefix(tk.ReplyAddress, "support+1-"), "@example.com")

	send := func(env []string, h map[string]string) {
		t.Helper()
		if _, ok := h["From"]; !ok {
			h["From"] = "jane@customer.test"
		}
		h["To"] = "support@example.com"
		if err := sendSMTP(d.smtpAddr, "jane@customer.test", env, mail(h, "reply\n")); err != nil {
			t.Fatalf("delivery %v refused: %v", h, err)
		}
	}
	// (a) the reply address, and a masked address of the same ticket
	send([]string{tk.ReplyAddress}, map[string]string{"Subject": "a", "Message-ID": "<a@customer.test>"})
	send([]string{"support+1-" + token + "-p2@example.com"}, map[string]string{"Subject": "a2", "Message-ID": "<a2@customer.test>"})
	// (b) In-Reply-To a received message; References naming one only seen referenced
	send([]string{"support@example.com"}, map[string]string{"Subject": "b", "Message-ID": "<b@customer.test>", "In-Reply-To": "<root@customer.test>"})
	// (c) the tag with its token, in the subject and in the body
	send([]string{"support@example.com"}, map[string]string{"Subject": "Re: Broken [#1-" + token + "]", "Message-ID": "<c@customer.test>"})
	// (d) a bare subject tag from the requester
	send([]string{"support@example.com"}, map[string]string{"Subject": "Re: [#1] still broken", "Message-ID": "<d@customer.test>"})

	tk = d.ticket(1)
	if len(tk.Comments) != 6 {
		t.Fatalf("ticket 1 has %d comments, want 6 (first + a, a2, b, c, d)", len(tk.Comments))
	}
	if n := len(d.tickets()); n != 1 {
		t.Fatalf("%d tickets after replies, want 1", n)
	}

	// An invalid token never threads, and the sender is not told: a new ticket opens.
	send([]string{"support+1-aaaaaaaaaaaa@example.com"}, map[string]string{"Subject": "guess", "Message-ID": "<guess@customer.test>"})
	send([]string{"support@example.com"}, map[string]string{"Subject": "Re: [#1-aaaaaaaaaaaa]", "Message-ID": "<guess2@customer.test>"})
	// A bare tag from someone who is no participant does not thread either.
	send([]string{"support@example.com"}, map[string]string{"From": "mallory@evil.test", "Subject": "Re: [#1]", "Message-ID": "<bare@evil.test>"})
	if n := len(d.tickets()); n != 4 {
		t.Fatalf("%d tickets, want 4: guessed tokens and a stranger's bare tag must open new tickets", n)
	}
	if got := len(d.ticket(1).Comments); got != 6 {
		t.Fatalf("ticket 1 grew to %d comments from mail that must not thread", got)
	}
}

func TestT2_SeveralSupportAddressesAreOneUpdate(t *testing.T) {
	d := startDaemon(t, options{})
	msg := mail(map[string]string{"From": "jane@customer.test", "To": "support@example.com, billing@example.com", "Subject": "both", "Message-ID": "<both@customer.test>"}, "x\n")
	if err := sendSMTP(d.smtpAddr, "jane@customer.test", []string{"support@example.com", "billing@example.com"}, msg); err != nil {
		t.Fatal(err)
	}
	if list := d.tickets(); len(list) != 1 || len(d.ticket(list[0].ID).Comments) != 1 {
		t.Fatalf("mail to two support addresses made %d tickets", len(list))
	}
}

func TestT3_SameMessageTwiceIsStoredOnce(t *testing.T) {
	d := startDaemon(t, options{})
	msg := mail(map[string]string{"From": "jane@customer.test", "To": "support@example.com", "Subject": "dup", "Message-ID": "<dup@customer.test>"}, "x\n")
	for i := 0; i < 3; i++ {
		if err := sendSMTP(d.smtpAddr, "jane@customer.test", []string{"support@example.com"}, msg); err != nil {
			t.Fatalf("delivery %d: %v", i, err)
		}
	}
	// Without a Message-ID the same bytes still count as the same message.
	noID := mail(map[string]string{"From": "jane@customer.test", "To": "support@example.com", "Subject": "no id", "Date": "Tue, 24 Nov 2026 10:00:00 +0000"}, "y\n")
	for i := 0; i < 2; i++ {
		if err := sendSMTP(d.smtpAddr, "jane@customer.test", []string{"support@example.com"}, noID); err != nil {
			t.Fatal(err)
		}
	}
	list := d.tickets()
	if len(list) != 2 {
		t.Fatalf("%d tickets, want 2", len(list))
	}
	for _, s := range list {
		if n := len(d.ticket(s.ID).Comments); n != 1 {
			t.Errorf("ticket %d has %d comments, want 1", s.ID, n)
		}
	}
}

func TestT4_ReplyReopensAndAgentOpens(t *testing.T) {
	d := startDaemon(t, options{})
	send := func(from string, env []string, subject, id string) {
		t.Helper()
		msg := mail(map[string]string{"From": from, "To": "jane@customer.test, support@example.com", "Subject": subject, "Message-ID": id}, "x\n")
		if err := sendSMTP(d.smtpAddr, from, env, msg); err != nil {
			t.Fatal(err)
		}
	}
	send("jane@customer.test", []string{"support@example.com"}, "help", "<t4-1@customer.test>")
	reply := d.ticket(1).ReplyAddress
	send("jane@customer.test", []string{reply}, "more", "<t4-2@customer.test>")
	if st := d.ticket(1).Status; st != "new" {
		t.Fatalf("requester reply turned a new ticket %q", st)
	}
	send("alice@example.com", []string{reply}, "answer", "<t4-3@example.com>")
	if st := d.ticket(1).Status; st != "open" {
		t.Fatalf("first agent comment left the ticket %q, want open", st)
	}
}

// TestLMTPPerRecipientStatus speaks LMTP with go-smtp's client: each accepted RCPT gets
// its own final status, an unknown one is refused at RCPT.
func TestLMTPPerRecipientStatus(t *testing.T) {
	for _, unix := range []bool{false, true} {
		t.Run(fmt.Sprintf("unix=%v", unix), func(t *testing.T) {
			d := startDaemon(t, options{lmtpUnix: unix})
			network := "tcp"
			if unix {
				network = "unix"
			}
			conn, err := net.Dial(network, d.lmtpAddr)
			if err != nil {
				t.Fatal(err)
			}
			c := gosmtp.NewClientLMTP(conn)
			defer c.Close()
			if err := c.Hello("postfix.test"); err != nil {
				t.Fatal(err)
			}
			if err := c.Mail("jane@customer.test", nil); err != nil {
				t.Fatal(err)
			}
			for _, rc := range []string{"support@example.com", "billing@example.com"} {
				if err := c.Rcpt(rc, nil); err != nil {
					t.Fatalf("RCPT %s: %v", rc, err)
				}
			}
			err = c.Rcpt("nobody@example.com", nil)
			var se *gosmtp.SMTPError
			if !errors.As(err, &se) || se.Code != 550 || se.EnhancedCode != (gosmtp.EnhancedCode{5, 1, 1}) {
				t.Fatalf("unknown RCPT: %v, want 550 5.1.1", err)
			}
			w, err := c.Data()
			if err != nil {
				t.Fatal(err)
			}
			w.Write(mail(map[string]string{"From": "jane@customer.test", "To": "support@example.com", "Subject": "lmtp", "Message-ID": "<lmtp@customer.test>"}, "via lmtp\n"))
			resps, err := w.CloseWithLMTPResponse()
			if err != nil {
				t.Fatalf("LMTP DATA: %v", err)
			}
			if len(resps) != 2 || resps["support@example.com"] == nil || resps["billing@example.com"] == nil {
				t.Fatalf("per-recipient responses = %v", resps)
			}
			// A non-2xx status would have come back as an LMTPDataError above.
			for rc, r := range resps {
				if r.StatusText == "" {
					t.Errorf("%s: empty status", rc)
				}
			}
			c.Quit()
			if list := d.tickets(); len(list) != 1 || len(d.ticket(1).Comments) != 1 {
				t.Fatalf("LMTP delivery made %d tickets", len(list))
			}
		})
	}
}

func TestRefusalsHaveEnhancedCodes(t *testing.T) {
	d := startDaemon(t, options{extraYAML: "limits: {max_message_bytes: 2KiB, max_recipients: 2, max_sessions: 4}"})
	small := mail(map[string]string{"From": "jane@customer.test", "To": "support@example.com", "Subject": "x"}, "x\n")
	// One address may hold only half of max_sessions (two here), and a session the client has
	// closed counts until the server has seen it go: each send waits for the last to be gone.
	sessionsGone := func() {
		t.Helper()
		waitFor(t, "earlier sessions to end", 10*time.Second, func() bool {
			_, body := d.api("GET", "/metrics", nil, false)
			return strings.Contains(string(body), "\ndeskgate_sessions 0\n")
		})
	}

	sessionsGone()
	err := sendSMTP(d.smtpAddr, "jane@customer.test", []string{"someone@else.test"}, small)
	if code, msg := smtpCode(err); code != 550 || !strings.Contains(msg, "5.1.1") {
		t.Errorf("foreign recipient: %v, want 550 5.1.1", err)
	}
	big := mail(map[string]string{"From": "jane@customer.test", "To": "support@example.com", "Subject": "big"}, strings.Repeat("0123456789abcdef\n", 200))
	sessionsGone()
	err = sendSMTP(d.smtpAddr, "jane@customer.test", []string{"support@example.com"}, big)
	if code, msg := smtpCode(err); code != 552 || !strings.Contains(msg, "5.3.4") {
		t.Errorf("oversized message: %v, want 552 5.3.4", err)
	}
	sessionsGone()
	err = sendSMTP(d.smtpAddr, "jane@customer.test", []string{"support@example.com", "billing@example.com", "support+x@example.com"}, small)
	if code, msg := smtpCode(err); code != 452 || !strings.Contains(msg, "4.5.3") {
		t.Errorf("too many recipients: %v, want 452 4.5.3", err)
	}
	noFrom := []byte("To: support@example.com\r\nSubject: anonymous\r\n\r\nwho am I\r\n")
	sessionsGone()
	err = sendSMTP(d.smtpAddr, "", []string{"support@example.com"}, noFrom)
	if code, msg := smtpCode(err); code != 550 || !strings.Contains(msg, "5.6.0") {
		t.Errorf("no From and empty envelope sender: %v, want 550 5.6.0", err)
	}
	// A missing From with a real envelope sender is best effort: the sender is the requester.
	sessionsGone()
	if err := sendSMTP(d.smtpAddr, "jane@customer.test", []string{"support@example.com"}, noFrom); err != nil {
		t.Errorf("no From but an envelope sender: %v", err)
	}

	// max_sessions: four sessions open, the fifth is told 421 4.7.0 at once. Earlier
	// sessions must be gone first, or they would count. Each comes from its own address,
	// since one address may hold only half of max_sessions.
	sessionsGone()
	var conns []net.Conn
	from := func(i int) *net.Dialer {
		return &net.Dialer{LocalAddr: &net.TCPAddr{IP: net.IPv4(127, 0, 0, byte(2+i))}}
	}
	for i := 0; i < 4; i++ {
		c, err := from(i).Dial("tcp", d.smtpAddr)
		if err != nil {
			t.Fatal(err)
		}
		conns = append(conns, c)
		tp := textproto.NewConn(c)
		if _, _, err := tp.ReadResponse(220); err != nil {
			t.Fatalf("session %d: %v", i, err)
		}
	}
	c, err := from(4).Dial("tcp", d.smtpAddr)
	if err != nil {
		t.Fatal(err)
	}
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	code, msg, err := textproto.NewConn(c).ReadResponse(220)
	if code != 421 || !strings.Contains(msg, "4.7.0") || strings.Contains(msg, "your address") {
		t.Errorf("session over max_sessions: %d %q %v, want 421 4.7.0", code, msg, err)
	}
	c.Close()
	for _, c := range conns {
		c.Close()
	}
	// Once they are gone, new sessions are served again.
	waitFor(t, "sessions to free up", 5*time.Second, func() bool {
		return sendSMTP(d.smtpAddr, "jane@customer.test", []string{"support@example.com"}, small) == nil
	})
	if !strings.Contains(d.logs.String(), "msg=refused") {
		t.Errorf("refusals were not logged:\n%s", d.logs.String())
	}
}

func TestSTARTTLS(t *testing.T) {
	dir := t.TempDir()
	certFile, keyFile := selfSignedCert(t, dir)
	d := startDaemon(t, options{extraYAML: fmt.Sprintf("tls: {cert_file: %s, key_file: %s}", certFile, keyFile)})
	c, err := smtp.Dial(d.smtpAddr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if ok, _ := c.Extension("STARTTLS"); !ok {
		t.Fatal("STARTTLS not offered with tls set")
	}
	if err := c.StartTLS(&tls.Config{InsecureSkipVerify: true, ServerName: "mx.deskgate.test"}); err != nil {
		t.Fatal(err)
	}
	if st, ok := c.TLSConnectionState(); !ok || !st.HandshakeComplete {
		t.Fatal("no TLS after STARTTLS")
	}
	c.Mail("jane@customer.test")
	c.Rcpt("support@example.com")
	w, err := c.Data()
	if err != nil {
		t.Fatal(err)
	}
	w.Write(mail(map[string]string{"From": "jane@customer.test", "To": "support@example.com", "Subject": "over tls"}, "secret\n"))
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	c.Quit()
	if list := d.tickets(); len(list) != 1 || list[0].Subject != "over tls" {
		t.Fatalf("tickets = %+v", list)
	}
}

func selfSignedCert(t *testing.T, dir string) (string, string) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "mx.deskgate.test"},
		DNSNames: []string{"mx.deskgate.test"}, NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour)}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, _ := x509.MarshalPKCS8PrivateKey(key)
	certFile, keyFile := filepath.Join(dir, "tls.crt"), filepath.Join(dir, "tls.key")
	os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600)
	os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER}), 0o600)
	return certFile, keyFile
}

func TestMIMEAttachmentsAndHTMLOverSMTP(t *testing.T) {
	d := startDaemon(t, options{})
	raw, err := os.ReadFile("../gateway/mailparse/testdata/attachment.eml")
	if err != nil {
		t.Fatal(err)
	}
	if err := sendSMTP(d.smtpAddr, "jane@customer.test", []string{"support@example.com"}, raw); err != nil {
		t.Fatal(err)
	}
	c := d.ticket(1).Comments[0]
	if strings.TrimSpace(c.Body) != "Café is broken." || len(c.Attachments) != 1 || c.Attachments[0].Name != "invoice.pdf" || c.Attachments[0].Size != 9 {
		t.Fatalf("comment = %+v", c)
	}
}

func TestHostileMailNeverCrashesTheDaemon(t *testing.T) {
	d := startDaemon(t, options{})
	inputs := [][]byte{
		[]byte("From: jane@customer.test\r\nContent-Type: multipart/mixed; boundary=\"\r\n\r\n--\r\n--\r\n"),
		[]byte("From: \xff\xfe <\x00@\x00>\r\nSubject: \xc3\r\n\r\n\xff"),
		[]byte(" leading space\r\nFrom: jane@customer.test\r\n\r\nbody"),
		append([]byte("From: jane@customer.test\r\nContent-Type: multipart/mixed; boundary=b\r\n\r\n"), []byte(strings.Repeat("--b\r\nContent-Type: multipart/mixed; boundary=b\r\n\r\n", 300))...),
	}
	for i, in := range inputs {
		err := sendSMTP(d.smtpAddr, "jane@customer.test", []string{"support@example.com"}, in)
		if code, _ := smtpCode(err); err != nil && code/100 != 5 {
			t.Errorf("input %d: %v (want acceptance or a clear 5xx)", i, err)
		}
	}
	var wg sync.WaitGroup
	wg.Wait()
	if code, _ := d.api("GET", "/healthz", nil, false); code != 200 {
		t.Fatalf("daemon unhealthy after hostile mail")
	}
	if strings.Contains(d.logs.String(), "panic") {
		t.Fatalf("a panic was logged:\n%s", d.logs.String())
	}
}
