package rules

import (
	"fmt"

	"github.com/deskgate/deskgate/gateway/model"
)

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

// CommentDecision is the comment an event adds.
type CommentDecision struct {
	Public         bool
	ThirdParty     bool
	ReplyToDiffers bool
	Automatic      string
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

// Restate is a change of an existing comment's visibility.
type Restate struct {
	CommentID uint64
	Public    bool
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

// Recipient is one person a notification is sent to.
type Recipient struct {
	Email   string
	Name    string
	As      model.As
	Visible bool
}

// Refusal is an event refused, in words for whoever asked (Msg): an expert's action or
// command the rules refuse, or a received mail that the desk refuses. Rule names the rule that
// refused, when one did.
type Refusal struct {
	Kind RefusalKind
	Msg  string
	Rule string
}

// RefusalKind says why an event was refused; the edges turn it into an HTTP status or an
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

// Error is the refusal's words, with the rule that refused when one did.
func (r *Refusal) Error() string {
	if r.Rule != "" {
		return r.Msg + " (" + r.Rule + ")"
	}
	return r.Msg
}

// refuse is a refusal of kind by rule, in the words format makes.
func refuse(kind RefusalKind, rule, format string, args ...any) *Refusal {
	return &Refusal{Kind: kind, Rule: rule, Msg: fmt.Sprintf(format, args...)}
}
