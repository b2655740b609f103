package main

import (
	"context"
	"encoding/hex"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/deskgate/deskgate/gateway/model"
	"github.com/deskgate/deskgate/internal/dnstest"
	"github.com/deskgate/deskgate/store"
)

// make bench-scale: the same measurements on an empty desk and on one of -scale tickets with
// five comments each, built straight into the store, in one run.

var (
	scale      = flag.Int("scale", 0, "build a desk of this many tickets (five comments each) and measure deskgate at that size against an empty desk")
	scaleReuse = flag.Bool("scale-reuse", true, "reuse a desk of the same size built by an earlier run that did not compact it")
	apiN       = flag.Int("api-n", 200, "requests per API endpoint in the latency runs")
	scaleMsgs  = flag.Int("scale-n", 20000, "new tickets per rate run at scale: longer runs than make bench's, for steadier figures")
	scaleDir   = flag.String("scale-dir", "var/bench-scale", "where the desks of -scale live (apart from -dir, which make bench empties)")
	scaleHalf  = flag.Bool("scale-compact", true, "after measuring, delete half of the tickets and compact (the desk is then built again by the next run)")
)

func runScale() error {
	source, err := tool("smtp-source")
	if err != nil {
		return err
	}
	if benchDNS, err = dnstest.Start(); err != nil {
		return err
	}
	defer benchDNS.Close()
	startWait = 10 * time.Minute
	webPages = true
	defer func() { webPages = false }()
	*messages = *scaleMsgs
	base, _ := filepath.Abs(*scaleDir)
	bigDir := filepath.Join(base, fmt.Sprintf("scale-%d", *scale))
	emptyDir := filepath.Join(base, "scale-empty")
	marker := filepath.Join(bigDir, "built")

	fmt.Printf("deskgate at scale: %d tickets, %d comments, against an empty desk, fsync on\n\n", *scale, 5**scale)
	if _, err := os.Stat(marker); err != nil || !*scaleReuse {
		os.RemoveAll(bigDir)
		b, err := buildDesk(filepath.Join(bigDir, "data"), *scale)
		if err != nil {
			return fmt.Errorf("building the desk: %w", err)
		}
		fmt.Printf("%-40s %10s (%d tickets, %d comments, %d attachments of 100 KiB, %d deliveries)\n", "built, straight into the store, in",
			b.took.Round(time.Second), b.tickets, b.comments, b.attachments, b.deliveries)
		os.WriteFile(marker, []byte(strconv.Itoa(*scale)), 0o644)
	} else {
		fmt.Printf("%-40s %10s\n", "built", "by an earlier run (-scale-reuse)")
	}

	os.RemoveAll(emptyDir)
	os.MkdirAll(emptyDir, 0o755)
	empty, err := measureDesk(source, emptyDir, false)
	if err != nil {
		return fmt.Errorf("empty desk: %w", err)
	}
	big, err := measureDesk(source, bigDir, true)
	if err != nil {
		return fmt.Errorf("desk of %d tickets: %w", *scale, err)
	}
	var compacted compaction
	if *scaleHalf {
		compacted, err = deleteHalfAndCompact(bigDir)
		os.Remove(marker) // half of it is gone now
		if err != nil {
			return fmt.Errorf("delete and compact: %w", err)
		}
	}

	fmt.Printf("\n%-44s %14s %14s %8s  %s\n", "", "empty desk", fmt.Sprintf("%d tickets", *scale), "ratio", "goal")
	row := func(name string, e, b float64, unit, goal string, met bool) {
		verdict := "met"
		if !met {
			verdict = "NOT met"
		}
		if goal == "" {
			verdict = ""
		}
		ratio := ""
		if e > 0 {
			ratio = fmt.Sprintf("%.2f", b/e)
		}
		fmt.Printf("%-44s %11.1f %-2s %11.1f %-2s %8s  %s %s\n", name, e, unit, b, unit, ratio, goal, verdict)
	}
	row("new tickets/s (smtp-source, 10 sessions)", empty.newTickets, big.newTickets, "", ">= 0.9x", big.newTickets >= 0.9*empty.newTickets)
	row("fan-out replies/s (20 CCs, 10 followers)", empty.fanOut, big.fanOut, "", ">= 0.9x", big.fanOut >= 0.9*empty.fanOut)
	for _, name := range apiNames {
		e, b := empty.api[name], big.api[name]
		row(name+" p50", e.p50, b.p50, "ms", "", true)
		row(name+" p99", e.p99, b.p99, "ms", "<= 10 ms", b.p99 <= 10)
	}
	for _, name := range webNames {
		e, b := empty.api[name], big.api[name]
		row(name+" p50", e.p50, b.p50, "ms", "", true)
		row(name+" p99", e.p99, b.p99, "ms", "<= 20 ms", b.p99 <= 20)
	}
	row("RSS after the runs (VmRSS)", empty.rss, big.rss, "Mi", "<= 256 MiB", big.rss <= 256)
	row("  of which anonymous (RssAnon)", empty.rssAnon, big.rssAnon, "Mi", "", true)
	row("  of which the mapped file (RssFile)", empty.rssFile, big.rssFile, "Mi", "", true)
	row("start to /healthz 200", empty.start.Seconds(), big.start.Seconds(), "s", "<= 2 s", big.start <= 2*time.Second)
	row("database file", float64(empty.fileSize)/(1<<20), float64(big.fileSize)/(1<<20), "Mi", "", true)
	fmt.Printf("%-44s %14s %11.0f B\n", "database bytes per comment", "", float64(big.fileSize)/float64(big.comments))
	row("deskgate backup: time", empty.backupTook.Seconds(), big.backupTook.Seconds(), "s", "", true)
	row("deskgate backup: size", float64(empty.backupSize)/(1<<20), float64(big.backupSize)/(1<<20), "Mi", "", true)
	if !*scaleHalf {
		return nil
	}
	fmt.Printf("\nthe older half of the %d tickets deleted (%s), then deskgate compact (%s):\n", *scale, compacted.deleteTook.Round(time.Second), compacted.took.Round(time.Second))
	fmt.Printf("%-44s %11.1f MiB -> %.1f MiB after deleting -> %.1f MiB compacted\n", "database file", float64(compacted.before)/(1<<20),
		float64(compacted.afterDelete)/(1<<20), float64(compacted.after)/(1<<20))
	return nil
}

