package relay

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/textproto"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/emersion/go-sasl"
	"github.com/emersion/go-smtp"

	"github.com/deskgate/deskgate/config"
	"github.com/deskgate/deskgate/gateway/addr"
)

// upstream is the Deliverer that speaks SMTP to the configured relay. It keeps the sessions
// it is not using for the next deliveries, up to upstream.max_connections.
type upstream struct {
	addr      string
	host      string
	mode      string // starttls, implicit, none
	hostname  string // our EHLO name
	username  string
	password  string
	timeout   time.Duration
	tlsConfig *tls.Config
	maxConns  int
	sign      *signer // nil: no DKIM
	now       func() time.Time
	// err is why the config's upstream cannot be used (an unreadable password or CA file):
	// every delivery fails with it, and is tried again, until a reload mends it.
	err error

	mu     sync.Mutex
	idle   []pooled
	closed bool // replaced by a new config: sessions given back are ended, not kept
}

type pooled struct {
	c    *session
	used time.Time
}

// idleTimeout is how long an unused upstream session is kept open for reuse.
const idleTimeout = 30 * time.Second

func newUpstream(cfg *config.Config, sign *signer, now func() time.Time) *upstream {
	u := &upstream{addr: cfg.Upstream.Address, mode: cfg.Upstream.TLS, hostname: cfg.Hostname,
		username: cfg.Upstream.Username, timeout: cfg.Upstream.Timeout, maxConns: cfg.Upstream.MaxConnections,
		sign: sign, now: now}
	u.err = u.load(cfg)
	return u
}

// load reads what the upstream's config names beyond itself: the host to verify, the password
// and CA files.
func (u *upstream) load(cfg *config.Config) error {
	host, _, err := net.SplitHostPort(cfg.Upstream.Address)
	if err != nil {
		return fmt.Errorf("upstream.address: %w", err)
	}
	u.host = host
	if cfg.Upstream.PasswordFile != "" {
		b, err := os.ReadFile(cfg.Upstream.PasswordFile)
		if err != nil {
			return fmt.Errorf("upstream.password_file: %w", err)
		}
		u.password = strings.TrimRight(string(b), "\r\n")
	}
	u.tlsConfig = &tls.Config{ServerName: host, MinVersion: tls.VersionTLS12}
	if cfg.Upstream.CAFile != "" {
		pool, err := x509.SystemCertPool()
		if err != nil {
			pool = x509.NewCertPool()
		}
		b, err := os.ReadFile(cfg.Upstream.CAFile)
		if err != nil {
			return fmt.Errorf("upstream.ca_file: %w", err)
		}
		pool.AppendCertsFromPEM(b)
		u.tlsConfig.RootCAs = pool
	}
	return nil
}

// Deliver sends one delivery in one transaction over a session of its own.
func (u *upstream) Deliver(e Envelope) []error { return u.DeliverChain([]Envelope{e})[0] }

// DeliverChain hands es over one session, one transaction after another. What is sent
// depends on the session (SMTPUTF8 or a downgrade: plan), and the signature must cover the
// header as sent, so signing comes after the plan. With PIPELINING (and no CHUNKING, whose
// BDAT already makes a transaction one wait), the end of each message leaves with the next
// transaction's MAIL, RCPTs and DATA, as RFC 2920 allows message content to begin a group of
// commands: n messages wait for the upstream n+1 times instead of 2n. Once the session is
// lost, the deliveries not yet tried are left for the next pass (errChainCut).
func (u *upstream) DeliverChain(es []Envelope) [][]error {
	out := make([][]error, len(es))
	err := u.err
	var c *session
	if err == nil {
		c, err = u.session()
	}
	if err != nil {
		for i, e := range es {
			out[i] = failAll(len(e.Rcpts), err)
		}
		return out
	}
	trs, of := u.prepare(c, es, out)
	var results [][]error
	usable := true
	if c.pipelining && !c.chunking && len(trs) > 1 {
		results, usable = c.chain(trs)
	} else {
		for _, tr := range trs {
			errs := failAll(len(tr.rcpts), errChainCut)
			if usable {
				errs, usable = c.transact(tr.from, tr.rcpts, tr.msg, tr.utf8)
			}
			results = append(results, errs)
		}
	}
	for k, i := range of {
		for j, r := range trs[k].index {
			out[i][r] = results[k][j]
		}
	}
	if usable {
		u.release(c)
	} else {
		c.Close()
	}
	return out
}

