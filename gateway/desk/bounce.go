package desk

import (
	"context"
	"errors"
	"strings"

	"github.com/deskgate/deskgate/gateway/addr"
	"github.com/deskgate/deskgate/gateway/dsn"
	"github.com/deskgate/deskgate/gateway/rules"
	"github.com/deskgate/deskgate/store"
)

// bounce records what a bounce says (T6; the rules decide whom it fails) on the
// delivery and, for an end user, as a failure flag on the ticket. It never becomes a
// comment and never notifies anybody, so that two mail systems cannot loop through it.
func (s *Service) bounce(ctx context.Context, book *addr.Book, rcpts []recipient, raw []byte) (Result, error) {
	res := Result{Outcome: "bounce"}
	rep := dsn.Parse(raw)
	for _, r := range rcpts {
		p := r.parsed
		if !book.ValidBounceToken(p.ID, p.Token) {
			s.log.Warn("bounce to an address with a bad token ignored", "rcpt", r.address)
			continue
		}
		err := s.commit(ctx, func(tx *store.Tx, _ *planRun) (writes, error) {
			d, err := tx.Delivery(p.ID)
			if errors.Is(err, store.ErrNotFound) {
				return nil, nil
			}
			if err != nil {
				return nil, err
			}
			res.TicketID = d.TicketID
			emails := make([]string, len(d.Recipients))
			for i, rc := range d.Recipients {
				emails[i] = rc.Email
			}
			failed := rules.Bounced(emails, rep)
			if len(failed) == 0 {
				return nil, nil
			}
			outcomes := map[string]rules.Outcome{}
			var summary []string
			for email, reply := range failed {
				outcomes[email] = rules.Outcome{State: store.DeliveryFailed, Reply: reply}
				summary = append(summary, email+": "+reply)
			}
			d.LastReply = "bounce (T6): " + strings.Join(summary, "; ")
			return settle(tx, map[uint64]*store.Ticket{}, d, rules.Settle(d.ID, d.SourceID, d.Recipients, outcomes, s.Now().UTC()))
		})
		if err != nil {
			return res, refusal(rules.RefuseStorage, "Temporary local problem recording the bounce; try again later")
		}
		s.log.Info("bounce recorded", "rule", "T6", "delivery", p.ID, "ticket", res.TicketID, "dsn_recipients", len(rep.Recipients))
	}
	return res, nil
}
