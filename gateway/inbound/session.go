package inbound

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"strconv"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/deskgate/deskgate/config"
	"github.com/deskgate/deskgate/gateway/addr"
	"github.com/deskgate/deskgate/gateway/desk"
	"github.com/deskgate/deskgate/gateway/metrics"
)

// recipientOvershoot is how many recipients past limits.max_recipients a session may name
// before each further one counts toward limits.max_errors, as Postfix's
// smtpd_recipient_overshoot_limit (1000). A sender with many recipients is no attacker: RFC
// 5321 has it deliver to those accepted and send the rest again later, and counting its 452s
// as errors would end the session before its message, and so never deliver it.
const recipientOvershoot = 1000

// loggedRefusals is how many refusals of one session are logged one by one; the rest are
// counted in one line at the session's end, so that one client cannot fill the log.
const loggedRefusals = 20

// reply is one SMTP reply. enh is the RFC 3463 enhanced status code, "" for none.
type reply struct {
	code int
	enh  string
	text string
}

func (r reply) Error() string { return fmt.Sprintf("%d %s %s", r.code, r.enh, r.text) }

// recipient is one accepted RCPT: as the client wrote it, and the support address that the
// desk files it under (they differ for postmaster and abuse).
type recipient struct {
	given, deliverTo string
}

// session is one SMTP or LMTP connection. It runs on its own goroutine; Shutdown touches only
// its raw connection and its wake-up state.
type session struct {
	srv      *Server
	listener *listener
	raw      net.Conn // the accepted connection, under TLS too
	nc       net.Conn
	in       *lineReader
	out      *bufio.Writer
	cfg      *config.Config
	book     *addr.Book
	id       string
	remote   string // ip:port, or the socket path's peer
	ip       string
	end      time.Time // the session's whole lifetime runs out here
	tls      bool
	// wake guards idle and woken: Shutdown wakes a session only while it waits for a command,
	// never one that has a command in hand and may be about to read a message.
	wake  sync.Mutex
	idle  bool
	woken bool
	// errors counts the refused commands since the session began or last delivered a
	// message; at limits.max_errors the session ends, as with Postfix's
	// smtpd_hard_error_limit, so that a client cannot keep a slot by sending what is refused.
	errors int
	// overshoot counts the recipients refused for limits.max_recipients since the session
	// began or last delivered a message (recipientOvershoot).
	overshoot int
	// refusals counts every refusal of the session; notLogged those past the first
	// loggedRefusals log lines, and notLoggedLevel the highest level among them.
	refusals       int
	logged         int
	notLogged      int
	notLoggedLevel slog.Level
	// lingerOnClose is set when the server ends the session with a 421: the client may be
	// sending still, and its next command must not turn the close into a reset.
	lingerOnClose bool
	lineBuf       []byte

	helo     string
	hasFrom  bool
	from     string
	utf8     bool // MAIL said SMTPUTF8 (RFC 6531): the envelope may carry UTF-8 addresses
	qid      string
	rcpts    []recipient
	declared int64 // SIZE= of the MAIL command
	reserved int64 // of the server's memory budget, for the message being read
}

// reserveStep is how much of the memory budget a growing message takes at a time.
const reserveStep = 64 << 10

// memoryCost is what a message of n bytes costs the memory budget: its bytes, and as much
// again for decoding it (attachments, the original's compression, the notifications).
func memoryCost(n int64) int64 { return 2 * n }

func (s *session) releaseMemory() {
	if s.reserved > 0 {
		s.srv.budget.release(s.reserved)
		s.reserved = 0
	}
}

func (s *session) newWriter(c net.Conn) *bufio.Writer {
	w := writeBuffers.Get().(*bufio.Writer)
	w.Reset(deadlineWriter{c, s})
	return w
}

// releaseBuffers gives the session's buffers back once it is over.
func (s *session) releaseBuffers() {
	s.in.release()
	if s.out != nil {
		s.out.Reset(nil)
		writeBuffers.Put(s.out)
		s.out = nil
	}
}

// deadlineWriter gives every write to the client limits.write_timeout, and no more than the
// session has left plus a few seconds for the goodbye, so that a client that stops reading
// cannot hold its slot.
type deadlineWriter struct {
	conn net.Conn
	s    *session
}