// webNames are the web pages measured, over HTTP as a browser asks for them.
var webNames = []string{"web: ticket list", "web: request detail, 200 comments", "web: status view, 200 comments"}

var statusLink = regexp.MustCompile(`/requests/[0-9]+-[a-z2-7]+`)

// statusPath finds requester's request status view link in a copy deskgate sent her.
func (d *deskgate) statusPath(requester string) (string, error) {
	entries, err := os.ReadDir(filepath.Join(d.outbox, "new"))
	if err != nil {
		return "", err
	}
	for i := len(entries) - 1; i >= 0; i-- {
		raw, err := os.ReadFile(filepath.Join(d.outbox, "new", entries[i].Name()))
		if err != nil || !strings.Contains(string(raw), "Delivered-To: "+requester+"\r\n") {
			continue
		}
		if link := statusLink.FindString(string(raw)); link != "" {
			return link, nil
		}
	}
	return "", fmt.Errorf("no copy to %s carries a status view link", requester)
}

var apiNames = []string{"tickets list, first page", "tickets list, status=open", "tickets list, deep page (before=)", "tickets show, 200 comments", "explain"}

type latency struct{ p50, p99 float64 } // milliseconds

type deskResult struct {
	start                 time.Duration
	newTickets, fanOut    float64
	api                   map[string]latency
	rss, rssAnon, rssFile float64 // MiB
	fileSize              int64
	comments              int
	backupTook            time.Duration
	backupSize            int64
}

