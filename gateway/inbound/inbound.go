// Package inbound receives mail over SMTP and LMTP, and turns each accepted message into
// one durable ticket change before it answers 250.
package inbound

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log"
	"log/slog"
	"net"
	"os"
	"strings"
	"sync/atomic"
	"time"

	"github.com/emersion/go-smtp"

	"github.com/deskgate/deskgate/config"
	"github.com/deskgate/deskgate/gateway/addr"
	"github.com/deskgate/deskgate/gateway/desk"
)

// Server is the SMTP and LMTP front of deskgate.
type Server struct {
	cfg     atomic.Pointer[config.Config]
	desk    *desk.Service
	log     *slog.Logger
	now     func() time.Time
	limiter *sessionLimiter
	servers []*smtp.Server
	Stats   Stats
}

// Stats counts what the gateway did, for /metrics.
type Stats struct {
	Accepted, Duplicates, Refused, TempFailed atomic.Int64
}

// New makes a Server; Listen starts it.
func New(cfg *config.Config, svc *desk.Service, logger *slog.Logger) *Server {
	s := &Server{desk: svc, log: logger, now: time.Now}
	s.SetConfig(cfg)
	s.limiter = &sessionLimiter{max: func() int { return s.cfg.Load().Limits.MaxSessions }}
	return s
}

// SetConfig swaps in a reloaded config; sessions already open keep the one they began with.
// The desk service is reloaded by its owner.
func (s *Server) SetConfig(cfg *config.Config) {
	s.cfg.Store(cfg)
}

// ActiveSessions is the number of SMTP and LMTP sessions open now.
func (s *Server) ActiveSessions() int { return s.limiter.Active() }

// Listen opens the configured listeners and serves them until Shutdown.
func (s *Server) Listen() error {
	cfg := s.cfg.Load()
	var tlsConfig *tls.Config
	if cfg.TLS.Enabled() {
		cert, err := tls.LoadX509KeyPair(cfg.TLS.CertFile, cfg.TLS.KeyFile)
		if err != nil {
			return fmt.Errorf("tls: %w", err)
		}
		tlsConfig = &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
	}
	type endpoint struct {
		addr string
		lmtp bool
	}
	for _, ep := range []endpoint{{cfg.Listen.SMTP, false}, {cfg.Listen.LMTP, true}} {
		if ep.addr == "" {
			continue
		}
		l, err := listen(ep.addr)
		if err != nil {
			s.Shutdown(context.Background())
			return err
		}
		srv := smtp.NewServer(&backend{srv: s, lmtp: ep.lmtp})
		srv.Domain = cfg.Hostname
		srv.LMTP = ep.lmtp
		srv.MaxMessageBytes = int64(cfg.Limits.MaxMessageBytes)
		// Recipients are counted by the session against the current config, so that a
		// reload applies at once; go-smtp's own count would keep the start value.
		srv.ReadTimeout = cfg.Limits.ReadTimeout
		srv.WriteTimeout = cfg.Limits.WriteTimeout
		srv.ErrorLog = log.New(slogWriter{s.log}, "", 0)
		if !ep.lmtp {
			srv.TLSConfig = tlsConfig
		}
		proto := "smtp"
		if ep.lmtp {
			proto = "lmtp"
		}
		ll := &limitedListener{Listener: l, limiter: s.limiter, onRefuse: func(c net.Conn) {
			s.Stats.Refused.Add(1)
			s.log.Warn("session refused", "proto", proto, "remote", c.RemoteAddr().String(), "reason", "limits.max_sessions reached")
			c.SetWriteDeadline(time.Now().Add(5 * time.Second))
			fmt.Fprintf(c, "421 4.7.0 %s Too many sessions, try again later\r\n", cfg.Hostname)
			c.Close()
		}}
		s.servers = append(s.servers, srv)
		s.log.Info("listening", "proto", proto, "addr", l.Addr().String())
		go func() {
			if err := srv.Serve(ll); err != nil {
				s.log.Error("listener stopped", "proto", proto, "err", err)
			}
		}()
	}
	return nil
}

func listen(address string) (net.Listener, error) {
	if path, ok := strings.CutPrefix(address, "unix:"); ok {
		// A socket left by a crash would make the listen fail; nothing else owns it.
		if st, err := os.Lstat(path); err == nil && st.Mode()&os.ModeSocket != 0 {
			os.Remove(path)
		}
		l, err := net.Listen("unix", path)
		if err != nil {
			return nil, err
		}
		// Like Postfix's own sockets: the directory, not the socket, decides who may
		// connect, so the MTA's user (postfix) can reach it.
		if err := os.Chmod(path, 0o666); err != nil {
			l.Close()
			return nil, err
		}
		return l, nil
	}
	// Mail sessions are short and have their own timeouts; TCP keepalive would only
	// cost four setsockopt calls per connection.
	lc := net.ListenConfig{KeepAlive: -1}
	return lc.Listen(context.Background(), "tcp", address)
}