func (w deadlineWriter) Write(p []byte) (int, error) {
	deadline := time.Now().Add(w.s.cfg.Limits.WriteTimeout)
	if last := w.s.end.Add(goodbyeTime); last.Before(deadline) {
		deadline = last
	}
	w.conn.SetWriteDeadline(deadline)
	return w.conn.Write(p)
}

// goodbyeTime is what a client has to take the 421 that ends its session.
const goodbyeTime = 5 * time.Second

// stressTimeout is the command deadline while the server is nearly full, as Postfix's
// smtpd_timeout drops to 10s under stress: idle clients give their slots to those with mail.
const stressTimeout = 10 * time.Second

// commandTimeout is the time a client has for its next command line.
func commandTimeout(readTimeout time.Duration, active, max int) time.Duration {
	if active*5 >= max*4 && readTimeout > stressTimeout {
		return stressTimeout
	}
	return readTimeout
}

// wakeUp makes a read waiting for a command return now; Shutdown calls it from its goroutine.
func (s *session) wakeUp() {
	s.wake.Lock()
	defer s.wake.Unlock()
	if s.idle {
		s.woken = true
		s.raw.SetReadDeadline(time.Now())
	}
}

func (s *session) lmtp() bool { return s.listener.lmtp }

func (s *session) proto() string {
	if s.lmtp() {
		return "lmtp"
	}
	return "smtp"
}

// serve runs the dialogue until the client quits, a deadline passes, or the server stops.
func (s *session) serve() {
	defer func() {
		s.releaseMemory()
		if s.notLogged > 0 {
			s.srv.log.Log(context.Background(), s.notLoggedLevel, "refusals not logged", "session", s.id, "proto", s.proto(),
				"client", s.remote, "refusals", s.refusals, "not_logged", s.notLogged)
		}
		if s.lingerOnClose {
			lingerClose(s.nc)
		} else {
			s.nc.Close()
		}
		s.releaseBuffers()
	}()
	s.cfg = s.srv.cfg.Load()
	s.book = s.srv.desk.Book()
	s.end = time.Now().Add(s.cfg.Limits.SessionTimeout)
	banner := "ESMTP deskgate"
	if s.lmtp() {
		banner = "LMTP deskgate"
	}
	s.write(reply{220, "", s.cfg.Hostname + " " + banner})
	s.flush()
	for {
		line, err := s.readCommand()
		if err != nil {
			s.endOnReadError(err, "waiting for a command")
			return
		}
		verb, arg := splitCommand(line)
		if quit := s.dispatch(verb, arg); quit {
			s.flush()
			return
		}
		// Replies to pipelined commands go out together, once the client has nothing more
		// waiting (RFC 2920 lets a server batch them).
		if s.in.br.Buffered() == 0 {
			if !s.flush() {
				return
			}
		}
	}
}

// readCommand reads one command line within limits.read_timeout of asking for it and within
// the session's lifetime.
func (s *session) readCommand() (string, error) {
	for {
		timeout := commandTimeout(s.cfg.Limits.ReadTimeout, s.srv.limiter.Active(), s.cfg.Limits.MaxSessions)
		deadline := s.earliest(time.Now().Add(timeout))
		// The deadline is set before the stopping check: a wake-up after the check then
		// overrides it, one before it is seen by the check.
		if err := s.in.setDeadline(deadline); err != nil {
			return "", err
		}
		s.wake.Lock()
		s.idle = true
		stopping := s.srv.stopping.Load()
		s.wake.Unlock()
		if stopping {
			return "", errStopping
		}
		line, err := s.in.readLine(s.lineBuf, maxCommandLine, func() time.Time { return deadline })
		s.wake.Lock()
		woken := s.woken
		s.idle, s.woken = false, false
		s.wake.Unlock()
		if woken {
			// The conn's deadline is the wake-up's now; the next read must set its own.
			s.in.deadline = time.Time{}
		}
		if errors.Is(err, errDeadline) && woken {
			return "", errStopping
		}
		if errors.Is(err, errLineTooLong) {
			s.commandError(reply{500, "5.5.2", fmt.Sprintf("Line too long (at most %d bytes)", maxCommandLine)})
			if s.tooManyErrors() {
				return "", errTooManyErrors
			}
			if s.in.br.Buffered() == 0 {
				s.flush()
			}
			continue
		}
		if err != nil {
			return "", err
		}
		s.lineBuf = line[:0]
		return strings.TrimRight(string(line), "\r\n"), nil
	}
}

