package test

import (
	"context"
	"encoding/base64"
	"fmt"
	"net"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/deskgate/deskgate/internal/pgtest"
)

// Several deskgate nodes on one PostgreSQL database: the tests start a throwaway cluster
// (initdb and pg_ctl, as the postgres user, on loopback) and two real daemons on it, each with
// its own ports and data_dir, both relaying into one smtp-sink.

func pgNode(t *testing.T, url, upstream string) *daemon {
	t.Helper()
	return startDaemon(t, options{
		extraYAML: fmt.Sprintf("store:\n  url: %q\n", url),
		upstream:  fmt.Sprintf(`{address: "%s", tls: none, retry_min: 1s, retry_max: 2s, timeout: 10s, max_connections: 2}`, upstream),
	})
}

var sunkMessageID = regexp.MustCompile(`(?m)^message-id:\s*(<[^>]+>)`)

// sentIDs counts the messages the sink got, by their Message-ID.
func sentIDs(s *sink) map[string]int {
	out := map[string]int{}
	for _, m := range s.messages() {
		if id := sunkMessageID.FindStringSubmatch(m.head); id != nil {
			out[id[1]]++
		}
	}
	return out
}

// eachSentOnce checks that the sink got sent distinct messages, each of them once.
func (s *sink) eachSentOnce(t *testing.T, sent int) {
	t.Helper()
	ids := sentIDs(s)
	for id, n := range ids {
		if n != 1 {
			t.Errorf("%s reached the upstream %d times", id, n)
		}
	}
	if len(ids) != sent {
		t.Errorf("the sink holds %d distinct messages, the queue says %d sent", len(ids), sent)
	}
}

// queueSettled waits until no delivery is queued and returns how many were sent.
func (d *daemon) queueSettled(timeout time.Duration) int {
	d.t.Helper()
	var sent int
	waitFor(d.t, "the shared queue to drain", timeout, func() bool {
		sent = 0
		for _, e := range d.queue() {
			switch e.State {
			case "queued":
				return false
			case "sent":
				sent++
			}
		}
		return true
	})
	return sent
}

// load is clients sending at once, each perClient new tickets with Message-IDs
// <prefix-CLIENT-N@customer.test>, and what was acknowledged.
type load struct {
	mu    sync.Mutex
	acked map[string]bool
	count atomic.Int64
	wg    sync.WaitGroup
}

// startLoad starts the clients; send delivers one message of client c and says whether it
// got its 250. A client that gets none waits a moment and goes on with its next message.
func startLoad(clients, perClient int, prefix string, send func(c int, msg []byte) error) *load {
	l := &load{acked: map[string]bool{}}
	for c := 0; c < clients; c++ {
		l.wg.Add(1)
		go func(c int) {
			defer l.wg.Done()
			for j := 0; j < perClient; j++ {
				id := fmt.Sprintf("<%s-%d-%d@customer.test>", prefix, c, j)
				h := map[string]string{"From": fmt.Sprintf("client%d@customer.test", c), "To": "support@example.com",
					"Subject": fmt.Sprintf("%s %d/%d", prefix, c, j), "Message-ID": id}
				if err := send(c, mail(h, prefix+"\n")); err != nil {
					time.Sleep(20 * time.Millisecond)
					continue
				}
				l.mu.Lock()
				l.acked[id] = true
				l.mu.Unlock()
				l.count.Add(1)
			}
		}(c)
	}
	return l
}

// storedOnce checks that every acknowledged message is stored exactly once, and that
// nothing is stored twice; it returns how many Message-IDs are stored.
func (l *load) storedOnce(t *testing.T, d *daemon) int {
	t.Helper()
	l.wg.Wait()
	counts := d.allMessageIDs()
	for id := range l.acked {
		if counts[id] != 1 {
			t.Errorf("acknowledged %s is stored %d times, want exactly once", id, counts[id])
		}
	}
	for id, n := range counts {
		if n > 1 {
			t.Errorf("%s stored %d times", id, n)
		}
	}
	return len(counts)
}

