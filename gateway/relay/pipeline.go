package relay

import (
	"bufio"
	"fmt"
	"net"
	"net/textproto"
	"strconv"
	"strings"
	"time"

	"github.com/emersion/go-smtp"
)

// session is one upstream connection. go-smtp's client sets it up (greeting, EHLO,
// TLS, AUTH) and ends it; transactions go straight to the connection, so that with
// PIPELINING (RFC 2920) MAIL, every RCPT and DATA leave in one write: go-smtp's
// client waits for each reply, and that round trip per command was the relay's cost.
type session struct {
	c          *smtp.Client
	raw        net.Conn
	r          *textproto.Reader
	w          *bufio.Writer
	pipelining bool
	timeout    time.Duration
}

func newSession(c *smtp.Client, raw net.Conn, timeout time.Duration) *session {
	ok, _ := c.Extension("PIPELINING")
	return &session{c: c, raw: raw, r: textproto.NewReader(bufio.NewReader(raw)), w: bufio.NewWriter(raw),
		pipelining: ok, timeout: timeout}
}

func (s *session) Close() error { return s.c.Close() }
func (s *session) Quit() error  { return s.c.Quit() }
func (s *session) Noop() error  { return s.c.Noop() }

// reply reads one reply as go-smtp's error type (nil for 2xx and 3xx).
func (s *session) reply() (int, error) {
	code, msg, err := s.r.ReadResponse(0)
	if err != nil {
		return 0, err
	}
	if code < 400 {
		return code, nil
	}
	return code, toSMTPError(code, msg)
}

func toSMTPError(code int, msg string) *smtp.SMTPError {
	se := &smtp.SMTPError{Code: code, Message: msg}
	if f := strings.SplitN(msg, " ", 2); len(f) == 2 {
		parts := strings.Split(f[0], ".")
		if len(parts) == 3 {
			var enh smtp.EnhancedCode
			valid := true
			for i, p := range parts {
				n, err := strconv.Atoi(p)
				valid = valid && err == nil
				enh[i] = n
			}
			if valid {
				se.EnhancedCode, se.Message = enh, f[1]
			}
		}
	}
	return se
}

// transact sends one message to rcpts and returns each recipient's error and whether
// the session can carry another message.
func (s *session) transact(from string, rcpts []string, msg []byte) ([]error, bool) {
	if !s.pipelining {
		return transact(s.c, from, rcpts, msg)
	}
	errs := make([]error, len(rcpts))
	failAll := func(err error) ([]error, bool) {
		for i := range errs {
			if errs[i] == nil {
				errs[i] = err
			}
		}
		return errs, false
	}
	s.raw.SetDeadline(time.Now().Add(s.timeout))
	defer s.raw.SetDeadline(time.Time{})
	fmt.Fprintf(s.w, "MAIL FROM:<%s>\r\n", from)
	for _, r := range rcpts {
		fmt.Fprintf(s.w, "RCPT TO:<%s>\r\n", r)
	}
	s.w.WriteString("DATA\r\n")
	if err := s.w.Flush(); err != nil {
		return failAll(err)
	}
	_, mailErr := s.reply()
	if mailErr != nil && isConnError(mailErr) {
		return failAll(mailErr)
	}
	accepted := 0
	for i := range rcpts {
		_, err := s.reply()
		switch {
		case err != nil && isConnError(err):
			return failAll(err)
		case mailErr != nil:
			errs[i] = mailErr
		case err != nil:
			errs[i] = err
		default:
			accepted++
		}
	}
	code, dataErr := s.reply()
	if dataErr != nil && isConnError(dataErr) {
		return failAll(dataErr)
	}
	if accepted == 0 || dataErr != nil {
		if code == 354 {
			// The server wants a message nobody is to get: leave rather than send one.
			return failAll(fmt.Errorf("upstream accepted DATA without recipients"))
		}
		for i := range errs {
			if errs[i] == nil {
				errs[i] = dataErr
			}
		}
		return errs, s.reset()
	}
	s.raw.SetDeadline(time.Now().Add(2 * s.timeout))
	dw := textproto.NewWriter(s.w).DotWriter()
	if _, err := dw.Write(msg); err != nil {
		return failAll(err)
	}
	if err := dw.Close(); err != nil {
		return failAll(err)
	}
	if err := s.w.Flush(); err != nil {
		return failAll(err)
	}
	if _, err := s.reply(); err != nil {
		for i := range errs {
			if errs[i] == nil {
				errs[i] = err
			}
		}
		return errs, !isConnError(err)
	}
	return errs, true
}

func (s *session) reset() bool {
	s.w.WriteString("RSET\r\n")
	if s.w.Flush() != nil {
		return false
	}
	_, err := s.reply()
	return err == nil
}
