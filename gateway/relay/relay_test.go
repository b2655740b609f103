package relay

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/pem"
	"errors"
	"io"
	"log/slog"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emersion/go-msgauth/dkim"
	"github.com/emersion/go-sasl"
	"github.com/emersion/go-smtp"

	"github.com/deskgate/deskgate/config"
	"github.com/deskgate/deskgate/gateway/model"
	"github.com/deskgate/deskgate/gateway/rules"
	"github.com/deskgate/deskgate/internal/storetest"
	"github.com/deskgate/deskgate/store"
)

// upstreamServer is a go-smtp server standing in for the relay.
type upstreamServer struct {
	mu       sync.Mutex
	sessions int
	helo     []string
	authed   []string
	got      []received
	refuse   map[string]int // recipient -> SMTP code to refuse it with
	needAuth bool
	onData   func(received) // called as each message arrives, before the reply
	dsn      bool           // offer DSN (RFC 3461)
	orcpts   []string       // the ORCPT of each RCPT, "" for none
	utf8     bool           // offer SMTPUTF8 (RFC 6531)
	mails    []bool         // each MAIL: whether it said SMTPUTF8
	types    []string       // the ORCPT address type of each RCPT
}

type received struct {
	from  string
	rcpts []string
	data  []byte
}

type upSession struct {
	s     *upstreamServer
	cur   received
	authd bool
}

func (u *upstreamServer) NewSession(c *smtp.Conn) (smtp.Session, error) {
	u.mu.Lock()
	u.sessions++
	u.helo = append(u.helo, c.Hostname())
	u.mu.Unlock()
	return &upSession{s: u}, nil
}

func (s *upSession) AuthMechanisms() []string { return []string{sasl.Plain} }
func (s *upSession) Auth(mech string) (sasl.Server, error) {
	return sasl.NewPlainServer(func(identity, user, pass string) error {
		if user != "deskgate" || pass != "s3cret" {
			return errors.New("bad credentials")
		}
		s.authd = true
		s.s.mu.Lock()
		s.s.authed = append(s.s.authed, user)
		s.s.mu.Unlock()
		return nil
	}), nil
}
func (s *upSession) Mail(from string, opts *smtp.MailOptions) error {
	if s.s.needAuth && !s.authd {
		return smtp.ErrAuthRequired
	}
	s.s.mu.Lock()
	s.s.mails = append(s.s.mails, opts.UTF8)
	s.s.mu.Unlock()
	s.cur = received{from: from}
	return nil
}
func (s *upSession) Rcpt(to string, opts *smtp.RcptOptions) error {
	s.s.mu.Lock()
	s.s.orcpts = append(s.s.orcpts, opts.OriginalRecipient)
	s.s.types = append(s.s.types, string(opts.OriginalRecipientType))
	s.s.mu.Unlock()
	if code := s.s.refuse[to]; code != 0 {
		return &smtp.SMTPError{Code: code, EnhancedCode: smtp.EnhancedCode{code / 100, 1, 1}, Message: "no thanks"}
	}
	s.cur.rcpts = append(s.cur.rcpts, to)
	return nil
}
func (s *upSession) Data(r io.Reader) error {
	b, _ := io.ReadAll(r)
	s.cur.data = b
	s.s.mu.Lock()
	s.s.got = append(s.s.got, s.cur)
	hook := s.s.onData
	s.s.mu.Unlock()
	if hook != nil {
		hook(s.cur)
	}
	return nil
}
func (s *upSession) Reset()        {}
func (s *upSession) Logout() error { return nil }

func serve(t *testing.T, u *upstreamServer) string {
	t.Helper()
	srv := smtp.NewServer(u)
	srv.Domain = "upstream.test"
	srv.AllowInsecureAuth = true
	srv.EnableDSN = u.dsn
	srv.EnableSMTPUTF8 = u.utf8
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go srv.Serve(l)
	t.Cleanup(func() { srv.Close() })
	return l.Addr().String()
}