var (
	errStopping      = errors.New("server stopping")
	errTooManyErrors = errors.New("too many errors")
)

// endOnReadError says goodbye to a session whose input ended or ran out of time.
func (s *session) endOnReadError(err error, while string) {
	s.lingerOnClose = true
	switch {
	case errors.Is(err, errStopping):
		s.write(reply{421, "4.3.2", s.cfg.Hostname + " Service shutting down, try again later"})
	case errors.Is(err, errTooManyErrors):
		s.refuse("session", reply{421, "4.7.0", fmt.Sprintf("%s Too many errors (limits.max_errors is %d), closing connection", s.cfg.Hostname, s.cfg.Limits.MaxErrors)})
	case errors.Is(err, errDeadline):
		text := "Timeout " + while + ", closing connection"
		if !time.Now().Before(s.end) {
			text = "Session lasted longer than limits.session_timeout, closing connection"
		}
		s.refuse("session", reply{421, "4.4.2", s.cfg.Hostname + " " + text})
	case errors.Is(err, io.EOF), errors.Is(err, net.ErrClosed):
		return
	default:
		s.srv.log.Info("session ended", "session", s.id, "proto", s.proto(), "client", s.remote, "err", err)
		return
	}
	s.flush()
}

// earliest is t, or the end of the session's lifetime if that comes first.
func (s *session) earliest(t time.Time) time.Time {
	if s.end.Before(t) {
		return s.end
	}
	return t
}

func splitCommand(line string) (verb, arg string) {
	verb, arg, _ = strings.Cut(line, " ")
	return strings.ToUpper(verb), strings.TrimSpace(arg)
}

// dispatch runs one command and says whether the session is over.
func (s *session) dispatch(verb, arg string) (quit bool) {
	switch verb {
	case "HELO", "EHLO", "LHLO":
		s.hello(verb, arg)
	case "MAIL":
		s.mail(arg)
	case "RCPT":
		s.rcpt(arg)
	case "DATA":
		return s.data(arg)
	case "RSET":
		s.reset()
		s.write(reply{250, "2.0.0", "Ok"})
	case "NOOP":
		s.write(reply{250, "2.0.0", "Ok"})
	case "VRFY":
		s.write(reply{252, "2.5.2", "Cannot VRFY a user; send mail and it will be delivered"})
	case "HELP":
		s.write(reply{214, "2.0.0", "See RFC 5321; deskgate files mail to the support addresses as tickets"})
	case "STARTTLS":
		return s.startTLS(arg)
	case "QUIT":
		s.write(reply{221, "2.0.0", s.cfg.Hostname + " Bye"})
		return true
	default:
		s.commandError(reply{500, "5.5.2", "Command not recognized"})
	}
	if s.tooManyErrors() {
		s.endOnReadError(errTooManyErrors, "")
		return true
	}
	return false
}

// tooManyErrors says whether the session has reached limits.max_errors of the config its
// transaction runs under.
func (s *session) tooManyErrors() bool { return s.errors >= s.cfg.Limits.MaxErrors }

// logRefusal logs one refusal while the session has logged fewer than loggedRefusals, and
// counts it otherwise. A line below the log level is neither logged nor counted, so that
// debug noise does not use up the lines that an operator at info level would see.
func (s *session) logRefusal(level slog.Level, msg string, attrs ...any) {
	ctx := context.Background()
	if !s.srv.log.Enabled(ctx, level) {
		return
	}
	if s.logged >= loggedRefusals {
		if s.notLogged == 0 || level > s.notLoggedLevel {
			s.notLoggedLevel = level
		}
		s.notLogged++
		return
	}
	s.logged++
	s.srv.log.Log(ctx, level, msg, attrs...)
}