func TestPostgresTwoNodesShareOneDesk(t *testing.T) {
	url := pgtest.Database(t)
	s := startSink(t, "")
	a := pgNode(t, url, s.addr)
	b := pgNode(t, url, s.addr)
	nodes := []*daemon{a, b}

	// Tickets opened on both nodes, each reply sent to the other node.
	const tickets = 6
	for i := 0; i < tickets; i++ {
		n := nodes[i%2]
		id := fmt.Sprintf("<ha-open-%d@customer.test>", i)
		h := map[string]string{"From": jane, "To": "support@example.com", "Cc": joe, "Subject": fmt.Sprintf("two nodes %d", i), "Message-ID": id}
		if err := sendSMTP(n.smtpAddr, jane, []string{"support@example.com"}, mail(h, "opened\n")); err != nil {
			t.Fatalf("open %d on node %d: %v", i, i%2, err)
		}
		other := nodes[(i+1)%2]
		r := map[string]string{"From": joe, "To": "support@example.com", "Subject": "Re: two nodes", "Message-ID": fmt.Sprintf("<ha-reply-%d@customer.test>", i), "In-Reply-To": id}
		if err := sendSMTP(other.smtpAddr, joe, []string{"support@example.com"}, mail(r, "replied on the other node\n")); err != nil {
			t.Fatalf("reply %d: %v", i, err)
		}
	}
	for _, n := range nodes {
		list := n.tickets()
		if len(list) != tickets {
			t.Fatalf("node lists %d tickets, want %d", len(list), tickets)
		}
		for _, tk := range list {
			if got := len(n.ticket(tk.ID).Comments); got != 2 {
				t.Errorf("ticket %d has %d comments on one node, want 2 (the reply threaded across nodes)", tk.ID, got)
			}
		}
	}

	// The same message reaching both nodes at the same moment (both MX hosts got it) is
	// stored once.
	first := a.tickets()[len(a.tickets())-1]
	for round := 0; round < 5; round++ {
		id := fmt.Sprintf("<ha-twice-%d@customer.test>", round)
		h := map[string]string{"From": jane, "To": "support@example.com", "Subject": "Re: both MX", "Message-ID": id, "In-Reply-To": "<ha-open-0@customer.test>"}
		var wg sync.WaitGroup
		errs := make([]error, 2)
		for i, n := range nodes {
			wg.Add(1)
			go func(i int, n *daemon) {
				defer wg.Done()
				errs[i] = sendSMTP(n.smtpAddr, jane, []string{"support@example.com"}, mail(h, "sent to both\n"))
			}(i, n)
		}
		wg.Wait()
		if errs[0] != nil || errs[1] != nil {
			t.Fatalf("round %d: both nodes must accept the copy: %v / %v", round, errs[0], errs[1])
		}
		if n := b.allMessageIDs()[id]; n != 1 {
			t.Errorf("round %d: the message that reached both nodes is stored %d times, want once", round, n)
		}
	}

	// Expert actions through either node act on the one desk.
	b.must("", "cc", "add", fmt.Sprint(first.ID), "kim@customer.test")
	a.must("Looking into it.", "reply", fmt.Sprint(first.ID), "--as", alice)
	b.must("", "solve", fmt.Sprint(first.ID))
	if st := a.ticket(first.ID).Status; st != "solved" {
		t.Errorf("node a sees ticket %d %q after node b solved it", first.ID, st)
	}

	// Every notification is sent once, by one node or the other.
	sent := a.queueSettled(30 * time.Second)
	waitFor(t, "the sink to hold every delivery", 10*time.Second, func() bool { return len(s.messages()) >= sent })
	s.eachSentOnce(t, sent)
	byNode := [2]int{strings.Count(a.logs.String(), "msg=delivered"), strings.Count(b.logs.String(), "msg=delivered")}
	t.Logf("%d deliveries sent; node a sent %d recipients' copies, node b %d", sent, byNode[0], byNode[1])
}

// blackHole accepts SMTP connections and never answers: an upstream that hangs.
func blackHole(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var held []net.Conn
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			held = append(held, c)
			mu.Unlock()
		}
	}()
	t.Cleanup(func() {
		l.Close()
		mu.Lock()
		for _, c := range held {
			c.Close()
		}
		mu.Unlock()
	})
	return l.Addr().String()
}

