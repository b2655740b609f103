// Package model holds the types that the rules engine, the store, composition and the API
// share: tickets, comments, events, people and the words for their states. It imports only the
// standard library, so that gateway/rules, which decides on these types, imports nothing else.
package model

import "time"

// Status is a ticket's status.
type Status string

// Ticket statuses.
const (
	StatusNew     Status = "new"
	StatusOpen    Status = "open"
	StatusPending Status = "pending"
	StatusSolved  Status = "solved"
)

// Valid reports whether s is one of the four statuses.
func (s Status) Valid() bool {
	switch s {
	case StatusNew, StatusOpen, StatusPending, StatusSolved:
		return true
	}
	return false
}

// Operation is an expert's action on a ticket (C6, F1, V4, V5, N5).
type Operation string

// Operations.
const (
	OpAddCC          Operation = "cc_add"
	OpRemoveCC       Operation = "cc_remove"
	OpAddFollower    Operation = "follower_add"
	OpRemoveFollower Operation = "follower_remove"
	OpComment        Operation = "comment"
	OpMakePrivate    Operation = "comment_private"
	OpMakePublic     Operation = "comment_public"
	OpAssign         Operation = "assign"
	OpStatus         Operation = "status"
)

// NotificationKind is what a notification tells of.
type NotificationKind string

// Notification kinds.
const (
	KindComment       NotificationKind = "comment"
	KindTicketCreated NotificationKind = "ticket_created"
	KindAssigned      NotificationKind = "assigned"
	KindSolved        NotificationKind = "solved"
	// KindSignIn is a sign-in link mailed to an agent for the web pages: it belongs to no
	// ticket (its delivery's TicketID is 0) and is no notification of one.
	KindSignIn NotificationKind = "sign_in"
)

// Role is what a sender or participant is to the desk.
type Role string

// Roles.
const (
	RoleEndUser    Role = "end_user"
	RoleAgent      Role = "agent"
	RoleLightAgent Role = "light_agent"
)

// As is the capacity in which a participant is sent a notification, as the API's "as"
// names it.
type As string

// Capacities.
const (
	AsRequester As = "requester"
	AsCC        As = "cc"
	AsFollower  As = "follower"
	AsAssignee  As = "assignee"
	AsAgent     As = "agent"
)

// Copy is which of a notification's messages a recipient is sent.
type Copy string

// Copies of a notification.
const (
	// CopyEndUser is the one message that the requester and CCs share: real addresses in To
	// and Cc (H2), agents masked.
	CopyEndUser Copy = "end_user"
	// CopyAgent is an agent's own message: every participant masked (F3, H3).
	CopyAgent Copy = "agent"
)

// DeliveryRecipient is one envelope recipient of a delivery.
type DeliveryRecipient struct {
	Email   string        `json:"email"`
	As      As            `json:"as"`
	Visible bool          `json:"visible"`
	State   DeliveryState `json:"state"`
	Reply   string        `json:"reply,omitempty"`
}

// DeliveryState is where a delivery, or one of its recipients, stands.
type DeliveryState string

// Delivery states.
const (
	DeliveryQueued  DeliveryState = "queued"
	DeliverySent    DeliveryState = "sent"
	DeliveryFailed  DeliveryState = "failed"
	DeliveryPartial DeliveryState = "partial" // some recipients sent, some failed
	DeliveryDropped DeliveryState = "dropped" // an operator took it off the queue
)

// Policy is the behaviour that the policy keys of the config choose, as plain data.
type Policy struct {
	CCsEnabled             bool
	FollowersEnabled       bool
	AgentCCBecomesFollower bool
	CCBlocklist            []string
	CCRemoval              string // email or expert_only
	ReplyAudience          string // notification or ticket
	CCAttachments          bool
}

// Notifications says who is told of each event: requester, requester_and_ccs or none.
type Notifications struct {
	TicketCreated string
	Assigned      string
	Solved        string
}

// Person is a participant as mail shows it.
type Person struct {
	Email string `json:"email"`
	Name  string `json:"name,omitempty"`
}

// Ticket is the stored state of one ticket. Comments are stored apart and listed by CommentIDs.
type Ticket struct {
	ID        uint64    `json:"id"`
	Subject   string    `json:"subject"`
	Status    Status    `json:"status"`
	Requester Person    `json:"requester"`
	Assignee  string    `json:"assignee,omitempty"`
	CCs       []Person  `json:"ccs"`
	Followers []Person  `json:"followers"`
	CreatedAt time.Time `json:"created_at"`
	UpdatedAt time.Time `json:"updated_at"`
	// CommentIDs and EventIDs live in their own index, not in the ticket's record, so
	// that a long ticket costs no more to read and write than a short one; Tx.Items
	// fills them when asked.
	CommentIDs []uint64 `json:"-"`
	EventIDs   []uint64 `json:"-"`
	// Support is the support address the ticket was opened on; its mail goes out from it.
	Support string `json:"support,omitempty"`
	// RootMessageID is the first message's id: every notification references it, so
	// mail clients keep the ticket one thread.
	RootMessageID string `json:"root_message_id,omitempty"`
	// Masks numbers each address that ever took part, for its masked address
	// LOCAL+<id>-<token>-p<n> (docs/rules.md H3). Keys are lowercased addresses.
	Masks    map[string]int `json:"masks,omitempty"`
	NextMask int            `json:"next_mask,omitempty"`
	// Welcomed holds the CCs who have had the conversation so far (docs/rules.md C4).
	Welcomed map[string]bool `json:"welcomed,omitempty"`
	// DeliveryFailures lists mail that did not reach an end user (docs/rules.md T6).
	DeliveryFailures []DeliveryFailure `json:"delivery_failures,omitempty"`
}

