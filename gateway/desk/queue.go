package desk

import (
	"context"
	"fmt"
	"strconv"

	"github.com/deskgate/deskgate/gateway/rules"
	"github.com/deskgate/deskgate/store"
)

// RetryDelivery puts a delivery's waiting and failed recipients back on the queue, due now
// and with a fresh lifetime; key "all" does so for every queued delivery (their lifetimes
// kept). It returns how many deliveries it changed.
func (s *Service) RetryDelivery(ctx context.Context, key string) (int, error) {
	now := s.Now().UTC()
	count := 0
	err := s.store.Update(ctx, func(tx *store.Tx) error {
		count = 0
		var ids []uint64
		if key == "all" {
			ids = tx.QueuedDeliveries(1 << 30)
		} else {
			id, err := strconv.ParseUint(key, 10, 64)
			if err != nil || id == 0 {
				return &rules.Refusal{Kind: rules.RefuseInvalid, Msg: fmt.Sprintf("id: %q is not a delivery id (or all)", key)}
			}
			ids = []uint64{id}
		}
		for _, id := range ids {
			d, err := tx.Delivery(id)
			if err != nil {
				return err
			}
			outcomes, ok := rules.Retry(d.Recipients)
			if !ok {
				if key != "all" {
					return rules.NothingToRetry(id, d.State)
				}
				continue
			}
			settled := rules.Settle(d.ID, d.SourceID, d.Recipients, outcomes, now)
			if err := tx.Settle(d, settled.Recipients, settled.State, settled.Failures); err != nil {
				return err
			}
			d.NextTry = now
			if key != "all" {
				d.CreatedAt = now
			}
			if err := tx.PutDelivery(d); err != nil {
				return err
			}
			count++
		}
		return nil
	})
	if err == nil {
		s.kick()
	}
	return count, err
}

// DropDelivery takes a queued delivery's waiting recipients off the queue.
func (s *Service) DropDelivery(ctx context.Context, id uint64) error {
	now := s.Now().UTC()
	return s.store.Update(ctx, func(tx *store.Tx) error {
		d, err := tx.Delivery(id)
		if err != nil {
			return err
		}
		outcomes, refusal := rules.Drop(id, d.State, d.Recipients)
		if refusal != nil {
			return refusal
		}
		settled := rules.Settle(d.ID, d.SourceID, d.Recipients, outcomes, now)
		if err := tx.Settle(d, settled.Recipients, settled.State, settled.Failures); err != nil {
			return err
		}
		return tx.PutDelivery(d)
	})
}
