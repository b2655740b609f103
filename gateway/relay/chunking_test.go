package relay

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"net/textproto"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emersion/go-smtp"
)

// fakeUpstream is an SMTP server on loopback that offers the EHLO keywords of ext and records
// every command line and every message exactly as it came: a BDAT chunk as its raw octets, a
// DATA message once its dot-stuffing is taken away, as a receiver does.
type fakeUpstream struct {
	ext []string
	// answer gives the reply to a command line: MAIL, RCPT, BDAT (after its chunk was read),
	// DATA, and "." for the end of DATA's message. "" drops the connection instead.
	answer func(cmd string) string

	mu       sync.Mutex
	lines    []string // the commands, "<chunk>" or "<message>" where a message came
	messages [][]byte
}

func startFake(t testing.TB, ext []string, answer func(string) string) (*fakeUpstream, string) {
	t.Helper()
	f := &fakeUpstream{ext: ext, answer: answer}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			go f.serve(c)
		}
	}()
	return f, l.Addr().String()
}

// okAnswers accepts everything.
func okAnswers(cmd string) string {
	switch {
	case strings.HasPrefix(cmd, "MAIL"):
		return "250 2.1.0 Ok"
	case strings.HasPrefix(cmd, "RCPT"):
		return "250 2.1.5 Ok"
	case cmd == "DATA":
		return "354 End data with <CR><LF>.<CR><LF>"
	}
	return "250 2.0.0 Ok: queued as FAKE"
}

// answerNth is an upstream that gives answer to the nth command named verb ("." for a
// message's end), and okAnswers to the rest.
func answerNth(verb string, nth int, answer string) func(string) string {
	n := 0
	return func(cmd string) string {
		if cmd == verb || strings.HasPrefix(cmd, verb+" ") {
			n++
			if n == nth {
				return answer
			}
		}
		return okAnswers(cmd)
	}
}

func (f *fakeUpstream) record(line string, msg []byte) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.lines = append(f.lines, line)
	if msg != nil {
		f.messages = append(f.messages, msg)
	}
}

func (f *fakeUpstream) seen() ([]string, [][]byte) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]string(nil), f.lines...), append([][]byte(nil), f.messages...)
}

func (f *fakeUpstream) serve(c net.Conn) {
	defer c.Close()
	r := bufio.NewReader(c)
	say := func(s string) bool {
		if s == "" {
			return false
		}
		_, err := io.WriteString(c, s+"\r\n")
		return err == nil
	}
	say("220 fake.test ESMTP")
	for {
		line, err := r.ReadString('\n')
		if err != nil {
			return
		}
		cmd := strings.TrimRight(line, "\r\n")
		verb := strings.ToUpper(strings.SplitN(cmd, " ", 2)[0])
		var reply string
		switch verb {
		case "EHLO":
			reply = "250-fake.test"
			for _, e := range f.ext {
				reply += "\r\n250-" + e
			}
			reply += "\r\n250 ENHANCEDSTATUSCODES"
		case "QUIT":
			say("221 2.0.0 Bye")
			return
		case "NOOP", "RSET":
			f.record(cmd, nil)
			reply = "250 2.0.0 Ok"
		case "BDAT":
			f.record(cmd, nil)
			fields := strings.Fields(cmd)
			n, err := strconv.Atoi(fields[1])
			if err != nil {
				return
			}
			// RFC 3030: the chunk is read whatever the reply to its command will be.
			chunk := make([]byte, n)
			if _, err := io.ReadFull(r, chunk); err != nil {
				return
			}
			f.record("<chunk>", chunk)
			reply = f.answer(cmd)
		case "DATA":
			f.record(cmd, nil)
			reply = f.answer(cmd)
			if strings.HasPrefix(reply, "354") {
				say(reply)
				var msg []byte
				for {
					l, err := r.ReadString('\n')
					if err != nil {
						return
					}
					if l == ".\r\n" {
						break
					}
					msg = append(msg, strings.TrimPrefix(l, ".")...)
				}
				f.record("<message>", msg)
				reply = f.answer(".")
			}
		default:
			f.record(cmd, nil)
			reply = f.answer(cmd)
		}
		if !say(reply) {
			return
		}
	}
}

// countingConn counts the client's writes, and its round trips: reads that follow a write.
type countingConn struct {
	net.Conn
	mu                 sync.Mutex
	writes, roundTrips int
	wrote              bool
}

