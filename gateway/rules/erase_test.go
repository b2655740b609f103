package rules

import (
	"testing"
	"time"

	"github.com/deskgate/deskgate/gateway/model"
)

func TestErasureOfATicket(t *testing.T) {
	tk := &model.Ticket{Requester: model.Person{Email: "Jane@Customer.test"}, CCs: []model.Person{{Email: "joe@customer.test"}}}
	for _, tc := range []struct {
		email string
		want  Erasure
	}{
		{"jane@customer.test", EraseTicket},
		{" JANE@customer.test ", EraseTicket},
		{"joe@customer.test", ScrubPerson},
		{"nobody@customer.test", ScrubPerson},
	} {
		if got := ErasureOf(tk, tc.email); got != tc.want {
			t.Errorf("%q: %d, want %d", tc.email, got, tc.want)
		}
	}
}

func TestErasableRefusesAgentsAndOwnAddresses(t *testing.T) {
	env := Env{Agents: map[string]model.Role{"alice@example.com": model.RoleAgent, "bob@example.com": model.RoleLightAgent}}
	for _, tc := range []struct {
		email string
		own   bool
		ok    bool
	}{
		{"jane@customer.test", false, true},
		{"alice@example.com", false, false},
		{"BOB@example.com", false, false},
		{"support@example.com", true, false},
	} {
		r := Erasable(env, tc.email, tc.own)
		if (r == nil) != tc.ok || (r != nil && r.Kind != RefuseNotAllowed) {
			t.Errorf("%q (own %v): %v", tc.email, tc.own, r)
		}
	}
}

func TestRetentionDeletesOnlySolvedTicketsPastTheCutoff(t *testing.T) {
	cutoff := time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)
	for _, tc := range []struct {
		status  model.Status
		updated time.Time
		want    bool
	}{
		{model.StatusSolved, cutoff.Add(-time.Second), true},
		{model.StatusSolved, cutoff, false},
		{model.StatusOpen, cutoff.Add(-time.Hour), false},
		{model.StatusPending, cutoff.AddDate(-3, 0, 0), false},
	} {
		if got := RetentionDue(&model.Ticket{Status: tc.status, UpdatedAt: tc.updated}, cutoff); got != tc.want {
			t.Errorf("%s updated %s: %v, want %v", tc.status, tc.updated, got, tc.want)
		}
	}
}