// leasesOf counts the deliveries the node with pid holds leases on.
func leasesOf(t *testing.T, url string, pid int) int {
	t.Helper()
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	var n int
	if err := conn.QueryRow(ctx, "SELECT count(*) FROM deskgate_leases WHERE node LIKE $1 AND until > now()", fmt.Sprintf("%%/%d/%%", pid)).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

// A node killed with SIGKILL under load: every message either node acknowledged is stored
// exactly once, and the survivor sends every notification, the deliveries the dead node had
// claimed included, once their leases run out. The dead node's upstream hangs, so it holds
// claimed deliveries it never hands over when it is killed.
func TestPostgresNodeKilledUnderLoad(t *testing.T) {
	url := pgtest.Database(t)
	s := startSink(t, "")
	a := pgNode(t, url, blackHole(t))
	b := pgNode(t, url, s.addr)

	const killAfter = 80
	l := startLoad(4, 60, "ha-kill", func(c int, msg []byte) error {
		// Half the clients use node a until it dies, then node b, as a sending MTA falls
		// back to the second MX.
		if c%2 == 0 {
			if err := deliverOne(a.smtpAddr, msg); err == nil {
				return nil
			}
		}
		return deliverOne(b.smtpAddr, msg)
	})
	waitFor(t, "load to be under way", 60*time.Second, func() bool { return l.count.Load() >= killAfter })
	var held int
	waitFor(t, "node a to hold leases", 30*time.Second, func() bool { held = leasesOf(t, url, a.cmd.Process.Pid); return held > 0 })
	a.kill9()
	killed := time.Now()
	stored := l.storedOnce(t, b)
	sent := b.queueSettled(90 * time.Second)
	if sent != stored {
		t.Errorf("%d deliveries sent, want one acknowledgement for each of %d tickets", sent, stored)
	}
	waitFor(t, "the sink to hold every delivery", 10*time.Second, func() bool { return len(sentIDs(s)) >= sent })
	s.eachSentOnce(t, sent)
	t.Logf("%d acknowledged (%d before the kill), %d stored, %d sent by the survivor; the dead node held %d leases, all sent %s after the kill",
		len(l.acked), killAfter, stored, sent, held, time.Since(killed).Round(time.Second))
}

// PostgreSQL crashes (an immediate stop) under load: while it is down deskgate answers
// 451 4.3.0, once it is back mail flows again, and every message acknowledged before, during or
// after is stored exactly once.
func TestPostgresRestartedUnderLoad(t *testing.T) {
	cluster := pgtest.StartCluster(t)
	d := startDaemon(t, options{extraYAML: fmt.Sprintf("store:\n  url: %q\n", cluster.URL)})

	var refused451 atomic.Int64
	var down atomic.Bool
	l := startLoad(4, 150, "pg-crash", func(_ int, msg []byte) error {
		err := deliverOne(d.smtpAddr, msg)
		if err != nil && down.Load() && strings.Contains(err.Error(), "451") && strings.Contains(err.Error(), "4.3.0") {
			refused451.Add(1)
		}
		return err
	})
	waitFor(t, "load to be under way", 30*time.Second, func() bool { return l.count.Load() >= 60 })
	down.Store(true)
	if err := cluster.Stop(); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "a 451 4.3.0 while PostgreSQL is down", 20*time.Second, func() bool { return refused451.Load() > 0 })
	if code, body := d.api("GET", "/healthz", nil, false); code == 200 {
		t.Errorf("/healthz says %d %s while PostgreSQL is down", code, body)
	}
	atDown := l.count.Load()
	if err := cluster.Start(); err != nil {
		t.Fatal(err)
	}
	down.Store(false)
	stored := l.storedOnce(t, d)
	if l.count.Load() <= atDown {
		t.Fatalf("no mail was accepted after PostgreSQL came back")
	}
	t.Logf("%d acknowledged (%d before the crash), %d refused with 451 while down, %d stored", len(l.acked), atDown, refused451.Load(), stored)
	d.queueSettled(60 * time.Second)
}

