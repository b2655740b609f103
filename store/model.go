package store

import "time"

// Ticket statuses.
const (
	StatusNew     = "new"
	StatusOpen    = "open"
	StatusPending = "pending"
	StatusSolved  = "solved"
)

// Person is a participant as mail shows it.
type Person struct {
	Email string `json:"email"`
	Name  string `json:"name,omitempty"`
}

// Ticket is the stored state of one ticket. Comments are stored apart and listed by CommentIDs.
type Ticket struct {
	ID         uint64    `json:"id"`
	Subject    string    `json:"subject"`
	Status     string    `json:"status"`
	Requester  Person    `json:"requester"`
	Assignee   string    `json:"assignee,omitempty"`
	CCs        []Person  `json:"ccs"`
	Followers  []Person  `json:"followers"`
	CreatedAt  time.Time `json:"created_at"`
	UpdatedAt  time.Time `json:"updated_at"`
	CommentIDs []uint64  `json:"comment_ids"`
}

// Attachment is what deskgate keeps of an attached file: its description, not yet its bytes.
type Attachment struct {
	Name        string `json:"name"`
	ContentType string `json:"content_type"`
	Size        int64  `json:"size"`
}

// Notified is one participant who was (or was not) sent a comment.
type Notified struct {
	Email   string `json:"email"`
	As      string `json:"as"`
	Visible bool   `json:"visible"`
}

// TraceStep is one decision about a comment and the RULES.md rule that made it.
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
}

// MessageRef says where a Message-ID belongs: the ticket, and the comment when the
// message itself was stored (0 when it was only referenced or sent).
type MessageRef struct {
	TicketID  uint64 `json:"t"`
	CommentID uint64 `json:"c,omitempty"`
}
