package desk

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/deskgate/deskgate/gateway/addr"
	"github.com/deskgate/deskgate/gateway/dsn"
	"github.com/deskgate/deskgate/store"
)

// bounce handles mail to bounce addresses (T6): the DSN's verdict is recorded on the
// delivery, on the comment's `notified` entry and, for an end user, as a failure flag
// on the ticket. It never becomes a comment and never notifies anybody, so that two
// mail systems cannot loop through it.
func (s *Service) bounce(ctx context.Context, book *addr.Book, env Envelope, raw []byte) (Result, error) {
	res := Result{Outcome: "bounce"}
	rep := dsn.Parse(raw)
	for _, rc := range env.Recipients {
		p, ok := book.Classify(rc)
		if !ok || p.Kind != addr.Bounce {
			continue
		}
		if !book.ValidBounceToken(p.ID, p.Token) {
			s.log.Warn("bounce to an address with a bad token ignored", "rcpt", rc)
			continue
		}
		err := s.store.Update(ctx, func(tx *store.Tx) error {
			d, err := tx.Delivery(p.ID)
			if errors.Is(err, store.ErrNotFound) {
				return nil
			}
			if err != nil {
				return err
			}
			res.TicketID = d.TicketID
			states := bounceStates(d, rep)
			if len(states) == 0 {
				return nil
			}
			if err := tx.MarkRecipients(d, states, s.Now().UTC()); err != nil {
				return err
			}
			d.LastReply = "bounce: " + firstLine(rep)
			return tx.PutDelivery(d)
		})
		if err != nil {
			return res, smtpErr(451, [3]int{4, 3, 0}, "Temporary local problem recording the bounce; try again later")
		}
		s.log.Info("bounce recorded", "delivery", p.ID, "ticket", res.TicketID, "dsn_recipients", len(rep.Recipients))
	}
	return res, nil
}

// bounceStates maps the recipients of d that the bounce reports failed to their new
// state. A plain bounce names its recipients in its text; if it names none of d's, it
// can only be about d's only recipient, when there is one.
func bounceStates(d *store.Delivery, rep dsn.Report) map[string][2]string {
	states := map[string][2]string{}
	known := map[string]bool{}
	for _, r := range d.Recipients {
		known[strings.ToLower(r.Email)] = true
	}
	for _, r := range rep.Recipients {
		email := strings.ToLower(r.Email)
		if !known[email] || r.Action != "failed" {
			continue
		}
		reply := strings.TrimSpace("DSN " + r.Status + " " + r.Diagnostic)
		states[email] = [2]string{store.DeliveryFailed, reply}
	}
	if len(rep.Recipients) > 0 {
		return states
	}
	text := strings.ToLower(rep.Text)
	for email := range known {
		if strings.Contains(text, email) {
			states[email] = [2]string{store.DeliveryFailed, "bounce: " + firstLine(rep)}
		}
	}
	if len(states) == 0 && len(d.Recipients) == 1 {
		states[strings.ToLower(d.Recipients[0].Email)] = [2]string{store.DeliveryFailed, "bounce: " + firstLine(rep)}
	}
	return states
}

func firstLine(rep dsn.Report) string {
	for _, l := range strings.Split(rep.Text, "\n") {
		if l = strings.TrimSpace(l); l != "" {
			if len(l) > 200 {
				l = l[:200]
			}
			return l
		}
	}
	return fmt.Sprintf("%d recipients reported", len(rep.Recipients))
}
