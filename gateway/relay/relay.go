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
			ids = tx.QueuedDeliveries(100)
			return nil
		})
		if len(ids) == 0 {
			return
		}
		progressed := false
		for _, id := range ids {
			if w.deliver(ctx, id) {
				progressed = true
			}
		}
		if !progressed {
			return
		}
	}
}

// deliver attempts one delivery and reports whether it left the queue.
func (w *Worker) deliver(ctx context.Context, id uint64) bool {
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
		return false
	}
	dir, ok := strings.CutPrefix(cfg.Upstream.Address, config.MaildirPrefix)
	if !ok {
		// The SMTP upstream arrives with the relay work (issue 5); until then mail
		// waits in the queue, where `deskgate queue list` shows it.
		if !w.warned.Swap(true) {
			w.log.Warn("deliveries stay queued: only a maildir: upstream is delivered to so far", "upstream", cfg.Upstream.Address)
		}
		return false
	}
	md := &Maildir{Dir: dir, Hostname: cfg.Hostname}
	var rcpts []string
	var idx []int
	for i, r := range d.Recipients {
		if r.State == store.DeliveryQueued {
			rcpts = append(rcpts, r.Email)
			idx = append(idx, i)
		}
	}
	errs := md.Deliver(d.From, rcpts, msg)
	// What was handed over is recorded even during shutdown: forgetting it would send
	// it again after the restart.
	err := w.store.Update(context.Background(), func(tx *store.Tx) error {
		cur, err := tx.Delivery(id)
		if err != nil {
			return err
		}
		cur.Attempts++
		pending := false
		for j, i := range idx {
			if errs[j] != nil {
				cur.Recipients[i].Reply = errs[j].Error()
				cur.LastReply = errs[j].Error()
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
		return tx.PutDelivery(cur)
	})
	if err != nil {
		w.log.Error("cannot record a delivery", "delivery", id, "err", err)
		return false
	}
	left := true
	for j, e := range errs {
		if e != nil {
			left = false
			w.Failed.Add(1)
			w.log.Warn("delivery failed", "delivery", id, "ticket", d.TicketID, "rcpt", rcpts[j], "err", e)
		} else {
			w.Sent.Add(1)
			w.log.Info("delivered", "delivery", id, "ticket", d.TicketID, "kind", d.Kind, "copy", d.Copy, "rcpt", rcpts[j], "to", "maildir")
		}
	}
	return left
}
