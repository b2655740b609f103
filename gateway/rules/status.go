package rules

import (
	"github.com/deskgate/deskgate/gateway/model"
)

// Values of web.status_view (S1).
const (
	StatusViewRequester       = "requester"
	StatusViewRequesterAndCCs = "requester_and_ccs"
	StatusViewOff             = "off"
)

// StatusViewer says whether email has a request status view of t (S1), and in which
// capacity: the requester, and each CC under web.status_view: requester_and_ccs. Agents work
// tickets on the desk's own pages, and the view would show them nothing of their own.
func StatusViewer(t *model.Ticket, email string, env Env) (model.As, bool) {
	if email == "" || env.IsAgent(email) {
		return "", false
	}
	switch env.StatusView {
	case StatusViewRequester, StatusViewRequesterAndCCs:
	default:
		return "", false
	}
	if SameAddress(t.Requester.Email, email) {
		return model.AsRequester, true
	}
	if env.StatusView == StatusViewRequesterAndCCs && IsCC(t, email) {
		return model.AsCC, true
	}
	return "", false
}

// ViewShowsAttachments says whether a status viewer in capacity as sees the public
// comments' files: CCs do not when policy.cc_attachments is false (S1, N6).
func ViewShowsAttachments(as model.As, env Env) bool {
	return as != model.AsCC || env.Policy.CCAttachments
}

// DecideWebReply decides a reply posted from the request status view by author, who
// StatusViewer admits (S2): a public comment by its author, the requester's as V1 says and a
// CC's as a Reply-all, which notifies as N1 says. It answers no notification, so N4 does not
// narrow its audience: every current CC is told.
func DecideWebReply(ticket *model.Ticket, author string, attachments bool, env Env) Decision {
	t := copyTicket(ticket)
	d := Decision{Ticket: t, Comment: &CommentDecision{Public: true}}
	if SameAddress(t.Requester.Email, author) {
		d.trace("V1", "public", "the requester's reply from the request status view (S2)")
	} else {
		d.trace("V2", "public", "a CC's reply from the request status view reaches everybody, as a Reply-all (S2)")
	}
	reopen(&d, t, model.RoleEndUser, true, false)
	notifyComment(&d, t, env, noteFacts{author: author, public: true, endUsersOK: true, ccs: t.CCs, attachments: attachments})
	return d
}

// DecideWebSolve decides "Mark as solved" from the request status view by author (S2): the
// requester's own solve, told as notifications.solved says (N5). Only the requester may solve
// her request; a CC with a view of it may not, as a CC cannot by mail either.
func DecideWebSolve(ticket *model.Ticket, author string, env Env) (Decision, *Refusal) {
	t := copyTicket(ticket)
	d := Decision{Ticket: t}
	if as, ok := StatusViewer(t, author, env); !ok || as != model.AsRequester {
		return d, refuse(RefuseNotAllowed, "S2", "%s is not the requester of ticket %d: only she marks it solved from the status view", author, t.ID)
	}
	if t.Status == model.StatusSolved {
		d.trace("T4", "status unchanged", "solved already")
		return d, nil
	}
	d.Status, t.Status = model.StatusSolved, model.StatusSolved
	d.trace("S2", "status solved", "the requester marked her request solved from the request status view")
	notifyEvent(&d, t, env, model.KindSolved, env.Notifications.Solved, author)
	return d, nil
}

// StatusViewShowsAddress says whether the status view may show email's address beside its
// name (S1, H4): an end user's, as every copy shows it (H2), but never an agent's, a
// follower's or the assignee's, whatever the config says of them now. A follower removed from
// agents since is still the desk's, and still hidden.
func StatusViewShowsAddress(t *model.Ticket, email string, env Env) bool {
	return !env.IsAgent(email) && !IsFollower(t, email) && !SameAddress(t.Assignee, email)
}