// Attachment describes an attached file; its bytes are stored apart (AttachmentData).
type Attachment struct {
	Name        string `json:"name"`
	ContentType string `json:"content_type"`
	Size        int64  `json:"size"`
	// Problem is why the file did not decode (M1); Size is then what did.
	Problem string `json:"problem,omitempty"`
}

// Notified is one participant who was sent a comment or an event.
type Notified struct {
	Email    string `json:"email"`
	As       As     `json:"as"`
	Visible  bool   `json:"visible"`
	Delivery uint64 `json:"delivery,omitempty"`
	// Status is queued, sent or failed; Reply the upstream's last word or the DSN's.
	Status string `json:"status,omitempty"`
	Reply  string `json:"reply,omitempty"`
}

// DeliveryFailure flags a ticket whose mail did not reach an end user, so that agents
// see it where they look (tickets show, the API) without a bounce becoming a comment.
type DeliveryFailure struct {
	Email    string    `json:"email"`
	As       As        `json:"as"`
	Delivery uint64    `json:"delivery"`
	SourceID uint64    `json:"source_id"`
	Reply    string    `json:"reply"`
	At       time.Time `json:"at"`
}

// TraceStep is one decision about a comment and the docs/rules.md rule that made it.
type TraceStep struct {
	Rule   string `json:"rule"`
	Step   string `json:"step"`
	Detail string `json:"detail,omitempty"`
}

// Comment is one message on a ticket: received mail or an expert's reply or note.
type Comment struct {
	ID           uint64       `json:"id"`
	TicketID     uint64       `json:"ticket_id"`
	Author       string       `json:"author"`
	AuthorName   string       `json:"author_name,omitempty"`
	Public       bool         `json:"public"`
	ThirdParty   bool         `json:"third_party"`
	Via          string       `json:"via"`
	MessageID    string       `json:"message_id"`
	InReplyTo    string       `json:"in_reply_to,omitempty"`
	References   []string     `json:"references,omitempty"`
	Subject      string       `json:"subject,omitempty"`
	To           []Person     `json:"to,omitempty"`
	Cc           []Person     `json:"cc,omitempty"`
	Recipients   []string     `json:"envelope_recipients,omitempty"`
	EnvelopeFrom string       `json:"envelope_from,omitempty"`
	CreatedAt    time.Time    `json:"created_at"`
	Body         string       `json:"body"`
	Attachments  []Attachment `json:"attachments,omitempty"`
	Notified     []Notified   `json:"notified"`
	Trace        []TraceStep  `json:"trace,omitempty"`
	// ReplyToDiffers flags mail whose Reply-To is not its From (docs/rules.md X2).
	ReplyToDiffers bool `json:"reply_to_differs,omitempty"`
	// Automatic is why a mail counts as automatic (docs/rules.md T5), "" for a person's.
	Automatic string `json:"automatic,omitempty"`
	// AuthenticationResults is the value of the Authentication-Results field deskgate
	// wrote for a received mail (docs/rules.md A1): SPF, DKIM and DMARC as it found them.
	AuthenticationResults string `json:"authentication_results,omitempty"`
	// Problems lists what deskgate could not decode in a received mail (docs/rules.md M1); the
	// original is kept whole, see Tx.Original.
	Problems []string `json:"problems,omitempty"`
}

// Event is an expert action that is no comment (assignment, status, participants),
// kept with its trace and who was notified, so that explain covers it too. Its id is
// drawn from the comment ids, so one id names one thing.
type Event struct {
	ID        uint64      `json:"id"`
	TicketID  uint64      `json:"ticket_id"`
	Action    string      `json:"action"`
	Actor     string      `json:"actor,omitempty"`
	Detail    string      `json:"detail,omitempty"`
	CreatedAt time.Time   `json:"created_at"`
	Notified  []Notified  `json:"notified"`
	Trace     []TraceStep `json:"trace,omitempty"`
}

// BounceRecipient is one recipient a delivery status notification (RFC 3464) reports on:
// Email from its Final-Recipient, Original from its Original-Recipient (either may be empty).
type BounceRecipient struct {
	Email      string
	Original   string
	Action     string // failed, delayed, delivered, relayed, expanded
	Status     string // e.g. 5.1.1
	Diagnostic string
}

// BounceReport is what a mail to a bounce address says. DSN is true only for a delivery
// status notification (a multipart/report of report-type delivery-status), and only then
// are its per-recipient reports in Recipients. Text is its first human-readable text, cut
// short; Header keeps the fields that tell automatic mail (Auto-Submitted, ...) and From.
type BounceReport struct {
	DSN        bool
	Recipients []BounceRecipient
	Text       string
	Header     map[string]string
}
