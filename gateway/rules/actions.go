package rules

import (
	"fmt"
	"strings"
	"time"

	"github.com/deskgate/deskgate/gateway/model"
)

// Action is one expert action on a ticket.
type Action struct {
	Kind   model.Operation
	Actor  string // the agent acting, when known
	Person model.Person
	// PersonIsOwn is set when Person is one of deskgate's own addresses (C5).
	PersonIsOwn bool
	// For model.OpComment.
	Public bool
	// For model.OpMakePrivate and model.OpMakePublic: the comment (0 for none), which the
	// caller found on the ticket, and whether it is public now.
	CommentID     uint64
	CommentPublic bool
	// For model.OpStatus.
	Status model.Status
	// Via is where the action came from, as its comment or event records it: "api" when
	// unset (the admin API and the CLI), "web" for the desk's pages.
	Via string
}

// ExpertName is how the trace, explain and tickets show name whoever took an expert action:
// the address the request named, else "an expert (admin API)", since the API token alone
// does not say who holds it.
func ExpertName(actor string) string {
	if actor = strings.TrimSpace(actor); actor != "" {
		return actor
	}
	return "an expert (admin API)"
}

// DecideAction decides an expert action on ticket, or refuses it. Each kind of action has
// its function; a refused action's Decision is as far as the decision got.
func DecideAction(ticket *model.Ticket, a Action, env Env) (Decision, *Refusal) {
	t := copyTicket(ticket)
	d := Decision{Ticket: t}
	if a.Kind == model.OpAddCC || a.Kind == model.OpAddFollower {
		if a.PersonIsOwn {
			return d, refuse(RefuseNotAllowed, "C5", "%s is one of deskgate's own addresses", a.Person.Email)
		}
		a.Person = env.Person(a.Person.Email, a.Person.Name)
	}
	var r *Refusal
	switch a.Kind {
	case model.OpAddCC:
		r = decideAddCC(&d, t, a, env)
	case model.OpRemoveCC:
		r = decideRemoveCC(&d, t, a)
	case model.OpAddFollower:
		r = decideAddFollower(&d, t, a, env)
	case model.OpRemoveFollower:
		r = decideRemoveFollower(&d, t, a)
	case model.OpComment:
		r = decideComment(&d, t, a, env)
	case model.OpMakePrivate:
		r = decideMakePrivate(&d, t, a)
	case model.OpMakePublic:
		r = decideMakePublic(&d, t, a, env)
	case model.OpAssign:
		r = decideAssign(&d, t, a, env)
	case model.OpStatus:
		r = decideStatus(&d, t, a, env)
	default:
		r = refuse(RefuseInvalid, "", "unknown action %q", a.Kind)
	}
	return d, r
}

// decideAddCC makes a.Person a CC of t (C6), or, for an agent under
// policy.agent_cc_becomes_follower, a hidden follower (C3).
func decideAddCC(d *Decision, t *model.Ticket, a Action, env Env) *Refusal {
	email := a.Person.Email
	if env.AgentRole(a.Actor) == model.RoleLightAgent {
		// C1 keeps light agents from adding CCs by mail; an expert action named after
		// one (the web desk's, or the API's X-Deskgate-Expert) is held to the same.
		return refuse(RefuseNotAllowed, "C1", "%s is a light agent and cannot add CCs", a.Actor)
	}
	if env.IsAgent(email) && env.Policy.AgentCCBecomesFollower && env.Policy.FollowersEnabled {
		return agentCCToFollower(d, t, a.Person, env, a.Actor)
	}
	switch {
	case env.Blocked(email):
		return refuse(RefuseNotAllowed, "C2", "%s matches policy.cc_blocklist", email)
	case IsCC(t, email):
		return refuse(RefuseConflict, "R3", "%s is already a CC", email)
	case SameAddress(t.Requester.Email, email):
		return refuse(RefuseConflict, "R3", "%s is the requester", email)
	case len(t.CCs) >= env.MaxCCs:
		return refuse(RefuseNotAllowed, "C8", "ticket %d already has limits.max_ccs=%d CCs", t.ID, env.MaxCCs)
	}
	release(d, t, a.Person, "becomes a CC")
	t.CCs = append(t.CCs, a.Person)
	mask(t, email)
	d.Changes = append(d.Changes, Change{Op: OpAddCC, Person: a.Person, Rule: "C6"})
	d.trace("C6", "CC added", email+" by "+ExpertName(a.Actor))
	if env.IsAgent(email) {
		d.trace("H3", "masked", email+" is an agent: end users' copies show it by its masked address")
	}
	return nil
}

// decideRemoveCC takes a.Person off t's CCs (C6).
func decideRemoveCC(d *Decision, t *model.Ticket, a Action) *Refusal {
	email := a.Person.Email
	if !IsCC(t, email) {
		return refuse(RefuseNotFound, "C6", "%s is not a CC of ticket %d", email, t.ID)
	}
	t.CCs = remove(t.CCs, email)
	d.Changes = append(d.Changes, Change{Op: OpRemoveCC, Person: a.Person, Rule: "C6"})
	d.trace("C6", "CC removed", email+" by "+ExpertName(a.Actor))
	return nil
}

