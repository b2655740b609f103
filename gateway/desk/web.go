package desk

import (
	"context"
	"fmt"
	"strings"

	"github.com/deskgate/deskgate/gateway/compose"
	"github.com/deskgate/deskgate/gateway/model"
	"github.com/deskgate/deskgate/gateway/rules"
)

// WebReply stores body as author's public comment, posted from her request status view (S2),
// and queues its notifications as N1 says. author is the requester or (under
// web.status_view: requester_and_ccs) a CC; whoever the view does not admit at the moment of
// writing (a CC removed since the page was loaded, a view turned off) is refused with
// RefuseNotFound, as the page itself would be. It returns the new comment's id.
func (s *Service) WebReply(ctx context.Context, ticketID uint64, author, body string) (uint64, error) {
	if strings.TrimSpace(body) == "" {
		return 0, &rules.Refusal{Kind: rules.RefuseInvalid, Rule: "S2", Msg: "a reply needs some text"}
	}
	return s.fromStatusView(ctx, ticketID, author, body, func(t *model.Ticket, env rules.Env) (rules.Decision, *rules.Refusal) {
		// Replies from the view carry no files: the form has none.
		return rules.DecideWebReply(t, author, false, env), nil
	})
}

// WebSolve is the requester's "Mark as solved" from her request status view (S2), told as
// notifications.solved says (N5). It returns the id of the event that records it.
func (s *Service) WebSolve(ctx context.Context, ticketID uint64, author string) (uint64, error) {
	return s.fromStatusView(ctx, ticketID, author, "", func(t *model.Ticket, env rules.Env) (rules.Decision, *rules.Refusal) {
		return rules.DecideWebSolve(t, author, env)
	})
}

// fromStatusView carries out one decision taken from a status view, through the same plan and
// apply path as Act and Receive, with the change recorded via "web". A body makes it a
// comment, with a fresh Message-ID of the desk's own as API comments have; else an event.
func (s *Service) fromStatusView(ctx context.Context, ticketID uint64, author, body string,
	decide func(*model.Ticket, rules.Env) (rules.Decision, *rules.Refusal)) (uint64, error) {
	return s.changeTicket(ctx, ticketID, func(p *planner, t *model.Ticket, done *tally) (writes, uint64, error) {
		// Checked here, on the ticket as this write finds it: the page the person posted
		// from may be older than the removal of a CC.
		as, ok := rules.StatusViewer(t, author, *p.env)
		if !ok {
			return nil, 0, &rules.Refusal{Kind: rules.RefuseNotFound, Rule: "S1",
				Msg: fmt.Sprintf("%s has no status view of ticket %d", author, t.ID)}
		}
		d, refusal := decide(t, *p.env)
		if refusal != nil {
			return nil, 0, refusal
		}
		// The person as the ticket knows her, so that the comment names her as her mail would.
		who := t.Requester
		if as == model.AsCC {
			for _, cc := range t.CCs {
				if rules.SameAddress(cc.Email, author) {
					who = cc
				}
			}
		}
		src := source{author: who, via: "web"}
		if d.Comment != nil {
			src.body = body
			src.messageID = compose.NewMessageID(s.Random, s.Now(), p.cfg.Hostname)
		} else {
			src.action = string(model.OpStatus)
			src.detail = "solved (from the request status view)"
		}
		ch, err := p.change(d, src, nil)
		if err != nil {
			return nil, 0, err
		}
		done.add(d, src.via)
		return writes{ch.write}, ch.sourceID, nil
	})
}
