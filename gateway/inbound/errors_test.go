package inbound

import (
	"bytes"
	"log/slog"
	"regexp"
	"strings"
	"sync"
	"testing"
)

// lockedBuffer is a log sink that the session's goroutine and the test may share.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// withLog makes srv log at debug level into a buffer that the test reads.
func withLog(srv *Server) *lockedBuffer {
	buf := &lockedBuffer{}
	srv.log = slog.New(slog.NewTextHandler(buf, &slog.HandlerOptions{Level: slog.LevelDebug}))
	return buf
}

// expectReplies compares the replies after the greeting with want, by prefix.
func expectReplies(t *testing.T, out string, want []string) {
	t.Helper()
	replies := replyLines(out)
	if len(replies) == 0 || !strings.HasPrefix(replies[0], "220 ") {
		t.Fatalf("no greeting: %q", replies)
	}
	replies = replies[1:]
	if len(replies) != len(want) {
		t.Fatalf("%d replies, want %d:\n got %q\nwant %q", len(replies), len(want), replies, want)
	}
	for i, w := range want {
		if !strings.HasPrefix(replies[i], w) {
			t.Errorf("reply %d: %q, want %q", i, replies[i], w)
		}
	}
}

func concat(parts ...[]string) []string {
	var out []string
	for _, p := range parts {
		out = append(out, p...)
	}
	return out
}

// The attack of issue 19: thousands of RCPT TO in one session. Past limits.max_recipients
// each one is refused; past the overshoot allowance (1000, Postfix's
// smtpd_recipient_overshoot_limit) each refusal counts toward limits.max_errors (default 20),
// as Postfix's smtpd_hard_error_limit counts them: the 20th ends the session with 421 4.7.0
// and nothing after it is answered.
func TestRefusedRecipientsEndTheSession(t *testing.T) {
	srv := testServer(t) // max_recipients 3, max_errors 20
	script := "HELO c\r\nMAIL FROM:<a@b.test>\r\n" + strings.Repeat("RCPT TO:<support@example.com>\r\n", 5000)
	expectReplies(t, run(srv, false, script),
		concat([]string{"250", "250 2.1.0"}, repeat("250 2.1.5", 3), repeat("452 4.5.3", recipientOvershoot+20), []string{"421 4.7.0"}))

	// Every kind of refusal counts alike: unknown recipients, non-ASCII ones, a refused MAIL,
	// and plain syntax errors.
	mixed := "HELO c\r\nMAIL FROM:<jöran@b.test>\r\nMAIL FROM:<a@b.test>\r\n" +
		strings.Repeat("RCPT TO:<nobody@example.com>\r\nRCPT TO:<jöran@example.com>\r\nRCPT TO:bad\r\n", 10)
	expectReplies(t, run(srv, false, mixed),
		concat([]string{"250", "553 5.6.7", "250 2.1.0"},
			mixedWant(19), []string{"421 4.7.0"}))
}

// mixedWant is the first n replies to the cycle unknown, non-ASCII, bad syntax.
func mixedWant(n int) []string {
	cycle := []string{"550 5.1.1", "553 5.6.7", "501 5.1.7"}
	out := make([]string, n)
	for i := range out {
		out[i] = cycle[i%3]
	}
	return out
}

// On LMTP the MTA in front passes on the recipients it was given; a refused one counts there
// too, so a client cannot hold a session this way through the MTA either. The MTA defers the
// recipients that the 421 cut off and tries them again in a fresh session.
func TestRefusedLMTPRecipientsCount(t *testing.T) {
	srv := testServer(t)
	script := "LHLO c\r\nMAIL FROM:<a@b.test>\r\n" + strings.Repeat("RCPT TO:<nobody@example.com>\r\n", 100)
	expectReplies(t, run(srv, true, script),
		concat([]string{"250", "250 2.1.0"}, repeat("550 5.1.1", 20), []string{"421 4.7.0"}))
}

// As smtpd_hard_error_limit counts errors "without delivering mail", a delivered message
// starts the count again: an MTA whose connection carries many messages, each with a few
// unknown recipients, is not cut off, while a client that delivers nothing is.
func TestADeliveredMessageStartsTheErrorCountAgain(t *testing.T) {
	srv := testServer(t)
	msg := "From: jane@customer.test\r\nSubject: s\r\n\r\nbody\r\n.\r\n"
	unknown19 := strings.Repeat("RCPT TO:<nobody@example.com>\r\n", 19)
	script := "HELO c\r\nMAIL FROM:<jane@customer.test>\r\n" + unknown19 + "RCPT TO:<support@example.com>\r\nDATA\r\n" + msg +
		"MAIL FROM:<jane@customer.test>\r\n" + unknown19 + "RSET\r\nMAIL FROM:<jane@customer.test>\r\n" + unknown19 + "QUIT\r\n"
	expectReplies(t, run(srv, false, script),
		concat([]string{"250", "250 2.1.0"}, repeat("550 5.1.1", 19), []string{"250 2.1.5", "354", "250 2.0.0", "250 2.1.0"},
			repeat("550 5.1.1", 19), []string{"250 2.0.0", "250 2.1.0", "550 5.1.1", "421 4.7.0"}))
}