// measureDesk starts deskgate on dir and measures it the same way whatever the size.
func measureDesk(source, dir string, big bool) (deskResult, error) {
	r := deskResult{api: map[string]latency{}}
	// The page cache holds what the last run wrote; a real restart would not find it warm.
	dropCaches()
	d, err := startDeskgate(dir)
	if err != nil {
		return r, err
	}
	defer d.stop()
	r.start = d.startedIn

	if r.newTickets, err = blast(source, d.smtp); err != nil {
		return r, fmt.Errorf("new tickets: %w", err)
	}
	if r.fanOut, err = fanOutInto(d, source); err != nil {
		return r, fmt.Errorf("fan-out: %w", err)
	}
	// The ticket to show: one mail and 199 agents' replies.
	long, err := d.newTicket("long@customer.test", "A long conversation")
	if err != nil {
		return r, err
	}
	for i := 0; i < 199; i++ {
		if err := d.post(fmt.Sprintf("/api/v1/tickets/%d/comments", long), fmt.Sprintf(`{"author": "agent1@example.com", "body": "Reply %d: %s", "public": true}`, i, strings.Repeat("words ", 300))); err != nil {
			return r, err
		}
	}
	var shown struct {
		Comments []struct {
			ID uint64 `json:"id"`
		} `json:"comments"`
	}
	if err := d.getJSON(fmt.Sprintf("/api/v1/tickets/%d", long), &shown); err != nil || len(shown.Comments) != 200 {
		return r, fmt.Errorf("the long ticket has %d comments, not 200: %v", len(shown.Comments), err)
	}
	deepBefore := max(2, long/100)
	paths := map[string]string{
		apiNames[0]: "/api/v1/tickets",
		apiNames[1]: "/api/v1/tickets?status=open",
		apiNames[2]: fmt.Sprintf("/api/v1/tickets?before=%d", deepBefore),
		apiNames[3]: fmt.Sprintf("/api/v1/tickets/%d", long),
		apiNames[4]: fmt.Sprintf("/api/v1/explain/%d", shown.Comments[100].ID),
	}
	for _, name := range apiNames {
		if r.api[name], err = d.latency(paths[name], *apiN); err != nil {
			return r, fmt.Errorf("%s: %w", name, err)
		}
	}
	statusView, err := d.statusPath("long@customer.test")
	if err != nil {
		return r, err
	}
	pages := map[string]string{
		webNames[0]: "/tickets",
		webNames[1]: fmt.Sprintf("/tickets/%d", long),
		webNames[2]: statusView,
	}
	for _, name := range webNames {
		if r.api[name], err = d.webLatency(pages[name], *apiN); err != nil {
			return r, fmt.Errorf("%s: %w", name, err)
		}
	}
	status := procStatus(d.cmd.Process.Pid)
	r.rss, r.rssAnon, r.rssFile = status["VmRSS"]/1024, status["RssAnon"]/1024, status["RssFile"]/1024
	info, err := os.Stat(filepath.Join(dir, "data", store.FileName))
	if err != nil {
		return r, err
	}
	r.fileSize = info.Size()
	r.comments = d.metric("deskgate_comments")

	backup := filepath.Join(dir, "backup.db")
	os.Remove(backup)
	var fs syscall.Statfs_t
	if err := syscall.Statfs(dir, &fs); err == nil && int64(fs.Bavail)*fs.Bsize < r.fileSize*5/4 {
		// No room for a second copy: the daemon's side of the backup, read and sent whole,
		// without the disk write of the CLI.
		start := time.Now()
		resp, err := d.request("GET", "/api/v1/backup", "")
		if err != nil {
			return r, err
		}
		r.backupSize, err = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		r.backupTook = time.Since(start)
		fmt.Printf("(no room for a copy of %d MiB on this disk: the backup was streamed and discarded, not written)\n", r.fileSize>>20)
		return r, err
	}
	start := time.Now()
	cmd := exec.Command(*binary, "--config", filepath.Join(dir, "deskgate.yaml"), "backup", backup)
	if out, err := cmd.CombinedOutput(); err != nil {
		return r, fmt.Errorf("deskgate backup: %v %s", err, out)
	}
	r.backupTook = time.Since(start)
	if info, err := os.Stat(backup); err == nil {
		r.backupSize = info.Size()
	}
	os.Remove(backup)
	return r, nil
}

// fanOutInto makes a ticket with 20 CCs and 10 followers on d and sends the requester's
// replies into it.
func fanOutInto(d *deskgate, source string) (float64, error) {
	id, err := d.newTicket("fan@customer.test", "Fan-out")
	if err != nil {
		return 0, err
	}
	for i := 1; i <= 20; i++ {
		if err := d.post(fmt.Sprintf("/api/v1/tickets/%d/ccs", id), fmt.Sprintf(`{"email": "cc%d@customer.test"}`, i)); err != nil {
			return 0, err
		}
	}
	for i := 1; i <= 10; i++ {
		if err := d.post(fmt.Sprintf("/api/v1/tickets/%d/followers", id), fmt.Sprintf(`{"email": "agent%d@example.com"}`, i)); err != nil {
			return 0, err
		}
	}
	var t struct {
		ReplyAddress string `json:"reply_address"`
	}
	if err := d.getJSON(fmt.Sprintf("/api/v1/tickets/%d", id), &t); err != nil {
		return 0, err
	}
	start := time.Now()
	cmd := exec.Command(source, "-s", strconv.Itoa(*sessions), "-m", strconv.Itoa(*fanN), "-l", strconv.Itoa(*size),
		"-f", "fan@customer.test", "-t", t.ReplyAddress, "-S", "reply", d.smtp)
	if out, err := cmd.CombinedOutput(); err != nil || len(strings.TrimSpace(string(out))) > 0 {
		return 0, fmt.Errorf("smtp-source: %v %s", err, out)
	}
	return float64(*fanN) / time.Since(start).Seconds(), nil
}

