package rules

import (
	"testing"

	"github.com/deskgate/deskgate/gateway/model"
)

// A look-alike of an agent's address is somebody else. strings.ToLower made the dotted
// capital İ an ASCII i, so alİce@example.com was the agent alice@example.com: a customer
// who named that address as a CC made it a hidden follower that got internal notes (C3).
func TestA1_LookAlikeAddressIsNotTheAgent(t *testing.T) {
	e := env()
	for _, lookAlike := range []string{"alİce@example.com", "аlice@example.com", "ali\u200bce@example.com"} {
		if e.IsAgent(lookAlike) {
			t.Errorf("%s is taken for the agent alice@example.com", lookAlike)
		}
	}
	if !e.IsAgent("ALICE@example.com") {
		t.Error("the agent's own address in capitals is not the agent")
	}
	tk := &model.Ticket{ID: 1, Requester: model.Person{Email: "jane@customer.test"}}
	d, refusal := DecideAction(tk, Action{Kind: model.OpAddCC, Actor: "jane@customer.test", Person: model.Person{Email: "alİce@example.com"}}, e)
	if refusal != nil {
		t.Fatalf("adding the look-alike as a CC: %v", refusal)
	}
	if len(d.Ticket.Followers) != 0 || len(d.Ticket.CCs) != 1 {
		t.Errorf("the look-alike became followers %v, CCs %v; want a visible CC", d.Ticket.Followers, d.Ticket.CCs)
	}
}

// The blocklist and every other comparison treat an address alike: one the desk takes for
// a blocklisted address is blocked.
func TestC2_BlocklistComparesAsEveryComparisonDoes(t *testing.T) {
	e := env(func(e *Env) { e.Policy.CCBlocklist = []string{"sales@x.test", "*@bücher.test"} })
	for _, a := range []string{"SALES@x.test", "ſales@x.test", "JÖE@bücher.test"} {
		if !e.Blocked(a) {
			t.Errorf("%s is not blocked", a)
		}
		if a != "JÖE@bücher.test" && !SameAddress(a, "sales@x.test") {
			t.Errorf("%s is blocked as sales@x.test but not the same address", a)
		}
	}
	if e.Blocked("salİes@x.test") || e.Blocked("jöe@bücher.test.evil") {
		t.Error("an address that is not on the blocklist is blocked")
	}
}