// limits.max_errors comes from the running config: a reload that lowers it applies to the
// next transaction of a session, as the other limits do.
func TestMaxErrorsIsTheConfiguredOne(t *testing.T) {
	srv := testServer(t)
	cfg := *srv.cfg.Load()
	cfg.Limits.MaxErrors = 5
	srv.SetConfig(&cfg)
	script := "HELO c\r\nMAIL FROM:<a@b.test>\r\n" + strings.Repeat("RCPT TO:<nobody@example.com>\r\n", 50)
	expectReplies(t, run(srv, false, script),
		concat([]string{"250", "250 2.1.0"}, repeat("550 5.1.1", 5), []string{"421 4.7.0"}))

	cfg2 := cfg
	cfg2.Limits.MaxErrors = 200
	srv.SetConfig(&cfg2)
	expectReplies(t, run(srv, false, script+"QUIT\r\n"),
		concat([]string{"250", "250 2.1.0"}, repeat("550 5.1.1", 50), []string{"221"}))
}

var refusedLine = regexp.MustCompile(`(?m)^.* msg=refused .*$`)

// A session's refusals are logged one by one up to 20; the rest are counted and told in one
// line at the session's end, so that one client cannot fill the log.
func TestRefusalsLoggedOneByOneUpTo20(t *testing.T) {
	srv := testServer(t)
	cfg := *srv.cfg.Load()
	cfg.Limits.MaxErrors = 1000
	srv.SetConfig(&cfg)
	logs := withLog(srv)
	script := "HELO c\r\nMAIL FROM:<a@b.test>\r\n" + strings.Repeat("RCPT TO:<nobody@example.com>\r\nXBOGUS\r\n", 250) + "QUIT\r\n"
	expectReplies(t, run(srv, false, script),
		concat([]string{"250", "250 2.1.0"}, alternate("550 5.1.1", "500 5.5.2", 250), []string{"221"}))
	text := logs.String()
	lines := refusedLine.FindAllString(text, -1)
	if len(lines) != 10 {
		t.Errorf("%d msg=refused lines, want the 10 recipient refusals among the first 20 refusals:\n%s", len(lines), strings.Join(lines, "\n"))
	}
	if n := strings.Count(text, `msg="command refused"`); n != 10 {
		t.Errorf("%d command refused lines, want 10", n)
	}
	summary := regexp.MustCompile(`msg="refusals not logged" session=TEST proto=smtp client=127\.0\.0\.1:40000 refusals=500 not_logged=480`)
	if !summary.MatchString(text) {
		t.Errorf("no summary line with refusals=500 not_logged=480 in:\n%s", tail(text, 5))
	}

	// A session with fewer refusals logs each one and no summary.
	logs = withLog(srv)
	run(srv, false, "HELO c\r\nMAIL FROM:<a@b.test>\r\nRCPT TO:<nobody@example.com>\r\nQUIT\r\n")
	if n := len(refusedLine.FindAllString(logs.String(), -1)); n != 1 || strings.Contains(logs.String(), "not logged") {
		t.Errorf("one refusal: %d msg=refused lines, summary %v", n, strings.Contains(logs.String(), "not logged"))
	}

	// The line that ends a session is always logged, past the first 20 too.
	cfg.Limits.MaxErrors = 30
	srv.SetConfig(&cfg)
	logs = withLog(srv)
	run(srv, false, "HELO c\r\nMAIL FROM:<a@b.test>\r\n"+strings.Repeat("RCPT TO:<nobody@example.com>\r\n", 40))
	text = logs.String()
	if !strings.Contains(text, "stage=session code=421 enhanced=4.7.0") {
		t.Errorf("the 421 that ended the session was not logged:\n%s", tail(text, 5))
	}
	if !strings.Contains(text, "refusals=30 not_logged=10") {
		t.Errorf("summary: want refusals=30 not_logged=10:\n%s", tail(text, 5))
	}
}

func alternate(a, b string, n int) []string {
	var out []string
	for i := 0; i < n; i++ {
		out = append(out, a, b)
	}
	return out
}

func tail(s string, n int) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// A sender with more recipients than limits.max_recipients is no attacker: RFC 5321 has it
// deliver to those accepted and try the rest later. Its 452s within the overshoot allowance
// do not end the session, and its message is delivered.
func TestRecipientsOverTheLimitStillDeliver(t *testing.T) {
	srv := testServer(t) // max_recipients 3, max_errors 20
	script := "HELO c\r\nMAIL FROM:<a@b.test>\r\n" + strings.Repeat("RCPT TO:<support@example.com>\r\n", 40) +
		"DATA\r\nFrom: a@b.test\r\nSubject: many\r\n\r\nhello\r\n.\r\nQUIT\r\n"
	replies := replyLines(run(srv, false, script))
	want := concat([]string{"220", "250", "250 2.1.0"}, repeat("250 2.1.5", 3), repeat("452 4.5.3", 37), []string{"354", "250 2.0.0", "221"})
	if len(replies) != len(want) {
		t.Fatalf("%d replies, want %d: %q", len(replies), len(want), replies)
	}
	for i, w := range want {
		if !strings.HasPrefix(replies[i], w) {
			t.Fatalf("reply %d is %q, want %s", i, replies[i], w)
		}
	}
}
