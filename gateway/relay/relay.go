// Package relay is the outbound queue worker: it takes committed deliveries off the
// queue, hands them to a Deliverer (the SMTP upstream, or a Maildir), which signs each as
// it sends it, and records each recipient's result durably: 4xx and network errors are
// retried with exponential backoff until upstream.max_queue_lifetime, 5xx fails the
// recipient at once.
package relay

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/emersion/go-smtp"

	"github.com/deskgate/deskgate/config"
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
	out     Deliverer
	signErr error
}

// New makes a worker woken by kick whenever deliveries are committed.
func New(cfg *config.Config, st *store.Store, logger *slog.Logger, kick <-chan struct{}) *Worker {
	w := &Worker{store: st, log: logger, kick: kick, Now: time.Now, started: time.Now()}
	w.SetConfig(cfg)
	return w
}

// SetConfig swaps in a reloaded config: the Deliverer (SMTP upstream or Maildir) and the
// DKIM key are made anew, and the old Deliverer's sessions are closed.
func (w *Worker) SetConfig(cfg *config.Config) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.cfg = cfg
	sign, err := newSigner(cfg.DKIM)
	w.signErr = err
	old := w.out
	// The clock is read through the worker, so that a test's w.Now reaches the sessions.
	w.out = newDeliverer(cfg, sign, func() time.Time { return w.Now() })
	if old != nil {
		old.Close()
	}
}

// setup is what one attempt works with, as the last SetConfig left it.
type setup struct {
	cfg     *config.Config
	out     Deliverer
	signErr error
}

func (w *Worker) snapshot() setup {
	w.mu.Lock()
	defer w.mu.Unlock()
	return setup{w.cfg, w.out, w.signErr}
}

func (w *Worker) config() *config.Config { return w.snapshot().cfg }

func (w *Worker) deliverer() Deliverer { return w.snapshot().out }

// unrecordedWindow is how many deliveries one sender may hand over before their results are
// in the store. One would make each delivery wait for a commit (about a millisecond with
// fsync); sixteen keep a pipelining upstream busy while a commit runs.
const unrecordedWindow = 16

// recordWait is how long the recorder waits for a fuller batch while more results are on
// their way. A commit costs about the same for one result as for fifty (its fsyncs, the
// meta and freelist pages, the leaf pages it touches), so a commit started at the first
// result waiting records some fifteen in a drain, and the store's writer takes most of the
// relay's CPU. The wait delays only the record of what was handed over, never a handover.
const recordWait = 2 * time.Millisecond

// stages is what Run's dispatcher, senders and recorder share.
type stages struct {
	// jobs carries a few deliveries at a time (chunks): a Deliverer that chains them on one
	// session (chainer) saves a wait for the upstream per message.
	jobs     chan []job
	results  chan attempt
	recorded chan struct{} // a batch is in the store: the dispatcher looks for due work again
	// fillTo is how many results the recorder waits for (recordWait at most) while more are in
	// flight: three quarters of what the senders may have unrecorded, so that it is reached
	// before every sender stops at its window.
	fillTo int

	mu       sync.Mutex
	inflight map[uint64]bool // handed to a sender, result not yet recorded
}

// Run delivers until ctx ends, then closes its upstream sessions. It is a pipeline:
// a dispatcher hands due deliveries to as many senders as the Deliverer takes at once
// (upstream.max_connections), and a recorder commits their results in batches, so that the
// upstream links never wait for the store's fsync.
func (w *Worker) Run(ctx context.Context) {
	defer func() { w.deliverer().CloseIdle(0) }()
	out := w.deliverer()
	out.Recover(w.log)
	p := &stages{jobs: make(chan []job), results: make(chan attempt, 256), recorded: make(chan struct{}, 1),
		fillTo: out.Parallel() * unrecordedWindow * 3 / 4, inflight: map[uint64]bool{}}
	var sendersDone sync.WaitGroup
	for i := 0; i < out.Parallel(); i++ {
		sendersDone.Add(1)
		go func() {
			defer sendersDone.Done()
			w.send(p)
		}()
	}
	recorderDone := make(chan struct{})
	go func() {
		defer close(recorderDone)
		w.recordBatches(p)
	}()
	w.dispatch(ctx, p)
	close(p.jobs)
	sendersDone.Wait()
	close(p.results)
	<-recorderDone
}

