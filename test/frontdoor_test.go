package test

import (
	"bufio"
	"errors"
	"fmt"
	"net"
	"net/textproto"
	"os"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// dialog speaks raw SMTP or LMTP to the daemon, one command at a time, from a chosen
// loopback source address.
type dialog struct {
	t    *testing.T
	conn net.Conn
	r    *bufio.Reader
}

func dial(t *testing.T, addr, from string) *dialog {
	t.Helper()
	dialer := net.Dialer{Timeout: 5 * time.Second}
	if from != "" {
		dialer.LocalAddr = &net.TCPAddr{IP: net.ParseIP(from)}
	}
	c, err := dialer.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return &dialog{t: t, conn: c, r: bufio.NewReader(c)}
}

// reply reads one whole (perhaps multi-line) reply and returns it, "" when the connection
// ended first.
func (d *dialog) reply() string {
	d.conn.SetReadDeadline(time.Now().Add(15 * time.Second))
	var all []string
	for {
		line, err := d.r.ReadString('\n')
		if err != nil {
			return strings.Join(all, "\n")
		}
		line = strings.TrimRight(line, "\r\n")
		all = append(all, line)
		if len(line) < 4 || line[3] != '-' {
			return strings.Join(all, "\n")
		}
	}
}

// expect sends a command and checks that the reply starts with want.
func (d *dialog) expect(cmd, want string) string {
	d.t.Helper()
	if cmd != "" {
		fmt.Fprintf(d.conn, "%s\r\n", cmd)
	}
	got := d.reply()
	if !strings.HasPrefix(got, want) {
		d.t.Fatalf("%q: got %q, want %q...", cmd, got, want)
	}
	return got
}

// closed says whether the server has closed the connection (nothing more to read).
func (d *dialog) closed() bool {
	d.conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	_, err := d.r.ReadByte()
	return err != nil
}

// trickle sends text a byte a second until the server answers, and returns the answer.
func trickle(d *dialog, text string) string {
	answer := make(chan string, 1)
	go func() { answer <- d.reply() }()
	for i := 0; i < len(text); i++ {
		select {
		case a := <-answer:
			return a
		case <-time.After(time.Second):
			d.conn.Write([]byte{text[i]})
		}
	}
	return <-answer
}

var queuedAs = regexp.MustCompile(`^250 2\.0\.0 Ok: queued as ([0-9A-F]{12})$`)

func TestSlowClientsCannotHoldTheDoor(t *testing.T) {
	d := startDaemon(t, options{extraYAML: `limits: {max_sessions: 5, max_sessions_per_ip: 2, read_timeout: 2s, session_timeout: 8s, min_data_rate: 100}`})

	// A slowloris from 127.0.0.2 opens every session it can: two are let in, the rest are
	// refused at once, and a real sender from 127.0.0.1 still gets in.
	var slow []*dialog
	for i := 0; i < 5; i++ {
		s := dial(t, d.smtpAddr, "127.0.0.2")
		greeting := s.reply()
		switch {
		case i < 2 && strings.HasPrefix(greeting, "220 "):
			slow = append(slow, s)
		case i >= 2 && strings.HasPrefix(greeting, "421 4.7.0") && strings.Contains(greeting, "your address"):
		default:
			t.Fatalf("slow session %d greeted with %q", i, greeting)
		}
	}
	start := time.Now()
	var wg sync.WaitGroup
	answers := make([]string, len(slow))
	for i, s := range slow {
		wg.Add(1)
		go func() {
			defer wg.Done()
			// A byte a second, never a whole line: each read comes in time, the line never.
			answers[i] = trickle(s, "EHLO slow.example\r\n")
		}()
	}
	real := dial(t, d.smtpAddr, "127.0.0.1")
	real.expect("", "220 ")
	real.expect("EHLO client.example", "250")
	real.expect("MAIL FROM:<jane@customer.test>", "250 2.1.0")
	real.expect("RCPT TO:<support@example.com>", "250 2.1.5")
	real.expect("DATA", "354")
	fmt.Fprintf(real.conn, "From: jane@customer.test\r\nSubject: got in\r\n\r\nhello\r\n.\r\n")
	if got := real.reply(); !queuedAs.MatchString(got) {
		t.Fatalf("real sender during the slowloris: %q", got)
	}
	wg.Wait()
	elapsed := time.Since(start)
	for i, a := range answers {
		// The partial EHLO is never run: no 250 and no 501, only the timeout.
		if !strings.HasPrefix(a, "421 4.4.2") {
			t.Errorf("slow session %d: %q, want 421 4.4.2", i, a)
		}
	}
	if elapsed > 6*time.Second {
		t.Errorf("slow sessions dropped after %s; read_timeout is 2s", elapsed)
	}

	// In DATA a client must keep up min_data_rate after read_timeout: 100 bytes a second
	// earn one second, a byte a second earns almost nothing.
	s := dial(t, d.smtpAddr, "127.0.0.3")
	s.expect("", "220 ")
	s.expect("HELO slow.example", "250")
	s.expect("MAIL FROM:<slow@customer.test>", "250")
	s.expect("RCPT TO:<support@example.com>", "250")
	s.expect("DATA", "354")
	start = time.Now()
	fmt.Fprintf(s.conn, "From: slow@customer.test\r\nSubject: trickle\r\n\r\n")
	got := trickle(s, "a slow, slow message body\r\n")
	if !strings.HasPrefix(got, "421 4.4.2") || time.Since(start) > 6*time.Second {
		t.Errorf("trickling DATA: %q after %s, want 421 4.4.2 within about 2s", got, time.Since(start))
	}
	if !s.closed() {
		t.Errorf("the session stayed open after its DATA timed out; the rest would be read as commands")
	}

	// A busy session that never idles is still cut at session_timeout.
	b := dial(t, d.smtpAddr, "127.0.0.4")
	b.expect("", "220 ")
	start = time.Now()
	for time.Since(start) < 15*time.Second {
		fmt.Fprintf(b.conn, "NOOP\r\n")
		if got := b.reply(); !strings.HasPrefix(got, "250") {
			if !strings.HasPrefix(got, "421 4.4.2") || !strings.Contains(got, "session_timeout") {
				t.Errorf("busy session ended with %q", got)
			}
			break
		}
		time.Sleep(500 * time.Millisecond)
	}
	if e := time.Since(start); e < 7*time.Second || e > 10*time.Second {
		t.Errorf("busy session lasted %s, session_timeout is 8s", e)
	}

	if n := len(d.tickets()); n != 1 {
		t.Errorf("%d tickets, want only the real sender's", n)
	}
	logs := d.logs.String()
	for _, want := range []string{`reason="limits.max_sessions_per_ip reached: 2 sessions from this address"`, `code=421 enhanced=4.4.2`, `client=127.0.0.2:`} {
		if !strings.Contains(logs, want) {
			t.Errorf("log has no %s", want)
		}
	}
}

func TestLongLinesAreTakenAsPostfixTakesThem(t *testing.T) {
	d := startDaemon(t, options{})
	html := "<p>" + strings.Repeat("long line of HTML mail ", 150) + "</p>" // 3457 bytes
	s := dial(t, d.smtpAddr, "")
	s.expect("", "220 ")
	s.expect("EHLO client.example", "250")
	s.expect("MAIL FROM:<jane@customer.test>", "250")
	s.expect("RCPT TO:<support@example.com>", "250")
	s.expect("DATA", "354")
	fmt.Fprintf(s.conn, "From: jane@customer.test\r\nSubject: html\r\nContent-Type: text/html\r\n\r\n%s\r\n.\r\n", html)
	if got := s.reply(); !queuedAs.MatchString(got) {
		t.Fatalf("a 3457-byte line: %q, want 250 with a queue id", got)
	}
	// A command line past 2048 bytes is refused and the session goes on.
	s.expect("NOOP "+strings.Repeat("x", 3000), "500 5.5.2")
	s.expect("NOOP", "250")
	// A data line past 64 KiB: the message is refused after its end, and the session goes on.
	s.expect("MAIL FROM:<jane@customer.test>", "250")
	s.expect("RCPT TO:<support@example.com>", "250")
	s.expect("DATA", "354")
	fmt.Fprintf(s.conn, "From: jane@customer.test\r\nSubject: huge line\r\n\r\n%s\r\nafter\r\n.\r\n", strings.Repeat("y", 70000))
	s.expect("", "554 5.6.0")
	s.expect("RSET", "250")
	s.expect("QUIT", "221")

	tickets := d.tickets()
	if len(tickets) != 1 {
		t.Fatalf("%d tickets, want 1", len(tickets))
	}
	if body := d.ticket(tickets[0].ID).Comments[0].Body; !strings.Contains(body, "long line of HTML mail long line") {
		t.Errorf("the long line's text did not reach the comment: %q", body)
	}
	if !strings.Contains(d.logs.String(), "code=554 enhanced=5.6.0") {
		t.Errorf("the refused long line left no log line")
	}
}

func TestEveryRefusalIsLoggedAndCounted(t *testing.T) {
	d := startDaemon(t, options{extraYAML: `limits: {max_message_bytes: 2KiB}`})
	s := dial(t, d.smtpAddr, "")
	s.expect("", "220 ")
	s.expect("EHLO client.example", "250")
	s.expect("MAIL FROM:<jane@customer.test>", "250")
	s.expect("RCPT TO:<nobody@example.com>", "550 5.1.1")
	s.expect("RCPT TO:<support@example.com>", "250")
	s.expect("DATA", "354")
	fmt.Fprintf(s.conn, "Subject: big\r\n\r\n%s\r\n.\r\n", strings.Repeat("z", 3000))
	s.expect("", "552 5.3.4")
	s.expect("MAIL FROM:<jane@customer.test> SIZE=999999", "552 5.3.4")
	s.expect("MAIL FROM:<jane@customer.test>", "250")
	s.expect("RCPT TO:<support@example.com>", "250")
	s.expect("DATA", "354")
	fmt.Fprintf(s.conn, "From: jane@customer.test\r\nSubject: fine\r\n\r\nhello\r\n.\r\n")
	ok := s.reply()
	m := queuedAs.FindStringSubmatch(ok)
	if m == nil {
		t.Fatalf("accepted message: %q, want 250 2.0.0 Ok: queued as <id>", ok)
	}
	s.expect("QUIT", "221")

	logs := d.logs.String()
	if !strings.Contains(logs, "msg=accepted qid="+m[1]) {
		t.Errorf("the accepted line does not carry the queue id %s of the 250", m[1])
	}
	for _, want := range []string{
		`msg=refused session=\S+ proto=smtp client=127\.0\.0\.1:\d+ stage=rcpt code=550 enhanced=5\.1\.1`,
		`msg=refused qid=\S+ session=\S+ proto=smtp client=127\.0\.0\.1:\d+ .*stage=data code=552 enhanced=5\.3\.4`,
		`msg=refused session=\S+ proto=smtp client=127\.0\.0\.1:\d+ stage=mail code=552 enhanced=5\.3\.4`,
	} {
		if !regexp.MustCompile(want).MatchString(logs) {
			t.Errorf("no log line matches %s", want)
		}
	}
	metrics := d.metrics()
	for series, want := range map[string]float64{
		`deskgate_smtp_replies_total{code="550",enhanced="5.1.1",proto="smtp"}`: 1,
		`deskgate_smtp_replies_total{code="552",enhanced="5.3.4",proto="smtp"}`: 2,
		`deskgate_messages_received_total{outcome="refused",proto="smtp"}`:      1,
	} {
		if metrics[series] != want {
			t.Errorf("/metrics: %s is %v, want %v", series, metrics[series], want)
		}
	}
}

func TestTheDutiesOfAnMX(t *testing.T) {
	d := startDaemon(t, options{})
	s := dial(t, d.smtpAddr, "")
	s.expect("", "220 ")
	if ehlo := s.expect("EHLO client.example", "250"); !strings.Contains(ehlo, "SMTPUTF8") {
		t.Errorf("SMTPUTF8 is not offered: %q", ehlo)
	}
	s.expect("RCPT TO:<support@example.com>", "503 5.5.1")
	// A non-ASCII address needs the SMTPUTF8 parameter (RFC 6531 3.4), which takes no value.
	s.expect("MAIL FROM:<jöran@customer.test>", "553 5.6.7")
	s.expect("MAIL FROM:<jane@customer.test> SMTPUTF8=x", "501 5.5.4")
	s.expect("MAIL FROM:<postmaster@customer.test>", "250")
	s.expect("MAIL FROM:<jane@customer.test>", "503 5.5.1")
	s.expect("RCPT TO:<postmaster>", "250")
	s.expect("RCPT TO:<Postmaster@example.com>", "250")
	s.expect("RCPT TO:<abuse@example.com>", "250")
	s.expect("RCPT TO:<jöran@example.com>", "553 5.6.7")
	s.expect("RCPT TO:<abuse@elsewhere.test>", "550 5.1.1")
	s.expect("DATA", "354")
	fmt.Fprintf(s.conn, "From: postmaster@customer.test\r\nSubject: your MX\r\n\r\nYour MX is listed.\r\n.\r\n")
	s.expect("", "250 2.0.0 Ok: queued as")
	s.expect("RSET", "250")
	s.expect("MAIL FROM:<jane@customer.test>", "250")
	s.expect("QUIT", "221")

	tickets := d.tickets()
	if len(tickets) != 1 || tickets[0].Subject != "your MX" {
		t.Fatalf("mail to postmaster and abuse: tickets %+v, want one", tickets)
	}
}

func TestAPartialLineIsNeverRunAfterATimeout(t *testing.T) {
	d := startDaemon(t, options{extraYAML: `limits: {read_timeout: 1s}`})
	s := dial(t, d.smtpAddr, "")
	s.expect("", "220 ")
	s.expect("EHLO client.example", "250")
	s.expect("MAIL FROM:<jane@customer.test>", "250")
	s.expect("RCPT TO:<support@example.com>", "250")
	// "DATA" without its line end: were it run, the reply would be 354.
	fmt.Fprintf(s.conn, "DATA")
	if got := s.reply(); !strings.HasPrefix(got, "421 4.4.2") {
		t.Errorf("a partial DATA line at the timeout: %q, want 421 4.4.2", got)
	}
	if !s.closed() {
		t.Errorf("session still open after its timeout")
	}
}

// SIGTERM: idle sessions are told 421 4.3.2 at once, a session in the middle of DATA finishes
// its message (limits.shutdown_grace), and the daemon exits once it has.
func TestShutdownLetsAMessageInDATAFinish(t *testing.T) {
	d := startDaemon(t, options{extraYAML: `limits: {shutdown_grace: 20s}`})
	idle := dial(t, d.smtpAddr, "")
	idle.expect("", "220 ")
	busy := dial(t, d.smtpAddr, "")
	busy.expect("", "220 ")
	busy.expect("EHLO client.example", "250")
	busy.expect("MAIL FROM:<jane@customer.test>", "250")
	busy.expect("RCPT TO:<support@example.com>", "250")
	busy.expect("DATA", "354")
	fmt.Fprintf(busy.conn, "From: jane@customer.test\r\nSubject: just in time\r\n\r\nfirst half\r\n")

	d.cmd.Process.Signal(syscall.SIGTERM)
	if got := idle.reply(); !strings.HasPrefix(got, "421 4.3.2") {
		t.Errorf("idle session at shutdown: %q, want 421 4.3.2", got)
	}
	select {
	case <-d.exited:
		t.Fatal("deskgate exited with a message in DATA")
	case <-time.After(500 * time.Millisecond):
	}
	fmt.Fprintf(busy.conn, "second half\r\n.\r\n")
	if got := busy.reply(); !queuedAs.MatchString(got) {
		t.Fatalf("the message in DATA at shutdown: %q, want 250 with a queue id", got)
	}
	busy.expect("NOOP", "421 4.3.2")
	select {
	case <-d.exited:
	case <-time.After(10 * time.Second):
		t.Fatal("deskgate did not exit after its last session")
	}
	d.start()
	if tickets := d.tickets(); len(tickets) != 1 || tickets[0].Subject != "just in time" {
		t.Errorf("after the restart: %+v, want the message finished during shutdown", tickets)
	}
}

// SIGTERM under load: every 250 is stored, every session that was open gets a reply (250
// or 421) rather than a cut connection, and the daemon exits 0.
func TestSIGTERMUnderLoadCutsNoSession(t *testing.T) {
	dir := t.TempDir()
	d := startDaemon(t, options{dir: dir})
	var mu sync.Mutex
	acked := map[string]bool{}
	var cut []string
	var sent atomic.Int64
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for c := 0; c < 6; c++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for j := 0; ; j++ {
				select {
				case <-stop:
					return
				default:
				}
				id := fmt.Sprintf("<term-%d-%d@customer.test>", c, j)
				msg := mail(map[string]string{"From": fmt.Sprintf("term%d@customer.test", c), "To": "support@example.com",
					"Subject": "sigterm", "Message-ID": id}, "in flight\n")
				greeted, _, err := deliverRaw(d.smtpAddr, msg, false)
				var tpErr *textproto.Error
				mu.Lock()
				switch {
				case err == nil:
					acked[id] = true
					sent.Add(1)
				case errors.As(err, &tpErr):
					// A reply: 421 4.3.2 while shutting down is what a client should see.
				case !greeted:
					// Refused, or reset in the listen queue when the listener closed: the
					// client never had a session and tries again later, as after a refusal.
				default:
					cut = append(cut, fmt.Sprintf("%s: %v", id, err))
				}
				mu.Unlock()
			}
		}()
	}
	waitFor(t, "mail to flow", 30*time.Second, func() bool { return sent.Load() >= 60 })
	d.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-d.exited:
	case <-time.After(40 * time.Second):
		t.Fatal("deskgate did not exit after SIGTERM")
	}
	close(stop)
	wg.Wait()
	if code := d.cmd.ProcessState.ExitCode(); code != 0 {
		t.Errorf("exit status %d after SIGTERM, want 0", code)
	}
	for _, c := range cut {
		t.Errorf("a session was cut without a reply: %s", c)
	}
	if len(cut) > 0 {
		t.Logf("the log of the run that was stopped:\n%s", d.logs.String())
	}
	d.start()
	stored := d.allMessageIDs()
	for id := range acked {
		if stored[id] != 1 {
			t.Errorf("%s was acknowledged and is stored %d times", id, stored[id])
		}
	}
	t.Logf("%d messages acknowledged before and during SIGTERM, all stored", len(acked))
}