// Shutdown stops accepting and waits for open sessions to finish, until ctx ends.
func (s *Server) Shutdown(ctx context.Context) {
	for _, srv := range s.servers {
		if err := srv.Shutdown(ctx); err != nil && !errors.Is(err, smtp.ErrServerClosed) {
			srv.Close()
		}
	}
}

type slogWriter struct{ l *slog.Logger }

func (w slogWriter) Write(p []byte) (int, error) {
	w.l.Debug("smtp", "msg", strings.TrimSpace(string(p)))
	return len(p), nil
}

type backend struct {
	srv  *Server
	lmtp bool
}

func (b *backend) NewSession(c *smtp.Conn) (smtp.Session, error) {
	return &session{srv: b.srv, conn: c, lmtp: b.lmtp, remote: c.Conn().RemoteAddr().String(), cfg: b.srv.cfg.Load(), book: b.srv.desk.Book()}, nil
}

type session struct {
	srv    *Server
	conn   *smtp.Conn
	cfg    *config.Config
	book   *addr.Book
	lmtp   bool
	remote string
	from   string
	rcpts  []string
}

func (s *session) Reset() {
	s.from = ""
	s.rcpts = nil
	// A new transaction sees a reloaded config.
	s.cfg = s.srv.cfg.Load()
	s.book = s.srv.desk.Book()
}

func (s *session) Logout() error { return nil }

func (s *session) Mail(from string, _ *smtp.MailOptions) error {
	s.from = from
	return nil
}

func (s *session) Rcpt(to string, _ *smtp.RcptOptions) error {
	// The limits of the config this transaction began with, so that a SIGHUP that
	// lowers them applies at once (go-smtp holds the values of the start).
	if max := s.cfg.Limits.MaxRecipients; len(s.rcpts) >= max {
		return &smtp.SMTPError{Code: 452, EnhancedCode: smtp.EnhancedCode{4, 5, 3}, Message: fmt.Sprintf("Maximum limit of %d recipients reached", max)}
	}
	if _, ok := s.book.Classify(to); !ok {
		return &smtp.SMTPError{Code: 550, EnhancedCode: smtp.EnhancedCode{5, 1, 1},
			Message: fmt.Sprintf("<%s>: no such support address here", to)}
	}
	s.rcpts = append(s.rcpts, to)
	return nil
}

func (s *session) Data(r io.Reader) error {
	return s.deliver(r)
}

func (s *session) LMTPData(r io.Reader, status smtp.StatusCollector) error {
	// One mail to several support addresses is one ticket update (T2), so every
	// recipient shares the one result; it is still reported per recipient.
	err := s.deliver(r)
	for _, rc := range s.rcpts {
		status.SetStatus(rc, err)
	}
	return nil
}

func (s *session) deliver(r io.Reader) error {
	start := time.Now()
	max := int64(s.cfg.Limits.MaxMessageBytes)
	raw, err := io.ReadAll(io.LimitReader(r, max+1))
	if err != nil {
		// go-smtp has already answered a message over the size limit it started with.
		return err
	}
	var res desk.Result
	if int64(len(raw)) > max {
		io.Copy(io.Discard, r)
		err = &smtp.SMTPError{Code: 552, EnhancedCode: smtp.EnhancedCode{5, 3, 4}, Message: fmt.Sprintf("Message exceeds limits.max_message_bytes (%d bytes)", max)}
	} else {
		env := desk.Envelope{From: s.from, Recipients: append([]string(nil), s.rcpts...), Remote: s.remote, Helo: s.conn.Hostname(), LMTP: s.lmtp}
		res, err = s.srv.desk.Receive(context.Background(), env, raw)
	}
	qid := newQueueID()
	attrs := []any{"qid", qid, "proto", protoName(s.lmtp), "remote", s.remote, "env_from", s.from,
		"rcpts", strings.Join(s.rcpts, ","), "size", len(raw), "ms", time.Since(start).Milliseconds()}
	if res.From != "" {
		attrs = append(attrs, "from", res.From)
	}
	if res.MessageID != "" {
		attrs = append(attrs, "message_id", res.MessageID)
	}
	if err != nil {
		var se *smtp.SMTPError
		if errors.As(err, &se) && se.Code >= 500 {
			s.srv.Stats.Refused.Add(1)
		} else {
			s.srv.Stats.TempFailed.Add(1)
		}
		s.srv.log.Warn("refused", append(attrs, "result", err.Error())...)
		return err
	}
	if res.Duplicate {
		s.srv.Stats.Duplicates.Add(1)
	} else {
		s.srv.Stats.Accepted.Add(1)
	}
	s.srv.log.Info("accepted", append(attrs, "ticket", res.TicketID, "comment", res.CommentID, "result", res.Outcome)...)
	return nil
}

func protoName(lmtp bool) string {
	if lmtp {
		return "lmtp"
	}
	return "smtp"
}

func newQueueID() string {
	b := make([]byte, 6)
	rand.Read(b)
	return strings.ToUpper(hex.EncodeToString(b))
}
