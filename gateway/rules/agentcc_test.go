package rules

import (
	"strings"
	"testing"

	"github.com/deskgate/deskgate/gateway/model"
)

// An agent that an expert adds as a CC is a hidden follower under
// policy.agent_cc_becomes_follower, exactly as one named in a mail's Cc is (C3 through C6),
// and goes by the name the desk gives her, not the one the expert typed.
func TestC6_C3_ExpertAddsAgentAsCCUnderAgentCCBecomesFollower(t *testing.T) {
	d, r := DecideAction(ticket(model.StatusOpen), Action{Kind: model.OpAddCC, Person: model.Person{Email: "Alice@Example.com", Name: "alice at home"}}, env())
	if r != nil {
		t.Fatalf("refused: %v", r)
	}
	if IsCC(d.Ticket, alice) || !IsFollower(d.Ticket, alice) {
		t.Fatalf("alice should follow, not be a CC: ccs %v followers %v", d.Ticket.CCs, d.Ticket.Followers)
	}
	if !traceHas(d.Trace, "C3", "follower added") {
		t.Fatalf("the trace does not say C3 made her a follower: %v", d.Trace)
	}
	for _, f := range d.Ticket.Followers {
		if SameAddress(f.Email, alice) && f.Name != "Alice" {
			t.Fatalf("the follower's name is %q, want the configured Alice", f.Name)
		}
	}
	if len(d.Changes) != 1 || d.Changes[0].Op != OpAddFollower || d.Changes[0].Rule != "C3" {
		t.Fatalf("changes: %+v", d.Changes)
	}
	// Adding her again as a CC is refused as what she is: a follower already.
	if _, r := DecideAction(d.Ticket, Action{Kind: model.OpAddCC, Person: model.Person{Email: alice}}, env()); r == nil || r.Kind != RefuseConflict {
		t.Fatalf("adding a follower again as CC: %v", r)
	}
}

// With agent_cc_becomes_follower off, the agent stays a CC and every notification reaches her
// on the agents' copy, which masks the customers' addresses (H3), never on the end users' copy.
func TestC6_H3_AgentCCGetsTheAgentsCopy(t *testing.T) {
	off := env(func(e *Env) { e.Policy.AgentCCBecomesFollower = false })
	d, r := DecideAction(ticket(model.StatusOpen), Action{Kind: model.OpAddCC, Person: model.Person{Email: alice, Name: "whatever"}}, off)
	if r != nil || !IsCC(d.Ticket, alice) || IsFollower(d.Ticket, alice) {
		t.Fatalf("alice should be a CC: %v %v", r, d.Ticket.CCs)
	}
	for _, cc := range d.Ticket.CCs {
		if SameAddress(cc.Email, alice) && cc.Name != "Alice" {
			t.Fatalf("the CC's name is %q, want the configured Alice", cc.Name)
		}
	}
	tk := d.Ticket
	for name, dec := range map[string]Decision{
		"public reply": func() Decision {
			d, _ := DecideAction(tk, Action{Kind: model.OpComment, Actor: dana, Public: true}, off)
			return d
		}(),
		"requester's mail": DecideMail(tk, mailFrom(jane, addrs("support+5-tok@example.com"), nil), off),
		"solved": func() Decision {
			d, _ := DecideAction(tk, Action{Kind: model.OpStatus, Status: model.StatusSolved}, off)
			return d
		}(),
	} {
		got := recipients(dec)
		if !has(got, alice+"/cc/agent") || has(got, alice+"/cc/end_user") {
			t.Errorf("%s: alice should get the agents' copy as CC: %v", name, got)
		}
		if name != "requester's mail" && !has(got, jane+"/requester/end_user") {
			t.Errorf("%s: the requester should still get the end users' copy: %v", name, got)
		}
		if !traceHas(dec.Trace, "H3", "agents' copy") {
			t.Errorf("%s: the trace does not say why alice gets the agents' copy", name)
		}
	}
}

// An agent who opened a ticket by mail is its requester, and gets the agents' copy too: the
// CCs she named are customers whose real addresses her Reply-all must not reach directly.
func TestH3_AgentRequesterGetsTheAgentsCopy(t *testing.T) {
	m := mailFrom(alice, addrs("support@example.com"), addrs(kim))
	m.From.Name = "Alice on her laptop"
	d := DecideMail(nil, m, env())
	if d.Ticket.Requester.Name != "Alice" {
		t.Fatalf("the agent requester's name is %q, want the configured Alice", d.Ticket.Requester.Name)
	}
	d2, r := DecideAction(d.Ticket, Action{Kind: model.OpComment, Actor: dana, Public: true}, env())
	if r != nil {
		t.Fatal(r)
	}
	got := recipients(d2)
	if !has(got, alice+"/requester/agent") || !has(got, kim+"/cc/end_user") {
		t.Fatalf("copies: %v", got)
	}
}

// H4: the Message-ID of an agent's own mail client names her machine; deskgate's copies may
// thread on end users' mail only.
func TestH4_OnlyEndUsersMailIsReferenced(t *testing.T) {
	e := env()
	for author, want := range map[string]bool{jane: true, vendor: true, alice: false, "Carol@EXAMPLE.com": false, bob: false} {
		if got := e.MayReferenceMailOf(author); got != want {
			t.Errorf("MayReferenceMailOf(%s) = %v, want %v", author, got, want)
		}
	}
}

// H4 and H1: a copy threads on the requester's first mail and on the mail it tells of, when
// end users wrote them; an agent's Message-ID is never named, and the anchor stands in for a
// first mail that cannot be.
func TestH4_ThreadHeaders(t *testing.T) {
	e := env()
	const anchor = "ticket-5-tok@example.com"
	for _, c := range []struct {
		name           string
		root, answered MailToThreadOn
		inReplyTo      string
		references     []string
	}{
		{"customer's reply", MailToThreadOn{"r@c", jane}, MailToThreadOn{"m@c", joe}, "m@c", []string{"r@c", "m@c"}},
		{"follower's reply-all", MailToThreadOn{"r@c", jane}, MailToThreadOn{"x@carol-laptop", carol}, "r@c", []string{"r@c"}},
		{"an event", MailToThreadOn{"r@c", jane}, MailToThreadOn{}, "r@c", []string{"r@c"}},
		{"agent-opened ticket", MailToThreadOn{"a@alice-laptop", alice}, MailToThreadOn{"m@c", kim}, "m@c", []string{anchor, "m@c"}},
		{"no first mail kept", MailToThreadOn{"", alice}, MailToThreadOn{"d@dana-laptop", dana}, "", []string{anchor}},
		{"the first mail itself", MailToThreadOn{"r@c", jane}, MailToThreadOn{"r@c", jane}, "r@c", []string{"r@c"}},
	} {
		irt, refs := e.ThreadHeaders(c.root, c.answered, anchor)
		if irt != c.inReplyTo || strings.Join(refs, " ") != strings.Join(c.references, " ") {
			t.Errorf("%s: In-Reply-To %q References %v, want %q %v", c.name, irt, refs, c.inReplyTo, c.references)
		}
	}
}
