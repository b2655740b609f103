package relay

import (
	"bufio"
	"bytes"
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
// Without PIPELINING the same commands go one by one. When the upstream offers CHUNKING
// (RFC 3030), BDAT takes DATA's place and the message follows it in the same write, so
// that with PIPELINING the whole transaction is one write and one wait for replies.
type session struct {
	c          *smtp.Client
	raw        net.Conn
	r          *textproto.Reader
	w          *bufio.Writer
	pipelining bool
	// chunking: the upstream offers CHUNKING, so the message goes as one BDAT LAST chunk: no
	// 354 to wait for, and no dot-stuffing. Every upstream that offers it gets it, as nothing
	// is lost by it: the octets the upstream stores are the same as over DATA.
	chunking bool
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
	chunking, _ := c.Extension("CHUNKING")
	return &session{c: c, raw: raw, r: textproto.NewReader(bufio.NewReader(raw)), w: bufio.NewWriter(raw),
		pipelining: pipelining, chunking: chunking, dsn: dsn, smtputf8: smtputf8, timeout: timeout}
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
func (s *session) reply(class int) (int, error) {
	code, msg, err := s.r.ReadResponse(0)
	if err != nil {
		return 0, err
	}
	switch {
	case code >= 400:
		return code, toSMTPError(code, msg)
	case code/100 != class:
		// Not a refusal, but not what the command asks for either (a 354 to the final dot, a
		// 250 to DATA): where the upstream stands is unknown, so the message counts as not
		// taken (tried again later) and the session is dropped, as after a lost connection.
		return code, fmt.Errorf("the upstream answered %d %s where a %dxx reply was due", code, printableReply(msg), class)
	}
	return code, nil
}

// printableReply keeps an upstream's reply text short and to printable ASCII, as it goes into
// logs and the delivery's record.
func printableReply(msg string) string {
	out := []rune{}
	for _, r := range msg {
		if len(out) == 80 {
			break
		}
		if r < ' ' || r > '~' {
			r = '?'
		}
		out = append(out, r)
	}
	return string(out)
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
// recipient and DATA, or BDAT with the message when the upstream offers CHUNKING: with
// PIPELINING they leave in one write, without it one by one; the replies are read in the
// same order and judged the same way. utf8 puts SMTPUTF8 on MAIL (RFC 6531): the caller
// sets it only when the upstream offers it and the message needs it.
func (s *session) transact(from string, rcpts []string, msg []byte, utf8 bool) ([]error, bool) {
	errs := make([]error, len(rcpts))
	s.raw.SetDeadline(time.Now().Add(s.timeout))
	defer s.raw.SetDeadline(time.Time{})
	cmds := s.commands(from, rcpts, utf8)
	if s.chunking {
		return s.chunked(cmds, msg, errs)
	}
	replies, err := s.exchange(append(cmds, "DATA"), nil)
	if err != nil {
		return failRest(errs, err), false
	}
	accepted := judge(replies, errs)
	data := replies[len(replies)-1]
	if accepted == 0 || data.err != nil {
		if data.code/100 == 3 {
			// The server wants a message nobody is to get: leave rather than send one.
			return failRest(errs, fmt.Errorf("upstream accepted DATA without recipients")), false
		}
		return failRest(errs, data.err), s.reset()
	}
	return s.data(msg, errs)
}

// chunked ends the transaction that cmds begin with the message as one BDAT LAST chunk, sent
// with the last command (and with PIPELINING in the same write as all of them). Each
// recipient's result is what DATA would have given: the refusal of MAIL or of its RCPT, else
// the reply to BDAT, which stands for the reply to DATA's final dot. A 421 or a lost connection
// while BDAT's reply is awaited leaves the accepted recipients with that error, to be tried
// again, never sent.
func (s *session) chunked(cmds []string, msg []byte, errs []error) ([]error, bool) {
	chunk, tail := dataOctets(msg)
	cmds = append(cmds, "BDAT "+strconv.Itoa(len(chunk)+len(tail))+" LAST")
	replies, err := s.exchange(cmds, func(w *bufio.Writer) {
		w.Write(chunk)
		w.Write(tail)
	})
	if err != nil {
		if len(replies) == len(cmds)-1 {
			// Only BDAT's reply is missing: the refused recipients keep their refusals, as
			// after a failure at DATA's final dot.
			judge(replies, errs)
		}
		return failRest(errs, err), false
	}
	accepted := judge(replies, errs)
	bdat := replies[len(replies)-1]
	switch {
	case accepted == 0 && bdat.err == nil:
		// The server took a message nobody is to get: what else it got wrong is unknown.
		return failRest(errs, fmt.Errorf("upstream accepted BDAT without recipients")), false
	case bdat.err == errNotSent:
		// Without PIPELINING, BDAT went unsent because no recipient was accepted.
		return errs, s.reset()
	case bdat.err != nil:
		// DATA's final reply ends the transaction; RFC 3030 does not say where a refused
		// chunk leaves it (RFC 1830 before it asked for RSET), so RSET makes it known
		// before the session carries another message.
		return failRest(errs, bdat.err), s.reset()
	}
	return errs, true
}

// dataOctets are the octets an upstream stores for msg: what textproto's dot writer would
// send over DATA, once the upstream has taken the dot-stuffing and the final dot away. A lone
// LF becomes CRLF, and a message whose last line has no line break gets one. BDAT carries
// these octets, and message sends them stuffed, so that a message (and its DKIM signature)
// arrives the same either way. They are returned as msg, or a copy of it with the line breaks
// mended, and what its end lacks; msg is not copied when it needs no mending inside (the
// composer's CRLF lines never do).
func dataOctets(msg []byte) ([]byte, []byte) {
	const (
		lineStart = iota
		inLine
		afterCR
	)
	var out []byte // nil until an octet must be added inside msg
	state := lineStart
	for i, c := range msg {
		switch {
		case c == '\n' && state != afterCR:
			if out == nil {
				out = make([]byte, i, len(msg)+len(msg)/32+2)
				copy(out, msg)
			}
			out = append(out, '\r')
			state = lineStart
		case c == '\n':
			state = lineStart
		case c == '\r' && state != afterCR:
			state = afterCR
		default:
			// A CR after a CR ends no line: the dot writer counts it as text, and so the next
			// LF, if any, gets a CR of its own.
			state = inLine
		}
		if out != nil {
			out = append(out, c)
		}
	}
	if out == nil {
		out = msg
	}
	switch {
	case len(msg) == 0 || state == inLine:
		return out, []byte("\r\n")
	case state == afterCR:
		return out, []byte("\n")
	}
	return out, nil
}

// commands are the transaction's MAIL and one RCPT per recipient.
func (s *session) commands(from string, rcpts []string, utf8 bool) []string {
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
	return cmds
}

// exchange sends cmds and reads a reply for each; payload, if any, writes what follows the
// last command in the same write (BDAT's chunk). With PIPELINING they all leave in one
// write; without it they go one by one, and a command that an earlier reply made pointless
// (anything after a refused MAIL, the last command after no accepted RCPT) is left unsent,
// its reply errNotSent. An error is the connection's: the session is lost, and the replies
// returned are those read before it.
func (s *session) exchange(cmds []string, payload func(*bufio.Writer)) ([]reply, error) {
	if s.pipelining {
		if err := s.write(cmds, payload); err != nil {
			return nil, err
		}
		return s.readReplies(cmds)
	}
	last := len(cmds) - 1
	replies := make([]reply, 0, len(cmds))
	acceptedRcpts := 0
	for i := range cmds {
		if (i > 0 && replies[0].err != nil) || (i == last && acceptedRcpts == 0) {
			replies = append(replies, reply{err: errNotSent})
			continue
		}
		var p func(*bufio.Writer)
		if i == last {
			p = payload
		}
		if err := s.write(cmds[i:i+1], p); err != nil {
			return replies, err
		}
		code, err := s.reply(replyClass(cmds[i]))
		if err != nil && isConnError(err) {
			return replies, err
		}
		replies = append(replies, reply{code: code, err: err})
		if i > 0 && i < last && err == nil {
			acceptedRcpts++
		}
	}
	return replies, nil
}

// write sends command lines, and payload after them if any, in one flush. With a payload
// (the message) the deadline becomes twice the timeout, as for DATA's message.
func (s *session) write(cmds []string, payload func(*bufio.Writer)) error {
	for _, c := range cmds {
		s.w.WriteString(c)
		s.w.WriteString("\r\n")
	}
	if payload != nil {
		s.raw.SetDeadline(time.Now().Add(2 * s.timeout))
		payload(s.w)
	}
	return s.w.Flush()
}

// judge gives each recipient in errs the refusal of MAIL or of its RCPT, from the replies to
// MAIL, the RCPTs and DATA, and counts the recipients accepted.
func judge(replies []reply, errs []error) int {
	accepted := 0
	for i := range errs {
		switch {
		case replies[0].err != nil:
			errs[i] = replies[0].err
		case replies[i+1].err != nil:
			errs[i] = replies[i+1].err
		default:
			accepted++
		}
	}
	return accepted
}

// data sends the message after DATA's 354 and gives the reply to its final dot to each
// recipient accepted. The session stays usable unless the connection failed or the server
// is closing it (421).
func (s *session) data(msg []byte, errs []error) ([]error, bool) {
	s.raw.SetDeadline(time.Now().Add(2 * s.timeout))
	if err := s.message(msg, nil); err != nil {
		return failRest(errs, err), false
	}
	if _, err := s.reply(2); err != nil {
		return failRest(errs, err), !isConnError(err)
	}
	return errs, true
}

// chain sends trs one after another over a pipelining session, each message's end in the same
// flush as the next transaction's commands, and returns each recipient's error per transaction
// and whether the session can carry more. Each transaction is judged as transact judges it.
// Once the connection is lost or the upstream's state is unknown, the transactions not yet
// answered are left to be tried again (errChainCut), never counted as sent.
func (s *session) chain(trs []transaction) ([][]error, bool) {
	out := make([][]error, len(trs))
	for k, tr := range trs {
		out[k] = make([]error, len(tr.rcpts))
	}
	if len(trs) == 0 {
		return out, true
	}
	defer s.raw.SetDeadline(time.Time{})
	cut := func(from int, err error) ([][]error, bool) {
		for k := from; k < len(trs); k++ {
			failRest(out[k], fmt.Errorf("%w: %v", errChainCut, err))
		}
		return out, false
	}
	cmds := make([][]string, len(trs))
	for k, tr := range trs {
		cmds[k] = append(s.commands(tr.from, tr.rcpts, tr.utf8), "DATA")
	}
	s.raw.SetDeadline(time.Now().Add(s.timeout))
	if err := s.write(cmds[0], nil); err != nil {
		return cut(0, err)
	}
	rset := false // an RSET went ahead of transaction k's commands
	for k := range trs {
		if rset {
			if _, err := s.reply(2); err != nil {
				return cut(k, err)
			}
			rset = false
		}
		replies, err := s.readReplies(cmds[k])
		if err != nil {
			return cut(k, err)
		}
		accepted := judge(replies, out[k])
		data := replies[len(replies)-1]
		if accepted == 0 || data.err != nil {
			if data.code/100 == 3 {
				// The server wants a message nobody is to get: leave rather than send one.
				return cut(k, fmt.Errorf("upstream accepted DATA without recipients"))
			}
			failRest(out[k], data.err)
			if k+1 == len(trs) {
				return out, s.reset()
			}
			s.raw.SetDeadline(time.Now().Add(s.timeout))
			if err := s.write(append([]string{"RSET"}, cmds[k+1]...), nil); err != nil {
				return cut(k+1, err)
			}
			rset = true
			continue
		}
		var next []string
		if k+1 < len(trs) {
			next = cmds[k+1]
		}
		s.raw.SetDeadline(time.Now().Add(2 * s.timeout))
		if err := s.message(trs[k].msg, next); err != nil {
			failRest(out[k], err)
			return cut(k+1, err)
		}
		if _, err := s.reply(2); err != nil {
			failRest(out[k], err)
			if isConnError(err) {
				return cut(k+1, err)
			}
		}
	}
	return out, true
}

// errChainCut marks a delivery whose turn in a chain never came: the connection ended, or the
// upstream answered out of turn, before it. It is tried again, as after a lost connection.
var errChainCut = errors.New("not sent: the session to the upstream ended before this message's turn")

// readReplies reads one reply for each of cmds, already sent: a 2xx is due for each, a 3xx for
// DATA. A reply that says the session is over ends the reading.
func (s *session) readReplies(cmds []string) ([]reply, error) {
	replies := make([]reply, 0, len(cmds))
	for _, c := range cmds {
		code, err := s.reply(replyClass(c))
		if err != nil && isConnError(err) {
			return replies, err
		}
		replies = append(replies, reply{code: code, err: err})
	}
	return replies, nil
}

// replyClass is the class of reply that takes cmd forward: 3xx for DATA, 2xx for the rest.
func replyClass(cmd string) int {
	if cmd == "DATA" {
		return 3
	}
	return 2
}

// message sends msg dot-stuffed with its final dot, then next's command lines, in one flush:
// the message of every DATA transaction, alone or chained. One write matters in a chain: an
// upstream that answers each piece of its input as it reads it, with Nagle's algorithm on,
// would hold its second reply until this side's delayed ACK (40 ms). The octets are those
// textproto's dot writer sends (dataOctets, stuffed), so that DATA and BDAT carry the same.
func (s *session) message(msg []byte, next []string) error {
	chunk, tail := dataOctets(msg)
	stuff := func(b []byte, atLineStart bool) bool {
		for len(b) > 0 {
			if atLineStart && b[0] == '.' {
				s.w.WriteByte('.')
			}
			end := bytes.IndexByte(b, '\n') + 1
			if end == 0 {
				s.w.Write(b)
				return false
			}
			s.w.Write(b[:end])
			b, atLineStart = b[end:], true
		}
		return atLineStart
	}
	stuff(tail, stuff(chunk, true))
	s.w.WriteString(".\r\n")
	return s.write(next, nil)
}

// reset ends a transaction that sent no message, and reports whether the session survived.
func (s *session) reset() bool {
	if s.write([]string{"RSET"}, nil) != nil {
		return false
	}
	_, err := s.reply(2)
	return err == nil
}
