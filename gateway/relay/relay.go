// Package relay is the outbound queue worker: it takes committed deliveries off the
// queue, signs them, hands them to the upstream (SMTP, or a Maildir), and records each
// recipient's result durably: 4xx and network errors are retried with exponential
// backoff until upstream.max_queue_lifetime, 5xx fails the recipient at once.
package relay

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"time"

	"github.com/emersion/go-smtp"

	"github.com/deskgate/deskgate/config"
	"github.com/deskgate/deskgate/gateway/addr"
	"github.com/deskgate/deskgate/gateway/metrics"
	"github.com/deskgate/deskgate/gateway/model"
	"github.com/deskgate/deskgate/gateway/rules"
	"github.com/deskgate/deskgate/store"
)

// Worker drains the outbound queue.
type Worker struct {
	store *store.Store
	log   *slog.Logger
	kick  <-chan struct{}
	Now   func() time.Time
	// started is when this worker began: a delivery queued before it may have been handed
	// over by a process that died before recording it.
	started time.Time

	mu      sync.Mutex
	cfg     *config.Config
	up      *upstream
	upErr   error
	sign    *signer
	signErr error
	idle    []pooled
}

type pooled struct {
	c    *session
	used time.Time
}

// idleTimeout is how long an unused upstream session is kept open for reuse.
const idleTimeout = 30 * time.Second

// New makes a worker woken by kick whenever deliveries are committed.
func New(cfg *config.Config, st *store.Store, logger *slog.Logger, kick <-chan struct{}) *Worker {
	w := &Worker{store: st, log: logger, kick: kick, Now: time.Now, started: time.Now()}
	w.SetConfig(cfg)
	return w
}

// SetConfig swaps in a reloaded config: upstream and DKIM key are read anew, and
// sessions to the old upstream are closed.
func (w *Worker) SetConfig(cfg *config.Config) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.cfg = cfg
	w.up, w.upErr = nil, nil
	if !strings.HasPrefix(cfg.Upstream.Address, config.MaildirPrefix) {
		w.up, w.upErr = newUpstream(cfg)
	}
	w.sign, w.signErr = newSigner(cfg.DKIM)
	for _, p := range w.idle {
		p.c.Close()
	}
	w.idle = nil
}

// setup is what one attempt works with, as the last SetConfig left it.
type setup struct {
	cfg     *config.Config
	up      *upstream
	upErr   error
	sign    *signer
	signErr error
}

func (w *Worker) snapshot() setup {
	w.mu.Lock()
	defer w.mu.Unlock()
	return setup{w.cfg, w.up, w.upErr, w.sign, w.signErr}
}

func (w *Worker) config() *config.Config { return w.snapshot().cfg }

// Run delivers until ctx ends, then closes its upstream sessions. It is a pipeline:
// a dispatcher hands due deliveries to as many senders as upstream.max_connections
// allows, and a recorder commits their results in batches, so that the upstream links
// never wait for the store's fsync.
// unrecordedWindow is how many deliveries one sender may hand over before their results are
// in the store. One would make each delivery wait for a commit (about a millisecond with
// fsync); sixteen keep a pipelining upstream busy while a commit runs.
const unrecordedWindow = 16