// deliverRaw sends one message over a raw SMTP dialogue, with its SIZE declared when asked,
// and says whether the server greeted the client and what it last replied. net/smtp would not
// do here: after a 421 to EHLO it tries HELO on the closed connection and reports that EOF
// instead of the reply.
func deliverRaw(addr string, msg []byte, declareSize bool) (greeted bool, last string, err error) {
	nc, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		return false, "", err
	}
	defer nc.Close()
	nc.SetDeadline(time.Now().Add(30 * time.Second))
	c := textproto.NewConn(nc)
	answer := func(want int) error {
		code, text, err := c.ReadResponse(want)
		last = fmt.Sprintf("%d %s", code, text)
		return err
	}
	if err := answer(220); err != nil {
		var tpErr *textproto.Error
		return errors.As(err, &tpErr), last, err
	}
	mailFrom := "MAIL FROM:<burst@customer.test>"
	if declareSize {
		mailFrom += fmt.Sprintf(" SIZE=%d", len(msg))
	}
	for _, step := range []struct {
		cmd  string
		want int
	}{{"EHLO client.example", 250}, {mailFrom, 250}, {"RCPT TO:<support@example.com>", 250}, {"DATA", 354}} {
		if _, err := c.Cmd("%s", step.cmd); err != nil {
			return true, last, err
		}
		if err := answer(step.want); err != nil {
			return true, last, err
		}
	}
	w := c.DotWriter()
	w.Write(msg)
	if err := w.Close(); err != nil {
		return true, last, err
	}
	if err := answer(250); err != nil {
		return true, last, err
	}
	// The 250 is in: what QUIT gets (221, or 421 while shutting down) changes nothing.
	c.Cmd("QUIT")
	return true, last, nil
}