func (c *countingConn) Write(p []byte) (int, error) {
	c.mu.Lock()
	c.writes++
	c.wrote = true
	c.mu.Unlock()
	return c.Conn.Write(p)
}

func (c *countingConn) Read(p []byte) (int, error) {
	c.mu.Lock()
	if c.wrote {
		c.roundTrips++
		c.wrote = false
	}
	c.mu.Unlock()
	return c.Conn.Read(p)
}

func (c *countingConn) counts() (int, int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	w, rt := c.writes, c.roundTrips
	c.writes, c.roundTrips, c.wrote = 0, 0, false
	return w, rt
}

// dialFake opens a session to addr as the upstream deliverer does (go-smtp's EHLO, then
// newSession), with the connection's writes counted from the first transaction on.
func dialFake(t testing.TB, addr string) (*session, *countingConn) {
	t.Helper()
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	cc := &countingConn{Conn: conn}
	c := smtp.NewClient(cc)
	if err := c.Hello("mx.deskgate.test"); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	s := newSession(c, cc, 5*time.Second)
	cc.counts()
	return s, cc
}

// A message with lines that DATA would have to dot-stuff, one of them a lone dot.
const dotty = "From: Support <support@example.com>\r\nSubject: dots\r\n\r\n.leading dot\r\n..two dots\r\n.\r\nlast line\r\n"

func TestChunkingPipelinedIsOneWriteAndOneRoundTrip(t *testing.T) {
	f, addr := startFake(t, []string{"PIPELINING", "CHUNKING", "8BITMIME"}, okAnswers)
	s, cc := dialFake(t, addr)
	if !s.chunking || !s.pipelining {
		t.Fatalf("the upstream offers CHUNKING and PIPELINING, the session uses chunking=%v pipelining=%v", s.chunking, s.pipelining)
	}
	errs, usable := s.transact("bounce@example.com", []string{"a@x.test", "b@x.test"}, []byte(dotty), false)
	if errs[0] != nil || errs[1] != nil || !usable {
		t.Fatalf("errs %v usable %v", errs, usable)
	}
	if w, rt := cc.counts(); w != 1 || rt != 1 {
		t.Errorf("%d writes and %d round trips for one message, want 1 and 1", w, rt)
	}
	lines, msgs := f.seen()
	want := fmt.Sprintf("MAIL FROM:<bounce@example.com>|RCPT TO:<a@x.test>|RCPT TO:<b@x.test>|BDAT %d LAST|<chunk>", len(dotty))
	if strings.Join(lines, "|") != want {
		t.Fatalf("the upstream saw %q, want %q", strings.Join(lines, "|"), want)
	}
	if string(msgs[0]) != dotty {
		t.Fatalf("the chunk is %q, want the message as it is, unstuffed:\n%q", msgs[0], dotty)
	}
	// The session carries the next message the same way.
	errs, usable = s.transact("bounce@example.com", []string{"c@x.test"}, []byte("Subject: 2\r\n\r\nx\r\n"), false)
	if errs[0] != nil || !usable {
		t.Fatalf("second message: errs %v usable %v", errs, usable)
	}
	if _, msgs := f.seen(); len(msgs) != 2 || string(msgs[1]) != "Subject: 2\r\n\r\nx\r\n" {
		t.Fatalf("second message arrived as %q", msgs[1:])
	}
}

