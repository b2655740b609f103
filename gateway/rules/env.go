package rules

import (
	"strings"

	"github.com/deskgate/deskgate/gateway/model"
)

// Env is everything besides the ticket and the event that a decision depends on: the
// policy, the limits and who the agents are. It is plain data; gateway/desk builds it from the
// config.
type Env struct {
	Policy        model.Policy
	Notifications model.Notifications
	MaxCCs        int
	// Agents maps lowercased addresses to RoleAgent or RoleLightAgent.
	Agents map[string]model.Role
	// AgentNames maps lowercased agent addresses to their names.
	AgentNames map[string]string
	// DMARCReject is authentication.dmarc_reject: DMARCAccept, or anything else for
	// DMARCRefuse, the default (A1).
	DMARCReject string
	// StatusView is web.status_view when the web pages are on (requester,
	// requester_and_ccs), else "" or off: who has a request status view (S1).
	StatusView string
}

// AgentRole is the configured role of email: RoleAgent, RoleLightAgent or RoleEndUser.
// This is what the address is; whether a mail proves it is A1's question (gateway/auth).
func (e Env) AgentRole(email string) model.Role {
	if r, ok := e.Agents[model.AddressKey(email)]; ok {
		return r
	}
	return model.RoleEndUser
}

// IsAgent reports whether email is an agent or a light agent.
func (e Env) IsAgent(email string) bool { return e.AgentRole(email) != model.RoleEndUser }

// Person is email as a participant: an agent goes by the name the desk gives her in agents,
// whatever name a mail or an expert gave, so that no participant list shows the display
// name of an agent's own mail client (H4) and every page and copy names her alike.
func (e Env) Person(email, name string) model.Person {
	if n, ok := e.AgentNames[lower(email)]; ok && e.IsAgent(email) {
		name = n
	}
	return model.Person{Email: email, Name: name}
}

// Blocked reports whether email matches policy.cc_blocklist (C2).
func (e Env) Blocked(email string) bool {
	email = model.AddressKey(email)
	for _, p := range e.Policy.CCBlocklist {
		p = model.AddressKey(p)
		if dom, ok := strings.CutPrefix(p, "*@"); ok {
			if strings.HasSuffix(email, "@"+dom) {
				return true
			}
		} else if p == email {
			return true
		}
	}
	return false
}

// Recipient is one person a notification is sent to.
type Recipient struct {
	Email   string
	Name    string
	As      model.As
	Visible bool
}

// Notification is one message to send: one copy, to its envelope recipients.
type Notification struct {
	Kind       model.NotificationKind
	Copy       model.Copy
	Recipients []Recipient
	// History asks for the public conversation so far in the body (C4).
	History bool
	// Attachments asks for the comment's attachments (N6).
	Attachments bool
	// StatusViewFor is the one recipient of this copy whose request status view link it
	// carries (S1), "" for none. A link is bound to one person's address, so a copy that
	// carries one goes to that person alone.
	StatusViewFor string
	// Automatic messages carry Auto-Submitted: auto-generated (H1).
	Automatic bool
}

// Change is one change of a ticket's participants.
type Change struct {
	Op     ChangeOp
	Person model.Person
	Rule   string
}

// ChangeOp is what a Change does to a ticket's participants.
type ChangeOp string

// Participant change operations.
const (
	OpAddCC          ChangeOp = "add_cc"
	OpRemoveCC       ChangeOp = "remove_cc"
	OpAddFollower    ChangeOp = "add_follower"
	OpRemoveFollower ChangeOp = "remove_follower"
)

// CommentDecision is the comment an event adds.
type CommentDecision struct {
	Public         bool
	ThirdParty     bool
	ReplyToDiffers bool
	Automatic      string
}

