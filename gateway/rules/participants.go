package rules

import (
	"strings"

	"github.com/deskgate/deskgate/gateway/model"
)

// lower is the key of an address in the ticket's maps (Masks, Welcomed) and in sets.
func lower(s string) string { return model.AddressKey(s) }

// copyTicket is t with its own lists and maps, so that a decision changes its copy and never
// the ticket it was given.
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

// IsCC reports whether email is a CC of t.
func IsCC(t *model.Ticket, email string) bool {
	for _, c := range t.CCs {
		if SameAddress(c.Email, email) {
			return true
		}
	}
	return false
}

// IsParticipant reports whether email is requester, CC, follower or assignee of t.
func IsParticipant(t *model.Ticket, email string) bool {
	if SameAddress(t.Requester.Email, email) || SameAddress(t.Assignee, email) || IsCC(t, email) {
		return true
	}
	for _, f := range t.Followers {
		if SameAddress(f.Email, email) {
			return true
		}
	}
	return false
}

// SameAddress compares mail addresses as deskgate does everywhere: case-insensitively.
// (RFC 5321 lets a local part be case-sensitive; no real mailbox provider uses that.)
func SameAddress(a, b string) bool {
	return a != "" && strings.EqualFold(strings.TrimSpace(a), strings.TrimSpace(b))
}