func testConfig(t *testing.T, addr string, mod func(*config.Config)) *config.Config {
	cfg := &config.Config{Hostname: "mx.deskgate.test",
		Upstream: config.Upstream{Address: addr, TLS: "none", MaxConnections: 2, RetryMin: time.Second, RetryMax: 4 * time.Second,
			MaxQueueLifetime: time.Hour, Timeout: 5 * time.Second}}
	if mod != nil {
		mod(cfg)
	}
	return cfg
}

// queueOne stores a delivery of a plain message to rcpts and returns its id.
func queueOne(t *testing.T, st *store.Store, rcpts ...string) uint64 {
	t.Helper()
	return queueMsg(t, st, "From: Support <support@example.com>\r\nTo: a@customer.test\r\nSubject: hello\r\nDate: Tue, 24 Nov 2026 10:00:00 +0000\r\nMessage-Id: <x@y>\r\n\r\nbody\r\n", rcpts...)
}

func TestMain(m *testing.M) { storetest.Main(m) }

func newWorker(t *testing.T, cfg *config.Config) (*Worker, *store.Store) {
	st := storetest.Open(t, t.TempDir())
	return New(cfg, st, slog.New(slog.NewTextHandler(io.Discard, nil)), nil), st
}

func delivery(t *testing.T, st *store.Store, id uint64) *store.Delivery {
	var d *store.Delivery
	st.View(func(tx *store.Tx) error {
		d, _ = tx.Delivery(id)
		return nil
	})
	return d
}

func TestPerRecipientResultsAndSessionReuse(t *testing.T) {
	up := &upstreamServer{refuse: map[string]int{"gone@customer.test": 550, "busy@customer.test": 450}}
	w, st := newWorker(t, testConfig(t, serve(t, up), nil))
	id := queueOne(t, st, "a@customer.test", "gone@customer.test", "busy@customer.test")
	id2 := queueOne(t, st, "b@customer.test")
	w.RunOnce(context.Background())
	d := delivery(t, st, id)
	states := map[string]string{}
	for _, r := range d.Recipients {
		states[r.Email] = string(r.State)
	}
	if states["a@customer.test"] != "sent" || states["gone@customer.test"] != "failed" || states["busy@customer.test"] != "queued" {
		t.Fatalf("one refused recipient must not fail the others: %v", states)
	}
	if d.State != "queued" || !d.NextTry.After(time.Now()) {
		t.Fatalf("delivery with a deferred recipient: state %s next %v", d.State, d.NextTry)
	}
	if delivery(t, st, id2).State != "sent" {
		t.Fatal("second delivery not sent")
	}
	up.mu.Lock()
	defer up.mu.Unlock()
	if up.helo[0] != "mx.deskgate.test" {
		t.Errorf("EHLO %q", up.helo[0])
	}
	if len(up.got) != 2 || up.got[0].from != "support+bounce-1-x@example.com" {
		t.Fatalf("upstream got %+v", up.got)
	}
	if up.sessions > 2 {
		t.Errorf("%d sessions for 2 deliveries with max_connections 2", up.sessions)
	}
}

// A ticket deleted while one of its deliveries is being sent: the pass still records the
// other deliveries it sent, so that none of them is sent again.
func TestDeliveryDeletedWhileSendingSpoilsNothing(t *testing.T) {
	up := &upstreamServer{}
	w, st := newWorker(t, testConfig(t, serve(t, up), func(c *config.Config) { c.Upstream.MaxConnections = 1 }))
	doomed := queueOne(t, st, "a@customer.test")
	kept := queueOne(t, st, "b@customer.test")
	var ticket uint64
	// As the desk queues it: the comment it tells of names it among who was notified.
	st.Update(context.Background(), func(tx *store.Tx) error {
		d, _ := tx.Delivery(doomed)
		ticket = d.TicketID
		tk, err := tx.Ticket(ticket)
		if err != nil {
			return err
		}
		return tx.AddComment(tk, &model.Comment{Author: "a@customer.test", Notified: []model.Notified{{Email: "a@customer.test", Delivery: doomed}}})
	})
	var once sync.Once
	up.onData = func(received) {
		once.Do(func() {
			err := st.Update(context.Background(), func(tx *store.Tx) error { _, err := tx.DeleteTicket(ticket); return err })
			if err != nil {
				t.Error(err)
			}
		})
	}
	w.RunOnce(context.Background())
	if d := delivery(t, st, kept); d == nil || d.State != "sent" {
		t.Fatalf("the other delivery of the pass after a delete mid-send: %+v", d)
	}
	if delivery(t, st, doomed) != nil {
		t.Error("the deleted delivery came back")
	}
	w.RunOnce(context.Background())
	up.mu.Lock()
	defer up.mu.Unlock()
	if len(up.got) != 2 {
		t.Fatalf("upstream got %d messages, want 2 (each once)", len(up.got))
	}
}