func (w *Worker) Run(ctx context.Context) {
	defer w.closeIdle(0)
	cfg := w.config()
	if dir, ok := strings.CutPrefix(cfg.Upstream.Address, config.MaildirPrefix); ok {
		md := &Maildir{Dir: dir, Hostname: cfg.Hostname}
		if n, err := md.CleanTmp(); err != nil {
			w.log.Error("cannot clean the Maildir's tmp/", "dir", dir, "err", err)
		} else if n > 0 {
			w.log.Info("removed files a crash left in the Maildir's tmp/; their deliveries are still queued", "dir", dir, "files", n)
		}
	}
	senders := 1
	if !strings.HasPrefix(cfg.Upstream.Address, config.MaildirPrefix) {
		senders = cfg.Upstream.MaxConnections
	}
	jobs := make(chan job)
	results := make(chan attempt, 256)
	recorded := make(chan struct{}, 1)
	inflight := map[uint64]bool{}
	var mu sync.Mutex

	var sendersDone sync.WaitGroup
	for i := 0; i < senders; i++ {
		sendersDone.Add(1)
		go func() {
			defer sendersDone.Done()
			// A sender gets ahead of the store by unrecordedWindow deliveries at most, so
			// that a crash repeats only those (into a Maildir, not even those), not every
			// delivery handed over since the last record.
			window := make(chan struct{}, unrecordedWindow)
			for j := range jobs {
				window <- struct{}{}
				a := w.attempt(j.d, j.msg)
				a.recorded = window
				results <- a
			}
		}()
	}
	recorderDone := make(chan struct{})
	go func() {
		defer close(recorderDone)
		for first := range results {
			batch := []attempt{first}
		drain:
			for len(batch) < 500 {
				select {
				case a, ok := <-results:
					if !ok {
						break drain
					}
					batch = append(batch, a)
				default:
					break drain
				}
			}
			// Recorded even during shutdown: forgetting a handed-over message would
			// send it again after the restart.
			if w.record(batch) {
				// Kept when the record failed: the lease runs out and a node (this one
				// included) tries again.
				w.released(batch)
			}
			for _, a := range batch {
				<-a.recorded
			}
			mu.Lock()
			for _, a := range batch {
				delete(inflight, a.d.ID)
			}
			mu.Unlock()
			select {
			case recorded <- struct{}{}:
			default:
			}
		}
	}()

	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	for ctx.Err() == nil {
		mu.Lock()
		batch := w.due(200, inflight)
		for _, j := range batch {
			inflight[j.d.ID] = true
		}
		mu.Unlock()
		for i, j := range batch {
			select {
			case jobs <- j:
			case <-ctx.Done():
				mu.Lock()
				var left []uint64
				for _, j := range batch[i:] {
					delete(inflight, j.d.ID)
					left = append(left, j.d.ID)
				}
				mu.Unlock()
				w.store.Release(left)
			}
			if ctx.Err() != nil {
				break
			}
		}
		if len(batch) > 0 {
			continue
		}
		w.closeIdle(idleTimeout)
		select {
		case <-ctx.Done():
		case <-w.kick:
		case <-recorded:
		case <-tick.C:
		}
	}
	close(jobs)
	sendersDone.Wait()
	close(results)
	<-recorderDone
}

func (w *Worker) closeIdle(older time.Duration) {
	w.mu.Lock()
	var keep []pooled
	var close []pooled
	for _, p := range w.idle {
		if w.Now().Sub(p.used) >= older {
			close = append(close, p)
		} else {
			keep = append(keep, p)
		}
	}
	w.idle = keep
	w.mu.Unlock()
	for _, p := range close {
		p.c.Quit()
	}
}

// session takes an idle session to the upstream or opens one.
func (w *Worker) session(up *upstream) (*session, error) {
	w.mu.Lock()
	for len(w.idle) > 0 {
		p := w.idle[len(w.idle)-1]
		w.idle = w.idle[:len(w.idle)-1]
		w.mu.Unlock()
		// A session idle for a while may have been closed by the server.
		if w.Now().Sub(p.used) < 5*time.Second || p.c.Noop() == nil {
			return p.c, nil
		}
		p.c.Close()
		w.mu.Lock()
	}
	w.mu.Unlock()
	return up.dial()
}

func (w *Worker) release(up *upstream, c *session, max int) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.up != up || len(w.idle) >= max {
		go c.Quit()
		return
	}
	w.idle = append(w.idle, pooled{c: c, used: w.Now()})
}