// A desk moved from bbolt to PostgreSQL with `deskgate store copy` keeps its tickets and
// answers the reply addresses of mail sent before the move.
func TestStoreCopyMovesADeskToPostgres(t *testing.T) {
	url := pgtest.Database(t)
	dir := t.TempDir()
	d := startDaemon(t, options{dir: dir})
	id := d.open(jane, []string{joe}, "Moving house", "Before the move.")
	notes := d.outbox()
	if len(notes) == 0 {
		t.Fatal("no acknowledgement was sent")
	}
	replyTo := notes[0].addresses("Reply-To")
	if len(replyTo) != 1 {
		t.Fatalf("acknowledgement Reply-To %v", replyTo)
	}
	d.stop()

	out, errOut, code := d.cli("store", "copy", "--from", "bbolt:"+dir+"/data", "--to", url)
	if code != 0 {
		t.Fatalf("store copy: exit %d: %s", code, errOut)
	}
	if !strings.Contains(out, "copied 1 tickets") {
		t.Errorf("store copy said %q", out)
	}
	if _, errOut, code := d.cli("store", "copy", "--from", "bbolt:"+dir+"/data", "--to", url); code == 0 || !strings.Contains(errOut, "already holds") {
		t.Errorf("a second copy into the same database: exit %d %s", code, errOut)
	}

	p := startDaemon(t, options{dir: dir, extraYAML: fmt.Sprintf("store:\n  url: %q\n", url)})
	// Only the reply address ties this reply to the ticket: no In-Reply-To, no References.
	h := map[string]string{"From": jane, "To": replyTo[0], "Subject": "after the move", "Message-ID": "<after-move@customer.test>"}
	if err := sendSMTP(p.smtpAddr, jane, replyTo, mail(h, "After the move.\n")); err != nil {
		t.Fatal(err)
	}
	list := p.tickets()
	if len(list) != 1 || list[0].ID != id {
		t.Fatalf("after the move the desk lists %+v, want ticket %d only", list, id)
	}
	if got := len(p.ticket(id).Comments); got != 2 {
		t.Errorf("ticket %d has %d comments after a reply to its old reply address, want 2", id, got)
	}
	p.settle()
}

// check-config tries the PostgreSQL connection and names what fails by its key.
func TestCheckConfigTriesThePostgresConnection(t *testing.T) {
	url := pgtest.Database(t)
	d := writeDaemonConfig(t, options{extraYAML: fmt.Sprintf("store:\n  url: %q\n", url)})
	if out, errOut, code := d.cli("check-config"); code != 0 || !strings.Contains(out, "store.url: PostgreSQL") {
		t.Errorf("reachable database: exit %d\n%s%s", code, out, errOut)
	}
	closed := "postgres://deskgate@" + freePort(t) + "/deskgate?sslmode=disable"
	withPassword := strings.Replace(url, "deskgate@", "deskgate:secret@", 1)
	for _, tc := range []struct{ yaml, want string }{
		{fmt.Sprintf("store:\n  url: %q\n", closed), "store.url: cannot connect"},
		{fmt.Sprintf("store:\n  url: %q\n", withPassword), "store.url: holds a password"},
		{fmt.Sprintf("store:\n  url: %q\n  password_file: /nonexistent/pg.pass\n", url), "store.password_file:"},
		{"store:\n  url: \"mysql://x\"\n", "store.url: must be empty"},
	} {
		d := writeDaemonConfig(t, options{extraYAML: tc.yaml})
		out, errOut, code := d.cli("check-config")
		if code != 1 || !strings.Contains(errOut, tc.want) {
			t.Errorf("%s: exit %d, want 1 and %q\n%s%s", tc.yaml, code, tc.want, out, errOut)
		}
		if strings.Contains(out+errOut, "secret") {
			t.Errorf("check-config printed the password:\n%s%s", out, errOut)
		}
	}
}

// A streaming standby with synchronous replication is promoted while mail flows: deskgate,
// given both hosts and target_session_attrs=read-write, finds the new primary by itself, and
// every message it acknowledged, before and after, is on it.
func TestPostgresStandbyPromotedWhileMailFlows(t *testing.T) {
	primary := pgtest.StartCluster(t)
	standby := primary.StartStandby(t, "standby1")
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, primary.URL)
	if err != nil {
		t.Fatal(err)
	}
	for _, q := range []string{"ALTER SYSTEM SET synchronous_standby_names = 'standby1'", "SELECT pg_reload_conf()", "CREATE DATABASE desk"} {
		if _, err := conn.Exec(ctx, q); err != nil {
			t.Fatal(err)
		}
	}
	waitFor(t, "the standby to replicate synchronously", 30*time.Second, func() bool {
		var state string
		conn.QueryRow(ctx, "SELECT sync_state FROM pg_stat_replication WHERE application_name = 'standby1'").Scan(&state)
		return state == "sync"
	})
	conn.Close(ctx)
	url := fmt.Sprintf("postgres://deskgate@127.0.0.1:%d,127.0.0.1:%d/desk?sslmode=disable&target_session_attrs=read-write", primary.Port, standby.Port)
	d := startDaemon(t, options{extraYAML: fmt.Sprintf("store:\n  url: %q\n", url)})

	l := startLoad(4, 120, "failover", func(_ int, msg []byte) error { return deliverOne(d.smtpAddr, msg) })
	waitFor(t, "load to be under way", 30*time.Second, func() bool { return l.count.Load() >= 60 })
	if err := primary.Stop(); err != nil {
		t.Fatal(err)
	}
	atFailure := l.count.Load()
	if err := standby.Promote(); err != nil {
		t.Fatal(err)
	}
	stored := l.storedOnce(t, d)
	if l.count.Load() <= atFailure {
		t.Fatal("no mail was accepted after the standby was promoted")
	}
	t.Logf("%d acknowledged (%d before the primary died), %d on the promoted standby", len(l.acked), atFailure, stored)
	d.queueSettled(60 * time.Second)
}