// prepare plans and signs each of es for session c. out gets each envelope's recipients'
// errors so far (those the session cannot reach, a failed signature); the transactions to
// send are returned with the index in es of each.
func (u *upstream) prepare(c *session, es []Envelope, out [][]error) ([]transaction, []int) {
	var trs []transaction
	var of []int
	for i, e := range es {
		tr, errs := plan(e.From, e.Rcpts, e.Msg, c.smtputf8, u.addr)
		out[i] = errs
		if len(tr.rcpts) == 0 {
			continue
		}
		signed, err := u.sign.sign(tr.msg)
		if err != nil {
			for _, r := range tr.index {
				errs[r] = fmt.Errorf("DKIM signing failed: %w", err)
			}
			continue
		}
		tr.msg = signed
		trs = append(trs, tr)
		of = append(of, i)
	}
	return trs, of
}

// transaction is what one SMTP transaction sends of a delivery.
type transaction struct {
	from  string
	rcpts []string // as sent, in the order of index
	index []int    // where each is among the delivery's recipients
	msg   []byte
	utf8  bool // SMTPUTF8 on MAIL
}

// plan is how a delivery from from to rcpts travels over a session whose upstream offers
// SMTPUTF8 or not, and the recipients it cannot reach there. A delivery in seven bits goes
// as it always did. One that needs UTF-8 (needsUTF8) goes with SMTPUTF8 when the upstream
// offers it; otherwise, as Postfix's SMTP client does, each address goes in its ASCII form
// (an IDN domain in A-labels) with the header downgraded to seven bits (Downgrade7Bit),
// and an address with a non-ASCII local part, which has no ASCII form, fails at once and for
// good (5.6.7) rather than in an 8-bit transaction that the upstream would refuse.
func plan(from string, rcpts []string, msg []byte, smtputf8 bool, upstream string) (transaction, []error) {
	errs := make([]error, len(rcpts))
	tr := transaction{from: from, msg: msg}
	need := needsUTF8(from, rcpts, msg)
	if !need || smtputf8 {
		tr.utf8 = need
		tr.rcpts = rcpts
		for i := range rcpts {
			tr.index = append(tr.index, i)
		}
		return tr, errs
	}
	sender, ok := addr.ASCIIForm(from)
	if !ok {
		for i := range errs {
			errs[i] = noSMTPUTF8(upstream, "the envelope sender "+from)
		}
		return transaction{}, errs
	}
	tr.from = sender
	for i, r := range rcpts {
		ascii, ok := addr.ASCIIForm(r)
		if !ok {
			errs[i] = noSMTPUTF8(upstream, r)
			continue
		}
		tr.rcpts = append(tr.rcpts, ascii)
		tr.index = append(tr.index, i)
	}
	tr.msg = Downgrade7Bit(msg)
	return tr, errs
}

// noSMTPUTF8 is the reply recorded for an address that only SMTPUTF8 can carry; 553 5.6.7
// is what RFC 6531 3.5 gives for it, and what a receiving server would have said.
func noSMTPUTF8(upstream, address string) error {
	return &smtp.SMTPError{Code: 553, EnhancedCode: smtp.EnhancedCode{5, 6, 7},
		Message: fmt.Sprintf("the upstream %s does not offer SMTPUTF8, and %s cannot be written in ASCII", upstream, address)}
}

// Via is the upstream's address.
func (u *upstream) Via() string { return u.addr }

// Parallel is upstream.max_connections.
func (u *upstream) Parallel() int { return u.maxConns }

// Recover does nothing: a session does not outlive its process, and what a crash cut short
// is sent again.
func (u *upstream) Recover(*slog.Logger) {}

// session takes an idle session or opens one.
func (u *upstream) session() (*session, error) {
	u.mu.Lock()
	for len(u.idle) > 0 {
		p := u.idle[len(u.idle)-1]
		u.idle = u.idle[:len(u.idle)-1]
		u.mu.Unlock()
		// A session idle for a while may have been closed by the server.
		if u.now().Sub(p.used) < 5*time.Second || p.c.Noop() == nil {
			return p.c, nil
		}
		p.c.Close()
		u.mu.Lock()
	}
	u.mu.Unlock()
	return u.dial()
}

// release keeps a session that can carry another message for the next delivery, unless
// max_connections are idle already or a new config replaced this upstream.
func (u *upstream) release(c *session) {
	u.mu.Lock()
	defer u.mu.Unlock()
	if u.closed || len(u.idle) >= u.maxConns {
		go c.Quit()
		return
	}
	u.idle = append(u.idle, pooled{c: c, used: u.now()})
}

// CloseIdle ends with QUIT the sessions unused for older or longer.
func (u *upstream) CloseIdle(older time.Duration) {
	u.mu.Lock()
	var keep []pooled
	var close []pooled
	for _, p := range u.idle {
		if u.now().Sub(p.used) >= older {
			close = append(close, p)
		} else {
			keep = append(keep, p)
		}
	}
	u.idle = keep
	u.mu.Unlock()
	for _, p := range close {
		p.c.Quit()
	}
}