// RunOnce delivers everything that is due now, one pass after another; tests use it
// to step the queue deterministically.
func (w *Worker) RunOnce(ctx context.Context) {
	for ctx.Err() == nil {
		cfg := w.config()
		jobs := w.due(200, nil)
		if len(jobs) == 0 {
			return
		}
		results := make([]attempt, len(jobs))
		parallel := 1
		if !strings.HasPrefix(cfg.Upstream.Address, config.MaildirPrefix) {
			parallel = cfg.Upstream.MaxConnections
		}
		sem := make(chan struct{}, parallel)
		var wg sync.WaitGroup
		for i, j := range jobs {
			wg.Add(1)
			sem <- struct{}{}
			go func(i int, j job) {
				defer wg.Done()
				defer func() { <-sem }()
				results[i] = w.attempt(j.d, j.msg)
			}(i, j)
		}
		wg.Wait()
		// One transaction records the whole pass, so that outbound bookkeeping takes
		// one slot of the store's writer instead of one per delivery.
		ok := w.record(results)
		if ok {
			w.released(results)
		}
		if !ok {
			return
		}
	}
}

// job is a delivery due now with its message.
type job struct {
	d   *store.Delivery
	msg []byte
}

// due claims and loads up to limit deliveries that are due now, leaving out those in skip.
// On PostgreSQL other nodes drain the same queue: a delivery is read only after this node holds
// its lease, so that one another node sent and recorded just before is seen as sent.
func (w *Worker) due(limit int, skip map[uint64]bool) []job {
	now := w.Now()
	var candidates []uint64
	w.store.View(func(tx *store.Tx) error {
		for _, id := range tx.DueDeliveries(now, limit+len(skip)) {
			if !skip[id] {
				candidates = append(candidates, id)
			}
		}
		return nil
	})
	if len(candidates) > limit {
		candidates = candidates[:limit]
	}
	claimed, err := w.store.Claim(candidates)
	if err != nil {
		w.log.Error("cannot claim due deliveries; trying again shortly", "err", err)
		return nil
	}
	var jobs []job
	var unused []uint64
	w.store.View(func(tx *store.Tx) error {
		tx.PrefetchDeliveries(claimed, true)
		for _, id := range claimed {
			d, err := tx.Delivery(id)
			if err != nil {
				// A record that cannot be read stays on the queue and is named at every pass,
				// rather than dropped without a word.
				w.log.Error("queued delivery cannot be read; skipped", "delivery", id, "err", err)
				unused = append(unused, id)
				continue
			}
			if d.State != model.DeliveryQueued || d.NextTry.After(now) {
				unused = append(unused, id)
				continue
			}
			jobs = append(jobs, job{d: d, msg: tx.DeliveryMessage(id)})
		}
		return nil
	})
	w.store.Release(unused)
	return jobs
}

// released gives back the leases of what a pass recorded (or never sent).
func (w *Worker) released(batch []attempt) {
	ids := make([]uint64, len(batch))
	for i, a := range batch {
		ids[i] = a.d.ID
	}
	w.store.Release(ids)
}

// attempt is one try of one delivery: the recipients tried and what happened to each.
type attempt struct {
	d     *store.Delivery
	rcpts []string
	errs  []error
	via   string
	final []model.DeliveryState // each recipient's state once recorded
	// recorded is the sender's window: one slot is given back once the result is stored.
	recorded chan struct{}
}