// commandError answers a command that cannot run. Its log line is at debug level: a refused
// message or recipient is logged by refuse, a session's noise only counts.
func (s *session) commandError(r reply) {
	s.errors++
	s.refusals++
	s.logRefusal(slog.LevelDebug, "command refused", "session", s.id, "client", s.remote, "code", r.code, "enhanced", r.enh, "reason", r.text)
	s.write(r)
}

// refuse answers a refused message, recipient or session with one log line and a count. A
// refused MAIL, RCPT or DATA counts toward limits.max_errors; the 421 that ends a session is
// always logged.
func (s *session) refuse(stage string, r reply, attrs ...any) { s.turnAway(stage, r, true, attrs...) }

// turnAway is refuse, with whether the refusal counts toward limits.max_errors.
func (s *session) turnAway(stage string, r reply, isError bool, attrs ...any) {
	base := []any{"session", s.id, "proto", s.proto(), "client", s.remote, "stage", stage,
		"code", r.code, "enhanced", r.enh, "reason", r.text}
	if s.qid != "" {
		base = append(base, "qid", s.qid)
	}
	if s.hasFrom {
		base = append(base, "env_from", s.from)
	}
	level := slog.LevelWarn
	if r.code < 500 {
		level = slog.LevelInfo
	}
	s.write(r)
	if stage == "session" {
		s.srv.log.Log(context.Background(), level, "refused", append(base, attrs...)...)
		return
	}
	if isError {
		s.errors++
	}
	s.refusals++
	s.logRefusal(level, "refused", append(base, attrs...)...)
}

func (s *session) hello(verb, arg string) {
	if s.lmtp() != (verb == "LHLO") {
		s.commandError(reply{500, "5.5.1", "Command not recognized; say " + map[bool]string{true: "LHLO", false: "EHLO"}[s.lmtp()]})
		return
	}
	if arg == "" || strings.ContainsAny(arg, " \t") {
		s.commandError(reply{501, "5.5.4", "Syntax: " + verb + " hostname"})
		return
	}
	s.reset()
	s.helo = arg
	if verb == "HELO" {
		s.write(reply{250, "", s.cfg.Hostname})
		return
	}
	lines := []string{s.cfg.Hostname, "PIPELINING", "SIZE " + strconv.FormatInt(int64(s.cfg.Limits.MaxMessageBytes), 10), "8BITMIME", "SMTPUTF8", "ENHANCEDSTATUSCODES"}
	if s.listener.tls != nil && !s.tls {
		lines = append(lines, "STARTTLS")
	}
	for i, l := range lines {
		sep := "-"
		if i == len(lines)-1 {
			sep = " "
		}
		fmt.Fprintf(s.out, "250%s%s\r\n", sep, l)
	}
}

func (s *session) startTLS(arg string) bool {
	switch {
	case s.listener.tls == nil || s.lmtp():
		s.commandError(reply{502, "5.5.1", "STARTTLS not offered"})
		return false
	case s.tls:
		s.commandError(reply{503, "5.5.1", "TLS already active"})
		return false
	case arg != "":
		s.commandError(reply{501, "5.5.4", "Syntax: STARTTLS"})
		return false
	}
	s.write(reply{220, "2.0.0", "Ready to start TLS"})
	if !s.flush() {
		return true
	}
	tc := tls.Server(s.nc, s.listener.tls)
	tc.SetDeadline(s.earliest(time.Now().Add(s.cfg.Limits.ReadTimeout)))
	if err := tc.Handshake(); err != nil {
		s.srv.log.Info("TLS handshake failed", "session", s.id, "client", s.remote, "err", err)
		return true
	}
	tc.SetDeadline(time.Time{})
	// Whatever the client sent after STARTTLS in plain text is dropped with the old reader
	// (the command injection of CVE-2011-0411); the dialogue starts again from EHLO.
	s.nc = tc
	s.releaseBuffers()
	s.in = newLineReader(tc)
	s.out = s.newWriter(tc)
	s.tls = true
	s.helo = ""
	s.reset()
	return false
}

