// Package inbound receives mail over SMTP and LMTP, and turns each accepted message into
// one durable ticket change before it answers 250.
//
// It is its own SMTP server rather than go-smtp's: an MX on the open internet needs deadlines
// for a whole command line, the whole DATA and the whole session, lines longer than go-smtp
// allows, a reply to pipelined commands in one write, and a log line for every refusal, and
// those live in the read loop that go-smtp keeps to itself.
package inbound

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/deskgate/deskgate/config"
	"github.com/deskgate/deskgate/gateway/desk"
	"github.com/deskgate/deskgate/gateway/metrics"
	"github.com/deskgate/deskgate/gateway/rules"
)

// Server is the SMTP and LMTP front of deskgate.
type Server struct {
	cfg      atomic.Pointer[config.Config]
	desk     *desk.Service
	log      *slog.Logger
	limiter  *sessionLimiter
	budget   *memoryBudget
	stopping atomic.Bool

	mu        sync.Mutex
	listeners []*listener
	sessions  map[*session]struct{}
	accepting sync.WaitGroup // the accept loops
	serving   sync.WaitGroup // the sessions
}

type listener struct {
	net.Listener
	lmtp    bool
	tls     *tls.Config
	address string      // as configured
	stopped atomic.Bool // the accept loop has ended
}

// countReply counts one reply by protocol, code and enhanced code.
func countReply(proto string, r reply) {
	metrics.SMTPReplies.WithLabelValues(proto, strconv.Itoa(r.code), r.enh).Inc()
}

// New makes a Server; Listen starts it.
func New(cfg *config.Config, svc *desk.Service, logger *slog.Logger) *Server {
	s := &Server{desk: svc, log: logger, sessions: map[*session]struct{}{}}
	s.SetConfig(cfg)
	s.budget = &memoryBudget{max: func() int64 { return int64(s.cfg.Load().Limits.MaxDataMemory) }}
	s.limiter = &sessionLimiter{limits: func() config.Limits { return s.cfg.Load().Limits }}
	return s
}

// SetConfig swaps in a reloaded config; a session takes it up at its next transaction.
// The desk service is reloaded by its owner.
func (s *Server) SetConfig(cfg *config.Config) {
	s.cfg.Store(cfg)
}

// Healthy says what is wrong with the listeners, or nil: an accept loop that ended, or a unix
// socket whose file is gone (a cleaned /run), which no MTA can reach any more.
func (s *Server) Healthy() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, ln := range s.listeners {
		name := protoName(ln.lmtp) + " listener " + ln.address
		if ln.stopped.Load() && !s.stopping.Load() {
			return fmt.Errorf("%s: no longer accepting", name)
		}
		if path, ok := strings.CutPrefix(ln.address, "unix:"); ok {
			if st, err := os.Lstat(path); err != nil || st.Mode()&os.ModeSocket == 0 {
				return fmt.Errorf("%s: the socket file is gone", name)
			}
		}
	}
	return nil
}

// Grace is how long Shutdown lets sessions in the middle of a message finish
// (limits.shutdown_grace of the running config).
func (s *Server) Grace() time.Duration { return s.cfg.Load().Limits.ShutdownGrace }

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
	for _, ep := range []struct {
		addr string
		lmtp bool
	}{{cfg.Listen.SMTP, false}, {cfg.Listen.LMTP, true}} {
		if ep.addr == "" {
			continue
		}
		l, err := listen(ep.addr)
		if err != nil {
			s.Shutdown(context.Background())
			return err
		}
		ln := &listener{Listener: l, lmtp: ep.lmtp, address: ep.addr}
		if !ep.lmtp {
			ln.tls = tlsConfig
		}
		s.mu.Lock()
		s.listeners = append(s.listeners, ln)
		s.mu.Unlock()
		s.log.Info("listening", "proto", protoName(ep.lmtp), "addr", l.Addr().String())
		s.accepting.Add(1)
		go s.accept(ln)
	}
	return nil
}

func (s *Server) accept(ln *listener) {
	defer s.accepting.Done()
	defer ln.stopped.Store(true)
	var backoff time.Duration
	for {
		c, err := ln.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			// Out of file descriptors and the like: wait and try again rather than spin or
			// stop serving.
			backoff = min(max(2*backoff, 5*time.Millisecond), time.Second)
			s.log.Error("accept failed", "proto", protoName(ln.lmtp), "err", err, "retry_in", backoff)
			time.Sleep(backoff)
			continue
		}
		backoff = 0
		if s.stopping.Load() {
			// While the open sessions drain, new clients are told to come back rather than
			// left in the listen queue, which closing the listener would reset.
			r := reply{421, "4.3.2", s.cfg.Load().Hostname + " Service shutting down, try again later"}
			countReply(protoName(ln.lmtp), r)
			go sayAndClose(c, r)
			continue
		}
		s.start(ln, c)
	}
}

// sayAndClose sends a last reply and closes the connection so that the client reads it: a
// close with the client's next command unread would make the kernel reset the connection, and
// a reset can discard the reply before the client reads it. So the write side is shut first
// and what the client still sends is read and dropped, for a second at most.
func sayAndClose(c net.Conn, r reply) {
	c.SetWriteDeadline(time.Now().Add(5 * time.Second))
	fmt.Fprintf(c, "%d %s %s\r\n", r.code, r.enh, printable(r.text))
	lingerClose(c)
}

