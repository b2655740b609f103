package test

import (
	"bufio"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/deskgate/deskgate/internal/mailtest"
)

// sink is Postfix's smtp-sink as deskgate's upstream: it accepts (or, with flags,
// refuses) mail and dumps each transaction to a file.
type sink struct {
	t    *testing.T
	addr string
	dir  string
	cmd  *exec.Cmd
}

func startSink(t *testing.T, addr string, flags ...string) *sink {
	t.Helper()
	dir, err := os.MkdirTemp("", "deskgate-sink-")
	if err != nil {
		t.Fatal(err)
	}
	os.Chmod(dir, 0o777) // smtp-sink drops to nobody and writes here
	t.Cleanup(func() { os.RemoveAll(dir) })
	return startSinkIn(t, addr, dir, flags...)
}

func startSinkIn(t *testing.T, addr, dir string, flags ...string) *sink {
	t.Helper()
	bin := needTool(t, "smtp-sink", "postfix")
	s := &sink{t: t, addr: addr, dir: dir}
	if s.addr == "" {
		s.addr = freePort(t)
	}
	args := append([]string{}, flags...)
	if os.Geteuid() == 0 {
		args = append(args, "-u", "nobody")
	}
	args = append(args, "-d", s.dir+"/%Y%m%d%H%M%S.", "-h", "sink.test", s.addr, "64")
	s.cmd = exec.Command(bin, args...)
	if err := s.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.stop)
	waitListening(t, "smtp-sink", s.addr)
	return s
}

func (s *sink) stop() {
	if s.cmd != nil && s.cmd.Process != nil {
		s.cmd.Process.Signal(syscall.SIGKILL)
		s.cmd.Wait()
		s.cmd = nil
	}
}

// restart replaces the sink on the same port, with other flags; dumps accumulate.
func (s *sink) restart(flags ...string) *sink {
	s.stop()
	return startSinkIn(s.t, s.addr, s.dir, flags...)
}

type sunk struct {
	file       string // the dump's name in the sink's directory
	helo, from string
	rcpts      []string
	head       string // the message's own header block, lowercased
	raw        string
}

func (s *sink) messages() []sunk {
	entries, _ := os.ReadDir(s.dir)
	var out []sunk
	for _, e := range entries {
		raw, err := os.ReadFile(filepath.Join(s.dir, e.Name()))
		if err != nil {
			continue
		}
		m := sunk{file: e.Name(), raw: string(raw)}
		sc := bufio.NewScanner(strings.NewReader(string(raw)))
		var head []string
		inOwn := false
		for sc.Scan() {
			line := strings.TrimRight(sc.Text(), "\r")
			if line == "" {
				break
			}
			switch {
			case strings.HasPrefix(line, "X-Helo-Args: "):
				m.helo = strings.TrimPrefix(line, "X-Helo-Args: ")
			case strings.HasPrefix(line, "X-Mail-Args: "):
				m.from = strings.Trim(strings.Fields(strings.TrimPrefix(line, "X-Mail-Args: "))[0], "<>")
			case strings.HasPrefix(line, "X-Rcpt-Args: "):
				m.rcpts = append(m.rcpts, strings.ToLower(strings.Trim(strings.Fields(strings.TrimPrefix(line, "X-Rcpt-Args: "))[0], "<>")))
			case strings.HasPrefix(line, "X-"):
			default:
				if strings.HasPrefix(line, "Received:") {
					inOwn = true
				}
				if inOwn {
					head = append(head, line)
				}
			}
		}
		m.head = strings.ToLower(strings.Join(head, "\n"))
		out = append(out, m)
	}
	return out
}

func relayDaemon(t *testing.T, upstream string, extra string) *daemon {
	t.Helper()
	return startDaemon(t, options{extraYAML: extra,
		upstream: fmt.Sprintf(`{address: "%s", tls: none, retry_min: 1s, retry_max: 2s, timeout: 10s, max_connections: 2}`, upstream)})
}

