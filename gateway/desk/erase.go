package desk

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net/mail"
	"slices"
	"strings"
	"time"

	"github.com/deskgate/deskgate/gateway/addr"
	"github.com/deskgate/deskgate/gateway/model"
	"github.com/deskgate/deskgate/gateway/rules"
	"github.com/deskgate/deskgate/store"
)

// DeleteTicket deletes a ticket with everything stored of it, its queued deliveries included.
func (s *Service) DeleteTicket(ctx context.Context, id uint64) (store.Deleted, error) {
	var out store.Deleted
	err := s.store.Update(ctx, func(tx *store.Tx) error {
		var err error
		out, err = tx.DeleteTicket(id)
		return err
	})
	if errors.Is(err, store.ErrNotFound) {
		return out, &rules.Refusal{Kind: rules.RefuseNotFound, Msg: fmt.Sprintf("ticket %d does not exist", id)}
	}
	if err == nil {
		s.log.Info("ticket deleted", "ticket", id, "comments", out.Comments, "events", out.Events, "deliveries", out.Deliveries)
	}
	return out, err
}

// Erasure is what erasing a person did, or would do in a dry run.
type Erasure struct {
	Address string
	Marker  string // what the address was replaced with
	DryRun  bool
	Tickets int      // tickets where the person was found
	Actions []string // one line per change
}

// Erase removes a person from every ticket: a ticket they requested is deleted; elsewhere
// their address becomes a marker and their own text is erased. Agents and deskgate's own
// addresses are refused. Each ticket is changed in its own short transaction, so that mail
// keeps flowing during an erasure of a large desk.
func (s *Service) Erase(ctx context.Context, address string, dryRun bool) (Erasure, error) {
	address = strings.TrimSpace(address)
	out := Erasure{Address: address, DryRun: dryRun}
	if a, err := mail.ParseAddress(address); err != nil || a.Address != address || a.Name != "" {
		return out, &rules.Refusal{Kind: rules.RefuseInvalid, Msg: fmt.Sprintf("address: %q is not a mail address", address)}
	}
	// The person is found by the one form every stored address has; the store also looks
	// for the other forms (A-labels, NFD) in text that people wrote.
	canon, err := addr.Canonical(address)
	if err != nil {
		return out, &rules.Refusal{Kind: rules.RefuseInvalid, Msg: "address: " + err.Error()}
	}
	address = canon
	out.Address = canon
	_, own := s.book.Load().Classify(address)
	if refusal := rules.Erasable(*s.env.Load(), address, own); refusal != nil {
		return out, refusal
	}
	var ids []uint64
	if err := s.store.View(func(tx *store.Tx) error {
		var err error
		ids, err = tx.Mentioning(address)
		return err
	}); err != nil {
		return out, err
	}
	slices.Sort(ids)
	out.Marker = "erased-" + randomHex(4) + "@erased.invalid"
	for _, id := range ids {
		lines, err := s.eraseFrom(ctx, id, address, out.Marker, dryRun)
		if err != nil {
			return out, fmt.Errorf("ticket %d: %w", id, err)
		}
		if len(lines) > 0 {
			// The byte search also finds longer addresses that contain this one; only the
			// tickets where the address itself stood count.
			out.Tickets++
		}
		out.Actions = append(out.Actions, lines...)
	}
	if !dryRun {
		// A former agent's sessions and unspent sign-in links name her too.
		var ended int
		if err := s.store.Update(ctx, func(tx *store.Tx) error {
			var err error
			ended, err = tx.DeleteWebSessionsOf(address)
			return err
		}); err != nil {
			return out, err
		}
		if ended > 0 {
			out.Actions = append(out.Actions, fmt.Sprintf("web: %d sessions and sign-in links ended", ended))
		}
		s.store.ForgetSender(model.AddressKey(address))
		s.log.Info("address erased", "tickets", out.Tickets, "changes", len(out.Actions))
	}
	return out, nil
}

// eraseFrom erases address from ticket id, in a transaction of its own (a view in a dry run),
// and says what it did or would do: the ticket is deleted when the person requested it
// (rules.ErasureOf), else the store scrubs them from it, with marker for their address. A
// ticket deleted meanwhile has nothing to say.
func (s *Service) eraseFrom(ctx context.Context, id uint64, address, marker string, dryRun bool) ([]string, error) {
	var lines []string
	run := func(tx *store.Tx) error {
		lines = nil
		tk, err := tx.Ticket(id)
		if errors.Is(err, store.ErrNotFound) {
			return nil // deleted meanwhile
		}
		if err != nil {
			return err
		}
		if rules.ErasureOf(tk, address) == rules.EraseTicket {
			line := fmt.Sprintf("ticket %d: deleted (requester)", id)
			if !dryRun {
				d, err := tx.DeleteTicket(id)
				if err != nil {
					return err
				}
				line += fmt.Sprintf(": %d comments, %d events, %d deliveries", d.Comments, d.Events, d.Deliveries)
			}
			lines = []string{line}
			return nil
		}
		lines, err = tx.ScrubTicket(id, address, marker)
		return err
	}
	var err error
	if dryRun {
		err = s.store.View(run)
	} else {
		err = s.store.Update(ctx, run)
	}
	return lines, err
}

func randomHex(n int) string {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		// The marker only has to differ between erasures; the time does that too.
		return fmt.Sprintf("%x", time.Now().UnixNano())
	}
	return hex.EncodeToString(b)
}

// retentionBatch bounds one deletion transaction, so that the writer is never held long by
// retention: a few dozen tickets take milliseconds.
const retentionBatch = 32

// DeleteSolvedBefore deletes the solved tickets last changed before cutoff, in small
// transactions, and returns how many it deleted. A ticket reopened between the search and its
// deletion is kept: the writer checks each one again.
func (s *Service) DeleteSolvedBefore(ctx context.Context, cutoff time.Time) (int, error) {
	deleted := 0
	var after uint64
	for {
		var ids []uint64
		var last uint64
		s.store.View(func(tx *store.Tx) error {
			ids, last = tx.SolvedBefore(cutoff, after, retentionBatch)
			return nil
		})
		if len(ids) > 0 {
			n := 0
			err := s.store.Update(ctx, func(tx *store.Tx) error {
				n = 0 // the store may run this again
				for _, id := range ids {
					tk, err := tx.Ticket(id)
					if errors.Is(err, store.ErrNotFound) {
						continue
					}
					if err != nil {
						return err
					}
					if !rules.RetentionDue(tk, cutoff) {
						continue
					}
					if _, err := tx.DeleteTicket(id); err != nil {
						return err
					}
					n++
				}
				return nil
			})
			if err != nil {
				return deleted, err
			}
			deleted += n
		}
		if len(ids) < retentionBatch || ctx.Err() != nil {
			return deleted, ctx.Err()
		}
		after = last
	}
}

// Retain runs retention.delete_solved_after until ctx ends: at start and then every
// tenth of the period (at least a second, at most an hour). A config reload takes effect at
// the next pass.
func (s *Service) Retain(ctx context.Context) {
	for {
		after := s.cfg.Load().Retention.DeleteSolvedAfter
		wait := time.Hour
		if after > 0 {
			n, err := s.DeleteSolvedBefore(ctx, s.Now().Add(-after))
			switch {
			case err != nil && ctx.Err() == nil:
				s.log.Error("retention: deleting solved tickets failed", "err", err)
			case n > 0:
				s.log.Info("retention: solved tickets deleted", "count", n, "older_than", after.String())
			}
			wait = min(max(after/10, time.Second), time.Hour)
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(wait):
		}
	}
}
