package admin

import (
	"time"

	"github.com/deskgate/deskgate/gateway/model"
)

// The API's own types: what clients see is decided here, not by how the store keeps its
// records, so that a record's format can change without changing the API, and the other way
// round. docs/openapi.yaml describes them.

// Person is a participant.
type Person struct {
	Email string `json:"email"`
	Name  string `json:"name,omitempty"`
}

// Attachment describes an attached file.
type Attachment struct {
	Name        string `json:"name"`
	ContentType string `json:"content_type"`
	Size        int64  `json:"size"`
	Problem     string `json:"problem,omitempty"`
}

// Notified is one participant who was sent a comment or an event, and how it went.
type Notified struct {
	Email    string `json:"email"`
	As       string `json:"as"`
	Visible  bool   `json:"visible"`
	Delivery uint64 `json:"delivery,omitempty"`
	Status   string `json:"status,omitempty"`
	Reply    string `json:"reply,omitempty"`
}

// TraceStep is one step of a decision and the rule that took it.
type TraceStep struct {
	Rule   string `json:"rule"`
	Step   string `json:"step"`
	Detail string `json:"detail,omitempty"`
}

// DeliveryFailure is mail that did not reach an end user.
type DeliveryFailure struct {
	Email    string    `json:"email"`
	As       string    `json:"as"`
	Delivery uint64    `json:"delivery"`
	SourceID uint64    `json:"source_id"`
	Reply    string    `json:"reply"`
	At       time.Time `json:"at"`
}

// Event is an expert action that is no comment.
type Event struct {
	ID        uint64     `json:"id"`
	TicketID  uint64     `json:"ticket_id"`
	Action    string     `json:"action"`
	Actor     string     `json:"actor,omitempty"`
	Detail    string     `json:"detail,omitempty"`
	CreatedAt time.Time  `json:"created_at"`
	Notified  []Notified `json:"notified"`
}

// Recipient is one envelope recipient of a delivery.
type Recipient struct {
	Email   string `json:"email"`
	As      string `json:"as"`
	Visible bool   `json:"visible"`
	State   string `json:"state"`
	Reply   string `json:"reply,omitempty"`
}

func personView(p model.Person) Person { return Person{Email: p.Email, Name: p.Name} }

func peopleView(ps []model.Person) []Person {
	out := make([]Person, len(ps))
	for i, p := range ps {
		out[i] = personView(p)
	}
	return out
}

func attachmentsView(as []model.Attachment) []Attachment {
	out := make([]Attachment, len(as))
	for i, a := range as {
		out[i] = Attachment{Name: a.Name, ContentType: a.ContentType, Size: a.Size, Problem: a.Problem}
	}
	return out
}

func notifiedView(ns []model.Notified) []Notified {
	out := make([]Notified, len(ns))
	for i, n := range ns {
		out[i] = Notified{Email: n.Email, As: string(n.As), Visible: n.Visible, Delivery: n.Delivery, Status: n.Status, Reply: n.Reply}
	}
	return out
}

func traceView(ts []model.TraceStep) []TraceStep {
	out := make([]TraceStep, len(ts))
	for i, t := range ts {
		out[i] = TraceStep{Rule: t.Rule, Step: t.Step, Detail: t.Detail}
	}
	return out
}

func failuresView(fs []model.DeliveryFailure) []DeliveryFailure {
	out := make([]DeliveryFailure, len(fs))
	for i, f := range fs {
		out[i] = DeliveryFailure{Email: f.Email, As: string(f.As), Delivery: f.Delivery, SourceID: f.SourceID, Reply: f.Reply, At: f.At}
	}
	return out
}

func eventView(e model.Event) Event {
	return Event{ID: e.ID, TicketID: e.TicketID, Action: e.Action, Actor: e.Actor, Detail: e.Detail, CreatedAt: e.CreatedAt,
		Notified: notifiedView(e.Notified)}
}

func recipientsView(rs []model.DeliveryRecipient) []Recipient {
	out := make([]Recipient, len(rs))
	for i, r := range rs {
		out[i] = Recipient{Email: r.Email, As: string(r.As), Visible: r.Visible, State: string(r.State), Reply: r.Reply}
	}
	return out
}

// Deleted is what deleting a ticket removed.
type Deleted struct {
	Ticket      uint64 `json:"ticket"`
	Comments    int    `json:"comments"`
	Events      int    `json:"events"`
	Deliveries  int    `json:"deliveries"`
	MessageIDs  int    `json:"message_ids"`
	Attachments int    `json:"attachments"`
}

// Erasure is what erasing a person did, or would do in a dry run.
type Erasure struct {
	Address string   `json:"address"`
	Marker  string   `json:"marker"`
	DryRun  bool     `json:"dry_run"`
	Tickets int      `json:"tickets"`
	Actions []string `json:"actions"`
}