type queueEntry struct {
	ID         uint64 `json:"id"`
	State      string `json:"state"`
	Attempts   int    `json:"attempts"`
	LastReply  string `json:"last_reply"`
	Recipients []struct {
		Email string `json:"email"`
		State string `json:"state"`
		Reply string `json:"reply"`
	} `json:"recipients"`
}

func (d *daemon) queue() []queueEntry {
	d.t.Helper()
	_, body := d.api("GET", "/api/v1/queue", nil, true)
	var q []queueEntry
	if err := json.Unmarshal(body, &q); err != nil {
		d.t.Fatalf("queue: %v %s", err, body)
	}
	return q
}

func (d *daemon) waitDelivered(n int) {
	d.t.Helper()
	waitFor(d.t, fmt.Sprintf("%d deliveries to be sent", n), 20*time.Second, func() bool {
		sent := 0
		for _, e := range d.queue() {
			if e.State == "sent" {
				sent++
			}
		}
		return sent >= n
	})
}

func TestRelayDeliversAndFollowersAreRCPTOnly(t *testing.T) {
	s := startSink(t, "")
	d := relayDaemon(t, s.addr, "")
	id := d.open(jane, []string{joe}, "Relay me", "Please.")
	d.must("", "followers", "add", fmt.Sprint(id), carol)
	d.must("On it.", "reply", fmt.Sprint(id), "--as", alice)
	d.waitDelivered(3) // acknowledgement, end users' copy, agents' copy
	msgs := s.messages()
	if len(msgs) != 3 {
		t.Fatalf("sink got %d transactions, want 3", len(msgs))
	}
	var sawCarol bool
	for _, m := range msgs {
		if m.helo != "mx.deskgate.test" {
			t.Errorf("EHLO %q, want the configured hostname", m.helo)
		}
		if !strings.HasPrefix(m.from, "support+bounce-") {
			t.Errorf("MAIL FROM %q, want a bounce address", m.from)
		}
		if mailtest.HasAddress(m.head, carol) {
			t.Errorf("follower carol is in a header of the copy for %v", m.rcpts)
		}
		if contains(m.rcpts, carol) {
			sawCarol = true
			if len(m.rcpts) != 1 {
				t.Errorf("agents' copy shared with %v", m.rcpts)
			}
		}
		if contains(m.rcpts, jane) && !contains(m.rcpts, joe) && !strings.Contains(m.head, "auto-submitted: auto-generated") {
			t.Errorf("end users' copy to %v lacks joe", m.rcpts)
		}
	}
	if !sawCarol {
		t.Fatal("follower carol was never a RCPT")
	}
	out := d.must("", "tickets", "show", fmt.Sprint(id))
	if !strings.Contains(out, "carol@example.com as follower (hidden, sent)") {
		t.Fatalf("tickets show lacks the delivery status:\n%s", out)
	}
}

func TestRelay450ThenSuccess(t *testing.T) {
	s := startSink(t, "", "-r", "RCPT")
	d := relayDaemon(t, s.addr, "")
	d.open(jane, nil, "Deferred", "x")
	waitFor(t, "a 450 to be recorded", 10*time.Second, func() bool {
		q := d.queue()
		return len(q) == 1 && q[0].State == "queued" && q[0].Attempts >= 1 && strings.Contains(q[0].LastReply, "450")
	})
	if out := d.must("", "queue", "list"); !strings.Contains(out, "450") || !strings.Contains(out, "queued") {
		t.Fatalf("queue list does not show the deferral:\n%s", out)
	}
	s = s.restart()
	d.waitDelivered(1)
	if len(s.messages()) != 1 {
		t.Fatalf("sink got %d messages", len(s.messages()))
	}
}

