package desk

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strings"

	"github.com/deskgate/deskgate/gateway/addr"
	"github.com/deskgate/deskgate/gateway/dsn"
	"github.com/deskgate/deskgate/gateway/metrics"
	"github.com/deskgate/deskgate/gateway/model"
	"github.com/deskgate/deskgate/gateway/rules"
	"github.com/deskgate/deskgate/store"
)

// Outcomes of mail to bounce addresses.
const (
	outcomeBounce        = "bounce"
	outcomeBounceIgnored = "bounce address mail ignored"
)

// bounce records what a DSN says (T6; the rules decide whom it fails) on the delivery and,
// for an end user, as a failure flag on the ticket. Any other mail to a bounce address
// (auto-replies, strangers who read the Return-Path) is counted and logged and changes
// nothing. None of it becomes a comment or notifies anybody, so that two mail systems
// cannot loop through it, and all of it is accepted, so that nobody bounces a bounce.
func (s *Service) bounce(ctx context.Context, book *addr.Book, env Envelope, rcpts []recipient, raw []byte) (Result, error) {
	res := Result{Outcome: outcomeBounceIgnored}
	rep := dsn.Parse(raw)
	kind, why := rules.BounceKind(rep)
	metrics.BounceAddressMail.WithLabelValues(kind).Inc()
	from := rep.Header["From"]
	for _, r := range rcpts {
		p := r.parsed
		if !book.ValidBounceToken(p.ID, p.Token) {
			s.log.Warn("bounce to an address with a bad token ignored", "rule", "T6", "rcpt", r.address, "sender", env.From, "from", from, "kind", kind)
			continue
		}
		if kind != rules.BounceDSN {
			s.bounceIgnored(p.ID, 0, env, from, kind, why)
			continue
		}
		var v rules.BounceVerdict
		var ticket uint64
		err := s.commit(ctx, func(tx *store.Tx, _ *planRun) (writes, error) {
			d, err := tx.Delivery(p.ID)
			if errors.Is(err, store.ErrNotFound) {
				v = rules.BounceVerdict{Kind: kind, Why: fmt.Sprintf("delivery %d does not exist", p.ID)}
				return nil, nil
			}
			if err != nil {
				return nil, err
			}
			ticket = d.TicketID
			emails := make([]string, len(d.Recipients))
			for i, rc := range d.Recipients {
				emails[i] = rc.Email
			}
			v = rules.Bounce(emails, rep)
			if len(v.Failed) == 0 && len(v.Delayed) == 0 {
				return nil, nil
			}
			outcomes := map[string]rules.Outcome{}
			var summary []string
			for _, rc := range d.Recipients {
				email := model.AddressKey(rc.Email)
				if reply, ok := v.Delayed[email]; ok && rc.State != model.DeliveryFailed {
					// Still on its way: the state stays, the reply says why it is late.
					outcomes[email] = rules.Outcome{State: rc.State, Reply: reply}
					summary = append(summary, email+": "+reply)
				}
			}
			for email, reply := range v.Failed {
				outcomes[email] = rules.Outcome{State: model.DeliveryFailed, Reply: reply}
				summary = append(summary, email+": "+reply)
			}
			sort.Strings(summary)
			what := "bounce (T6): "
			if len(v.Failed) == 0 {
				what = "delay (T6): "
			}
			d.LastReply = what + strings.Join(summary, "; ")
			return settle(tx, map[uint64]*model.Ticket{}, d, rules.Settle(d.ID, d.SourceID, d.Recipients, outcomes, s.Now().UTC()))
		})
		if err != nil {
			return res, refusal(rules.RefuseStorage, "Temporary local problem recording the bounce; try again later")
		}
		if ticket != 0 {
			res.TicketID = ticket
		}
		if len(v.Failed) == 0 && len(v.Delayed) == 0 {
			s.bounceIgnored(p.ID, ticket, env, from, v.Kind, v.Why)
			continue
		}
		res.Outcome = outcomeBounce
		s.log.Info("bounce recorded", "rule", "T6", "delivery", p.ID, "ticket", ticket, "sender", env.From, "from", from, "kind", v.Kind,
			"failed", len(v.Failed), "delayed", len(v.Delayed))
	}
	return res, nil
}

// bounceIgnored logs a mail to delivery's bounce address that changed nothing, and why.
func (s *Service) bounceIgnored(delivery, ticket uint64, env Envelope, from, kind, why string) {
	attrs := []any{"rule", "T6", "delivery", delivery}
	if ticket != 0 {
		attrs = append(attrs, "ticket", ticket)
	}
	s.log.Info("bounce address mail changed nothing", append(attrs, "sender", env.From, "from", from, "kind", kind, "why", why)...)
}

// bounceAlongside counts and logs a mail to a bounce address that also went to other
// addresses of the desk: it is handled as mail to those, and changes no delivery.
func (s *Service) bounceAlongside(env Envelope, rcpts []recipient, raw []byte) {
	rep := dsn.Parse(raw)
	kind, _ := rules.BounceKind(rep)
	metrics.BounceAddressMail.WithLabelValues(kind).Inc()
	for _, r := range rcpts {
		if r.ours && r.parsed.Kind == addr.Bounce {
			s.bounceIgnored(r.parsed.ID, 0, env, rep.Header["From"], kind, "also addressed to the desk's other addresses: handled as mail to those")
		}
	}
}
