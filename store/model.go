package store

import (
	"time"

	"github.com/deskgate/deskgate/gateway/model"
)

// Delivery is one composed message and its envelope, queued in the same transaction as
// the change that caused it (the outbox), so that a crash loses neither.
type Delivery struct {
	ID         uint64                    `json:"id"`
	TicketID   uint64                    `json:"ticket_id"`
	SourceID   uint64                    `json:"source_id"` // the comment or event it tells of
	Kind       model.NotificationKind    `json:"kind"`
	Copy       model.Copy                `json:"copy"`
	MessageID  string                    `json:"message_id"`
	From       string                    `json:"envelope_from"`
	Recipients []model.DeliveryRecipient `json:"recipients"`
	State      model.DeliveryState       `json:"state"`
	Attempts   int                       `json:"attempts"`
	NextTry    time.Time                 `json:"next_try"`
	LastReply  string                    `json:"last_reply,omitempty"`
	CreatedAt  time.Time                 `json:"created_at"`
	Size       int                       `json:"size"`

	// loadedNext is NextTry as read from the store: PutDelivery moves the queue entry
	// from it without reading the record again.
	loadedNext time.Time
	loaded     bool
}

// MessageRef says where a Message-ID belongs: the ticket, and the comment when the
// message itself was stored (0 when it was only referenced or sent).
type MessageRef struct {
	TicketID  uint64 `json:"t"`
	CommentID uint64 `json:"c,omitempty"`
	// Sent marks a Message-ID of deskgate's own notifications: SourceID is the comment
	// or event it told of, Delivery the delivery that carried it.
	Sent     bool   `json:"s,omitempty"`
	SourceID uint64 `json:"src,omitempty"`
	Delivery uint64 `json:"d,omitempty"`
}