func TestRelay421AfterFinalDotIsRetried(t *testing.T) {
	s := startSink(t, "", "-Q", ".")
	d := relayDaemon(t, s.addr, "")
	d.open(jane, nil, "Dot", "x")
	waitFor(t, "the 421 to be recorded", 10*time.Second, func() bool {
		q := d.queue()
		return len(q) == 1 && q[0].State == "queued" && strings.Contains(q[0].LastReply, "421")
	})
	// smtp-sink dumps a transaction before it answers the final dot, so the first sink kept a
	// copy of the one it answered with 421; stopped, it takes no more, and what the restarted sink
	// holds beyond those is what the retry brought.
	s.stop()
	answered := map[string]bool{}
	for _, m := range s.messages() {
		answered[m.file] = true
	}
	s = s.restart()
	d.waitDelivered(1)
	var retried []sunk
	for _, m := range s.messages() {
		if !answered[m.file] {
			retried = append(retried, m)
		}
	}
	if len(retried) != 1 {
		t.Fatalf("the restarted sink got %d messages, want the retried one", len(retried))
	}
	if m := retried[0]; len(m.rcpts) != 1 || m.rcpts[0] != jane {
		t.Fatalf("the retried message went to %v, want %s", m.rcpts, jane)
	}
}

func TestRelaySlowUpstream(t *testing.T) {
	s := startSink(t, "", "-W", "DATA:2")
	d := relayDaemon(t, s.addr, "")
	d.open(jane, []string{joe}, "Slow", "x")
	d.must("answer", "reply", "1", "--as", alice)
	d.waitDelivered(2)
	for _, e := range d.queue() {
		if e.Attempts != 1 {
			t.Errorf("delivery %d needed %d attempts with a slow but working upstream", e.ID, e.Attempts)
		}
	}
}

func TestRelayUpstreamDownThenUp(t *testing.T) {
	addr := freePort(t)
	d := relayDaemon(t, addr, "")
	d.open(jane, nil, "Down", "x")
	waitFor(t, "the refused connection to be recorded", 10*time.Second, func() bool {
		q := d.queue()
		return len(q) == 1 && q[0].State == "queued" && strings.Contains(q[0].LastReply, "refused")
	})
	s := startSink(t, addr)
	d.waitDelivered(1)
	if len(s.messages()) != 1 {
		t.Fatal("not delivered once the upstream came up")
	}
}

func TestRelay5xxFailsAtOnceAndFlagsTheTicket(t *testing.T) {
	s := startSink(t, "", "-f", "RCPT")
	d := relayDaemon(t, s.addr, "")
	id := d.open(jane, nil, "Hard", "x")
	waitFor(t, "the 5xx to fail the delivery", 10*time.Second, func() bool {
		q := d.queue()
		return len(q) == 1 && q[0].State == "failed"
	})
	if q := d.queue(); q[0].Attempts != 1 {
		t.Fatalf("a 5xx was retried: %d attempts", q[0].Attempts)
	}
	out := d.must("", "tickets", "show", fmt.Sprint(id))
	if !strings.Contains(out, "DELIVERY FAILED: jane@customer.test") {
		t.Fatalf("agents cannot see the failure:\n%s", out)
	}
	// An operator fixes the upstream and retries.
	s.restart()
	d.must("", "queue", "retry", fmt.Sprint(d.queue()[0].ID))
	d.waitDelivered(1)
}

func TestRelayQueueDrop(t *testing.T) {
	d := relayDaemon(t, freePort(t), "")
	d.open(jane, nil, "Drop", "x")
	waitFor(t, "a deferral", 10*time.Second, func() bool { q := d.queue(); return len(q) == 1 && q[0].Attempts >= 1 })
	d.must("", "queue", "drop", fmt.Sprint(d.queue()[0].ID))
	if q := d.queue(); q[0].State != "dropped" {
		t.Fatalf("state after drop: %s", q[0].State)
	}
	if _, _, code := d.cli("queue", "drop", fmt.Sprint(d.queue()[0].ID)); code == 0 {
		t.Fatal("dropping twice succeeded")
	}
}

