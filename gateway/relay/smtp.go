package relay

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"net/textproto"
	"os"
	"strings"
	"time"

	"github.com/emersion/go-sasl"
	"github.com/emersion/go-smtp"

	"github.com/deskgate/deskgate/config"
)

// upstream speaks SMTP to the configured relay.
type upstream struct {
	addr      string
	host      string
	mode      string // starttls, implicit, none
	hostname  string // our EHLO name
	username  string
	password  string
	timeout   time.Duration
	tlsConfig *tls.Config
}

func newUpstream(cfg *config.Config) (*upstream, error) {
	host, _, err := net.SplitHostPort(cfg.Upstream.Address)
	if err != nil {
		return nil, fmt.Errorf("upstream.address: %w", err)
	}
	u := &upstream{addr: cfg.Upstream.Address, host: host, mode: cfg.Upstream.TLS, hostname: cfg.Hostname,
		username: cfg.Upstream.Username, timeout: cfg.Upstream.Timeout}
	if cfg.Upstream.PasswordFile != "" {
		b, err := os.ReadFile(cfg.Upstream.PasswordFile)
		if err != nil {
			return nil, fmt.Errorf("upstream.password_file: %w", err)
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
			return nil, fmt.Errorf("upstream.ca_file: %w", err)
		}
		pool.AppendCertsFromPEM(b)
		u.tlsConfig.RootCAs = pool
	}
	return u, nil
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