// attempt hands one delivery to the upstream.
func (w *Worker) attempt(d *store.Delivery, msg []byte) attempt {
	defer func(start time.Time) { metrics.RelayDeliverySeconds.Observe(time.Since(start).Seconds()) }(time.Now())
	set := w.snapshot()
	cfg, up, upErr, sign, signErr := set.cfg, set.up, set.upErr, set.sign, set.signErr
	a := attempt{d: d}
	for _, r := range d.Recipients {
		if r.State == model.DeliveryQueued {
			a.rcpts = append(a.rcpts, r.Email)
		}
	}
	a.errs = make([]error, len(a.rcpts))
	failAll := func(err error) attempt {
		for i := range a.errs {
			a.errs[i] = err
		}
		return a
	}
	if signErr != nil {
		return failAll(fmt.Errorf("cannot sign: %w", signErr))
	}
	if dir, ok := strings.CutPrefix(cfg.Upstream.Address, config.MaildirPrefix); ok {
		// A Maildir is read by local programs, which take UTF-8 as it is.
		signed, err := sign.sign(msg)
		if err != nil {
			return failAll(fmt.Errorf("DKIM signing failed: %w", err))
		}
		a.via = "maildir"
		md := &Maildir{Dir: dir, Hostname: cfg.Hostname}
		maybeDone := d.Attempts > 0 || d.CreatedAt.Before(w.started)
		a.errs = md.Deliver(d.ID, maybeDone, d.From, a.rcpts, signed)
		return a
	}
	a.via = cfg.Upstream.Address
	if upErr != nil {
		return failAll(upErr)
	}
	c, err := w.session(up)
	if err != nil {
		return failAll(err)
	}
	// What is sent depends on the session (SMTPUTF8 or a downgrade), and the signature
	// must cover the header as sent: signing comes after.
	tr, errs := plan(d.From, a.rcpts, msg, c.smtputf8, a.via)
	a.errs = errs
	if len(tr.rcpts) == 0 {
		w.release(up, c, cfg.Upstream.MaxConnections)
		return a
	}
	signed, err := sign.sign(tr.msg)
	if err != nil {
		w.release(up, c, cfg.Upstream.MaxConnections)
		for _, i := range tr.index {
			a.errs[i] = fmt.Errorf("DKIM signing failed: %w", err)
		}
		return a
	}
	terrs, usable := c.transact(tr.from, tr.rcpts, signed, tr.utf8)
	for j, i := range tr.index {
		a.errs[i] = terrs[j]
	}
	if usable {
		w.release(up, c, cfg.Upstream.MaxConnections)
	} else {
		c.Close()
	}
	return a
}

// transaction is what one SMTP transaction sends of a delivery.
type transaction struct {
	from  string
	rcpts []string // as sent, in the order of index
	index []int    // where each is among the delivery's recipients
	msg   []byte
	utf8  bool // SMTPUTF8 on MAIL
}

// plan is how a delivery from from to rcpts travels over a session whose upstream offers
// SMTPUTF8 or not, and the recipients it cannot reach there. A delivery in seven bits goes
// as it always did. One that needs UTF-8 (needsUTF8) goes with SMTPUTF8 when the upstream
// offers it; otherwise, as Postfix's SMTP client does, each address goes in its ASCII form
// (an IDN domain in A-labels) with the header downgraded to seven bits (Downgrade7Bit),
// and an address with a non-ASCII local part, which has no ASCII form, fails at once and for
// good (5.6.7) rather than in an 8-bit transaction that the upstream would refuse.
func plan(from string, rcpts []string, msg []byte, smtputf8 bool, upstream string) (transaction, []error) {
	errs := make([]error, len(rcpts))
	tr := transaction{from: from, msg: msg}
	need := needsUTF8(from, rcpts, msg)
	if !need || smtputf8 {
		tr.utf8 = need
		tr.rcpts = rcpts
		for i := range rcpts {
			tr.index = append(tr.index, i)
		}
		return tr, errs
	}
	sender, ok := addr.ASCIIForm(from)
	if !ok {
		for i := range errs {
			errs[i] = noSMTPUTF8(upstream, "the envelope sender "+from)
		}
		return transaction{}, errs
	}
	tr.from = sender
	for i, r := range rcpts {
		ascii, ok := addr.ASCIIForm(r)
		if !ok {
			errs[i] = noSMTPUTF8(upstream, r)
			continue
		}
		tr.rcpts = append(tr.rcpts, ascii)
		tr.index = append(tr.index, i)
	}
	tr.msg = Downgrade7Bit(msg)
	return tr, errs
}

// noSMTPUTF8 is the reply recorded for an address that only SMTPUTF8 can carry; 553 5.6.7
// is what RFC 6531 3.5 gives for it, and what a receiving server would have said.
func noSMTPUTF8(upstream, address string) error {
	return &smtp.SMTPError{Code: 553, EnhancedCode: smtp.EnhancedCode{5, 6, 7},
		Message: fmt.Sprintf("the upstream %s does not offer SMTPUTF8, and %s cannot be written in ASCII", upstream, address)}
}