func (s *session) reset() {
	s.releaseMemory()
	s.hasFrom = false
	s.from = ""
	s.utf8 = false
	s.qid = ""
	s.rcpts = nil
	s.declared = 0
	// A new transaction sees a reloaded config, apart from the session's lifetime.
	s.cfg = s.srv.cfg.Load()
	s.book = s.srv.desk.Book()
}

func (s *session) mail(arg string) {
	switch {
	case s.helo == "":
		s.commandError(reply{503, "5.5.1", "Send " + map[bool]string{true: "LHLO", false: "EHLO or HELO"}[s.lmtp()] + " first"})
		return
	case s.hasFrom:
		s.commandError(reply{503, "5.5.1", "Nested MAIL command; send RSET first"})
		return
	}
	rest, ok := cutPrefixFold(arg, "FROM:")
	if !ok {
		s.commandError(reply{501, "5.5.4", "Syntax: MAIL FROM:<address>"})
		return
	}
	address, params, r := parsePath(rest)
	if r != nil {
		s.commandError(*r)
		return
	}
	declared := int64(0)
	utf8 := false
	for _, p := range params {
		key, value, hasValue := strings.Cut(p, "=")
		switch strings.ToUpper(key) {
		case "SIZE":
			n, err := strconv.ParseInt(value, 10, 64)
			if err != nil || n < 0 {
				s.commandError(reply{501, "5.5.4", "Bad SIZE parameter"})
				return
			}
			declared = n
		case "BODY":
			if v := strings.ToUpper(value); v != "7BIT" && v != "8BITMIME" {
				s.commandError(reply{555, "5.5.4", "Unsupported BODY type " + value})
				return
			}
		case "SMTPUTF8":
			if hasValue {
				s.commandError(reply{501, "5.5.4", "SMTPUTF8 takes no value"})
				return
			}
			utf8 = true
		default:
			s.commandError(reply{555, "5.5.4", "Unsupported MAIL parameter " + key})
			return
		}
	}
	address, r = canonicalPath(address, utf8, "Sender", "5.1.7")
	if r != nil {
		s.refuse("mail", *r, "address", address)
		return
	}
	if max := int64(s.cfg.Limits.MaxMessageBytes); declared > max {
		s.refuse("mail", reply{552, "5.3.4", fmt.Sprintf("Message size exceeds limits.max_message_bytes (%d bytes)", max)}, "size", declared)
		return
	}
	// A declared size that cannot be held now is turned away before its data is sent, as
	// Postfix does when its queue is short of space. It is not reserved: only bytes that
	// arrive are, so that a client declaring sizes and sending nothing holds no memory.
	if declared > 0 && !s.srv.budget.fits(memoryCost(declared)) {
		s.refuse("mail", reply{452, "4.3.1", "Insufficient system storage for this message now, try again later"}, "size", declared)
		return
	}
	// The queue id names the transaction from here on: in RCPT refusals, the 250 and the log.
	s.qid = newQueueID()
	s.hasFrom = true
	s.from = address
	s.utf8 = utf8
	s.declared = declared
	s.write(reply{250, "2.1.0", "Ok"})
}

func (s *session) rcpt(arg string) {
	if !s.hasFrom {
		s.commandError(reply{503, "5.5.1", "Need MAIL before RCPT"})
		return
	}
	rest, ok := cutPrefixFold(arg, "TO:")
	if !ok {
		s.commandError(reply{501, "5.5.4", "Syntax: RCPT TO:<address>"})
		return
	}
	address, params, r := parsePath(rest)
	if r == nil && address == "" {
		r = &reply{501, "5.1.3", "A recipient cannot be the null address"}
	}
	if r != nil {
		s.commandError(*r)
		return
	}
	if len(params) > 0 {
		key, _, _ := strings.Cut(params[0], "=")
		s.commandError(reply{555, "5.5.4", "Unsupported RCPT parameter " + key})
		return
	}
	address, r = canonicalPath(address, s.utf8, "Recipient", "5.1.3")
	if r != nil {
		s.refuse("rcpt", *r, "rcpt", address)
		return
	}
	// The limits of the config this transaction began with, so that a SIGHUP that lowers
	// them applies at once.
	if max := s.cfg.Limits.MaxRecipients; len(s.rcpts) >= max {
		s.overshoot++
		s.turnAway("rcpt", reply{452, "4.5.3", fmt.Sprintf("Too many recipients (limits.max_recipients is %d)", max)},
			s.overshoot > recipientOvershoot, "rcpt", address)
		return
	}
	deliverTo, ok := s.book.Mailbox(address)
	if !ok {
		s.refuse("rcpt", reply{550, "5.1.1", fmt.Sprintf("<%s>: no such support address here", address)}, "rcpt", address)
		return
	}
	s.rcpts = append(s.rcpts, recipient{given: address, deliverTo: deliverTo})
	s.write(reply{250, "2.1.5", "Ok"})
}