// Over DATA the same message is two round trips, and arrives as the same octets: BDAT changes
// how it travels, not what the upstream stores.
func TestChunkingDeliversWhatDATADelivers(t *testing.T) {
	for _, msg := range []string{dotty, "Subject: no line break at the end\r\n\r\nlast", "Subject: bare\n\nLF lines\n.dot\n", "Subject: cr\r\n\r\nends in CR\r", ""} {
		byData, addr := startFake(t, []string{"PIPELINING", "8BITMIME"}, okAnswers)
		s, cc := dialFake(t, addr)
		if errs, usable := s.transact("b@example.com", []string{"a@x.test"}, []byte(msg), false); errs[0] != nil || !usable {
			t.Fatalf("DATA: errs %v usable %v", errs, usable)
		}
		if w, rt := cc.counts(); w != 2 || rt != 2 {
			t.Errorf("DATA: %d writes and %d round trips, want 2 and 2", w, rt)
		}
		byBDAT, addr := startFake(t, []string{"PIPELINING", "CHUNKING", "8BITMIME"}, okAnswers)
		s, _ = dialFake(t, addr)
		if errs, usable := s.transact("b@example.com", []string{"a@x.test"}, []byte(msg), false); errs[0] != nil || !usable {
			t.Fatalf("BDAT: errs %v usable %v", errs, usable)
		}
		_, viaData := byData.seen()
		lines, viaBDAT := byBDAT.seen()
		if !bytes.Equal(viaData[0], viaBDAT[0]) {
			t.Errorf("%q: DATA delivered %q, BDAT %q", msg, viaData[0], viaBDAT[0])
		}
		if want := fmt.Sprintf("BDAT %d LAST", len(viaBDAT[0])); lines[2] != want {
			t.Errorf("%q: %q, want %q", msg, lines[2], want)
		}
	}
}

func TestChunkingAddsTheFinalLineBreak(t *testing.T) {
	f, addr := startFake(t, []string{"PIPELINING", "CHUNKING"}, okAnswers)
	s, _ := dialFake(t, addr)
	msg := "Subject: x\r\n\r\nno line break at the end"
	if errs, _ := s.transact("b@example.com", []string{"a@x.test"}, []byte(msg), false); errs[0] != nil {
		t.Fatal(errs)
	}
	lines, msgs := f.seen()
	if lines[2] != fmt.Sprintf("BDAT %d LAST", len(msg)+2) || string(msgs[0]) != msg+"\r\n" {
		t.Fatalf("the upstream saw %q and the chunk %q", lines[2], msgs[0])
	}
}

func TestChunkingWithoutPipeliningSendsCommandsOneByOne(t *testing.T) {
	f, addr := startFake(t, []string{"CHUNKING"}, okAnswers)
	s, cc := dialFake(t, addr)
	if errs, usable := s.transact("b@example.com", []string{"a@x.test", "c@x.test"}, []byte(dotty), false); errs[0] != nil || errs[1] != nil || !usable {
		t.Fatalf("errs %v usable %v", errs, usable)
	}
	// MAIL, each RCPT, then BDAT with its chunk in one write.
	if w, rt := cc.counts(); w != 4 || rt != 4 {
		t.Errorf("%d writes and %d round trips, want 4 and 4", w, rt)
	}
	lines, msgs := f.seen()
	if got := strings.Join(lines, "|"); got != fmt.Sprintf("MAIL FROM:<b@example.com>|RCPT TO:<a@x.test>|RCPT TO:<c@x.test>|BDAT %d LAST|<chunk>", len(dotty)) {
		t.Fatalf("the upstream saw %q", got)
	}
	if string(msgs[0]) != dotty {
		t.Fatalf("chunk %q", msgs[0])
	}
}

// refusing answers with code the RCPT of each address in refused, and finalReply the message.
func refusing(refused map[string]string, finalReply string) func(string) string {
	return func(cmd string) string {
		for a, reply := range refused {
			if strings.HasPrefix(cmd, "RCPT TO:<"+a+">") {
				return reply
			}
		}
		if strings.HasPrefix(cmd, "BDAT") || cmd == "." {
			return finalReply
		}
		return okAnswers(cmd)
	}
}

// Each recipient's result over BDAT is what it was over DATA, with and without PIPELINING.
func TestChunkingGivesEachRecipientWhatDATAGave(t *testing.T) {
	cases := []struct {
		name    string
		refused map[string]string
		final   string
	}{
		{"one refused", map[string]string{"b@x.test": "550 5.1.1 no such user"}, "250 2.0.0 Ok"},
		{"one deferred", map[string]string{"b@x.test": "450 4.2.0 mailbox busy"}, "250 2.0.0 Ok"},
		{"message refused", map[string]string{"b@x.test": "550 5.1.1 no such user"}, "554 5.7.1 spam"},
		{"message deferred", nil, "451 4.3.0 try later"},
	}
	for _, c := range cases {
		for _, pipelining := range []bool{true, false} {
			var results [2][]string
			var reuse [2]bool
			for i, ext := range [][]string{{"8BITMIME"}, {"8BITMIME", "CHUNKING"}} {
				if pipelining {
					ext = append(ext, "PIPELINING")
				}
				_, addr := startFake(t, ext, refusing(c.refused, c.final))
				s, _ := dialFake(t, addr)
				errs, usable := s.transact("b@example.com", []string{"a@x.test", "b@x.test"}, []byte(dotty), false)
				for _, err := range errs {
					results[i] = append(results[i], fmt.Sprintf("%#v", err))
				}
				reuse[i] = usable && s.Noop() == nil
			}
			if strings.Join(results[0], "\n") != strings.Join(results[1], "\n") || !reuse[1] {
				t.Errorf("%s, pipelining=%v:\nDATA %v\nBDAT %v, usable %v", c.name, pipelining, results[0], results[1], reuse[1])
			}
		}
	}
}