// Close drops the idle sessions at once and ends the ones in use when they are given back.
func (u *upstream) Close() {
	u.mu.Lock()
	defer u.mu.Unlock()
	u.closed = true
	for _, p := range u.idle {
		p.c.Close()
	}
	u.idle = nil
}

// dial opens a session ready for MAIL FROM: greeting, EHLO with our hostname, TLS as
// configured (STARTTLS is required in starttls mode: no silent fallback to plain text)
// and AUTH when a username is set.
func (u *upstream) dial() (*session, error) {
	conn, err := net.DialTimeout("tcp", u.addr, 30*time.Second)
	if err != nil {
		return nil, err
	}
	var c *smtp.Client
	var raw net.Conn
	switch u.mode {
	case "implicit":
		tc := tls.Client(conn, u.tlsConfig)
		tc.SetDeadline(time.Now().Add(u.timeout))
		if err := tc.Handshake(); err != nil {
			conn.Close()
			return nil, fmt.Errorf("TLS handshake with %s: %w", u.addr, err)
		}
		tc.SetDeadline(time.Time{})
		c, raw = smtp.NewClient(tc), tc
	case "starttls":
		tc, err := u.startTLS(conn)
		if err != nil {
			conn.Close()
			return nil, err
		}
		c, raw = smtp.NewClient(tc), tc.(*greetedConn).Conn
	default:
		c, raw = smtp.NewClient(conn), conn
	}
	c.CommandTimeout = u.timeout
	c.SubmissionTimeout = 2 * u.timeout
	if err := c.Hello(u.hostname); err != nil {
		c.Close()
		return nil, err
	}
	if u.username != "" {
		var auth sasl.Client
		switch {
		case c.SupportsAuth("PLAIN"):
			auth = sasl.NewPlainClient("", u.username, u.password)
		case c.SupportsAuth("LOGIN"):
			auth = sasl.NewLoginClient(u.username, u.password)
		default:
			c.Close()
			return nil, fmt.Errorf("%s offers neither AUTH PLAIN nor LOGIN", u.addr)
		}
		if err := c.Auth(auth); err != nil {
			c.Close()
			return nil, err
		}
	}
	return newSession(c, raw, u.timeout), nil
}

// startTLS does the plain-text part of a STARTTLS session itself, because go-smtp's
// client would send its first EHLO as "localhost" there; the TLS session then starts
// with a greeting line of our own so that go-smtp can take over.
func (u *upstream) startTLS(conn net.Conn) (net.Conn, error) {
	conn.SetDeadline(time.Now().Add(u.timeout))
	defer conn.SetDeadline(time.Time{})
	tp := textproto.NewConn(conn)
	if _, _, err := tp.ReadResponse(220); err != nil {
		return nil, smtpErr(err)
	}
	if err := tp.PrintfLine("EHLO %s", u.hostname); err != nil {
		return nil, err
	}
	_, msg, err := tp.ReadResponse(250)
	if err != nil {
		return nil, smtpErr(err)
	}
	offered := false
	for _, line := range strings.Split(msg, "\n") {
		if strings.EqualFold(strings.TrimSpace(line), "STARTTLS") {
			offered = true
		}
	}
	if !offered {
		tp.PrintfLine("QUIT")
		return nil, fmt.Errorf("%s does not offer STARTTLS, and upstream.tls is starttls: not sending in plain text", u.addr)
	}
	if err := tp.PrintfLine("STARTTLS"); err != nil {
		return nil, err
	}
	if _, _, err := tp.ReadResponse(220); err != nil {
		return nil, smtpErr(err)
	}
	tc := tls.Client(conn, u.tlsConfig)
	if err := tc.Handshake(); err != nil {
		return nil, fmt.Errorf("TLS handshake with %s: %w", u.addr, err)
	}
	return &greetedConn{Conn: tc, r: io.MultiReader(strings.NewReader("220 TLS session\r\n"), tc)}, nil
}

// greetedConn is a connection whose first line read is a made-up greeting.
type greetedConn struct {
	net.Conn
	r io.Reader
}

func (g *greetedConn) Read(p []byte) (int, error) { return g.r.Read(p) }

// smtpErr turns a textproto error into go-smtp's, so that its code is classified.
func smtpErr(err error) error {
	var tpe *textproto.Error
	if errors.As(err, &tpe) {
		return &smtp.SMTPError{Code: tpe.Code, Message: tpe.Msg}
	}
	return err
}

// isConnError reports whether err leaves the session unusable: a network error, or a
// 421 (the server is closing the connection).
func isConnError(err error) bool {
	var se *smtp.SMTPError
	if errors.As(err, &se) {
		return se.Code == 421
	}
	return err != nil
}