// Decision is what one event does to a ticket. Apply it in order: changes, status,
// assignee, comment, notifications. The rules have already applied the changes to the
// ticket they were given, so Ticket is the state after the event.
type Decision struct {
	Ticket        *model.Ticket
	NewTicket     bool
	Comment       *CommentDecision
	Changes       []Change
	Status        model.Status // "" when unchanged
	Notifications []Notification
	// Restate changes an existing comment's visibility (V5, or X1's "makes it public").
	Restate *Restate
	Trace   []model.TraceStep
}

func (d *Decision) trace(rule, what, detail string) {
	d.Trace = append(d.Trace, model.TraceStep{Rule: rule, Step: what, Detail: detail})
}

// Restate is a change of an existing comment's visibility.
type Restate struct {
	CommentID uint64
	Public    bool
}

// Refusal is an expert action the rules refuse: Code is the HTTP status (404, 409, 422).
type Refusal struct {
	Kind RefusalKind
	Msg  string
	Rule string
}

// RefusalKind says why an action was refused; the edges turn it into an HTTP status or an
// SMTP reply.
type RefusalKind int

// The kinds of refusal.
const (
	RefuseInvalid    RefusalKind = iota + 1 // the request does not make sense (bad status, unknown action)
	RefuseNotFound                          // what it names is not on the ticket
	RefuseConflict                          // the ticket is already so (a CC already, the requester)
	RefuseNotAllowed                        // a rule forbids it (blocklist, light agent, cap)

	// Kinds for received mail; the SMTP edge turns each into its reply.
	RefuseTooLarge      // the header block is over its limit
	RefuseUnreadable    // the data is no message at all
	RefuseNobodyToTell  // no From and an empty envelope sender
	RefuseOwnAddress    // From is one of deskgate's own addresses
	RefuseUnverifiedNow // an agent's claim that DNS cannot settle now (A1): try later
	RefuseTooMany       // the sender's hourly limit (T5): try later
	RefuseDMARC         // the From domain's DMARC policy is reject and the mail fails it (A1)
	RefuseStorage       // deskgate could not store it: try later
)

// Temporary reports whether the sender should try again later.
func (k RefusalKind) Temporary() bool {
	return k == RefuseUnverifiedNow || k == RefuseTooMany || k == RefuseStorage
}

func (r *Refusal) Error() string {
	if r.Rule != "" {
		return r.Msg + " (" + r.Rule + ")"
	}
	return r.Msg
}

// lower is the key of an address in the ticket's maps (Masks, Welcomed) and in sets.
func lower(s string) string { return model.AddressKey(s) }

func copyTicket(t *model.Ticket) *model.Ticket {
	c := *t
	c.CCs = append([]model.Person{}, t.CCs...)
	c.Followers = append([]model.Person{}, t.Followers...)
	c.Masks = map[string]int{}
	for k, v := range t.Masks {
		c.Masks[k] = v
	}
	c.Welcomed = map[string]bool{}
	for k, v := range t.Welcomed {
		c.Welcomed[k] = v
	}
	return &c
}

// mask gives email its masked-address number if it has none yet.
func mask(t *model.Ticket, email string) {
	if t.Masks == nil {
		t.Masks = map[string]int{}
	}
	if _, ok := t.Masks[lower(email)]; !ok {
		t.NextMask++
		t.Masks[lower(email)] = t.NextMask
	}
}

// IsFollower reports whether email follows t.
func IsFollower(t *model.Ticket, email string) bool {
	for _, f := range t.Followers {
		if SameAddress(f.Email, email) {
			return true
		}
	}
	return false
}

func remove(list []model.Person, email string) []model.Person {
	out := list[:0]
	for _, p := range list {
		if !SameAddress(p.Email, email) {
			out = append(out, p)
		}
	}
	return out
}

// Masked reports whether a copy shows email by its masked address: agents' copies mask
// everybody (H3); end users' copies show end users by their real address (H2) and agents
// by their masked one, so that no agent's own address reaches an end user (H1, H4).
func (e Env) Masked(copyKind model.Copy, email string) bool {
	return copyKind == model.CopyAgent || e.IsAgent(email)
}
