package inbound

import (
	"bytes"
	"io"
	"log/slog"
	"net"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/deskgate/deskgate/config"
	"github.com/deskgate/deskgate/gateway/desk"
	"github.com/deskgate/deskgate/store"
)

// scriptConn is a client that sends a fixed script and records what the server answers.
type scriptConn struct {
	in  *bytes.Reader
	out bytes.Buffer
}

func (c *scriptConn) Read(p []byte) (int, error)  { return c.in.Read(p) }
func (c *scriptConn) Write(p []byte) (int, error) { return c.out.Write(p) }
func (c *scriptConn) Close() error                { return nil }
func (c *scriptConn) LocalAddr() net.Addr         { return &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 25} }
func (c *scriptConn) RemoteAddr() net.Addr {
	return &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 40000}
}
func (c *scriptConn) SetDeadline(t time.Time) error      { return nil }
func (c *scriptConn) SetReadDeadline(t time.Time) error  { return nil }
func (c *scriptConn) SetWriteDeadline(t time.Time) error { return nil }

func testServer(t testing.TB) *Server {
	t.Helper()
	dir := t.TempDir()
	cfg := &config.Config{
		Hostname: "mx.test", DataDir: dir,
		Support: config.Support{Name: "Support", Addresses: []string{"support@example.com"}},
		Limits: config.Limits{MaxMessageBytes: 4096, MaxRecipients: 3, MaxCCs: 48, MaxSessions: 10, MaxSessionsPerIP: 5, MaxErrors: 20,
			ReadTimeout: time.Minute, WriteTimeout: time.Minute, SessionTimeout: time.Hour, MinDataRate: 500, MaxDataMemory: 64 << 20},
		Policy:         config.Policy{CCsEnabled: true, FollowersEnabled: true, CCRemoval: "email", ReplyAudience: "notification"},
		Notifications:  config.Notifications{TicketCreated: "none", Assigned: "none", Solved: "none"},
		Authentication: config.Authentication{AgentIdentity: "none", DNSResolver: "127.0.0.1:1", Timeout: time.Second},
		Upstream:       config.Upstream{Address: "maildir:" + filepath.Join(dir, "outbox")},
	}
	st, err := store.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	return New(cfg, desk.New(cfg, st, quiet), quiet)
}

// run plays script as one whole session and returns the server's replies.
func run(srv *Server, lmtp bool, script string) string {
	c := &scriptConn{in: bytes.NewReader([]byte(script))}
	sess := &session{srv: srv, listener: &listener{lmtp: lmtp}, raw: c, nc: c, in: newLineReader(c),
		remote: c.RemoteAddr().String(), id: "TEST"}
	sess.out = sess.newWriter(c)
	sess.serve()
	return c.out.String()
}