// Issue 19, point 4: thousands of RCPT TO in one session. Every refused command counts toward
// limits.max_errors, the recipients past limits.max_recipients included, and reaching it ends
// the session with 421 4.7.0, on SMTP and on LMTP alike. Only the first 20 refusals of a
// session are logged one by one; one line at its end counts the rest, while /metrics counts
// every reply.
func TestRefusedRecipientsEndTheSession(t *testing.T) {
	d := startDaemon(t, options{extraYAML: `limits: {max_errors: 50}`})
	for _, tc := range []struct {
		proto, addr, hello, rcpt, accepted, refused string
		wantAccepted, wantRefused                   int
	}{
		// Recipients past limits.max_recipients count only past the overshoot allowance of
		// 1000, as Postfix's smtpd_recipient_overshoot_limit.
		{"smtp", d.smtpAddr, "EHLO", "support@example.com", "250 2.1.5", "452 4.5.3", 100, 1000 + 50},
		{"lmtp", d.lmtpAddr, "LHLO", "nobody@example.com", "250 2.1.5", "550 5.1.1", 0, 50},
	} {
		t.Run(tc.proto, func(t *testing.T) {
			s := dial(t, tc.addr, "127.0.0.1")
			port := s.conn.LocalAddr().(*net.TCPAddr).Port
			s.expect("", "220 ")
			s.expect(tc.hello+" client.example", "250")
			s.expect("MAIL FROM:<jane@customer.test>", "250")
			start := time.Now()
			// Pipelined, as an attacker would send them; the server closes the session while
			// the client is still writing.
			go s.conn.Write([]byte(strings.Repeat("RCPT TO:<"+tc.rcpt+">\r\n", 5000)))
			counts := map[string]int{}
			var replies []string
			for i := 0; i < 5100; i++ {
				r := s.reply()
				if r == "" {
					break
				}
				replies = append(replies, r)
				counts[r[:min(9, len(r))]]++
			}
			elapsed := time.Since(start)
			if counts[tc.accepted] != tc.wantAccepted || counts[tc.refused] != tc.wantRefused || len(replies) != tc.wantAccepted+tc.wantRefused+1 {
				t.Fatalf("%d replies %v, want %d %s, %d %s and a 421", len(replies), counts, tc.wantAccepted, tc.accepted, tc.wantRefused, tc.refused)
			}
			if last := replies[len(replies)-1]; !strings.HasPrefix(last, "421 4.7.0") {
				t.Errorf("last reply %q, want 421 4.7.0", last)
			}
			if !s.closed() {
				t.Errorf("the session stayed open after its 421")
			}
			t.Logf("%s: 5000 pipelined RCPTs answered and closed after %d replies in %s", tc.proto, len(replies), elapsed)

			client := fmt.Sprintf("client=127.0.0.1:%d ", port)
			var mine []string
			waitFor(t, "the session's summary line", 10*time.Second, func() bool {
				mine = nil
				for _, l := range strings.Split(d.logs.String(), "\n") {
					if strings.Contains(l, client) {
						mine = append(mine, l)
					}
				}
				return len(mine) > 0 && strings.Contains(mine[len(mine)-1], `msg="refusals not logged"`)
			})
			var rcptLines, sessionLines int
			for _, l := range mine {
				switch {
				case strings.Contains(l, "msg=refused") && strings.Contains(l, "stage=rcpt code="+tc.refused[:3]):
					rcptLines++
				case strings.Contains(l, "msg=refused") && strings.Contains(l, "stage=session code=421 enhanced=4.7.0"):
					sessionLines++
				case strings.Contains(l, "msg=refused"):
					t.Errorf("unexpected refusal line: %s", l)
				}
			}
			if rcptLines != 20 || sessionLines != 1 {
				t.Errorf("%d rcpt refusal lines and %d session lines, want 20 and 1:\n%s", rcptLines, sessionLines, strings.Join(mine, "\n"))
			}
			wantSummary := fmt.Sprintf("refusals=%d not_logged=%d", tc.wantRefused, tc.wantRefused-20)
			if summary := mine[len(mine)-1]; !strings.Contains(summary, "proto="+tc.proto) || !strings.Contains(summary, wantSummary) {
				t.Errorf("summary %q, want %s", summary, wantSummary)
			}
			series := fmt.Sprintf(`deskgate_smtp_replies_total{code="%s",enhanced="%s",proto="%s"}`, tc.refused[:3], tc.refused[4:], tc.proto)
			if got := d.metrics()[series]; got != float64(tc.wantRefused) {
				t.Errorf("%s is %v, want %d: every refusal counted, logged or not", series, got, tc.wantRefused)
			}
		})
	}
	if n := len(d.tickets()); n != 0 {
		t.Errorf("%d tickets, want none", n)
	}

	// A sender with more recipients than limits.max_recipients (100) is no attacker: its 30
	// extra recipients get 452 and do not end the session, and its message is delivered to
	// the 100 accepted, as RFC 5321 has it.
	s := dial(t, d.smtpAddr, "127.0.0.1")
	s.expect("", "220 ")
	s.expect("EHLO client.example", "250")
	s.expect("MAIL FROM:<jane@customer.test>", "250")
	for i := 0; i < 130; i++ {
		want := "250 2.1.5"
		if i >= 100 {
			want = "452 4.5.3"
		}
		s.expect("RCPT TO:<support@example.com>", want)
	}
	s.expect("DATA", "354")
	fmt.Fprintf(s.conn, "From: jane@customer.test\r\nSubject: many recipients\r\n\r\nhello\r\n.\r\n")
	if got := s.reply(); !queuedAs.MatchString(got) {
		t.Fatalf("a message with 130 recipients: %q, want it queued for the 100 accepted", got)
	}
}

