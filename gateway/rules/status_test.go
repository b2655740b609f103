package rules

import (
	"testing"

	"github.com/deskgate/deskgate/gateway/model"
)

func withView(view string) func(*Env) { return func(e *Env) { e.StatusView = view } }

// S1: who has a request status view, under each web.status_view.
func TestS1_WhoHasAStatusView(t *testing.T) {
	tk := ticket(model.StatusOpen)
	for _, c := range []struct {
		view, email string
		as          model.As
		ok          bool
	}{
		{StatusViewRequester, jane, model.AsRequester, true},
		{StatusViewRequester, "JANE@customer.test", model.AsRequester, true},
		{StatusViewRequester, joe, "", false},
		{StatusViewRequesterAndCCs, joe, model.AsCC, true},
		{StatusViewRequesterAndCCs, kim, "", false},   // not on the ticket
		{StatusViewRequesterAndCCs, carol, "", false}, // a follower, an agent
		{StatusViewOff, jane, "", false},
		{"", jane, "", false},
	} {
		as, ok := StatusViewer(tk, c.email, env(withView(c.view)))
		if as != c.as || ok != c.ok {
			t.Errorf("%q %s: %q %v, want %q %v", c.view, c.email, as, ok, c.as, c.ok)
		}
	}
	if !ViewShowsAttachments(model.AsRequester, env(func(e *Env) { e.Policy.CCAttachments = false })) ||
		ViewShowsAttachments(model.AsCC, env(func(e *Env) { e.Policy.CCAttachments = false })) || !ViewShowsAttachments(model.AsCC, env()) {
		t.Error("CCs see attachments through the view only when policy.cc_attachments is true")
	}
}

// S1: a copy that carries a status view link goes to that person alone, so that no CC ever
// receives the requester's link; without a view the end users share one copy as before.
func TestS1_LinkCopiesGoToOnePerson(t *testing.T) {
	for _, view := range []string{StatusViewRequester, StatusViewRequesterAndCCs, StatusViewOff} {
		tk := ticket(model.StatusOpen)
		tk.CCs = append(tk.CCs, model.Person{Email: kim})
		tk.Welcomed[kim] = true
		d, r := DecideAction(tk, Action{Kind: model.OpComment, Actor: alice, Public: true}, env(withView(view)))
		if r != nil {
			t.Fatal(r)
		}
		links := map[string]bool{}
		for _, n := range d.Notifications {
			if n.StatusViewFor == "" {
				continue
			}
			if len(n.Recipients) != 1 || !SameAddress(n.Recipients[0].Email, n.StatusViewFor) || n.Copy != model.CopyEndUser {
				t.Fatalf("%s: a link copy for %s goes to %+v", view, n.StatusViewFor, n.Recipients)
			}
			links[n.StatusViewFor] = true
		}
		want := map[string]map[string]bool{
			StatusViewRequester:       {jane: true},
			StatusViewRequesterAndCCs: {jane: true, joe: true, kim: true},
			StatusViewOff:             {},
		}[view]
		if len(links) != len(want) {
			t.Fatalf("%s: links for %v, want %v", view, links, want)
		}
		for e := range want {
			if !links[e] {
				t.Fatalf("%s: no link copy for %s (%v)", view, e, links)
			}
		}
		if got := recipients(d); !has(got, joe+"/cc/end_user") || !has(got, kim+"/cc/end_user") || !has(got, carol+"/follower/agent") {
			t.Fatalf("%s: recipients %v", view, got)
		}
	}
}

// S2: a reply from the status view is the author's public comment, told to every current CC
// (N4 does not narrow it: it answers no notification), the followers and the assignee, never
// its author; a reply to a solved ticket opens it (T4).
func TestS2_WebReply(t *testing.T) {
	tk := ticket(model.StatusSolved)
	tk.CCs = append(tk.CCs, model.Person{Email: kim})
	tk.Assignee = dana
	d := DecideWebReply(tk, jane, false, env(withView(StatusViewRequester)))
	if !d.Comment.Public || !traceHas(d.Trace, "V1", "public") || d.Status != model.StatusOpen {
		t.Fatalf("requester's web reply: %+v %v", d.Comment, d.Trace)
	}
	got := recipients(d)
	for _, want := range []string{joe + "/cc/end_user", kim + "/cc/end_user", carol + "/follower/agent", dana + "/assignee/agent"} {
		if !has(got, want) {
			t.Errorf("requester's web reply: %s not notified: %v", want, got)
		}
	}
	if notifiedEmails(d)[jane] {
		t.Errorf("the author was sent her own reply")
	}
	d = DecideWebReply(ticket(model.StatusOpen), joe, false, env(withView(StatusViewRequesterAndCCs)))
	if !d.Comment.Public || !traceHas(d.Trace, "V2", "public") || !has(recipients(d), jane+"/requester/end_user") || notifiedEmails(d)[joe] {
		t.Fatalf("a CC's web reply: %v %v", d.Trace, recipients(d))
	}
}

// S2, N5: "Mark as solved" is the requester's own solve, told as notifications.solved says;
// a CC with a view may not solve, nor may someone the view no longer admits.
func TestS2_WebSolve(t *testing.T) {
	e := env(withView(StatusViewRequesterAndCCs), func(e *Env) { e.Notifications.Solved = "requester_and_ccs" })
	d, r := DecideWebSolve(ticket(model.StatusOpen), jane, e)
	if r != nil || d.Status != model.StatusSolved || !traceHas(d.Trace, "S2", "status solved") {
		t.Fatalf("requester's solve: %v %+v %v", r, d.Status, d.Trace)
	}
	got := recipients(d)
	if !has(got, jane+"/requester/end_user") || !has(got, joe+"/cc/end_user") || notifiedEmails(d)[carol] {
		t.Fatalf("requester's solve under requester_and_ccs notified %v", got)
	}
	for _, n := range d.Notifications {
		if n.Kind != model.KindSolved || !n.Automatic {
			t.Fatalf("notification %+v: want an automatic solved notice", n)
		}
	}
	d, _ = DecideWebSolve(ticket(model.StatusOpen), jane, env(withView(StatusViewRequester), func(e *Env) { e.Notifications.Solved = "none" }))
	if d.Status != model.StatusSolved || len(d.Notifications) != 0 {
		t.Fatalf("notifications.solved none: %v %v", d.Status, recipients(d))
	}
	if d, r := DecideWebSolve(ticket(model.StatusSolved), jane, e); r != nil || d.Status != "" || len(d.Notifications) != 0 {
		t.Fatalf("solving a solved ticket again: %v %v %v", r, d.Status, recipients(d))
	}
	for _, who := range []string{joe, kim, carol} {
		if _, r := DecideWebSolve(ticket(model.StatusOpen), who, e); r == nil || r.Rule != "S2" {
			t.Errorf("%s solved the request from the view: %v", who, r)
		}
	}
	if _, r := DecideWebSolve(ticket(model.StatusOpen), jane, env(withView(StatusViewOff))); r == nil {
		t.Error("a solve went through with web.status_view off")
	}
}