func TestDialogues(t *testing.T) {
	srv := testServer(t)
	msg := "From: jane@customer.test\r\nSubject: s\r\n\r\nbody\r\n.\r\n"
	for _, tc := range []struct {
		name, script string
		lmtp         bool
		want         []string // reply codes in order, after the greeting
	}{
		{"mail before helo", "MAIL FROM:<a@b.test>\r\nQUIT\r\n", false, []string{"503 5.5.1", "221"}},
		{"nested mail", "EHLO c\r\nMAIL FROM:<a@b.test>\r\nMAIL FROM:<a@b.test>\r\nRSET\r\nMAIL FROM:<a@b.test>\r\n", false,
			[]string{"250", "250 2.1.0", "503 5.5.1", "250", "250 2.1.0"}},
		{"rcpt before mail", "HELO c\r\nRCPT TO:<support@example.com>\r\n", false, []string{"250", "503 5.5.1"}},
		{"data without rcpt", "HELO c\r\nMAIL FROM:<>\r\nRCPT TO:<x@nowhere.test>\r\nDATA\r\n", false, []string{"250", "250", "550 5.1.1", "554 5.5.1"}},
		{"utf-8 sender without SMTPUTF8", "HELO c\r\nMAIL FROM:<jöran@b.test>\r\n", false, []string{"250", "553 5.6.7 Non-ASCII address needs the SMTPUTF8 parameter on MAIL FROM"}},
		{"utf-8 recipient without SMTPUTF8", "EHLO c\r\nMAIL FROM:<a@b.test>\r\nRCPT TO:<support@exämple.com>\r\n", false,
			[]string{"250", "250", "553 5.6.7 Non-ASCII address needs the SMTPUTF8 parameter on MAIL FROM"}},
		{"smtputf8 parameter", "EHLO c\r\nMAIL FROM:<a@b.test> SMTPUTF8\r\n", false, []string{"250", "250 2.1.0"}},
		{"smtputf8 takes no value", "EHLO c\r\nMAIL FROM:<a@b.test> SMTPUTF8=yes\r\n", false, []string{"250", "501 5.5.4 SMTPUTF8 takes no value"}},
		{"utf-8 sender with SMTPUTF8", "EHLO c\r\nMAIL FROM:<jöran@b.test> SMTPUTF8 BODY=8BITMIME\r\n", false, []string{"250", "250 2.1.0"}},
		{"null sender with SMTPUTF8", "EHLO c\r\nMAIL FROM:<> SMTPUTF8\r\n", false, []string{"250", "250 2.1.0"}},
		{"invalid IDNA sender", "EHLO c\r\nMAIL FROM:<jöe@xn--zz.test> SMTPUTF8\r\n", false, []string{"250", "553 5.1.7 Sender: invalid mail address: the domain of"}},
		{"invalid ASCII sender domain", "EHLO c\r\nMAIL FROM:<a@b..test>\r\n", false, []string{"250", "553 5.1.7 Sender: invalid mail address: the domain of \"a@b..test\" has an empty label"}},
		{"sender not UTF-8", "EHLO c\r\nMAIL FROM:<j\xf6e@b.test> SMTPUTF8\r\n", false, []string{"250", "553 5.1.7 Sender: invalid mail address: \"j\\xf6e@b.test\" is not valid UTF-8"}},
		{"invalid IDNA recipient", "EHLO c\r\nMAIL FROM:<a@b.test> SMTPUTF8\r\nRCPT TO:<support@xn--zz.example>\r\n", false, []string{"250", "250", "553 5.1.3 Recipient: invalid mail address"}},
		{"mixed-case recipient domain", "EHLO c\r\nMAIL FROM:<a@b.test>\r\nRCPT TO:<Support@EXAMPLE.Com>\r\n", false, []string{"250", "250", "250 2.1.5"}},
		{"unknown utf-8 recipient", "EHLO c\r\nMAIL FROM:<a@b.test> SMTPUTF8\r\nRCPT TO:<jöe@example.com>\r\n", false, []string{"250", "250", "550 5.1.1"}},
		{"unknown parameter", "EHLO c\r\nMAIL FROM:<a@b.test> XFOO=1\r\n", false, []string{"250", "555 5.5.4"}},
		{"bare postmaster", "HELO c\r\nMAIL FROM:<a@b.test>\r\nRCPT TO:<POSTMASTER>\r\nRCPT TO:<abuse@example.com>\r\n", false, []string{"250", "250", "250 2.1.5", "250 2.1.5"}},
		{"too many recipients", "HELO c\r\nMAIL FROM:<a@b.test>\r\n" + strings.Repeat("RCPT TO:<support@example.com>\r\n", 4), false,
			[]string{"250", "250", "250", "250", "250", "452 4.5.3"}},
		{"accepted with queue id", "HELO c\r\nMAIL FROM:<jane@customer.test>\r\nRCPT TO:<support@example.com>\r\nDATA\r\n" + msg, false,
			[]string{"250", "250", "250", "354", "250 2.0.0 Ok: queued as "}},
		{"lmtp one reply per recipient", "LHLO c\r\nMAIL FROM:<jane@customer.test>\r\nRCPT TO:<support@example.com>\r\nRCPT TO:<postmaster>\r\nDATA\r\n" +
			strings.Replace(msg, "Subject: s", "Subject: lmtp", 1), true,
			[]string{"250", "250", "250", "250", "354", "250 2.0.0 <support@example.com> Ok: queued as ", "250 2.0.0 <postmaster> Ok: queued as "}},
		{"ehlo on lmtp", "EHLO c\r\n", true, []string{"500 5.5.1"}},
		{"too large by SIZE", "EHLO c\r\nMAIL FROM:<a@b.test> SIZE=5000\r\n", false, []string{"250", "552 5.3.4"}},
		{"too large in DATA, session goes on", "HELO c\r\nMAIL FROM:<a@b.test>\r\nRCPT TO:<support@example.com>\r\nDATA\r\n" + strings.Repeat("x", 5000) + "\r\n.\r\nNOOP\r\n", false,
			[]string{"250", "250", "250", "354", "552 5.3.4", "250"}},
		// A bare LF around the dot does not end the data (SMTP smuggling): the NOOP is data.
		{"no smuggling", "HELO c\r\nMAIL FROM:<jane@customer.test>\r\nRCPT TO:<support@example.com>\r\nDATA\r\nSubject: a\r\n\r\nx\n.\nNOOP\r\n.\r\n", false,
			[]string{"250", "250", "250", "354", "250 2.0.0"}},
		{"garbage closes after 20 errors", strings.Repeat("BOGUS\r\n", 30), false, append(repeat("500 5.5.2", 20), "421 4.7.0")},
		{"starttls not offered", "EHLO c\r\nSTARTTLS\r\n", false, []string{"250", "502 5.5.1"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			replies := replyLines(run(srv, tc.lmtp, tc.script))
			if len(replies) == 0 || !strings.HasPrefix(replies[0], "220 ") {
				t.Fatalf("no greeting: %q", replies)
			}
			replies = replies[1:]
			if len(replies) != len(tc.want) {
				t.Fatalf("replies %q, want %q", replies, tc.want)
			}
			for i, w := range tc.want {
				if !strings.HasPrefix(replies[i], w) {
					t.Errorf("reply %d: %q, want %q", i, replies[i], w)
				}
			}
		})
	}
}