func (s *session) data(arg string) (quit bool) {
	switch {
	case arg != "":
		s.commandError(reply{501, "5.5.4", "Syntax: DATA"})
		return false
	case !s.hasFrom:
		s.commandError(reply{503, "5.5.1", "Need MAIL before DATA"})
		return false
	case len(s.rcpts) == 0:
		s.commandError(reply{554, "5.5.1", "No valid recipients"})
		return false
	}
	// A declared size is reserved whole before the data comes, so that large messages sent
	// at once do not each take a part of the budget and all run out of it. It is reserved
	// here and not at MAIL, because only DATA puts the client under the data deadline.
	if s.declared > 0 {
		if !s.srv.budget.reserve(memoryCost(s.declared)) {
			s.refuse("data", reply{452, "4.3.1", "Insufficient system storage for this message now, try again later"}, "size", s.declared)
			return false
		}
		s.reserved = memoryCost(s.declared)
	}
	s.write(reply{354, "", "End data with <CR><LF>.<CR><LF>"})
	if !s.flush() {
		return true
	}
	start := time.Now()
	raw, received, problem, err := s.readData()
	if err != nil {
		s.endOnReadError(err, "in DATA")
		return true
	}
	if problem != nil {
		s.answerData(*problem, int(received), start)
		s.reset()
		return false
	}
	end := time.Now()
	s.deliver(raw)
	metrics.DataReplySeconds.WithLabelValues(s.proto()).Observe(time.Since(end).Seconds())
	s.reset()
	return false
}

// readData reads the message up to the lone dot. Within the data each read must arrive
// before limits.read_timeout plus the time the bytes so far have earned at
// limits.min_data_rate, as Postfix's smtpd_min_data_rate does, and within the session's
// lifetime. A message too large or with a line too long is read to its end and answered then,
// so that the client sees the reply and the session goes on.
func (s *session) readData() (raw []byte, received int64, problem *reply, err error) {
	start := time.Now()
	max := int64(s.cfg.Limits.MaxMessageBytes)
	rate := float64(s.cfg.Limits.MinDataRate)
	// While the memory budget is nearly spent, the base shrinks as the command deadline does
	// under stress: a client that holds memory and sends nothing gives it back soon.
	base := commandTimeout(s.cfg.Limits.ReadTimeout, int(s.srv.budget.usedPercent()), 100)
	deadline := func() time.Time {
		earned := time.Duration(float64(received) / rate * float64(time.Second))
		return s.earliest(start.Add(base + earned))
	}
	// Without SIZE=, the buffer starts at what most mail fits in and grows by doubling: starting
	// at 64 KiB had every one-line "thanks!" allocate and clear 64 KiB, a third of all a new
	// ticket allocated.
	hint := s.declared
	if hint <= 0 || hint > max {
		hint = 16 * 1024
	}
	buf := make([]byte, 0, hint)
	atLineStart := true
	for {
		line, err := s.in.readLine(s.lineBuf, maxDataLine+2, deadline)
		if errors.Is(err, errLineTooLong) {
			if problem == nil {
				problem = &reply{554, "5.6.0", fmt.Sprintf("Message has a line longer than %d bytes", maxDataLine)}
			}
			// The dropped line ended with '\n' but perhaps no '\r'; the next line only starts a
			// new one for the end-of-data test if it is safe to say so.
			atLineStart = false
			received += maxDataLine
			continue
		}
		if err != nil {
			return nil, received, nil, err
		}
		s.lineBuf = line[:0]
		received += int64(len(line))
		crlf := bytes.HasSuffix(line, []byte("\r\n"))
		// Only CRLF.CRLF ends the data, never a bare LF around the dot: anything else would
		// let one message smuggle a second one past a front MTA that reads it differently.
		if atLineStart && line[0] == '.' {
			if len(line) == 3 && crlf {
				return buf, received, problem, nil
			}
			line = line[1:]
		}
		atLineStart = crlf
		if problem != nil {
			continue
		}
		if int64(len(buf)+len(line)) > max {
			problem = &reply{552, "5.3.4", fmt.Sprintf("Message exceeds limits.max_message_bytes (%d bytes)", max)}
			buf = buf[:0]
			continue
		}
		if need := memoryCost(int64(len(buf) + len(line))); need > s.reserved {
			step := need - s.reserved
			if step < memoryCost(reserveStep) {
				step = memoryCost(reserveStep)
			}
			if !s.srv.budget.reserve(step) {
				problem = &reply{452, "4.3.1", "Insufficient system storage for this message now, try again later"}
				buf = buf[:0]
				continue
			}
			s.reserved += step
		}
		buf = append(buf, line...)
	}
}

