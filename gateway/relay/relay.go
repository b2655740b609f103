// Package relay is the outbound queue worker: it takes committed deliveries off the
// queue, hands them to the upstream, and records each recipient's result durably.
package relay

import (
	"context"
	"log/slog"
	"strings"
	"sync/atomic"
	"time"

	"github.com/deskgate/deskgate/config"
	"github.com/deskgate/deskgate/store"
)

// Worker drains the outbound queue.
type Worker struct {
	store  *store.Store
	log    *slog.Logger
	cfg    atomic.Pointer[config.Config]
	kick   <-chan struct{}
	warned atomic.Bool
	// Sent and Failed count recipients, for /metrics.
	Sent, Failed atomic.Int64
}

// New makes a worker woken by kick whenever deliveries are committed.
func New(cfg *config.Config, st *store.Store, logger *slog.Logger, kick <-chan struct{}) *Worker {
	w := &Worker{store: st, log: logger, kick: kick}
	w.cfg.Store(cfg)
	return w
}

// SetConfig swaps in a reloaded config.
func (w *Worker) SetConfig(cfg *config.Config) { w.cfg.Store(cfg) }

// Run delivers until ctx ends.
func (w *Worker) Run(ctx context.Context) {
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	for {
		w.RunOnce(ctx)
		select {
		case <-ctx.Done():
			return
		case <-w.kick:
		case <-tick.C:
		}
	}
}

// RunOnce delivers everything queued now.
func (w *Worker) RunOnce(ctx context.Context) {
	for ctx.Err() == nil {
		var ids []uint64
		w.store.View(func(tx *store.Tx) error {
			ids = tx.QueuedDeliveries(200)
			return nil
		})
		if len(ids) == 0 {
			return
		}
		var results []attempt
		for _, id := range ids {
			if r, ok := w.attempt(id); ok {
				results = append(results, r)
			}
		}
		if len(results) == 0 {
			return
		}
		// One transaction records the whole pass, so that outbound bookkeeping takes
		// one slot of the store's writer instead of one per delivery.
		if !w.record(results) {
			return
		}
		if !anyLeft(results) {
			return
		}
	}
}

// attempt is one try of one delivery: the recipients tried and what happened to each.
type attempt struct {
	d      *store.Delivery
	rcpts  []string
	index  []int
	errs   []error
	viaDir string
}

func anyLeft(results []attempt) bool {
	for _, r := range results {
		for _, e := range r.errs {
			if e == nil {
				return true
			}
		}
	}
	return false
}

// attempt hands one delivery to the upstream; ok is false when it is not due.
func (w *Worker) attempt(id uint64) (attempt, bool) {
	cfg := w.cfg.Load()
	var d *store.Delivery
	var msg []byte
	w.store.View(func(tx *store.Tx) error {
		var err error
		d, err = tx.Delivery(id)
		if err == nil {
			msg = tx.DeliveryMessage(id)
		}
		return nil
	})
	if d == nil || d.State != store.DeliveryQueued || d.NextTry.After(time.Now()) {
		return attempt{}, false
	}
	dir, ok := strings.CutPrefix(cfg.Upstream.Address, config.MaildirPrefix)
	if !ok {
		// The SMTP upstream arrives with the relay work (issue 5); until then mail
		// waits in the queue, where `deskgate queue list` shows it.
		if !w.warned.Swap(true) {
			w.log.Warn("deliveries stay queued: only a maildir: upstream is delivered to so far", "upstream", cfg.Upstream.Address)
		}
		return attempt{}, false
	}
	a := attempt{d: d, viaDir: dir}
	for i, r := range d.Recipients {
		if r.State == store.DeliveryQueued {
			a.rcpts = append(a.rcpts, r.Email)
			a.index = append(a.index, i)
		}
	}
	md := &Maildir{Dir: dir, Hostname: cfg.Hostname}
	a.errs = md.Deliver(d.From, a.rcpts, msg)
	return a, true
}

// record stores the results of a pass. What was handed over is recorded even during
// shutdown: forgetting it would send it again after the restart.
func (w *Worker) record(results []attempt) bool {
	err := w.store.Update(context.Background(), func(tx *store.Tx) error {
		for _, a := range results {
			cur, err := tx.Delivery(a.d.ID)
			if err != nil {
				return err
			}
			cur.Attempts++
			pending := false
			for j, i := range a.index {
				if a.errs[j] != nil {
					cur.Recipients[i].Reply = a.errs[j].Error()
					cur.LastReply = a.errs[j].Error()
					pending = true
					continue
				}
				cur.Recipients[i].State = store.DeliverySent
				cur.Recipients[i].Reply = "delivered to maildir"
			}
			if pending {
				cur.NextTry = time.Now().Add(time.Minute)
			} else {
				cur.State = store.DeliverySent
				cur.LastReply = "delivered to maildir"
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
			if e != nil {
				w.Failed.Add(1)
				w.log.Warn("delivery failed", "delivery", a.d.ID, "ticket", a.d.TicketID, "rcpt", a.rcpts[j], "err", e)
			} else {
				w.Sent.Add(1)
				w.log.Info("delivered", "delivery", a.d.ID, "ticket", a.d.TicketID, "kind", a.d.Kind, "copy", a.d.Copy, "rcpt", a.rcpts[j], "to", "maildir")
			}
		}
	}
	return true
}