// newTicket sends one mail and returns the ticket it opened.
func (d *deskgate) newTicket(from, subject string) (uint64, error) {
	id := hex.EncodeToString([]byte(fmt.Sprint(time.Now().UnixNano())))
	if err := smtpSend(d.smtp, from, "support@example.com",
		fmt.Sprintf("From: %s\r\nTo: support@example.com\r\nSubject: %s\r\nMessage-ID: <%s@customer.test>\r\n\r\nstart\r\n", from, subject, id)); err != nil {
		return 0, err
	}
	var page []struct {
		ID      uint64 `json:"id"`
		Subject string `json:"subject"`
	}
	if err := d.getJSON("/api/v1/tickets?limit=5", &page); err != nil {
		return 0, err
	}
	for _, t := range page {
		if t.Subject == subject {
			return t.ID, nil
		}
	}
	return 0, fmt.Errorf("the ticket %q is not among the newest", subject)
}

func (d *deskgate) getJSON(path string, v any) error {
	resp, err := d.request("GET", path, "")
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 {
		b, _ := io.ReadAll(resp.Body)
		return fmt.Errorf("GET %s: %d %s", path, resp.StatusCode, b)
	}
	return json.NewDecoder(resp.Body).Decode(v)
}

// latency requests path of the admin API n times, one after the other, and returns the
// median and the 99th percentile of the time to the whole answer.
func (d *deskgate) latency(path string, n int) (latency, error) {
	return timeRequests(n, path, func() (*http.Response, error) { return d.request("GET", path, "") })
}

// webLatency is latency for a web page, requested as agent1 (the trusted header).
func (d *deskgate) webLatency(path string, n int) (latency, error) {
	return timeRequests(n, path, func() (*http.Response, error) {
		req, _ := http.NewRequest("GET", "http://"+d.web+path, nil)
		req.Header.Set(webHeader, "agent1@example.com")
		return http.DefaultClient.Do(req)
	})
}

func timeRequests(n int, path string, get func() (*http.Response, error)) (latency, error) {
	times := make([]float64, 0, n)
	for i := 0; i < n; i++ {
		start := time.Now()
		resp, err := get()
		if err != nil {
			return latency{}, err
		}
		_, err = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if err != nil || resp.StatusCode != 200 {
			return latency{}, fmt.Errorf("GET %s: %d %v", path, resp.StatusCode, err)
		}
		times = append(times, float64(time.Since(start).Microseconds())/1000)
	}
	slices.Sort(times)
	return latency{p50: times[n/2], p99: times[(n*99+99)/100-1]}, nil
}

// procStatus reads the kB figures of /proc/PID/status.
func procStatus(pid int) map[string]float64 {
	out := map[string]float64{}
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return out
	}
	for _, line := range strings.Split(string(b), "\n") {
		k, v, ok := strings.Cut(line, ":")
		if !ok || !strings.HasSuffix(v, "kB") {
			continue
		}
		n, _ := strconv.ParseFloat(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 64)
		out[k] = n
	}
	return out
}

// dropCaches empties the page cache when the bench runs as root, so that a start is measured
// cold, as after a reboot; otherwise the start is measured warm and says so.
func dropCaches() {
	exec.Command("sync").Run()
	if err := os.WriteFile("/proc/sys/vm/drop_caches", []byte("3\n"), 0o200); err != nil {
		fmt.Println("(page cache not dropped: not root; the start is measured with a warm cache)")
	}
}

type built struct {
	took                                       time.Duration
	tickets, comments, attachments, deliveries int
}