// Issue 19, point 5: with max_sessions 6 and the default max_sessions_per_ip 20, one address
// gets at most 3 sessions, so another client still gets in; check-config and the start-up log
// say that the setting is capped.
func TestOneAddressCannotTakeEverySession(t *testing.T) {
	d := startDaemon(t, options{extraYAML: `limits: {max_sessions: 6, read_timeout: 30s}`})
	warning := regexp.MustCompile(`level=WARN msg="20 is more than half of limits\.max_sessions \(6\); one client address gets at most 3 sessions" key=limits\.max_sessions_per_ip`)
	if !warning.MatchString(d.logs.String()) {
		t.Errorf("serve did not warn at start that max_sessions_per_ip is capped at 3:\n%s", tail(d.logs.String(), 10))
	}
	var greetings []string
	for i := 0; i < 6; i++ {
		s := dial(t, d.smtpAddr, "127.0.0.1")
		greetings = append(greetings, s.reply())
	}
	for i, g := range greetings {
		switch {
		case i < 3 && strings.HasPrefix(g, "220 "):
		case i >= 3 && strings.HasPrefix(g, "421 4.7.0") && strings.Contains(g, "your address"):
		default:
			t.Errorf("idle session %d from 127.0.0.1 greeted with %q; want 220 for three, then 421 4.7.0", i+1, g)
		}
	}
	other := dial(t, d.smtpAddr, "127.0.0.2")
	other.expect("", "220 ")
	other.expect("EHLO other.example", "250")
	other.expect("QUIT", "221")
	if !strings.Contains(d.logs.String(), `reason="limits.max_sessions_per_ip reached: 3 sessions from this address (at most half of limits.max_sessions)"`) {
		t.Errorf("the refusal does not name the key and its cap of 3:\n%s", tail(d.logs.String(), 10))
	}

	out, errOut, code := d.cli("check-config")
	if code != 0 || !strings.Contains(out, ": ok") {
		t.Errorf("check-config exit %d, want 0 (a warning is no problem):\n%s%s", code, out, errOut)
	}
	if !strings.Contains(errOut, "warning: limits.max_sessions_per_ip: 20 is more than half of limits.max_sessions (6)") || !strings.Contains(errOut, "at most 3") {
		t.Errorf("check-config printed no warning naming the key and the cap 3:\n%s", errOut)
	}

	// A reload raises the cap with max_sessions and says so again; it lowers max_errors for
	// the next session.
	raw, _ := os.ReadFile(d.configPath)
	os.WriteFile(d.configPath, []byte(strings.Replace(string(raw), "max_sessions: 6,", "max_sessions: 8, max_errors: 2,", 1)), 0o600)
	d.cmd.Process.Signal(syscall.SIGHUP)
	waitFor(t, "the reload and its warning", 5*time.Second, func() bool {
		return strings.Contains(d.logs.String(), `msg="20 is more than half of limits.max_sessions (8); one client address gets at most 4 sessions" key=limits.max_sessions_per_ip`)
	})
	fourth := dial(t, d.smtpAddr, "127.0.0.1")
	fourth.expect("", "220 ")
	fourth.expect("HELO client.example", "250")
	fourth.expect("MAIL FROM:<jane@customer.test>", "250")
	fourth.expect("RCPT TO:<nobody@example.com>", "550 5.1.1")
	fourth.expect("RCPT TO:<nobody@example.com>", "550 5.1.1")
	fourth.expect("", "421 4.7.0")
	if !fourth.closed() {
		t.Errorf("session open after max_errors (2, reloaded) refusals")
	}
}

func tail(s string, n int) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