func TestSessionsAreReusedAcrossPasses(t *testing.T) {
	up := &upstreamServer{}
	w, st := newWorker(t, testConfig(t, serve(t, up), func(c *config.Config) { c.Upstream.MaxConnections = 1 }))
	for i := 0; i < 3; i++ {
		queueOne(t, st, "a@customer.test")
		w.RunOnce(context.Background())
	}
	up.mu.Lock()
	defer up.mu.Unlock()
	if len(up.got) != 3 || up.sessions != 1 {
		t.Fatalf("%d messages over %d sessions, want 3 over 1", len(up.got), up.sessions)
	}
}

func TestAuthPlainWithPasswordFile(t *testing.T) {
	up := &upstreamServer{needAuth: true}
	pw := filepath.Join(t.TempDir(), "pass")
	os.WriteFile(pw, []byte("s3cret\n"), 0o600)
	w, st := newWorker(t, testConfig(t, serve(t, up), func(c *config.Config) {
		c.Upstream.Username, c.Upstream.PasswordFile = "deskgate", pw
	}))
	id := queueOne(t, st, "a@customer.test")
	w.RunOnce(context.Background())
	if d := delivery(t, st, id); d.State != "sent" || len(up.authed) != 1 {
		t.Fatalf("AUTH PLAIN: state %s, authed %v, last reply %q", d.State, up.authed, d.LastReply)
	}
}

func TestSTARTTLSRequiredIsNeverSkipped(t *testing.T) {
	up := &upstreamServer{}
	w, st := newWorker(t, testConfig(t, serve(t, up), func(c *config.Config) { c.Upstream.TLS = "starttls" }))
	id := queueOne(t, st, "a@customer.test")
	w.RunOnce(context.Background())
	d := delivery(t, st, id)
	if d.State != "queued" || !strings.Contains(d.LastReply, "does not offer STARTTLS") || len(up.got) != 0 {
		t.Fatalf("sent without the required TLS: state %s reply %q got %d", d.State, d.LastReply, len(up.got))
	}
}

func TestBackoffAndQueueLifetime(t *testing.T) {
	cfg := testConfig(t, "127.0.0.1:1", nil)
	cfg.Upstream.RetryMin, cfg.Upstream.RetryMax = time.Minute, 10*time.Minute
	for n, want := range map[int]time.Duration{1: time.Minute, 2: 2 * time.Minute, 4: 8 * time.Minute, 5: 10 * time.Minute, 30: 10 * time.Minute} {
		if got := rules.Backoff(n, cfg.Upstream.RetryMin, cfg.Upstream.RetryMax); got != want {
			t.Errorf("backoff(%d) = %s, want %s", n, got, want)
		}
	}
	// An unreachable upstream past the queue lifetime fails the recipient.
	addr := freeAddr(t)
	w, st := newWorker(t, testConfig(t, addr, nil))
	id := queueOne(t, st, "a@customer.test")
	w.Now = func() time.Time { return time.Now().Add(2 * time.Hour) }
	w.RunOnce(context.Background())
	d := delivery(t, st, id)
	if d.State != "failed" || !strings.Contains(d.Recipients[0].Reply, "max_queue_lifetime") {
		t.Fatalf("expired delivery: %s %q", d.State, d.Recipients[0].Reply)
	}
}