// dispatch hands due deliveries to the senders until ctx ends. With nothing due, it closes
// the sessions idle too long and waits for a kick, a recorded batch or the next second.
func (w *Worker) dispatch(ctx context.Context, p *stages) {
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	for ctx.Err() == nil {
		p.mu.Lock()
		batch := w.due(200, p.inflight)
		for _, j := range batch {
			p.inflight[j.d.ID] = true
		}
		p.mu.Unlock()
		size := chunkSize(len(batch), w.deliverer())
		for i := 0; i < len(batch); i += size {
			select {
			case p.jobs <- batch[i:min(i+size, len(batch))]:
			case <-ctx.Done():
				w.store.Release(p.forget(batch[i:]))
			}
			if ctx.Err() != nil {
				break
			}
		}
		if len(batch) > 0 {
			continue
		}
		w.deliverer().CloseIdle(idleTimeout)
		select {
		case <-ctx.Done():
		case <-w.kick:
		case <-p.recorded:
		case <-tick.C:
		}
	}
}

// maxChain is how many deliveries a sender chains on one session at most: enough that the
// upstream's waits are shared, few enough that one slow message holds back little.
const maxChain = 8

// chunkSize is how many of n due deliveries go to one sender at a time: one each, unless the
// Deliverer chains them, and then an even share of the senders', up to maxChain, so that no
// sender idles while another has a long chain.
func chunkSize(n int, out Deliverer) int {
	if _, ok := out.(chainer); !ok {
		return 1
	}
	return max(1, min(maxChain, (n+out.Parallel()-1)/out.Parallel()))
}

// forget takes jobs that no sender got out of the inflight set and returns their ids.
func (p *stages) forget(jobs []job) []uint64 {
	p.mu.Lock()
	defer p.mu.Unlock()
	var left []uint64
	for _, j := range jobs {
		delete(p.inflight, j.d.ID)
		left = append(left, j.d.ID)
	}
	return left
}

// send is one sender: it hands each job over and passes the result to the recorder. A sender
// gets ahead of the store by unrecordedWindow deliveries at most, so that a crash repeats only
// those (into a Maildir, not even those), not every delivery handed over since the last record.
func (w *Worker) send(p *stages) {
	window := make(chan struct{}, unrecordedWindow)
	for jobs := range p.jobs {
		for range jobs {
			window <- struct{}{}
		}
		for _, a := range w.attempts(jobs) {
			a.recorded = window
			p.results <- a
		}
	}
}

// recordBatches is the recorder: it commits the results waiting, up to 500 in one
// transaction, frees their senders' windows and tells the dispatcher.
func (w *Worker) recordBatches(p *stages) {
	for first := range p.results {
		batch := p.fill(p.gather(first, 500), recordWait)
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
		p.mu.Lock()
		for _, a := range batch {
			delete(p.inflight, a.d.ID)
		}
		p.mu.Unlock()
		select {
		case p.recorded <- struct{}{}:
		default:
		}
	}
}

// gather is first and the results already waiting behind it, up to limit.
func (p *stages) gather(first attempt, limit int) []attempt {
	batch := []attempt{first}
	for len(batch) < limit {
		select {
		case a, ok := <-p.results:
			if !ok {
				return batch
			}
			batch = append(batch, a)
		default:
			return batch
		}
	}
	return batch
}

// fill waits up to wait for more results while the batch is short of p.fillTo and more
// deliveries are in flight; with nothing else in flight (a lone acknowledgement) it waits
// for nothing.
func (p *stages) fill(batch []attempt, wait time.Duration) []attempt {
	var timeout <-chan time.Time
	for len(batch) < p.fillTo {
		p.mu.Lock()
		more := len(p.inflight) > len(batch)
		p.mu.Unlock()
		if !more {
			return batch
		}
		if timeout == nil {
			t := time.NewTimer(wait)
			defer t.Stop()
			timeout = t.C
		}
		select {
		case a, ok := <-p.results:
			if !ok {
				return batch
			}
			batch = append(batch, a)
		case <-timeout:
			return batch
		}
	}
	return batch
}

