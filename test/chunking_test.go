package test

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// teeProxy passes each connection through to an upstream and keeps what the client sent,
// so that a test sees the exact octets deskgate put on the wire.
type teeProxy struct {
	addr string
	mu   sync.Mutex
	sent []*bytes.Buffer // per connection
}

func startTee(t *testing.T, upstream string) *teeProxy {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	p := &teeProxy{addr: l.Addr().String()}
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			up, err := net.Dial("tcp", upstream)
			if err != nil {
				c.Close()
				continue
			}
			buf := &bytes.Buffer{}
			p.mu.Lock()
			p.sent = append(p.sent, buf)
			p.mu.Unlock()
			go func() {
				defer up.Close()
				io.Copy(io.MultiWriter(up, lockedWriter{&p.mu, buf}), c)
			}()
			go func() {
				defer c.Close()
				io.Copy(c, up)
			}()
		}
	}()
	return p
}

type lockedWriter struct {
	mu *sync.Mutex
	w  io.Writer
}

func (l lockedWriter) Write(b []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(b)
}

// transactions reads the commands and messages of every connection the proxy carried.
func (p *teeProxy) transactions(t *testing.T) (cmds []string, chunks [][]byte) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, b := range p.sent {
		c, m := splitSMTP(t, b.Bytes())
		cmds, chunks = append(cmds, c...), append(chunks, m...)
	}
	return cmds, chunks
}

// splitSMTP cuts a client's side of a session into its command lines and the octets of each
// BDAT chunk; a DATA message, up to its dot, counts as the command "<data>".
func splitSMTP(t *testing.T, raw []byte) (cmds []string, chunks [][]byte) {
	for len(raw) > 0 {
		i := bytes.Index(raw, []byte("\r\n"))
		if i < 0 {
			t.Fatalf("a command without its line break: %q", raw)
		}
		line := string(raw[:i])
		raw = raw[i+2:]
		cmds = append(cmds, line)
		switch f := strings.Fields(line); {
		case len(f) >= 2 && strings.EqualFold(f[0], "BDAT"):
			n, err := strconv.Atoi(f[1])
			if err != nil || n > len(raw) {
				t.Fatalf("%q with %d octets after it", line, len(raw))
			}
			chunks, raw = append(chunks, raw[:n]), raw[n:]
		case strings.EqualFold(line, "DATA"):
			end := bytes.Index(raw, []byte("\r\n.\r\n"))
			if end < 0 {
				return cmds, chunks
			}
			cmds, raw = append(cmds, "<data>"), raw[end+5:]
		}
	}
	return cmds, chunks
}

// The reply that the end users' copy carries, with lines that DATA would have to dot-stuff:
// one of them a lone dot, which would end a message sent over DATA unstuffed.
const dottedReply = ".leading dot\n..two dots\n.\nafter the lone dot\n"

// TestChunkingThroughPostfix: deskgate relays through a real Postfix, which offers CHUNKING
// by default. Every message leaves as one BDAT LAST chunk, no DATA, and what Postfix delivers
// into the mailbox is that chunk exactly, its dotted lines as the agent wrote them.
func TestChunkingThroughPostfix(t *testing.T) {
	pf := startPostfixCF(t, virtualMaildirCF(t, "customer.test, example.com"), virtualService)
	tee := startTee(t, pf.smtpAddr)
	d := startDaemon(t, options{upstream: fmt.Sprintf(`{address: "%s", tls: none, retry_min: 1s, retry_max: 2s}`, tee.addr)})
	id := d.open(jane, nil, "Dots", "Please keep my dots.")
	d.must(dottedReply, "reply", fmt.Sprint(id), "--as", alice)
	d.waitDelivered(2) // the acknowledgement and the reply
	cmds, chunks := tee.transactions(t)
	for _, c := range cmds {
		if strings.EqualFold(c, "DATA") {
			t.Fatalf("deskgate sent DATA to an upstream that offers CHUNKING: %q", cmds)
		}
	}
	if len(chunks) != 2 {
		t.Fatalf("%d BDAT chunks, want 2: %q", len(chunks), cmds)
	}
	maildir := filepath.Join(pf.dir, "vmail", "all", "new")
	var delivered [][]byte
	waitFor(t, "Postfix to deliver both copies", 30*time.Second, func() bool {
		entries, _ := os.ReadDir(maildir)
		delivered = delivered[:0]
		for _, e := range entries {
			b, _ := os.ReadFile(filepath.Join(maildir, e.Name()))
			delivered = append(delivered, b)
		}
		return len(delivered) == 2
	})
	var sawDots bool
	for _, chunk := range chunks {
		if !bytes.HasSuffix(chunk, []byte("\r\n")) {
			t.Errorf("a chunk does not end its last line: %q", chunk[max(0, len(chunk)-40):])
		}
		// Postfix stores lines with LF endings, after the headers it adds (Return-Path,
		// Delivered-To, Received).
		stored := bytes.ReplaceAll(chunk, []byte("\r\n"), []byte("\n"))
		found := false
		for _, m := range delivered {
			found = found || bytes.HasSuffix(m, stored)
		}
		if !found {
			t.Errorf("no mailbox file ends with the message as sent:\n%s", chunk)
		}
		if bytes.Contains(chunk, []byte("\r\n.leading dot\r\n..two dots\r\n.\r\nafter the lone dot\r\n")) {
			sawDots = true
		}
	}
	if !sawDots {
		t.Errorf("no chunk carries the reply's dotted lines unstuffed:\n%s", bytes.Join(chunks, []byte("\n----\n")))
	}
	// Postfix's own count of the commands it was given, logged when each session ends.
	d.stop()
	var bdat, data int
	waitFor(t, "Postfix to log the end of deskgate's sessions, with both BDATs", 10*time.Second, func() bool {
		bdat, data = postfixCounts(pf.log(), "bdat"), postfixCounts(pf.log(), "data")
		return bdat >= 2
	})
	if bdat != 2 || data != 0 {
		t.Errorf("Postfix counted %d BDAT and %d DATA commands, want 2 and 0:\n%s", bdat, data, pf.log())
	}
}