func freeAddr(t *testing.T) string {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

func TestDKIMEd25519SignatureVerifies(t *testing.T) {
	pub, priv, _ := ed25519.GenerateKey(rand.Reader)
	der, _ := x509.MarshalPKCS8PrivateKey(priv)
	file := filepath.Join(t.TempDir(), "ed.key")
	os.WriteFile(file, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), 0o600)
	s, err := newSigner(config.DKIM{Domain: "example.com", Selector: "ed", PrivateKeyFile: file})
	if err != nil {
		t.Fatal(err)
	}
	msg := []byte("From: Support <support@example.com>\r\nTo: a@customer.test\r\nSubject: hi\r\nDate: Tue, 24 Nov 2026 10:00:00 +0000\r\nMessage-Id: <x@y>\r\n\r\nbody\r\n")
	signed, err := s.sign(msg)
	if err != nil {
		t.Fatal(err)
	}
	txt := "v=DKIM1; k=ed25519; p=" + base64.StdEncoding.EncodeToString(pub)
	vs, err := dkim.VerifyWithOptions(bytes.NewReader(signed), &dkim.VerifyOptions{LookupTXT: func(string) ([]string, error) { return []string{txt}, nil }})
	if err != nil || len(vs) != 1 || vs[0].Err != nil {
		t.Fatalf("Ed25519 DKIM: %v %+v", err, vs)
	}
	if !bytes.Contains(signed, []byte("c=relaxed/relaxed")) {
		t.Error("not relaxed/relaxed")
	}
}

func TestImplicitTLSUpstream(t *testing.T) {
	up := &upstreamServer{}
	dir := t.TempDir()
	certFile, keyFile, caFile := selfSigned(t, dir)
	cert, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		t.Fatal(err)
	}
	srv := smtp.NewServer(up)
	srv.Domain = "upstream.test"
	l, err := tls.Listen("tcp", "127.0.0.1:0", &tls.Config{Certificates: []tls.Certificate{cert}})
	if err != nil {
		t.Fatal(err)
	}
	go srv.Serve(l)
	t.Cleanup(func() { srv.Close() })
	w, st := newWorker(t, testConfig(t, l.Addr().String(), func(c *config.Config) { c.Upstream.TLS, c.Upstream.CAFile = "implicit", caFile }))
	id := queueOne(t, st, "a@customer.test")
	w.RunOnce(context.Background())
	if d := delivery(t, st, id); d.State != "sent" {
		t.Fatalf("implicit TLS: %s %q", d.State, d.LastReply)
	}
	// Without the CA the certificate is refused, and nothing is sent in the clear.
	w2, st2 := newWorker(t, testConfig(t, l.Addr().String(), func(c *config.Config) { c.Upstream.TLS = "implicit" }))
	id2 := queueOne(t, st2, "a@customer.test")
	w2.RunOnce(context.Background())
	if d := delivery(t, st2, id2); d.State != "queued" || !strings.Contains(d.LastReply, "certificate") {
		t.Fatalf("untrusted certificate: %s %q", d.State, d.LastReply)
	}
}

func selfSigned(t *testing.T, dir string) (certFile, keyFile, caFile string) {
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "127.0.0.1"},
		IPAddresses: []net.IP{net.ParseIP("127.0.0.1")}, NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	kder, _ := x509.MarshalPKCS8PrivateKey(key)
	certFile, keyFile = filepath.Join(dir, "c.pem"), filepath.Join(dir, "k.pem")
	os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600)
	os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: kder}), 0o600)
	return certFile, keyFile, certFile
}

func TestPipelinedAllRecipientsRefusedSendsNothing(t *testing.T) {
	up := &upstreamServer{refuse: map[string]int{"x@customer.test": 550, "y@customer.test": 550}}
	w, st := newWorker(t, testConfig(t, serve(t, up), func(c *config.Config) { c.Upstream.MaxConnections = 1 }))
	id := queueOne(t, st, "x@customer.test", "y@customer.test")
	w.RunOnce(context.Background())
	if d := delivery(t, st, id); d.State != "failed" {
		t.Fatalf("state %s", d.State)
	}
	id2 := queueOne(t, st, "ok@customer.test")
	w.RunOnce(context.Background())
	up.mu.Lock()
	defer up.mu.Unlock()
	if d := delivery(t, st, id2); d.State != "sent" || len(up.got) != 1 || up.sessions != 1 {
		t.Fatalf("after a refused transaction: state %s, %d messages, %d sessions", d.State, len(up.got), up.sessions)
	}
}