// RunOnce delivers everything that is due now, one pass after another; tests use it
// to step the queue deterministically.
func (w *Worker) RunOnce(ctx context.Context) {
	for ctx.Err() == nil {
		out := w.deliverer()
		jobs := w.due(200, nil)
		if len(jobs) == 0 {
			return
		}
		results := make([]attempt, len(jobs))
		sem := make(chan struct{}, out.Parallel())
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
		if !w.record(results) {
			return
		}
		w.released(results)
	}
}

// job is a delivery due now with its message.
type job struct {
	d   *store.Delivery
	msg []byte
}

// due claims and loads up to limit deliveries that are due now, leaving out those in skip.
// When nodes share the store, the others drain the same queue: a delivery is read only after this node holds
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

// attempt hands one delivery over.
func (w *Worker) attempt(d *store.Delivery, msg []byte) attempt {
	return w.attempts([]job{{d: d, msg: msg}})[0]
}

// attempts hands jobs over, chained on one session when there are several and the
// Deliverer can (chainer).
func (w *Worker) attempts(jobs []job) []attempt {
	start := time.Now()
	set := w.snapshot()
	out := make([]attempt, len(jobs))
	envs := make([]Envelope, len(jobs))
	for i, j := range jobs {
		out[i] = attempt{d: j.d, via: set.out.Via()}
		for _, r := range j.d.Recipients {
			if r.State == model.DeliveryQueued {
				out[i].rcpts = append(out[i].rcpts, r.Email)
			}
		}
		envs[i] = Envelope{ID: j.d.ID, MaybeDone: j.d.Attempts > 0 || j.d.CreatedAt.Before(w.started),
			From: j.d.From, Rcpts: out[i].rcpts, Msg: j.msg}
	}
	bd, chains := set.out.(chainer)
	switch {
	case set.signErr != nil:
		for i := range out {
			out[i].errs = failAll(len(out[i].rcpts), fmt.Errorf("cannot sign: %w", set.signErr))
		}
	case chains && len(jobs) > 1:
		for i, errs := range bd.DeliverChain(envs) {
			out[i].errs = errs
		}
	default:
		for i := range out {
			out[i].errs = set.out.Deliver(envs[i])
		}
	}
	// Each delivery is observed at its share of the time.
	share := time.Since(start).Seconds() / float64(len(jobs))
	for range jobs {
		metrics.RelayDeliverySeconds.Observe(share)
	}
	return out
}

// neverTried says whether every recipient of an attempt was left unsent because the chain it
// was in was cut before its turn (errChainCut).
func neverTried(errs []error) bool {
	for _, err := range errs {
		if !errors.Is(err, errChainCut) {
			return false
		}
	}
	return len(errs) > 0
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
	err := w.store.UpdateAlong(context.Background(), func(tx *store.Tx) error {
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
			if neverTried(a.errs) {
				// Its turn in a chain never came: nothing was tried, so nothing is counted, and
				// it stays due for the next pass (on a new connection).
				continue
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
	w.logRecorded(results)
	return true
}

// logRecorded counts and logs each recipient's recorded result. The line of a delivered
// recipient is at info, which a busy desk leaves off: its attributes are built only when it
// is on, and the counters are added to once per batch, not looked up per recipient.
func (w *Worker) logRecorded(results []attempt) {
	ctx := context.Background()
	logSent := w.log.Enabled(ctx, slog.LevelInfo)
	var sent, failed, deferred int
	for _, a := range results {
		for j, e := range a.errs {
			if a.final == nil || a.final[j] == "" {
				continue // dropped meanwhile
			}
			attrs := func() []any {
				return []any{"delivery", a.d.ID, "ticket", a.d.TicketID, "kind", a.d.Kind, "copy", a.d.Copy, "rcpt", a.rcpts[j], "via", a.via}
			}
			switch a.final[j] {
			case model.DeliverySent:
				sent++
				if logSent {
					w.log.Info("delivered", attrs()...)
				}
			case model.DeliveryFailed:
				failed++
				w.log.Warn("delivery failed", append(attrs(), "reply", replyText(e))...)
			default:
				deferred++
				w.log.Warn("delivery deferred", append(attrs(), "reply", replyText(e))...)
			}
		}
	}
	for result, n := range map[string]int{"sent": sent, "failed": failed, "deferred": deferred} {
		if n > 0 {
			metrics.RelayRecipients.WithLabelValues(result).Add(float64(n))
		}
	}
}