func TestRelayKill9WithPendingDeliveries(t *testing.T) {
	addr := freePort(t)
	d := relayDaemon(t, addr, "")
	for i := 0; i < 5; i++ {
		d.open(jane, []string{joe}, fmt.Sprintf("Pending %d", i), "x")
	}
	waitFor(t, "deliveries to be tried", 10*time.Second, func() bool {
		for _, e := range d.queue() {
			if e.Attempts == 0 {
				return false
			}
		}
		return len(d.queue()) == 5
	})
	d.kill9()
	s := startSink(t, addr)
	d.start()
	d.waitDelivered(5)
	seen := map[string]int{}
	for _, m := range s.messages() {
		for _, line := range strings.Split(m.head, "\n") {
			if strings.HasPrefix(line, "message-id:") {
				seen[line]++
			}
		}
	}
	if len(seen) != 5 {
		t.Fatalf("sink saw %d distinct messages, want 5", len(seen))
	}
	for id, n := range seen {
		if n != 1 {
			t.Errorf("%s delivered %d times", id, n)
		}
	}
}

func TestT6_DSNToTheBounceAddress(t *testing.T) {
	s := startSink(t, "")
	d := relayDaemon(t, s.addr, "")
	id := d.open(jane, []string{joe}, "Bounce me", "x")
	d.must("Answer.", "reply", fmt.Sprint(id), "--as", alice)
	d.waitDelivered(2)
	var bounceAddr string
	for _, m := range s.messages() {
		if contains(m.rcpts, joe) {
			bounceAddr = m.from
		}
	}
	if bounceAddr == "" {
		t.Fatal("no delivery to joe")
	}
	before := len(d.ticket(id).Comments)
	raw, _ := os.ReadFile("../gateway/dsn/testdata/postfix-dsn.eml")
	dsn := strings.Replace(string(raw), "support+bounce-3-abcdefghijkl@example.com", bounceAddr, 1)
	if err := sendSMTP(d.smtpAddr, "", []string{bounceAddr}, []byte(dsn)); err != nil {
		t.Fatalf("DSN refused: %v", err)
	}
	tk := d.ticket(id)
	if len(tk.Comments) != before {
		t.Fatal("the bounce became a comment")
	}
	out := d.must("", "tickets", "show", fmt.Sprint(id))
	if !strings.Contains(out, "DELIVERY FAILED: joe@customer.test") || !strings.Contains(out, "5.1.1") {
		t.Fatalf("tickets show:\n%s", out)
	}
	explain := d.must("", "explain", fmt.Sprint(tk.Comments[len(tk.Comments)-1].ID), "--json")
	if !strings.Contains(explain, `"status": "failed"`) || !strings.Contains(explain, "5.1.1") {
		t.Fatalf("explain lacks the failure:\n%s", explain)
	}
	// A bounce with a forged token changes nothing.
	forged := strings.Replace(dsn, bounceAddr, "support+bounce-2-aaaaaaaaaaaa@example.com", 1)
	if err := sendSMTP(d.smtpAddr, "", []string{"support+bounce-2-aaaaaaaaaaaa@example.com"}, []byte(forged)); err != nil {
		t.Fatal(err)
	}
	if n := strings.Count(d.must("", "tickets", "show", fmt.Sprint(id)), "DELIVERY FAILED"); n != 1 {
		t.Fatalf("%d failures after a forged bounce", n)
	}
}