// A copy that a mail reader moved to cur/ before deskgate could record it is not written again
// when the delivery is tried once more.
func TestMaildirRetryFindsTheCopyInCur(t *testing.T) {
	dir := t.TempDir()
	md := &Maildir{Dir: dir, Hostname: "mx.test"}
	e := Envelope{ID: 7, From: "b@x", Rcpts: []string{"joe@customer.test"}, Msg: []byte("Subject: x\r\n\r\nx\r\n")}
	if errs := md.Deliver(e); errs[0] != nil {
		t.Fatal(errs[0])
	}
	name := md.fileName(7, "joe@customer.test")
	if err := os.Rename(filepath.Join(dir, "new", name), filepath.Join(dir, "cur", name+":2,S")); err != nil {
		t.Fatal(err)
	}
	e.MaybeDone = true
	md.Deliver(e)
	if files, _ := os.ReadDir(filepath.Join(dir, "new")); len(files) != 0 {
		t.Errorf("the retry wrote the copy again: %d files in new/", len(files))
	}
}

// T6 lets a DSN fail only a recipient it names: when the upstream offers DSN, each RCPT says
// in ORCPT which address deskgate sent to, so that a DSN from behind a forward (whose
// Final-Recipient is the forwarded-to address) still names it in Original-Recipient.
func TestORCPTWhenTheUpstreamOffersDSN(t *testing.T) {
	for _, offer := range []bool{true, false} {
		up := &upstreamServer{dsn: offer}
		w, st := newWorker(t, testConfig(t, serve(t, up), nil))
		id := queueOne(t, st, "a+b=c@customer.test", "joe@customer.test")
		w.RunOnce(context.Background())
		if d := delivery(t, st, id); d.State != "sent" {
			t.Fatalf("DSN offered %v: delivery %s", offer, d.State)
		}
		up.mu.Lock()
		got := strings.Join(up.orcpts, " ")
		up.mu.Unlock()
		want := "a+b=c@customer.test joe@customer.test"
		if !offer {
			want = " "
		}
		if got != want {
			t.Errorf("DSN offered %v: ORCPTs %q, want %q", offer, got, want)
		}
	}
}

// The Maildir's folders are made once, and made again when one is removed under a running
// relay: the delivery that finds it gone is tried again and then written.
func TestMaildirMakesItsFoldersAgainWhenRemoved(t *testing.T) {
	dir := t.TempDir()
	m := &Maildir{Dir: dir, Hostname: "mx.test"}
	msg := []byte("Subject: x\r\n\r\nhi\r\n")
	if errs := m.Deliver(Envelope{ID: 1, From: "b@example.com", Rcpts: []string{"jane@customer.test"}, Msg: msg}); errs[0] != nil {
		t.Fatal(errs[0])
	}
	if err := os.RemoveAll(dir); err != nil {
		t.Fatal(err)
	}
	first := m.Deliver(Envelope{ID: 2, From: "b@example.com", Rcpts: []string{"jane@customer.test"}, Msg: msg})
	if first[0] == nil {
		t.Fatal("a delivery into a removed Maildir succeeded")
	}
	if errs := m.Deliver(Envelope{ID: 2, MaybeDone: true, From: "b@example.com", Rcpts: []string{"jane@customer.test"}, Msg: msg}); errs[0] != nil {
		t.Fatalf("the retry did not make the folders again: %v", errs[0])
	}
	if entries, _ := os.ReadDir(filepath.Join(dir, "new")); len(entries) != 1 {
		t.Fatalf("new/ holds %d files, want the retried one", len(entries))
	}
}
