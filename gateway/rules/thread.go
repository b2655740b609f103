package rules

import (
	"fmt"
	"strings"

	"github.com/deskgate/deskgate/gateway/model"
)

// ThreadRecipient is one envelope recipient that is one of deskgate's addresses.
type ThreadRecipient struct {
	Address  string
	TicketID uint64 // 0 for a bare support address or an unknown extension
	Masked   bool
	// TokenValid is whether the address's token is right for TicketID.
	TokenValid bool
}

// Reference is a Message-ID from In-Reply-To or References that deskgate knows.
type Reference struct {
	MessageID string
	TicketID  uint64
}

// Tag is a [#id] or [#id-token] tag found in the subject or body.
type Tag struct {
	TicketID   uint64
	Token      string // "" for a bare [#id]
	TokenValid bool
	InSubject  bool
	// SenderIsParticipant says whether the sender already takes part in TicketID; a
	// bare subject tag threads only then (T2d).
	SenderIsParticipant bool
}

// ThreadFacts is what the gateway found in one mail that could thread it (T2).
type ThreadFacts struct {
	Recipients []ThreadRecipient
	References []Reference
	Tags       []Tag
}

// Thread picks the ticket of a mail by T2, first match wins. It returns 0 when the mail
// threads nowhere (and so opens a ticket by T1).
func Thread(f ThreadFacts) (uint64, []model.TraceStep) {
	var trace []model.TraceStep
	invalid := false
	for _, r := range f.Recipients {
		if r.TicketID == 0 {
			continue
		}
		if !r.TokenValid {
			invalid = true
			continue
		}
		how := "reply address"
		if r.Masked {
			how = "masked address"
		}
		return r.TicketID, append(trace, step("T2a", "threaded", fmt.Sprintf("by the %s %s", how, r.Address)))
	}
	for _, r := range f.References {
		if r.TicketID != 0 {
			return r.TicketID, append(trace, step("T2b", "threaded", fmt.Sprintf("by the reference <%s>", r.MessageID)))
		}
	}
	for _, t := range f.Tags {
		if t.Token != "" && t.TokenValid {
			where := "body"
			if t.InSubject {
				where = "subject"
			}
			return t.TicketID, append(trace, step("T2c", "threaded", fmt.Sprintf("by the tag [#%d-…] in the %s", t.TicketID, where)))
		}
		if t.Token != "" {
			invalid = true
		}
	}
	for _, t := range f.Tags {
		if t.Token == "" && t.InSubject {
			if t.SenderIsParticipant {
				return t.TicketID, append(trace, step("T2d", "threaded", fmt.Sprintf("by the bare subject tag [#%d]; the sender takes part in it", t.TicketID)))
			}
			trace = append(trace, step("T2d", "not threaded", fmt.Sprintf("bare subject tag [#%d], but the sender does not take part in that ticket", t.TicketID)))
		}
	}
	if invalid {
		trace = append(trace, step("T2", "not threaded", "a ticket address or tag had an invalid token"))
	}
	return 0, trace
}

func step(rule, what, detail string) model.TraceStep {
	return model.TraceStep{Rule: rule, Step: what, Detail: detail}
}

// TicketSubject is the subject a new ticket takes from its first mail.
func TicketSubject(s string) string {
	s = strings.TrimSpace(s)
	if s == "" {
		return "(no subject)"
	}
	if r := []rune(s); len(r) > 500 {
		s = string(r[:500])
	}
	return s
}