// decideAddFollower makes the agent a.Person a hidden follower of t (F1).
func decideAddFollower(d *Decision, t *model.Ticket, a Action, env Env) *Refusal {
	email := a.Person.Email
	switch {
	case !env.Policy.FollowersEnabled:
		return refuse(RefuseNotAllowed, "F1", "policy.followers_enabled is false")
	case !env.IsAgent(email):
		return refuse(RefuseNotAllowed, "R2", "%s is not an agent: followers are agents or light agents only", email)
	case env.Blocked(email):
		return refuse(RefuseNotAllowed, "C2", "%s matches policy.cc_blocklist", email)
	case IsFollower(t, email):
		return refuse(RefuseConflict, "R3", "%s already follows ticket %d", email, t.ID)
	case SameAddress(t.Requester.Email, email):
		return refuse(RefuseConflict, "R3", "%s is the requester", email)
	case SameAddress(t.Assignee, email):
		return refuse(RefuseConflict, "R3", "%s is the assignee, who receives every update already", email)
	}
	release(d, t, a.Person, "becomes a hidden follower")
	t.Followers = append(t.Followers, a.Person)
	mask(t, email)
	d.Changes = append(d.Changes, Change{Op: OpAddFollower, Person: a.Person, Rule: "F1"})
	d.trace("F1", "follower added", email+" by "+ExpertName(a.Actor))
	return nil
}

// decideRemoveFollower takes a.Person off t's followers (F1).
func decideRemoveFollower(d *Decision, t *model.Ticket, a Action) *Refusal {
	email := a.Person.Email
	if !IsFollower(t, email) {
		return refuse(RefuseNotFound, "F1", "%s does not follow ticket %d", email, t.ID)
	}
	t.Followers = remove(t.Followers, email)
	d.Changes = append(d.Changes, Change{Op: OpRemoveFollower, Person: a.Person, Rule: "F1"})
	d.trace("F1", "follower removed", email+" by "+ExpertName(a.Actor))
	return nil
}

// decideComment adds an agent's comment, public or internal as she chose (V4), and tells
// whom it concerns.
func decideComment(d *Decision, t *model.Ticket, a Action, env Env) *Refusal {
	role := env.AgentRole(a.Actor)
	switch {
	case role == model.RoleEndUser:
		return refuse(RefuseNotAllowed, "V4", "%s is not an agent", a.Actor)
	case role == model.RoleLightAgent && a.Public:
		return refuse(RefuseNotAllowed, "V4", "%s is a light agent and can only write internal notes", a.Actor)
	}
	d.Comment = &CommentDecision{Public: a.Public}
	if a.Public {
		d.trace("V4", "public", "the expert made it public")
	} else {
		d.trace("V4", "internal", "the expert made it an internal note")
	}
	reopen(d, t, role, a.Public, false)
	notifyComment(d, t, env, noteFacts{author: a.Actor, public: a.Public, endUsersOK: true, ccs: t.CCs})
	return nil
}

// decideMakePrivate makes a comment internal from now on (V5).
func decideMakePrivate(d *Decision, t *model.Ticket, a Action) *Refusal {
	if a.CommentID == 0 {
		return refuse(RefuseNotFound, "V5", "no such comment on ticket %d", t.ID)
	}
	d.Restate = &Restate{CommentID: a.CommentID, Public: false}
	if a.CommentPublic {
		d.trace("V5", "made internal", fmt.Sprintf("comment %d is internal from now on: left out of C4's history and of every later notification", a.CommentID))
	} else {
		d.trace("V5", "already internal", fmt.Sprintf("comment %d was internal already", a.CommentID))
	}
	return nil
}

// decideMakePublic makes a comment public from now on, without sending it again (X1).
func decideMakePublic(d *Decision, t *model.Ticket, a Action, env Env) *Refusal {
	if a.CommentID == 0 {
		return refuse(RefuseNotFound, "V5", "no such comment on ticket %d", t.ID)
	}
	if env.AgentRole(a.Actor) == model.RoleLightAgent {
		// A light agent's own words are internal only (V4); publishing another's to the
		// requester and CCs is no more hers to do.
		return refuse(RefuseNotAllowed, "V4", "%s is a light agent and cannot make a comment public", a.Actor)
	}
	d.Restate = &Restate{CommentID: a.CommentID, Public: true}
	d.trace("X1", "made public", fmt.Sprintf("comment %d is public from now on, by %s; it is not sent again", a.CommentID, ExpertName(a.Actor)))
	return nil
}