// buildDesk writes n tickets of realistic shape straight into the store: five comments each
// of about 2 KiB (four by mail with their original, one agent's reply), one ticket in twenty
// with a 100 KiB attachment, CCs on three in ten and a follower on one in ten, a delivery per
// notified copy (sent, so only its record is kept), and statuses as an old desk has them.
func buildDesk(dataDir string, n int) (built, error) {
	var b built
	start := time.Now()
	st, err := store.Open(dataDir)
	if err != nil {
		return b, err
	}
	defer st.Close()
	rng := rand.New(rand.NewPCG(1, 2))
	words := strings.Fields(`the printer in our office stopped working again after the update and now it shows
		an error about the driver we tried to restart it twice but nothing changed could you please
		look into this as soon as possible because the whole team depends on it thanks for your help
		invoice order number account password reset login email attachment screenshot weekend monday
		shipping delivery refund customer support ticket urgent issue problem question answer update`)
	paragraphs := make([]string, 256)
	for i := range paragraphs {
		var sb strings.Builder
		for sb.Len() < 1800+rng.IntN(500) {
			sb.WriteString(words[rng.IntN(len(words))])
			if rng.IntN(12) == 0 {
				sb.WriteString(".\r\n")
			} else {
				sb.WriteByte(' ')
			}
		}
		paragraphs[i] = sb.String()
	}
	attachment := make([]byte, 100<<10)
	for i := range attachment {
		attachment[i] = byte(rng.Uint32())
	}
	msgID := func() string {
		var x [12]byte
		for i := range x {
			x[i] = byte(rng.Uint32())
		}
		return hex.EncodeToString(x[:]) + "@mail.customer.test"
	}
	statuses := func() model.Status {
		switch p := rng.IntN(100); {
		case p < 85:
			return model.StatusSolved
		case p < 93:
			return model.StatusOpen
		case p < 97:
			return model.StatusPending
		}
		return model.StatusNew
	}
	epoch := time.Now().AddDate(-5, 0, 0)
	step := 5 * 365 * 24 * time.Hour / time.Duration(n+1)
	const batch = 1000
	for first := 0; first < n; first += batch {
		err := st.Update(context.Background(), func(tx *store.Tx) error {
			for i := first; i < first+batch && i < n; i++ {
				created := epoch.Add(time.Duration(i) * step)
				requester := model.Person{Email: fmt.Sprintf("customer%d@org%d.test", rng.IntN(300000), rng.IntN(20000)), Name: "A Customer"}
				tk := &model.Ticket{Subject: "Problem with " + words[rng.IntN(len(words))], Status: statuses(), Requester: requester,
					CreatedAt: created, UpdatedAt: created.Add(48 * time.Hour), Support: "support@example.com", RootMessageID: msgID(),
					Masks: map[string]int{strings.ToLower(requester.Email): 1}, NextMask: 1}
				if rng.IntN(10) < 3 {
					for c := 0; c < 1+rng.IntN(2); c++ {
						cc := model.Person{Email: fmt.Sprintf("colleague%d@org%d.test", rng.IntN(300000), rng.IntN(20000))}
						tk.CCs = append(tk.CCs, cc)
						tk.NextMask++
						tk.Masks[cc.Email] = tk.NextMask
					}
				}
				if rng.IntN(10) == 0 {
					tk.Followers = []model.Person{{Email: fmt.Sprintf("agent%d@example.com", 1+rng.IntN(10))}}
				}
				if rng.IntN(8) == 0 {
					tk.Assignee = fmt.Sprintf("agent%d@example.com", 1+rng.IntN(10))
				}
				if err := tx.CreateTicket(tk); err != nil {
					return err
				}
				b.tickets++
				prev := tk.RootMessageID
				for j := 0; j < 5; j++ {
					at := created.Add(time.Duration(j) * 6 * time.Hour)
					c := &model.Comment{Public: true, CreatedAt: at, Body: paragraphs[rng.IntN(len(paragraphs))], Subject: "Re: " + tk.Subject,
						Trace: []model.TraceStep{{Rule: "T2", Step: "threaded", Detail: "In-Reply-To names a comment of this ticket"},
							{Rule: "V1", Step: "public", Detail: "from the requester"}, {Rule: "C1", Step: "no CC change"}}}
					if j == 3 {
						c.Author, c.Via = fmt.Sprintf("agent%d@example.com", 1+rng.IntN(10)), "api"
						c.MessageID = msgID()
					} else {
						c.Author, c.AuthorName, c.Via = requester.Email, requester.Name, "email"
						c.MessageID, c.InReplyTo, c.References = prev, prev, []string{tk.RootMessageID}
						if j > 0 {
							c.MessageID = msgID()
						}
						c.To, c.Cc, c.Recipients, c.EnvelopeFrom = []model.Person{{Email: "support@example.com"}}, tk.CCs, []string{"support@example.com"}, requester.Email
						c.AuthenticationResults = "mx.example.com; spf=pass smtp.mailfrom=" + requester.Email
					}
					withFile := j == 0 && i%20 == 0
					if withFile {
						c.Attachments = []model.Attachment{{Name: "screenshot.png", ContentType: "image/png", Size: int64(len(attachment))}}
					}
					// Who was told: the requester's copy, and the agents' copy when someone follows.
					copies := [][]model.DeliveryRecipient{{{Email: requester.Email, As: model.AsRequester, Visible: true, State: model.DeliverySent}}}
					if len(tk.Followers) > 0 {
						copies = append(copies, []model.DeliveryRecipient{{Email: tk.Followers[0].Email, As: model.AsFollower, State: model.DeliverySent}})
					}
					var deliveries []*store.Delivery
					for _, rc := range copies {
						del := &store.Delivery{ID: st.NewIds().Delivery(), TicketID: tk.ID, Kind: model.KindComment, Copy: model.CopyEndUser, MessageID: msgID(),
							From: "support+bounce@example.com", Recipients: rc, State: model.DeliveryQueued, Attempts: 1, NextTry: at, CreatedAt: at, LastReply: "250 2.0.0 Ok"}
						deliveries = append(deliveries, del)
						for _, r := range rc {
							c.Notified = append(c.Notified, model.Notified{Email: r.Email, As: r.As, Visible: r.Visible, Delivery: del.ID})
						}
					}
					if err := tx.AddComment(tk, c); err != nil {
						return err
					}
					b.comments++
					prev = c.MessageID
					if c.Via == "email" {
						raw := fmt.Sprintf("From: %s <%s>\r\nTo: support@example.com\r\nSubject: %s\r\nMessage-ID: <%s>\r\nIn-Reply-To: <%s>\r\n\r\n%s", requester.Name, requester.Email, c.Subject, c.MessageID, c.InReplyTo, c.Body)
						if err := tx.PutOriginal(c.ID, store.PackOriginal([]byte(raw))); err != nil {
							return err
						}
					}
					if withFile {
						if err := tx.PutAttachmentData(c.ID, 0, attachment); err != nil {
							return err
						}
						b.attachments++
					}
					for _, del := range deliveries {
						del.SourceID = c.ID
						if err := tx.QueueDelivery(del, nil); err != nil {
							return err
						}
						del.State = model.DeliverySent
						if err := tx.PutDelivery(del); err != nil {
							return err
						}
						if err := tx.IndexSentMessageID(del.MessageID, store.MessageRef{TicketID: tk.ID, SourceID: c.ID, Delivery: del.ID}); err != nil {
							return err
						}
						b.deliveries++
					}
				}
				tk.UpdatedAt = created.Add(30 * time.Hour)
				if err := tx.PutTicket(tk); err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil {
			return b, err
		}
		if done := first + batch; done%(max(n/10, batch)) == 0 {
			fmt.Printf("  built %d of %d tickets in %s\n", done, n, time.Since(start).Round(time.Second))
		}
	}
	b.took = time.Since(start)
	return b, nil
}

type compaction struct {
	deleteTook, took           time.Duration
	before, afterDelete, after int64
}

// deleteHalfAndCompact deletes the older half of the desk straight in the store, with the
// daemon stopped, then runs deskgate compact.
func deleteHalfAndCompact(dir string) (compaction, error) {
	var c compaction
	path := filepath.Join(dir, "data", store.FileName)
	if info, err := os.Stat(path); err == nil {
		c.before = info.Size()
	}
	start := time.Now()
	st, err := store.Open(filepath.Join(dir, "data"))
	if err != nil {
		return c, err
	}
	// The older half, as retention would delete it: deleting every other ticket instead reads
	// nearly every page of the file to find their comments, and took over half an hour here.
	for first := uint64(1); first <= uint64(*scale/2); first += 1000 {
		err := st.Update(context.Background(), func(tx *store.Tx) error {
			for id := first; id < first+1000 && id <= uint64(*scale/2); id++ {
				if _, err := tx.DeleteTicket(id); err != nil && err != store.ErrNotFound {
					return err
				}
			}
			return nil
		})
		if err != nil {
			st.Close()
			return c, err
		}
	}
	st.Close()
	c.deleteTook = time.Since(start)
	if info, err := os.Stat(path); err == nil {
		c.afterDelete = info.Size()
	}
	start = time.Now()
	if out, err := exec.Command(*binary, "--config", filepath.Join(dir, "deskgate.yaml"), "compact").CombinedOutput(); err != nil {
		return c, fmt.Errorf("deskgate compact: %v %s", err, out)
	}
	c.took = time.Since(start)
	if info, err := os.Stat(path); err == nil {
		c.after = info.Size()
	}
	return c, nil
}