// deliver hands the message to the desk and answers it: once for SMTP, once per recipient
// for LMTP.
func (s *session) deliver(raw []byte) {
	start := time.Now()
	env := desk.Envelope{From: s.from, Recipients: make([]string, len(s.rcpts)), Remote: s.remote, Helo: s.helo, LMTP: s.lmtp()}
	for i, r := range s.rcpts {
		env.Recipients[i] = r.deliverTo
	}
	res, err := s.srv.desk.Receive(context.Background(), env, raw)
	if err != nil {
		s.answerData(replyFor(err), len(raw), start, "err", err.Error())
		return
	}
	outcome := "accepted"
	if res.Duplicate {
		outcome = "duplicate"
	}
	metrics.MessagesReceived.WithLabelValues(s.proto(), outcome).Inc()
	attrs := s.messageAttrs(len(raw), start)
	if res.From != "" {
		attrs = append(attrs, "from", res.From)
	}
	if res.MessageID != "" {
		attrs = append(attrs, "message_id", res.MessageID)
	}
	s.srv.log.Info("accepted", append(attrs, "ticket", res.TicketID, "comment", res.CommentID, "result", res.Outcome)...)
	// As smtpd_hard_error_limit counts errors "without delivering mail": a session that
	// delivers is a sender with mail, whose unknown recipients on the way are no attack.
	s.errors, s.overshoot = 0, 0
	ok := reply{250, "2.0.0", "Ok: queued as " + s.qid}
	if !s.lmtp() {
		s.write(ok)
		return
	}
	for _, r := range s.rcpts {
		s.write(reply{ok.code, ok.enh, "<" + r.given + "> " + ok.text})
	}
}

// answerData refuses a whole message, for every LMTP recipient alike: one mail to several
// support addresses is one ticket update (T2), so they share the one result.
func (s *session) answerData(r reply, size int, start time.Time, extra ...any) {
	outcome := "refused"
	if r.code < 500 {
		outcome = "tempfail"
	}
	metrics.MessagesReceived.WithLabelValues(s.proto(), outcome).Inc()
	attrs := append(s.messageAttrs(size, start), "stage", "data", "code", r.code, "enhanced", r.enh, "reason", r.text)
	attrs = append(attrs, extra...)
	level := slog.LevelWarn
	if r.code < 500 {
		level = slog.LevelInfo
	}
	// One refused message is one refused command, for however many LMTP recipients.
	s.errors++
	s.refusals++
	s.logRefusal(level, "refused", attrs...)
	if !s.lmtp() {
		s.write(r)
		return
	}
	for _, rc := range s.rcpts {
		s.write(reply{r.code, r.enh, "<" + rc.given + "> " + r.text})
	}
}