// permanent reports whether an upstream error fails the recipient for good (5xx).
func permanent(err error) bool {
	var se *smtp.SMTPError
	return errors.As(err, &se) && se.Code >= 500
}

func replyText(err error) string {
	var se *smtp.SMTPError
	if errors.As(err, &se) {
		enh := ""
		if se.EnhancedCode != (smtp.EnhancedCode{}) && se.EnhancedCode != smtp.NoEnhancedCode {
			enh = fmt.Sprintf("%d.%d.%d ", se.EnhancedCode[0], se.EnhancedCode[1], se.EnhancedCode[2])
		}
		return fmt.Sprintf("%d %s%s", se.Code, enh, se.Message)
	}
	return err.Error()
}

// record stores the results of a pass. What was handed over is recorded even during
// shutdown: forgetting it would send it again after the restart.
func (w *Worker) record(results []attempt) bool {
	cfg := w.config()
	now := w.Now().UTC()
	ids := make([]uint64, len(results))
	for i, a := range results {
		ids[i] = a.d.ID
	}
	err := w.store.Update(context.Background(), func(tx *store.Tx) error {
		tx.PrefetchDeliveries(ids, false)
		for i := range results {
			a := &results[i]
			a.final = make([]model.DeliveryState, len(a.rcpts))
			cur, err := tx.Delivery(a.d.ID)
			if errors.Is(err, store.ErrNotFound) {
				// Its ticket was deleted (or its requester erased) while it was being sent;
				// the rest of the pass is recorded as usual.
				w.log.Info("delivery deleted while it was being sent", "delivery", a.d.ID, "ticket", a.d.TicketID)
				continue
			}
			if err != nil {
				return err
			}
			if cur.State != model.DeliveryQueued {
				continue // dropped by an operator meanwhile
			}
			cur.Attempts++
			answers := make([]rules.Answer, len(a.rcpts))
			for j, rc := range a.rcpts {
				answers[j] = rules.Answer{Email: rc, Accepted: a.errs[j] == nil}
				if e := a.errs[j]; e != nil {
					answers[j].Permanent, answers[j].Reply = permanent(e), replyText(e)
				}
			}
			outcomes, last := rules.AfterAttempt(answers, a.via, now.Sub(cur.CreatedAt), cfg.Upstream.MaxQueueLifetime)
			cur.LastReply = last
			for j, rc := range a.rcpts {
				a.final[j] = outcomes[model.AddressKey(rc)].State
			}
			settled := rules.Settle(cur.ID, cur.SourceID, cur.Recipients, outcomes, now)
			if err := tx.Settle(cur, settled.Recipients, settled.State, settled.Failures); err != nil {
				return err
			}
			if cur.State == model.DeliveryQueued {
				cur.NextTry = now.Add(rules.Backoff(cur.Attempts, cfg.Upstream.RetryMin, cfg.Upstream.RetryMax))
			}
			if err := tx.PutDelivery(cur); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		w.log.Error("cannot record deliveries", "count", len(results), "err", err)
		return false
	}
	for _, a := range results {
		for j, e := range a.errs {
			if a.final == nil || a.final[j] == "" {
				continue // dropped meanwhile
			}
			attrs := []any{"delivery", a.d.ID, "ticket", a.d.TicketID, "kind", a.d.Kind, "copy", a.d.Copy, "rcpt", a.rcpts[j], "via", a.via}
			switch a.final[j] {
			case model.DeliverySent:
				metrics.RelayRecipients.WithLabelValues("sent").Inc()
				w.log.Info("delivered", attrs...)
			case model.DeliveryFailed:
				metrics.RelayRecipients.WithLabelValues("failed").Inc()
				w.log.Warn("delivery failed", append(attrs, "reply", replyText(e))...)
			default:
				metrics.RelayRecipients.WithLabelValues("deferred").Inc()
				w.log.Warn("delivery deferred", append(attrs, "reply", replyText(e))...)
			}
		}
	}
	return true
}