func repeat(s string, n int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = s
	}
	return out
}

// replyLines is the last line of each reply (the one with a space after the code).
func replyLines(out string) []string {
	var replies []string
	for _, l := range strings.Split(strings.TrimRight(out, "\r\n"), "\r\n") {
		if len(l) >= 4 && l[3] == '-' {
			continue
		}
		replies = append(replies, l)
	}
	return replies
}

var wellFormed = regexp.MustCompile(`^[2-5][0-9][0-9][ -][ -~]*$`)

// FuzzSession drives whole SMTP and LMTP sessions with arbitrary client input, as chasquid's
// FuzzConnection does: the server must neither panic nor hang, and every line it sends must be
// a well-formed reply.
func FuzzSession(f *testing.F) {
	for _, seed := range []string{
		"EHLO c\r\nMAIL FROM:<jane@customer.test>\r\nRCPT TO:<support@example.com>\r\nDATA\r\nSubject: x\r\n\r\nhi\r\n.\r\nQUIT\r\n",
		"LHLO c\r\nMAIL FROM:<> BODY=8BITMIME\r\nRCPT TO:<postmaster>\r\nDATA\r\n..\r\n.\r\n",
		"HELO c\r\nMAIL FROM:<@a,@b:x@y.test> SIZE=10\r\nRCPT TO:<support+1-abc@example.com>\r\nRSET\r\nVRFY x\r\nNOOP\r\nHELP\r\nSTARTTLS\r\n",
		"EHLO c\r\nMAIL FROM:x@y\r\nRCPT TO:support@example.com\r\nDATA\r\n\n.\n\r\n.\r\n",
		"\r\n\x00\xff\r\nMAIL\r\nRCPT\r\nDATA x\r\n" + strings.Repeat("A", 3000) + "\r\n",
	} {
		f.Add([]byte(seed))
	}
	srv := testServer(f)
	f.Fuzz(func(t *testing.T, script []byte) {
		for _, lmtp := range []bool{false, true} {
			out := run(srv, lmtp, string(script))
			if !strings.HasSuffix(out, "\r\n") {
				t.Fatalf("output does not end a line: %q", out)
			}
			for _, l := range strings.Split(strings.TrimSuffix(out, "\r\n"), "\r\n") {
				if !wellFormed.MatchString(l) || len(l) > 512 {
					t.Fatalf("malformed reply line %q for %q", l, script)
				}
			}
		}
	})
}

func TestCommandDeadlineShortensUnderStress(t *testing.T) {
	for _, tc := range []struct {
		active, max int
		read, want  time.Duration
	}{
		{10, 200, 5 * time.Minute, 5 * time.Minute},
		{159, 200, 5 * time.Minute, 5 * time.Minute},
		{160, 200, 5 * time.Minute, 10 * time.Second},
		{4, 5, 2 * time.Second, 2 * time.Second}, // never longer than read_timeout
	} {
		if got := commandTimeout(tc.read, tc.active, tc.max); got != tc.want {
			t.Errorf("%d of %d sessions, read_timeout %s: %s, want %s", tc.active, tc.max, tc.read, got, tc.want)
		}
	}
}

// Queue ids are what Postfix's look like, twelve upper-case hex digits, and name one session or
// mail each: a repeated id would mix two mails up in the logs.
func TestQueueIDsAreDistinctHexNames(t *testing.T) {
	valid := regexp.MustCompile(`^[0-9A-F]{12}$`)
	seen := map[string]bool{}
	for range 100000 {
		id := newQueueID()
		if !valid.MatchString(id) {
			t.Fatalf("queue id %q is not twelve upper-case hex digits", id)
		}
		if seen[id] {
			t.Fatalf("queue id %q came twice in 100,000", id)
		}
		seen[id] = true
	}
}