func (s *session) messageAttrs(size int, start time.Time) []any {
	rcpts := make([]string, len(s.rcpts))
	for i, r := range s.rcpts {
		rcpts[i] = r.given
	}
	return []any{"qid", s.qid, "session", s.id, "proto", s.proto(), "client", s.remote, "env_from", s.from,
		"rcpts", strings.Join(rcpts, ","), "size", size, "ms", time.Since(start).Milliseconds()}
}

func (s *session) write(r reply) {
	countReply(s.proto(), r)
	r.text = printable(r.text)
	if r.enh == "" {
		fmt.Fprintf(s.out, "%d %s\r\n", r.code, r.text)
		return
	}
	fmt.Fprintf(s.out, "%d %s %s\r\n", r.code, r.enh, r.text)
}

// flush sends the replies written so far; false when the client is gone or too slow to read.
func (s *session) flush() bool {
	return s.out.Flush() == nil
}

// printable keeps a reply to printable ASCII of a sane length, because replies quote what the
// client sent and must never carry its control bytes or line breaks back. A character that
// is not ASCII is written as \u{XXXX}, so that jöe@bücher.test in a reply still says which
// letters it had; an invalid byte is a question mark.
func printable(text string) string {
	if len(text) > 400 {
		text = text[:400]
	}
	var b strings.Builder
	for i := 0; i < len(text) && b.Len() < 400; {
		r, size := utf8.DecodeRuneInString(text[i:])
		switch {
		case r == utf8.RuneError && size <= 1:
			b.WriteByte('?')
		case r >= utf8.RuneSelf:
			fmt.Fprintf(&b, "\\u{%04X}", r)
		case r < ' ' || r > '~':
			b.WriteByte('?')
		default:
			b.WriteRune(r)
		}
		i += size
	}
	return b.String()
}

func cutPrefixFold(s, prefix string) (string, bool) {
	if len(s) < len(prefix) || !strings.EqualFold(s[:len(prefix)], prefix) {
		return "", false
	}
	return strings.TrimLeft(s[len(prefix):], " "), true
}

// parsePath reads "<address> PARAM=VALUE ..." of MAIL and RCPT. Like Postfix without
// strict_rfc821_envelopes it takes an address without angle brackets too, and it drops an
// RFC 5321 source route (<@a,@b:user@example.com>).
func parsePath(s string) (address string, params []string, problem *reply) {
	bad := &reply{501, "5.1.7", "Bad address syntax"}
	var path string
	if strings.HasPrefix(s, "<") {
		end := strings.IndexByte(s, '>')
		if end < 0 {
			return "", nil, bad
		}
		path, s = s[1:end], s[end+1:]
	} else {
		path, s, _ = strings.Cut(s, " ")
	}
	if strings.HasPrefix(path, "@") {
		_, after, ok := strings.Cut(path, ":")
		if !ok {
			return "", nil, bad
		}
		path = after
	}
	for _, r := range path {
		if r < ' ' || r == 0x7f || r == ' ' || r == '<' || r == '>' {
			return "", nil, bad
		}
	}
	if len(path) > 254 {
		return "", nil, &reply{501, "5.1.7", "Address too long"}
	}
	if path != "" && !strings.EqualFold(path, "postmaster") {
		at := strings.LastIndexByte(path, '@')
		if at <= 0 || at == len(path)-1 {
			return "", nil, bad
		}
	}
	return path, strings.Fields(s), nil
}

// canonicalPath is an envelope address in its canonical form (addr.Canonical), so that
// every spelling of one address (case, A-labels, NFD) files and threads alike. A non-ASCII
// address needs the SMTPUTF8 parameter (RFC 6531 3.4); an invalid one is refused with the
// reason. The null path and a bare postmaster are no mailbox to canonicalise.
func canonicalPath(address string, utf8 bool, who, enh string) (string, *reply) {
	if address == "" || strings.EqualFold(address, "postmaster") {
		return address, nil
	}
	if !utf8 && !addr.IsASCII(address) {
		return address, &reply{553, "5.6.7", "Non-ASCII address needs the SMTPUTF8 parameter on MAIL FROM"}
	}
	c, err := addr.Canonical(address)
	if err != nil {
		return address, &reply{553, enh, who + ": " + err.Error()}
	}
	return c, nil
}