// The offline commands on a desk on PostgreSQL: migrate runs the migrations and says so;
// backup and compact, which are bbolt's, are refused with what to use instead.
func TestPostgresMigrateBackupCompact(t *testing.T) {
	url := pgtest.Database(t)
	d := writeDaemonConfig(t, options{extraYAML: fmt.Sprintf("store:\n  url: %q\n", url)})
	if out, errOut, code := d.cli("migrate"); code != 0 || !strings.Contains(out, "schema version 0 -> ") {
		t.Errorf("migrate on an empty database: exit %d %q %s", code, out, errOut)
	}
	if out, errOut, code := d.cli("migrate"); code != 0 || !strings.Contains(out, "nothing to do") {
		t.Errorf("migrate again: exit %d %q %s", code, out, errOut)
	}
	if _, errOut, code := d.cli("compact"); code == 0 || !strings.Contains(errOut, "PostgreSQL") {
		t.Errorf("compact: exit %d %s", code, errOut)
	}
	d.start()
	d.open(jane, nil, "backed up?", "body")
	if _, errOut, code := d.cli("backup", d.dir+"/backup.db"); code == 0 || !strings.Contains(errOut, "pg_dump") {
		t.Errorf("backup: exit %d %s", code, errOut)
	}
}

// A message near limits.max_message_bytes goes into PostgreSQL whole: its attachment is
// recorded at its size and its original comes back byte for byte.
func TestPostgresKeepsALargeMessageWhole(t *testing.T) {
	url := pgtest.Database(t)
	d := startDaemon(t, options{extraYAML: fmt.Sprintf("store:\n  url: %q\n", url)})
	payload := make([]byte, 15<<20)
	for i := range payload {
		payload[i] = byte(i*7 + i>>9)
	}
	encoded := base64.StdEncoding.EncodeToString(payload)
	var body strings.Builder
	for len(encoded) > 76 {
		body.WriteString(encoded[:76] + "\r\n")
		encoded = encoded[76:]
	}
	body.WriteString(encoded + "\r\n")
	raw := "From: jane@customer.test\r\nTo: support@example.com\r\nSubject: a large log\r\nMessage-ID: <large@customer.test>\r\n" +
		"MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=B\r\n\r\n--B\r\nContent-Type: text/plain\r\n\r\nThe log is attached.\r\n" +
		"--B\r\nContent-Type: application/octet-stream; name=log.bin\r\nContent-Disposition: attachment; filename=log.bin\r\nContent-Transfer-Encoding: base64\r\n\r\n" +
		body.String() + "--B--\r\n"
	if err := sendSMTP(d.smtpAddr, jane, []string{"support@example.com"}, []byte(raw)); err != nil {
		t.Fatalf("%d bytes: %v", len(raw), err)
	}
	tk := d.ticket(d.tickets()[0].ID)
	c := tk.Comments[0]
	if len(c.Attachments) != 1 || c.Attachments[0].Size != int64(len(payload)) {
		t.Fatalf("attachments %+v, want one of %d bytes", c.Attachments, len(payload))
	}
	out, _, _ := d.cli("comments", "raw", fmt.Sprint(c.ID))
	if _, rest, _ := strings.Cut(out, "\r\n"); rest != raw {
		t.Errorf("the original of %d bytes came back as %d bytes, not the same", len(raw), len(rest))
	}
}