func lingerClose(c net.Conn) {
	if hc, ok := c.(interface{ CloseWrite() error }); ok {
		hc.CloseWrite()
		c.SetReadDeadline(time.Now().Add(time.Second))
		io.Copy(io.Discard, io.LimitReader(c, 1<<20))
	}
	c.Close()
}

// start admits a connection within the session limits, or tells it 421 and closes it.
func (s *Server) start(ln *listener, c net.Conn) {
	remote := c.RemoteAddr().String()
	ip := ""
	if tcp, ok := c.RemoteAddr().(*net.TCPAddr); ok && !ln.lmtp {
		// LMTP comes from the MTA in front, which opens many sessions from one address by
		// design; the per-address cap is for the open internet.
		ip = tcp.IP.String()
	}
	if key, limit := s.limiter.acquire(ip); key != "" {
		cfg := s.cfg.Load()
		r := reply{421, "4.7.0", cfg.Hostname + " Too many sessions, try again later"}
		reason := fmt.Sprintf("%s reached: %d sessions", key, limit)
		if key == "limits.max_sessions_per_ip" {
			r.text = cfg.Hostname + " Too many sessions from your address, try again later"
			reason += " from this address"
			if limit < cfg.Limits.MaxSessionsPerIP {
				// The operator reading the log looks for the number configured; say why
				// another one applied.
				reason += " (at most half of limits.max_sessions)"
			}
		}
		metrics.MessagesReceived.WithLabelValues(protoName(ln.lmtp), "refused").Inc()
		countReply(protoName(ln.lmtp), r)
		s.log.Warn("refused", "proto", protoName(ln.lmtp), "client", remote, "stage", "connect", "code", r.code, "enhanced", r.enh, "reason", reason)
		go sayAndClose(c, r)
		return
	}
	sess := &session{srv: s, listener: ln, raw: c, nc: c, in: newLineReader(c), remote: remote, ip: ip, id: newQueueID()}
	sess.out = sess.newWriter(c)
	s.mu.Lock()
	if s.stopping.Load() {
		s.mu.Unlock()
		s.limiter.release(ip)
		go sayAndClose(c, reply{421, "4.3.2", s.cfg.Load().Hostname + " Service shutting down, try again later"})
		return
	}
	s.sessions[sess] = struct{}{}
	s.serving.Add(1)
	s.mu.Unlock()
	go func() {
		defer func() {
			s.mu.Lock()
			delete(s.sessions, sess)
			s.mu.Unlock()
			s.limiter.release(ip)
			s.serving.Done()
		}()
		sess.serve()
	}()
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
	// Mail sessions are short and have their own deadlines; TCP keepalive would only
	// cost four setsockopt calls per connection.
	lc := net.ListenConfig{KeepAlive: -1}
	return lc.Listen(context.Background(), "tcp", address)
}

// Shutdown tells sessions that wait for a command 421 and closes them, lets sessions in the
// middle of a message finish, answers new connections 421 meanwhile, and closes what is left
// when ctx ends. Then the listeners close.
func (s *Server) Shutdown(ctx context.Context) {
	s.mu.Lock()
	s.stopping.Store(true)
	for sess := range s.sessions {
		sess.wakeUp()
	}
	s.mu.Unlock()
	done := make(chan struct{})
	go func() {
		s.serving.Wait()
		close(done)
	}()
	select {
	case <-done:
	case <-ctx.Done():
		s.mu.Lock()
		for sess := range s.sessions {
			sess.raw.Close()
		}
		s.mu.Unlock()
		<-done
	}
	s.mu.Lock()
	for _, ln := range s.listeners {
		ln.Close()
	}
	s.mu.Unlock()
	s.accepting.Wait()
}

// replyFor turns the desk's refusal into the reply the client gets (RFC 3463 codes).
func replyFor(err error) reply {
	var ref *rules.Refusal
	if errors.As(err, &ref) {
		switch ref.Kind {
		case rules.RefuseTooLarge:
			return reply{552, "5.3.4", ref.Msg}
		case rules.RefuseUnreadable, rules.RefuseNobodyToTell:
			return reply{550, "5.6.0", ref.Msg}
		case rules.RefuseOwnAddress, rules.RefuseDMARC:
			return reply{550, "5.7.1", ref.Msg}
		case rules.RefuseUnverifiedNow:
			return reply{451, "4.7.5", ref.Msg}
		case rules.RefuseTooMany:
			return reply{451, "4.7.1", ref.Msg}
		case rules.RefuseStorage:
			return reply{451, "4.3.0", ref.Msg}
		}
	}
	// Anything else is the desk's failure, not the message's: the client tries again later
	// and the cause is in the log line.
	return reply{451, "4.3.0", "Local error in processing, try again later"}
}

func protoName(lmtp bool) string {
	if lmtp {
		return "lmtp"
	}
	return "smtp"
}

// newQueueID names a session or a mail in logs and in the 250 reply: twelve upper-case hex
// digits, like the ids Postfix logs. It is a name, not a secret (nothing is granted to whoever
// knows it), so it comes from the runtime's fast generator rather than from the kernel's, two
// system calls per mail before.
func newQueueID() string {
	const digits = "0123456789ABCDEF"
	n := rand.Uint64()
	var id [12]byte
	for i := range id {
		id[i] = digits[n&0xf]
		n >>= 4
	}
	return string(id[:])
}
