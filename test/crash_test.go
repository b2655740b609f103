package test

import (
	"fmt"
	"net/smtp"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// allMessageIDs pages through every ticket and counts each comment's Message-ID.
func (d *daemon) allMessageIDs() map[string]int {
	d.t.Helper()
	counts := map[string]int{}
	before := ""
	for {
		code, body := d.api("GET", "/api/v1/tickets?limit=1000"+before, nil, true)
		if code != 200 {
			d.t.Fatalf("list: %d %s", code, body)
		}
		page := d.decodeTickets(body)
		if len(page) == 0 {
			return counts
		}
		for _, s := range page {
			for _, c := range d.ticket(s.ID).Comments {
				counts[c.MessageID]++
			}
		}
		before = "&before=" + strconv.FormatUint(page[len(page)-1].ID, 10)
	}
}

// TestCrashKill9LosesNothingAcknowledged sends a bounded burst from several concurrent
// clients, kills deskgate with SIGKILL in the middle, restarts it on the same data, and
// checks that every message that got a 250 is stored exactly once.
func TestCrashKill9LosesNothingAcknowledged(t *testing.T) {
	const clients, perClient, killAfter = 6, 120, 300
	dir := t.TempDir()
	d := startDaemon(t, options{dir: dir})

	var mu sync.Mutex
	acked := map[string]bool{}
	var ackCount atomic.Int64
	killed := make(chan struct{})
	var wg sync.WaitGroup
	for c := 0; c < clients; c++ {
		wg.Add(1)
		go func(c int) {
			defer wg.Done()
			var lastAcked string
			for j := 0; j < perClient; j++ {
				select {
				case <-killed:
					return
				default:
				}
				id := fmt.Sprintf("<crash-%d-%d@customer.test>", c, j)
				h := map[string]string{"From": fmt.Sprintf("client%d@customer.test", c), "To": "support@example.com",
					"Subject": fmt.Sprintf("crash %d/%d", c, j), "Message-ID": id}
				if j%3 == 2 && lastAcked != "" {
					h["In-Reply-To"] = lastAcked // a reply into an existing ticket
				}
				msg := mail(h, "burst\n")
				if j%10 == 9 && lastAcked != "" {
					// A redelivery of a message already acknowledged (T3).
					id = lastAcked
					h["Message-ID"] = id
					msg = mail(h, "burst\n")
				}
				if err := deliverOne(d.smtpAddr, msg); err != nil {
					continue // refused or cut off by the kill: not acknowledged
				}
				mu.Lock()
				acked[id] = true
				mu.Unlock()
				lastAcked = id
				ackCount.Add(1)
			}
		}(c)
	}
	waitFor(t, "the burst to be half acknowledged", 60*time.Second, func() bool { return ackCount.Load() >= killAfter })
	d.kill9()
	close(killed)
	wg.Wait()
	if len(acked) < killAfter/2 {
		t.Fatalf("only %d distinct messages acknowledged before the kill", len(acked))
	}

	// Restart on the same data dir with the same config.
	d.start()
	counts := d.allMessageIDs()
	for id := range acked {
		if counts[id] != 1 {
			t.Errorf("acknowledged %s is stored %d times, want exactly once", id, counts[id])
		}
	}
	for id, n := range counts {
		if n > 1 {
			t.Errorf("%s stored %d times", id, n)
		}
	}
	t.Logf("%d messages acknowledged before SIGKILL, %d stored after restart", len(acked), len(counts))
}

func deliverOne(addr string, msg []byte) error {
	c, err := smtp.Dial(addr)
	if err != nil {
		return err
	}
	defer c.Close()
	if err := c.Mail("burst@customer.test"); err != nil {
		return err
	}
	if err := c.Rcpt("support@example.com"); err != nil {
		return err
	}
	w, err := c.Data()
	if err != nil {
		return err
	}
	if _, err := w.Write(msg); err != nil {
		return err
	}
	// Close returns nil only on the server's 250 to the final dot.
	if err := w.Close(); err != nil {
		return err
	}
	c.Quit()
	return nil
}

// A kill -9 while the relay writes into the Maildir: after the restart every notification
// is there exactly once (the file name is the delivery's), and tmp/ holds nothing stale.
func TestCrashDuringRelayDeliversEachCopyOnce(t *testing.T) {
	dir := t.TempDir()
	d := startDaemon(t, options{dir: dir})
	newDir := filepath.Join(dir, "outbox", "new")
	files := func() int {
		entries, _ := os.ReadDir(newDir)
		return len(entries)
	}
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for c := 0; c < 4; c++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for j := 0; j < 60; j++ {
				select {
				case <-stop:
					return
				default:
				}
				h := map[string]string{"From": fmt.Sprintf("relay%d@customer.test", c), "To": "support@example.com",
					"Subject": fmt.Sprintf("relay %d/%d", c, j), "Message-ID": fmt.Sprintf("<relay-%d-%d@customer.test>", c, j)}
				deliverOne(d.smtpAddr, mail(h, "ack me\n"))
			}
		}()
	}
	waitFor(t, "the relay to be writing", 30*time.Second, func() bool { return files() >= 40 })
	d.kill9()
	close(stop)
	wg.Wait()
	stale := filepath.Join(dir, "outbox", "tmp", "000000000999.R0123456789ab.deskgate.mx.deskgate.test")
	if err := os.WriteFile(stale, []byte("half a message"), 0o640); err != nil {
		t.Fatal(err)
	}
	before := files()

	d.start()
	d.settle()
	seen := map[string]int{}
	for _, m := range d.outbox() {
		seen[m.header.Get("In-Reply-To")+" "+m.rcpt]++
	}
	for key, n := range seen {
		if n > 1 {
			t.Errorf("%s delivered %d times", key, n)
		}
	}
	if _, err := os.Stat(stale); err == nil {
		t.Errorf("the stale tmp/ file is still there")
	}
	if left, _ := os.ReadDir(filepath.Join(dir, "outbox", "tmp")); len(left) > 0 {
		t.Errorf("tmp/ holds %d files after the restart", len(left))
	}
	t.Logf("%d copies written before SIGKILL, %d after the restart, none twice", before, len(seen))
}