// postfixCounts adds up what smtpd's "disconnect from" lines count of one command, as in
// "disconnect from localhost[127.0.0.1] ehlo=1 mail=2 rcpt=2 bdat=2 quit=1 commands=8".
func postfixCounts(log, command string) int {
	n := 0
	for _, line := range strings.Split(log, "\n") {
		if !strings.Contains(line, "smtpd") || !strings.Contains(line, "disconnect from") {
			continue
		}
		for _, f := range strings.Fields(line) {
			if v, ok := strings.CutPrefix(f, command+"="); ok {
				k, _ := strconv.Atoi(strings.SplitN(v, "/", 2)[0])
				n += k
			}
		}
	}
	return n
}

// bdatRecorder is an upstream that offers PIPELINING and CHUNKING, keeps each chunk, and
// answers each BDAT with the next of its replies (then 250): a reply of 421 also closes the
// connection, as a server shutting down does.
type bdatRecorder struct {
	addr    string
	mu      sync.Mutex
	replies []string
	chunks  [][]byte
	answers []string // what each chunk was answered
	cmds    []string
}

func startBDATRecorder(t *testing.T, replies ...string) *bdatRecorder {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	r := &bdatRecorder{addr: l.Addr().String(), replies: replies}
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			go r.serve(c)
		}
	}()
	return r
}

func (r *bdatRecorder) serve(c net.Conn) {
	defer c.Close()
	in := bufio.NewReader(c)
	fmt.Fprintf(c, "220 recorder.test ESMTP\r\n")
	for {
		line, err := in.ReadString('\n')
		if err != nil {
			return
		}
		cmd := strings.TrimRight(line, "\r\n")
		r.mu.Lock()
		r.cmds = append(r.cmds, cmd)
		r.mu.Unlock()
		f := strings.Fields(strings.ToUpper(cmd))
		switch {
		case len(f) == 0:
			fmt.Fprintf(c, "500 5.5.2 empty\r\n")
		case f[0] == "EHLO":
			fmt.Fprintf(c, "250-recorder.test\r\n250-PIPELINING\r\n250-CHUNKING\r\n250 ENHANCEDSTATUSCODES\r\n")
		case f[0] == "QUIT":
			fmt.Fprintf(c, "221 2.0.0 Bye\r\n")
			return
		case f[0] == "BDAT" && len(f) == 3:
			n, _ := strconv.Atoi(f[1])
			chunk := make([]byte, n)
			if _, err := io.ReadFull(in, chunk); err != nil {
				return
			}
			r.mu.Lock()
			reply := "250 2.0.0 Ok: queued"
			if len(r.replies) > 0 {
				reply, r.replies = r.replies[0], r.replies[1:]
			}
			r.chunks, r.answers = append(r.chunks, chunk), append(r.answers, reply)
			r.mu.Unlock()
			fmt.Fprintf(c, "%s\r\n", reply)
			if strings.HasPrefix(reply, "421") {
				return
			}
		case f[0] == "DATA" || f[0] == "BDAT":
			fmt.Fprintf(c, "502 5.5.1 this test expects BDAT LAST\r\n")
		default:
			fmt.Fprintf(c, "250 2.0.0 Ok\r\n")
		}
	}
}

func (r *bdatRecorder) seen() (chunks [][]byte, answers []string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([][]byte(nil), r.chunks...), append([]string(nil), r.answers...)
}

// TestChunking421OnBDATIsRetried: an upstream that closes with 421 in answer to BDAT has
// taken nothing; the delivery stays queued with that reply, and is sent again until a
// BDAT is answered 250. The mirror of TestRelay421AfterFinalDotIsRetried for DATA.
func TestChunking421OnBDATIsRetried(t *testing.T) {
	rec := startBDATRecorder(t, "421 4.4.2 recorder.test closing")
	d := relayDaemon(t, rec.addr, "")
	d.open(jane, nil, "Chunked", "x")
	waitFor(t, "the 421 to be recorded", 10*time.Second, func() bool {
		q := d.queue()
		return len(q) == 1 && q[0].State == "queued" && strings.Contains(q[0].LastReply, "421")
	})
	d.waitDelivered(1)
	chunks, answers := rec.seen()
	if len(chunks) != 2 || !strings.HasPrefix(answers[0], "421") || !strings.HasPrefix(answers[1], "250") {
		t.Fatalf("the recorder answered %q, want the 421 and then one 250", answers)
	}
	if !bytes.Equal(chunks[0], chunks[1]) {
		t.Errorf("the retry sent other octets:\n%q\n%q", chunks[0], chunks[1])
	}
	if q := d.queue(); len(q) != 1 || q[0].Attempts != 2 || q[0].Recipients[0].State != "sent" {
		t.Errorf("queue after the retry: %+v", q)
	}
}
