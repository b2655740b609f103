package relay

import (
	"bufio"
	"errors"
	"fmt"
	"net"
	"net/textproto"
	"strconv"
	"strings"
	"time"

	"github.com/emersion/go-smtp"

	"github.com/deskgate/deskgate/gateway/addr"
)

// session is one upstream connection. go-smtp's client sets it up (greeting, EHLO,
// TLS, AUTH) and ends it; transactions go straight to the connection, so that with
// PIPELINING (RFC 2920) MAIL, every RCPT and DATA leave in one write: go-smtp's
// client waits for each reply, and that round trip per command was the relay's cost.
// Without PIPELINING the same commands go one by one.
type session struct {
	c          *smtp.Client
	raw        net.Conn
	r          *textproto.Reader
	w          *bufio.Writer
	pipelining bool
	// dsn: the upstream offers DSN (RFC 3461), so each RCPT carries ORCPT, and a DSN about
	// the copy names the address deskgate sent it to in Original-Recipient, even after a
	// forward: that is the only address by which T6 lets a DSN fail a recipient.
	dsn bool
	// smtputf8: the upstream offers SMTPUTF8 (RFC 6531), so a delivery that needs UTF-8 goes
	// as it is; without it the relay downgrades the header and sends only to addresses that
	// have an ASCII form.
	smtputf8 bool
	timeout  time.Duration
}

func newSession(c *smtp.Client, raw net.Conn, timeout time.Duration) *session {
	pipelining, _ := c.Extension("PIPELINING")
	dsn, _ := c.Extension("DSN")
	smtputf8, _ := c.Extension("SMTPUTF8")
	return &session{c: c, raw: raw, r: textproto.NewReader(bufio.NewReader(raw)), w: bufio.NewWriter(raw),
		pipelining: pipelining, dsn: dsn, smtputf8: smtputf8, timeout: timeout}
}

// xtext encodes an address for ORCPT (RFC 3461 4): "+", "=" and what is not printable
// ASCII become "+XX".
func xtext(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c < 33 || c > 126 || c == '+' || c == '=' {
			fmt.Fprintf(&b, "+%02X", c)
		} else {
			b.WriteByte(c)
		}
	}
	return b.String()
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

// errNotSent stands for the reply to a command left unsent without PIPELINING, because
// an earlier reply made it pointless.
var errNotSent = errors.New("not sent")

type reply struct {
	code int
	err  error
}

// transact sends one message to rcpts and returns each recipient's error and whether
// the session can carry another message. The commands are MAIL, one RCPT per
// recipient and DATA: with PIPELINING they leave in one write, without it one by one;
// the replies are read in the same order and judged the same way. utf8 puts SMTPUTF8 on
// MAIL (RFC 6531): the caller sets it only when the upstream offers it and the message
// needs it.
func (s *session) transact(from string, rcpts []string, msg []byte, utf8 bool) ([]error, bool) {
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
	cmds := make([]string, 0, len(rcpts)+2)
	mail := "MAIL FROM:<" + from + ">"
	if utf8 {
		mail += " SMTPUTF8"
	}
	cmds = append(cmds, mail)
	for _, r := range rcpts {
		switch {
		case s.dsn && !addr.IsASCII(r):
			// RFC 6533: the utf-8 address type, in its ASCII form, which any next hop carries.
			cmds = append(cmds, "RCPT TO:<"+r+"> ORCPT=utf-8;"+utf8AddrXtext(r))
		case s.dsn:
			cmds = append(cmds, "RCPT TO:<"+r+"> ORCPT=rfc822;"+xtext(r))
		default:
			cmds = append(cmds, "RCPT TO:<"+r+">")
		}
	}
	cmds = append(cmds, "DATA")
	last := len(cmds) - 1
	replies := make([]reply, len(cmds))
	if s.pipelining {
		for _, c := range cmds {
			s.w.WriteString(c + "\r\n")
		}
		if err := s.w.Flush(); err != nil {
			return failAll(err)
		}
	}
	sentRcpts := 0
	for i, c := range cmds {
		if !s.pipelining {
			if (i > 0 && replies[0].err != nil) || (i == last && sentRcpts == 0) {
				replies[i] = reply{err: errNotSent}
				continue
			}
			s.w.WriteString(c + "\r\n")
			if err := s.w.Flush(); err != nil {
				return failAll(err)
			}
		}
		code, err := s.reply()
		if err != nil && isConnError(err) {
			return failAll(err)
		}
		replies[i] = reply{code: code, err: err}
		if i > 0 && i < last && err == nil {
			sentRcpts++
		}
	}
	accepted := 0
	for i := range rcpts {
		switch {
		case replies[0].err != nil:
			errs[i] = replies[0].err
		case replies[i+1].err != nil:
			errs[i] = replies[i+1].err
		default:
			accepted++
		}
	}
	data := replies[last]
	if accepted == 0 || data.err != nil {
		if data.code == 354 {
			// The server wants a message nobody is to get: leave rather than send one.
			return failAll(fmt.Errorf("upstream accepted DATA without recipients"))
		}
		for i := range errs {
			if errs[i] == nil {
				errs[i] = data.err
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