// decideAssign makes the agent a.Person t's assignee (R1), who is always told (N5).
func decideAssign(d *Decision, t *model.Ticket, a Action, env Env) *Refusal {
	email := a.Person.Email
	if role := env.AgentRole(email); role != model.RoleAgent {
		return refuse(RefuseNotAllowed, "R1", "%s is not an agent (light agents cannot be assigned)", email)
	}
	release(d, t, a.Person, "becomes the assignee, who receives every update")
	t.Assignee = email
	mask(t, email)
	d.trace("R1", "assigned", email)
	notifyEvent(d, t, env, model.KindAssigned, env.Notifications.Assigned, a.Actor)
	d.Notifications = append(d.Notifications, Notification{Kind: model.KindAssigned, Copy: model.CopyAgent, Automatic: true,
		Recipients: []Recipient{{Email: email, Name: env.AgentNames[lower(email)], As: model.AsAssignee}}})
	d.trace("N5", "notified (hidden)", email+": the assignee is always told of an assignment")
	return nil
}

// decideStatus sets t's status (T4); solving it tells whom notifications.solved names.
func decideStatus(d *Decision, t *model.Ticket, a Action, env Env) *Refusal {
	switch a.Status {
	case model.StatusNew, model.StatusOpen, model.StatusPending, model.StatusSolved:
	default:
		return refuse(RefuseInvalid, "", "status: %q is not one of new, open, pending, solved", a.Status)
	}
	if a.Status == t.Status {
		d.trace("T4", "status unchanged", string(a.Status))
		return nil
	}
	d.Status, t.Status = a.Status, a.Status
	d.trace("T4", "status "+string(a.Status), "set by "+ExpertName(a.Actor))
	if a.Status == model.StatusSolved {
		notifyEvent(d, t, env, model.KindSolved, env.Notifications.Solved, a.Actor)
	}
	return nil
}

// agentCCToFollower carries out an expert's "add as CC" of an agent under
// policy.agent_cc_becomes_follower: C3 holds on every path, so the agent becomes a hidden
// follower and her address is never shown to end users.
func agentCCToFollower(d *Decision, t *model.Ticket, p model.Person, env Env, actor string) *Refusal {
	switch {
	case env.Blocked(p.Email):
		return refuse(RefuseNotAllowed, "C2", "%s matches policy.cc_blocklist", p.Email)
	case IsFollower(t, p.Email):
		return refuse(RefuseConflict, "C3", "%s is an agent and already follows ticket %d (policy.agent_cc_becomes_follower)", p.Email, t.ID)
	case SameAddress(t.Requester.Email, p.Email):
		return refuse(RefuseConflict, "R3", "%s is the requester", p.Email)
	case SameAddress(t.Assignee, p.Email):
		return refuse(RefuseConflict, "R3", "%s is the assignee, who receives every update already", p.Email)
	}
	release(d, t, p, "becomes a hidden follower")
	t.Followers = append(t.Followers, p)
	mask(t, p.Email)
	d.Changes = append(d.Changes, Change{Op: OpAddFollower, Person: p, Rule: "C3"})
	d.trace("C6", "CC requested", p.Email+" by "+ExpertName(actor))
	d.trace("C3", "follower added", p.Email+" is an agent: a hidden follower, not a CC (policy.agent_cc_becomes_follower)")
	return nil
}

// release takes p out of the role it has on t before it takes another (R3: one role per
// address).
func release(d *Decision, t *model.Ticket, p model.Person, why string) {
	if IsFollower(t, p.Email) {
		t.Followers = remove(t.Followers, p.Email)
		d.Changes = append(d.Changes, Change{Op: OpRemoveFollower, Person: p, Rule: "R3"})
		d.trace("R3", "follower moved", p.Email+" was a follower and "+why)
	}
	if IsCC(t, p.Email) {
		t.CCs = remove(t.CCs, p.Email)
		d.Changes = append(d.Changes, Change{Op: OpRemoveCC, Person: p, Rule: "R3"})
		d.trace("R3", "CC promoted", p.Email+" was a CC and "+why)
	}
}

// Erasable says whether a person's data may be erased from the desk. An agent's address is
// refused: agents' replies and actions are the desk's own record, and an agent leaving is a
// config change, not an erasure. deskgate's own addresses are refused too.
func Erasable(env Env, email string, own bool) *Refusal {
	switch {
	case env.IsAgent(email):
		return &Refusal{Kind: RefuseNotAllowed, Msg: fmt.Sprintf("%s is an agent's address (agents in the config); remove the agent from the config instead of erasing", email)}
	case own:
		return &Refusal{Kind: RefuseNotAllowed, Msg: fmt.Sprintf("%s is one of deskgate's own addresses", email)}
	}
	return nil
}

// Erasure is what erasing a person does to one ticket they are on.
type Erasure int

// Erasures.
const (
	// EraseTicket deletes the whole ticket: the person opened it, so it is theirs.
	EraseTicket Erasure = iota + 1
	// ScrubPerson keeps the ticket for the others on it, with the person's address replaced
	// by a marker and what they wrote erased.
	ScrubPerson
)

// ErasureOf says what erasing email does to ticket t.
func ErasureOf(t *model.Ticket, email string) Erasure {
	if SameAddress(t.Requester.Email, email) {
		return EraseTicket
	}
	return ScrubPerson
}

// RetentionDue says whether retention deletes ticket t: solved, and unchanged since cutoff.
func RetentionDue(t *model.Ticket, cutoff time.Time) bool {
	return t.Status == model.StatusSolved && t.UpdatedAt.Before(cutoff)
}