// The bounce address is the Return-Path of every copy, so every recipient knows it, and
// out-of-office replies go there too. Only a delivery status notification that names a
// recipient of the delivery may mark it failed (T6); everything else is accepted, counted
// in deskgate_bounce_address_mail_total and changes nothing.
func TestT6_OnlyADSNMarksADeliveryFailed(t *testing.T) {
	d := startDaemon(t, options{})
	id := d.open(jane, []string{joe}, "Bounce me", "x")
	d.must("Answer.", "reply", fmt.Sprint(id), "--as", alice)
	// Jane's acknowledgement is one delivery, the reply to Jane and Joe another.
	var ackBounce, replyBounce string
	for _, m := range d.outbox() {
		rp := strings.Trim(m.header.Get("Return-Path"), "<> ")
		switch {
		case m.rcpt == jane && !strings.Contains(m.body, "Answer."):
			ackBounce = rp
		case m.rcpt == joe && strings.Contains(m.body, "Answer."):
			replyBounce = rp
		}
	}
	if !strings.HasPrefix(ackBounce, "support+bounce-") || !strings.HasPrefix(replyBounce, "support+bounce-") || ackBounce == replyBounce {
		t.Fatalf("Return-Paths %q (acknowledgement) and %q (reply), want two bounce addresses", ackBounce, replyBounce)
	}
	deliveryOf := func(bounce string) (n uint64) {
		fmt.Sscanf(strings.TrimPrefix(bounce, "support+bounce-"), "%d-", &n)
		return n
	}
	ack, reply := deliveryOf(ackBounce), deliveryOf(replyBounce)
	deliveryState := func(id uint64) (string, map[string]string) {
		t.Helper()
		for _, e := range d.queue() {
			if e.ID == id {
				rs := map[string]string{}
				for _, r := range e.Recipients {
					rs[r.Email] = r.State
				}
				return e.State, rs
			}
		}
		t.Fatalf("delivery %d is not in the queue", id)
		return "", nil
	}
	series := func(kind string) string { return `deskgate_bounce_address_mail_total{kind="` + kind + `"}` }
	before := d.metrics()
	for _, kind := range []string{"dsn", "auto_reply", "other"} {
		if _, ok := before[series(kind)]; !ok {
			t.Errorf("/metrics lacks %s", series(kind))
		}
	}
	comments := len(d.ticket(id).Comments)
	unchanged := func(what string) {
		t.Helper()
		for _, dl := range []uint64{ack, reply} {
			if st, rs := deliveryState(dl); st != "sent" || rs[jane] != "sent" || (dl == reply && rs[joe] != "sent") {
				t.Errorf("after %s, delivery %d is %s %v, want sent", what, dl, st, rs)
			}
		}
		if out := d.must("", "tickets", "show", fmt.Sprint(id)); strings.Contains(out, "DELIVERY FAILED") {
			t.Errorf("after %s, tickets show:\n%s", what, out)
		}
		if q := d.must("", "queue", "list"); strings.Contains(q, "failed") || strings.Contains(q, "partial") || strings.Contains(q, "bounce") {
			t.Errorf("after %s, queue list:\n%s", what, q)
		}
		if n := len(d.ticket(id).Comments); n != comments {
			t.Errorf("after %s, the ticket has %d comments, want %d", what, n, comments)
		}
	}

	// Jane's out-of-office reply to her acknowledgement, sent with a null sender as RFC
	// 3834 asks.
	ooo := mail(map[string]string{"From": "Jane <jane@customer.test>", "To": ackBounce, "Subject": "Automatic reply: Bounce me",
		"Auto-Submitted": "auto-replied", "Message-ID": "<ooo@customer.test>"},
		"I am out of the office until Monday.\n")
	if err := sendSMTP(d.smtpAddr, "", []string{ackBounce}, ooo); err != nil {
		t.Fatalf("the out-of-office reply was refused: %v", err)
	}
	unchanged("an out-of-office reply")

	// A stranger who read the Return-Path of Joe's copy writes a "bounce" from an
	// ordinary address.
	stranger := mail(map[string]string{"From": "Mail Delivery System <mallory@evil.test>", "To": replyBounce,
		"Subject": "Undelivered Mail Returned to Sender", "Message-ID": "<forged-bounce@evil.test>"},
		"Your message to <joe@customer.test> could not be delivered.\n550 5.1.1 User unknown\n")
	if err := sendSMTP(d.smtpAddr, "mallory@evil.test", []string{replyBounce}, stranger); err != nil {
		t.Fatalf("the stranger's mail was refused: %v", err)
	}
	unchanged("a stranger's plain mail")

	// A DSN for a recipient the delivery never had.
	raw, err := os.ReadFile("../gateway/dsn/testdata/postfix-dsn.eml")
	if err != nil {
		t.Fatal(err)
	}
	dsn := strings.Replace(string(raw), "support+bounce-3-abcdefghijkl@example.com", replyBounce, 1)
	other := strings.ReplaceAll(dsn, "joe@customer.test", "lee@customer.test")
	if err := sendSMTP(d.smtpAddr, "", []string{replyBounce}, []byte(other)); err != nil {
		t.Fatalf("the DSN for lee was refused: %v", err)
	}
	unchanged("a DSN naming another recipient")

	after := d.metrics()
	for kind, want := range map[string]float64{"other": 1, "auto_reply": 1, "dsn": 1} {
		if got := after[series(kind)] - before[series(kind)]; got != want {
			t.Errorf("%s rose by %v, want %v", series(kind), got, want)
		}
	}
	if log := d.logs.String(); strings.Count(log, "bounce address mail changed nothing") != 3 ||
		!strings.Contains(log, fmt.Sprintf("delivery=%d", reply)) || !strings.Contains(log, "sender=mallory@evil.test") {
		t.Errorf("the log does not tell of the three mails:\n%s", log)
	}

	// A DSN that says Jane's copy is delayed counts, but fails nobody: her recipient stays
	// sent and records the delay, for agents to see why she has not answered.
	delayed := strings.Replace(strings.ReplaceAll(dsn, "joe@customer.test", "jane@customer.test"), "Action: failed", "Action: delayed", 1)
	if err := sendSMTP(d.smtpAddr, "", []string{replyBounce}, []byte(delayed)); err != nil {
		t.Fatalf("the delayed DSN for jane was refused: %v", err)
	}
	if st, rs := deliveryState(reply); st != "sent" || rs[jane] != "sent" || rs[joe] != "sent" {
		t.Errorf("after the delayed DSN, delivery %d is %s %v, want sent", reply, st, rs)
	}
	if out := d.must("", "tickets", "show", fmt.Sprint(id)); strings.Contains(out, "DELIVERY FAILED") {
		t.Errorf("after the delayed DSN, tickets show:\n%s", out)
	}
	var janeReply string
	for _, e := range d.queue() {
		for _, r := range e.Recipients {
			if e.ID == reply && r.Email == jane {
				janeReply = r.Reply
			}
		}
	}
	if !strings.Contains(janeReply, "delayed") || !strings.Contains(janeReply, "5.1.1") {
		t.Errorf("after the delayed DSN, jane's recipient reply is %q, want the delay recorded", janeReply)
	}

	// The real DSN for Joe marks him failed, with its status, and nobody else.
	if err := sendSMTP(d.smtpAddr, "", []string{replyBounce}, []byte(dsn)); err != nil {
		t.Fatalf("DSN refused: %v", err)
	}
	if st, rs := deliveryState(reply); st != "partial" || rs[joe] != "failed" || rs[jane] != "sent" {
		t.Errorf("after Joe's DSN, delivery %d is %s %v, want partial with joe failed", reply, st, rs)
	}
	if out := d.must("", "tickets", "show", fmt.Sprint(id)); !strings.Contains(out, "DELIVERY FAILED: joe@customer.test") ||
		!strings.Contains(out, "5.1.1") || strings.Contains(out, "DELIVERY FAILED: jane") {
		t.Errorf("tickets show:\n%s", out)
	}
	if n := len(d.ticket(id).Comments); n != comments {
		t.Errorf("the DSN became a comment")
	}
	if got := d.metrics()[series("dsn")] - before[series("dsn")]; got != 3 {
		t.Errorf("%s rose by %v, want 3", series("dsn"), got)
	}
}