func TestChunkingWithEveryRecipientRefused(t *testing.T) {
	refused := map[string]string{"a@x.test": "550 5.1.1 no such user", "b@x.test": "550 5.1.1 no such user"}
	// With PIPELINING the chunk has left with the commands: the upstream reads it and refuses
	// it, and the transaction is reset.
	f, addr := startFake(t, []string{"PIPELINING", "CHUNKING"}, refusing(refused, "554 5.5.1 Error: no valid recipients"))
	s, _ := dialFake(t, addr)
	errs, usable := s.transact("b@example.com", []string{"a@x.test", "b@x.test"}, []byte(dotty), false)
	if code(errs[0]) != 550 || code(errs[1]) != 550 || !usable {
		t.Fatalf("pipelined: errs %v usable %v", errs, usable)
	}
	lines, _ := f.seen()
	if got := strings.Join(lines, "|"); got != fmt.Sprintf("MAIL FROM:<b@example.com>|RCPT TO:<a@x.test>|RCPT TO:<b@x.test>|BDAT %d LAST|<chunk>|RSET", len(dotty)) {
		t.Fatalf("pipelined: the upstream saw %q", got)
	}
	// Without PIPELINING no BDAT is sent.
	f, addr = startFake(t, []string{"CHUNKING"}, refusing(refused, "250 2.0.0 Ok"))
	s, _ = dialFake(t, addr)
	errs, usable = s.transact("b@example.com", []string{"a@x.test", "b@x.test"}, []byte(dotty), false)
	if code(errs[0]) != 550 || code(errs[1]) != 550 || !usable {
		t.Fatalf("one by one: errs %v usable %v", errs, usable)
	}
	if lines, _ := f.seen(); strings.Join(lines, "|") != "MAIL FROM:<b@example.com>|RCPT TO:<a@x.test>|RCPT TO:<b@x.test>|RSET" {
		t.Fatalf("one by one: the upstream saw %q", lines)
	}
	// An upstream that says 250 to a message for nobody is not believed, and not used again.
	_, addr = startFake(t, []string{"PIPELINING", "CHUNKING"}, refusing(refused, "250 2.0.0 Ok: queued"))
	s, _ = dialFake(t, addr)
	errs, usable = s.transact("b@example.com", []string{"a@x.test", "b@x.test"}, []byte(dotty), false)
	if code(errs[0]) != 550 || code(errs[1]) != 550 || usable {
		t.Fatalf("a message for nobody accepted: errs %v usable %v", errs, usable)
	}
}

func TestChunkingRefusedMAIL(t *testing.T) {
	for _, pipelining := range []bool{true, false} {
		ext := []string{"CHUNKING"}
		if pipelining {
			ext = append(ext, "PIPELINING")
		}
		f, addr := startFake(t, ext, func(cmd string) string {
			if strings.HasPrefix(cmd, "MAIL") {
				return "451 4.3.0 try later"
			}
			return "503 5.5.1 Error: need MAIL command"
		})
		s, _ := dialFake(t, addr)
		errs, usable := s.transact("b@example.com", []string{"a@x.test"}, []byte(dotty), false)
		if code(errs[0]) != 451 || !usable {
			t.Errorf("pipelining=%v: errs %v usable %v", pipelining, errs, usable)
		}
		want := "MAIL FROM:<b@example.com>|RSET"
		if pipelining {
			want = fmt.Sprintf("MAIL FROM:<b@example.com>|RCPT TO:<a@x.test>|BDAT %d LAST|<chunk>|RSET", len(dotty))
		}
		if lines, _ := f.seen(); strings.Join(lines, "|") != want {
			t.Errorf("pipelining=%v: the upstream saw %q", pipelining, lines)
		}
	}
}

