package desk

import (
	"context"
	"fmt"
	"strconv"

	"github.com/deskgate/deskgate/gateway/model"
	"github.com/deskgate/deskgate/gateway/rules"
	"github.com/deskgate/deskgate/store"
)

// settle plans what the rules settled of a delivery (rules.Settle): the delivery's new
// state and, when the ticket is to flag failures (T6), the ticket with them. tickets holds
// the tickets this plan changed already, so that two deliveries of one ticket add up.
func settle(tx *store.Tx, tickets map[uint64]*model.Ticket, d *store.Delivery, settled rules.Settlement) (writes, error) {
	d.Recipients, d.State = settled.Recipients, settled.State
	out := writes{func(w *store.Tx) error { return w.PutDelivery(d) }}
	if len(settled.Failures) == 0 {
		return out, nil
	}
	tk := tickets[d.TicketID]
	if tk == nil {
		var err error
		if tk, err = tx.Ticket(d.TicketID); err != nil {
			return nil, err
		}
		tickets[d.TicketID] = tk
	}
	tk.DeliveryFailures = append(tk.DeliveryFailures, settled.Failures...)
	return append(out, func(w *store.Tx) error { return w.PutTicket(tk) }), nil
}

// RetryDelivery puts a delivery's waiting and failed recipients back on the queue, due now
// and with a fresh lifetime; key "all" does so for every queued delivery (their lifetimes
// kept). It returns how many deliveries it changed.
func (s *Service) RetryDelivery(ctx context.Context, key string) (int, error) {
	now := s.Now().UTC()
	count := 0
	var ids []uint64
	if key == "all" {
		ids = nil // read from the snapshot
	} else {
		id, err := strconv.ParseUint(key, 10, 64)
		if err != nil || id == 0 {
			return 0, &rules.Refusal{Kind: rules.RefuseInvalid, Msg: fmt.Sprintf("id: %q is not a delivery id (or all)", key)}
		}
		ids = []uint64{id}
	}
	err := s.commit(ctx, func(tx *store.Tx, _ *planRun) (writes, error) {
		count = 0
		list := ids
		if key == "all" {
			list = tx.QueuedDeliveries(1 << 30)
		}
		var out writes
		tickets := map[uint64]*model.Ticket{}
		for _, id := range list {
			d, err := tx.Delivery(id)
			if err != nil {
				return nil, err
			}
			outcomes, ok := rules.Retry(d.Recipients)
			if !ok {
				if key != "all" {
					return nil, rules.NothingToRetry(id, d.State)
				}
				continue
			}
			d.NextTry = now
			if key != "all" {
				d.CreatedAt = now
			}
			w, err := settle(tx, tickets, d, rules.Settle(d.ID, d.SourceID, d.Recipients, outcomes, now))
			if err != nil {
				return nil, err
			}
			out = append(out, w...)
			count++
		}
		return out, nil
	})
	if err == nil {
		s.kick()
	}
	return count, err
}

// DropDelivery takes a queued delivery's waiting recipients off the queue.
func (s *Service) DropDelivery(ctx context.Context, id uint64) error {
	now := s.Now().UTC()
	return s.commit(ctx, func(tx *store.Tx, _ *planRun) (writes, error) {
		d, err := tx.Delivery(id)
		if err != nil {
			return nil, err
		}
		outcomes, refusal := rules.Drop(id, d.State, d.Recipients)
		if refusal != nil {
			return nil, refusal
		}
		return settle(tx, map[uint64]*model.Ticket{}, d, rules.Settle(d.ID, d.SourceID, d.Recipients, outcomes, now))
	})
}
