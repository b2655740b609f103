package rules

import (
	"fmt"

	"github.com/deskgate/deskgate/gateway/model"
)

// Seen is what the store knows of a received mail's own Message-ID.
type Seen struct {
	Known     bool
	SentByUs  bool // a Message-ID of deskgate's own notifications
	TicketID  uint64
	CommentID uint64
}

// Verdicts on a mail that was seen before.
const (
	Fresh     = ""
	Duplicate = "duplicate"
	OwnMail   = "own mail"
)

// Repeat decides about a mail whose Message-ID is known: deskgate's own mail coming back
// is dropped (T5), a message stored before is accepted and stored once (T3).
func Repeat(s Seen, messageID string) (string, model.TraceStep) {
	switch {
	case s.Known && s.SentByUs:
		return OwnMail, model.TraceStep{Rule: "T5", Step: "dropped", Detail: fmt.Sprintf("<%s> is a message deskgate sent", messageID)}
	case s.Known && s.CommentID != 0:
		return Duplicate, model.TraceStep{Rule: "T3", Step: "duplicate", Detail: fmt.Sprintf("<%s> is already comment %d on ticket %d; stored once", messageID, s.CommentID, s.TicketID)}
	}
	return Fresh, model.TraceStep{}
}

// SenderLimited applies T5's loop guard: a sender with perHour accepted mails in the
// last hour is refused for now (0 turns the guard off).
func SenderLimited(lastHour, perHour int) (bool, model.TraceStep) {
	if perHour <= 0 || lastHour < perHour {
		return false, model.TraceStep{}
	}
	return true, model.TraceStep{Rule: "T5", Step: "refused for now",
		Detail: fmt.Sprintf("%d mails in the last hour, limits.max_mails_per_sender_hour is %d", lastHour, perHour)}
}