// A 421 or a lost connection in answer to BDAT: nothing is known to be delivered, so the
// accepted recipients get a temporary error, the refused ones keep their refusal, and the
// session is given up.
func TestChunkingInterruptedAtBDAT(t *testing.T) {
	for _, final := range []string{"421 4.4.2 closing", ""} {
		for _, pipelining := range []bool{true, false} {
			ext := []string{"CHUNKING"}
			if pipelining {
				ext = append(ext, "PIPELINING")
			}
			_, addr := startFake(t, ext, refusing(map[string]string{"b@x.test": "550 5.1.1 no such user"}, final))
			s, _ := dialFake(t, addr)
			errs, usable := s.transact("b@example.com", []string{"a@x.test", "b@x.test"}, []byte(dotty), false)
			if errs[0] == nil || usable || code(errs[1]) != 550 {
				t.Errorf("%q, pipelining=%v: errs %v usable %v", final, pipelining, errs, usable)
			}
			if final != "" && code(errs[0]) != 421 {
				t.Errorf("pipelining=%v: %v, want the 421", pipelining, errs[0])
			}
		}
	}
}

// Through the worker: a 421 in answer to BDAT leaves the delivery queued for another try, and
// never marks it sent.
func TestChunking421OnBDATIsDeferred(t *testing.T) {
	f, addr := startFake(t, []string{"PIPELINING", "CHUNKING"}, refusing(nil, "421 4.4.2 closing"))
	w, st := newWorker(t, testConfig(t, addr, nil))
	id := queueOne(t, st, "a@customer.test")
	w.RunOnce(context.Background())
	d := delivery(t, st, id)
	if d.State != "queued" || d.Recipients[0].State != "queued" || !strings.Contains(d.Recipients[0].Reply, "421") {
		t.Fatalf("after a 421 to BDAT: delivery %s, recipient %s %q", d.State, d.Recipients[0].State, d.Recipients[0].Reply)
	}
	if lines, _ := f.seen(); !strings.HasPrefix(lines[len(lines)-2], "BDAT ") {
		t.Fatalf("the upstream saw %q", lines)
	}
}

// FuzzDataOctets: for any message, what DATA sends (message) is exactly what textproto's dot
// writer sends, and the BDAT chunk is that once the dot-stuffing and the final dot are taken
// away, as the receiver takes them.
func FuzzDataOctets(f *testing.F) {
	for _, s := range []string{"", dotty, "a", "a\n", "a\r", "\r\r\n", ".\n.", "\n\n.", "x\r\r\r\n.y", "\r.\r\n..\r"} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, msg []byte) {
		var sent bytes.Buffer
		bw := bufio.NewWriter(&sent)
		dw := textproto.NewWriter(bw).DotWriter()
		dw.Write(msg)
		dw.Close()
		var stuffed bytes.Buffer
		s := &session{w: bufio.NewWriter(&stuffed)}
		if err := s.message(append([]byte(nil), msg...), nil); err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(stuffed.Bytes(), sent.Bytes()) {
			t.Fatalf("%q: DATA sends %q, the dot writer %q", msg, stuffed.Bytes(), sent.Bytes())
		}
		body, ok := bytes.CutSuffix(sent.Bytes(), []byte(".\r\n"))
		if !ok {
			t.Fatalf("the dot writer ended %q without a dot", sent.Bytes())
		}
		var stored []byte
		for len(body) > 0 {
			line := body
			if i := bytes.Index(body, []byte("\r\n")); i >= 0 {
				line = body[:i+2]
			}
			body = body[len(line):]
			stored = append(stored, bytes.TrimPrefix(line, []byte("."))...)
		}
		chunk, tail := dataOctets(append([]byte(nil), msg...))
		if got := append(append([]byte(nil), chunk...), tail...); !bytes.Equal(got, stored) {
			t.Fatalf("%q: BDAT sends %q, DATA stores %q", msg, got, stored)
		}
	})
}

// go-smtp's server, another implementation of RFC 3030, offers CHUNKING: the upstream
// deliverer sends to it with BDAT, and the message it stores is the message as queued.
func TestChunkingToGoSMTPServer(t *testing.T) {
	up := &upstreamServer{refuse: map[string]int{"gone@customer.test": 550}}
	addr := serve(t, up)
	u := newUpstream(testConfig(t, addr, nil), nil, time.Now)
	defer u.Close()
	errs := u.Deliver(Envelope{ID: 1, From: "b@example.com", Rcpts: []string{"a@customer.test", "gone@customer.test"}, Msg: []byte(dotty)})
	if errs[0] != nil || code(errs[1]) != 550 {
		t.Fatalf("errs %v", errs)
	}
	c, err := u.session()
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if !c.chunking {
		t.Fatal("go-smtp's server offers CHUNKING, and the session does not use it")
	}
	up.mu.Lock()
	defer up.mu.Unlock()
	if len(up.got) != 1 || string(up.got[0].data) != dotty || strings.Join(up.got[0].rcpts, ",") != "a@customer.test" {
		t.Fatalf("go-smtp got %+v, want %q for a@customer.test", up.got, dotty)
	}
	if up.sessions != 1 {
		t.Errorf("%d sessions: the one that sent the message was not reused", up.sessions)
	}
}

// BenchmarkTransact sends a 1.5 KiB message over one pipelined session to a loopback
// upstream, over DATA and over BDAT, and reports the client's writes and round trips per
// message beside the time.
func BenchmarkTransact(b *testing.B) {
	msg := []byte("From: Support <support@example.com>\r\nSubject: bench\r\n\r\n" + strings.Repeat("a line of the acknowledgement, as composed\r\n", 34))
	for _, ext := range [][]string{{"PIPELINING"}, {"PIPELINING", "CHUNKING"}} {
		name := "DATA"
		if len(ext) == 2 {
			name = "BDAT"
		}
		b.Run(name, func(b *testing.B) {
			_, addr := startFake(b, ext, okAnswers)
			s, cc := dialFake(b, addr)
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				if errs, _ := s.transact("b@example.com", []string{"a@x.test"}, msg, false); errs[0] != nil {
					b.Fatal(errs[0])
				}
			}
			b.StopTimer()
			w, rt := cc.counts()
			b.ReportMetric(float64(w)/float64(b.N), "writes/msg")
			b.ReportMetric(float64(rt)/float64(b.N), "roundtrips/msg")
		})
	}
}

// A reply that is no refusal but not the one the command asks for (a 354 or 334 to the end of
// the message, a 250 to DATA, a 354 to MAIL) is not an acceptance: the recipients are tried
// again later, none is recorded as sent, and the session is dropped, its state unknown. This
// holds over BDAT and over DATA, with PIPELINING and without.
func TestRepliesOfTheWrongClassAreNoAcceptance(t *testing.T) {
	cases := []struct {
		name  string
		ext   []string
		wrong func(cmd string) (string, bool)
	}{
		{"354 to BDAT", []string{"PIPELINING", "CHUNKING"}, func(cmd string) (string, bool) {
			return "354 go on", strings.HasPrefix(cmd, "BDAT")
		}},
		{"334 to BDAT without PIPELINING", []string{"CHUNKING"}, func(cmd string) (string, bool) {
			return "334 what", strings.HasPrefix(cmd, "BDAT")
		}},
		{"354 to the final dot", []string{"PIPELINING"}, func(cmd string) (string, bool) { return "354 more", cmd == "." }},
		{"250 to DATA", []string{"PIPELINING"}, func(cmd string) (string, bool) { return "250 2.0.0 fine", cmd == "DATA" }},
		{"354 to MAIL", []string{"PIPELINING", "CHUNKING"}, func(cmd string) (string, bool) {
			return "354 hm", strings.HasPrefix(cmd, "MAIL")
		}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, addr := startFake(t, c.ext, func(cmd string) string {
				if r, ok := c.wrong(cmd); ok {
					return r
				}
				return okAnswers(cmd)
			})
			s, _ := dialFake(t, addr)
			errs, usable := s.transact("b@example.com", []string{"a@x.test"}, []byte("Subject: hi\r\n\r\nhello\r\n"), false)
			if errs[0] == nil {
				t.Fatalf("the recipient counts as delivered after %s", c.name)
			}
			if permanent(errs[0]) {
				t.Errorf("%s failed the recipient for good (%v); it should be tried again", c.name, errs[0])
			}
			if usable {
				t.Errorf("the session was kept after %s", c.name)
			}
		})
	}
}
