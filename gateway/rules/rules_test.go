package rules

import (
	"strings"
	"testing"

	"github.com/deskgate/deskgate/gateway/model"
)

// The cast of every test: Jane requests, Joe is a CC, Carol follows, Alice and Dana are
// agents, Bob is a light agent, Vendor is a stranger.
const (
	jane   = "jane@customer.test"
	joe    = "joe@customer.test"
	kim    = "kim@customer.test"
	vendor = "vendor@else.test"
	alice  = "alice@example.com"
	dana   = "dana@example.com"
	bob    = "bob@example.com"
	carol  = "carol@example.com"
)

func env(mod ...func(*Env)) Env {
	e := Env{
		Policy: model.Policy{CCsEnabled: true, FollowersEnabled: true, AgentCCBecomesFollower: true,
			CCBlocklist: []string{"*@noreply.example.com", "ceo@example.com"}, CCRemoval: "email",
			ReplyAudience: "notification", CCAttachments: true},
		Notifications: model.Notifications{TicketCreated: "requester", Assigned: "requester_and_ccs", Solved: "requester_and_ccs"},
		MaxCCs:        48,
		Agents:        map[string]model.Role{alice: model.RoleAgent, dana: model.RoleAgent, carol: model.RoleAgent, bob: model.RoleLightAgent},
		AgentNames:    map[string]string{alice: "Alice", dana: "Dana", carol: "Carol", bob: "Bob"},
	}
	for _, m := range mod {
		m(&e)
	}
	return e
}

func ticket(status model.Status) *model.Ticket {
	return &model.Ticket{ID: 5, Status: status, Subject: "Printer",
		Requester: model.Person{Email: jane, Name: "Jane"},
		CCs:       []model.Person{{Email: joe, Name: "Joe"}},
		Followers: []model.Person{{Email: carol, Name: "Carol"}},
		Masks:     map[string]int{jane: 1, joe: 2, carol: 3}, NextMask: 3,
		Welcomed: map[string]bool{joe: true}}
}

func addrs(emails ...string) []Addr {
	var out []Addr
	for _, e := range emails {
		out = append(out, Addr{Email: e})
	}
	return out
}

func masked(of string) Addr {
	return Addr{Email: "support+5-tok-p1@example.com", Own: true, MaskedOf: of}
}

func roleOf(email string) model.Role { return env().AgentRole(email) }

func mailFrom(from string, to []Addr, cc []Addr) Mail {
	return Mail{MessageID: "m@x", From: model.Person{Email: from}, Role: roleOf(from), To: to, Cc: cc}
}

func traceHas(trace []model.TraceStep, rule, step string) bool {
	for _, s := range trace {
		if s.Rule == rule && strings.Contains(s.Step, step) {
			return true
		}
	}
	return false
}

// recipients lists "email/as/copy" for every notification.
func recipients(d Decision) []string {
	var out []string
	for _, n := range d.Notifications {
		for _, r := range n.Recipients {
			out = append(out, r.Email+"/"+string(r.As)+"/"+string(n.Copy))
		}
	}
	return out
}

func has(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

func notifiedEmails(d Decision) map[string]bool {
	m := map[string]bool{}
	for _, n := range d.Notifications {
		for _, r := range n.Recipients {
			m[r.Email] = true
		}
	}
	return m
}

func TestThread(t *testing.T) {
	cases := []struct {
		name   string
		facts  ThreadFacts
		want   uint64
		rule   string
		reason string
	}{
		{name: "T2a_reply_address_with_valid_token", facts: ThreadFacts{Recipients: []ThreadRecipient{{Address: "s+7-tok@x", TicketID: 7, TokenValid: true}}}, want: 7, rule: "T2a"},
		{name: "T2a_masked_address_with_valid_token", facts: ThreadFacts{Recipients: []ThreadRecipient{{TicketID: 7, Masked: true, TokenValid: true}}}, want: 7, rule: "T2a"},
		{name: "T2a_invalid_token_never_threads", facts: ThreadFacts{Recipients: []ThreadRecipient{{TicketID: 7}}}, want: 0, rule: "T2", reason: "not threaded"},
		{name: "T2a_wins_over_T2b", facts: ThreadFacts{Recipients: []ThreadRecipient{{TicketID: 7, TokenValid: true}}, References: []Reference{{MessageID: "a@b", TicketID: 9}}}, want: 7, rule: "T2a"},
		{name: "T2b_known_reference", facts: ThreadFacts{References: []Reference{{MessageID: "a@b", TicketID: 9}}}, want: 9, rule: "T2b"},
		{name: "T2b_wins_over_T2c", facts: ThreadFacts{References: []Reference{{TicketID: 9}}, Tags: []Tag{{TicketID: 3, Token: "t", TokenValid: true, InSubject: true}}}, want: 9, rule: "T2b"},
		{name: "T2c_tag_with_valid_token_in_body", facts: ThreadFacts{Tags: []Tag{{TicketID: 3, Token: "t", TokenValid: true}}}, want: 3, rule: "T2c"},
		{name: "T2c_invalid_token_never_threads", facts: ThreadFacts{Tags: []Tag{{TicketID: 3, Token: "t", InSubject: true, SenderIsParticipant: true}}}, want: 0, rule: "T2", reason: "not threaded"},
		{name: "T2c_wins_over_T2d", facts: ThreadFacts{Tags: []Tag{{TicketID: 4, InSubject: true, SenderIsParticipant: true}, {TicketID: 3, Token: "t", TokenValid: true}}}, want: 3, rule: "T2c"},
		{name: "T2d_bare_subject_tag_from_participant", facts: ThreadFacts{Tags: []Tag{{TicketID: 4, InSubject: true, SenderIsParticipant: true}}}, want: 4, rule: "T2d"},
		{name: "T2d_bare_subject_tag_from_stranger", facts: ThreadFacts{Tags: []Tag{{TicketID: 4, InSubject: true}}}, want: 0, rule: "T2d", reason: "not threaded"},
		{name: "T2d_bare_tag_in_body_does_not_thread", facts: ThreadFacts{Tags: []Tag{{TicketID: 4, SenderIsParticipant: true}}}, want: 0},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got, trace := Thread(tc.facts)
			if got != tc.want {
				t.Fatalf("Thread = %d, want %d (trace %v)", got, tc.want, trace)
			}
			if tc.rule != "" && !traceHas(trace, tc.rule, tc.reason) {
				t.Errorf("trace %v lacks %s %q", trace, tc.rule, tc.reason)
			}
		})
	}
}

func TestT1_NewTicketFromMail(t *testing.T) {
	m := mailFrom(jane, addrs("support@example.com"), nil)
	m.Subject = "  Printer on fire "
	m.From.Name = "Jane"
	d := DecideMail(nil, m, env())
	if !d.NewTicket || d.Ticket.Requester.Email != jane || d.Ticket.Subject != "Printer on fire" || d.Ticket.Status != model.StatusNew {
		t.Fatalf("new ticket = %+v", d.Ticket)
	}
	if !d.Comment.Public || !traceHas(d.Trace, "T1", "opened") {
		t.Errorf("decision = %+v", d)
	}
	if got := recipients(d); len(got) != 1 || got[0] != jane+"/requester/end_user" {
		t.Errorf("acknowledgement = %v, want the requester only (N5 ticket_created: requester)", got)
	}
}

func TestT3_ReplyNeverChangesRequester(t *testing.T) {
	d := DecideMail(ticket(model.StatusOpen), mailFrom(joe, addrs("support@example.com"), nil), env())
	if d.NewTicket || d.Ticket.Requester.Email != jane {
		t.Fatalf("reply changed the requester: %+v", d.Ticket.Requester)
	}
}

func TestT4_StatusChanges(t *testing.T) {
	cases := []struct {
		name   string
		status model.Status
		from   string
		want   model.Status
	}{
		{"T4_reply_reopens_solved", model.StatusSolved, jane, model.StatusOpen},
		{"T4_reply_reopens_pending", model.StatusPending, jane, model.StatusOpen},
		{"T4_requester_reply_keeps_new", model.StatusNew, jane, ""},
		{"T4_first_agent_comment_opens_new", model.StatusNew, alice, model.StatusOpen},
		{"T4_light_agent_does_not_open_new", model.StatusNew, bob, ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			d := DecideMail(ticket(tc.status), mailFrom(tc.from, nil, nil), env())
			if d.Status != tc.want {
				t.Fatalf("status = %q, want %q", d.Status, tc.want)
			}
		})
	}
	d, _ := DecideAction(ticket(model.StatusNew), Action{Kind: model.OpComment, Actor: alice, Public: true}, env())
	if d.Status != model.StatusOpen {
		t.Errorf("first agent comment by API left status %q", d.Status)
	}
}

func TestT5_AutomaticMailIsANoteAndTellsNoEndUser(t *testing.T) {
	for hdr, want := range map[string]string{"Auto-Submitted": "auto-replied", "Precedence": "bulk", "X-Autoreply": "yes", "X-Auto-Response-Suppress": "All"} {
		if Automatic(map[string]string{hdr: want}, "robot@x") == "" {
			t.Errorf("%s: %s not seen as automatic", hdr, want)
		}
	}
	if Automatic(map[string]string{"Auto-Submitted": "no"}, "a@b") != "" || Automatic(nil, "") == "" {
		t.Error("Auto-Submitted: no is a person's mail; an empty envelope sender is automatic")
	}
	m := mailFrom(jane, nil, addrs(kim))
	m.Automatic = "Auto-Submitted: auto-replied"
	d := DecideMail(ticket(model.StatusOpen), m, env())
	if d.Comment.Public || !traceHas(d.Trace, "T5", "internal") || len(d.Changes) != 0 {
		t.Fatalf("automatic mail: public=%v changes=%v", d.Comment.Public, d.Changes)
	}
	for _, r := range recipients(d) {
		if strings.HasSuffix(r, "/end_user") {
			t.Fatalf("automatic mail notified an end user: %v", recipients(d))
		}
	}
	if !OwnLoop(map[string]string{"X-Loop": "support@example.com"}, []string{"support@example.com"}) {
		t.Error("deskgate's own loop header not recognised")
	}
}

func TestR1_OnlyAgentsAreAssigned(t *testing.T) {
	if _, r := DecideAction(ticket(model.StatusOpen), Action{Kind: model.OpAssign, Person: model.Person{Email: bob}}, env()); r == nil || r.Kind != RefuseNotAllowed {
		t.Fatalf("light agent assigned: %v", r)
	}
	if _, r := DecideAction(ticket(model.StatusOpen), Action{Kind: model.OpAssign, Person: model.Person{Email: vendor}}, env()); r == nil || r.Kind != RefuseNotAllowed {
		t.Fatalf("end user assigned: %v", r)
	}
	d, r := DecideAction(ticket(model.StatusOpen), Action{Kind: model.OpAssign, Person: model.Person{Email: alice}}, env())
	if r != nil || d.Ticket.Assignee != alice {
		t.Fatalf("assign alice: %v %+v", r, d.Ticket)
	}
}

func TestR2_FollowersAreAgentsOnly(t *testing.T) {
	_, r := DecideAction(ticket(model.StatusOpen), Action{Kind: model.OpAddFollower, Person: model.Person{Email: kim}}, env())
	if r == nil || r.Kind != RefuseNotAllowed || r.Rule != "R2" {
		t.Fatalf("end user made follower: %v", r)
	}
	if _, r := DecideAction(ticket(model.StatusOpen), Action{Kind: model.OpAddFollower, Person: model.Person{Email: bob}}, env()); r != nil {
		t.Fatalf("light agent refused as follower: %v", r)
	}
}

func TestR3_OneRolePerAddress(t *testing.T) {
	tk := ticket(model.StatusOpen)
	tk.CCs = append(tk.CCs, model.Person{Email: dana})
	d, r := DecideAction(tk, Action{Kind: model.OpAddFollower, Person: model.Person{Email: dana}}, env())
	if r != nil || IsCC(d.Ticket, dana) || !IsFollower(d.Ticket, dana) || !traceHas(d.Trace, "R3", "promoted") {
		t.Fatalf("CC not moved to follower: %v %+v", r, d.Ticket)
	}
	if _, r := DecideAction(ticket(model.StatusOpen), Action{Kind: model.OpAddCC, Person: model.Person{Email: jane}}, env()); r == nil || r.Kind != RefuseConflict {
		t.Fatalf("requester added as CC: %v", r)
	}
}

func TestC1_WhoCanAddCCsByMail(t *testing.T) {
	cases := []struct {
		name  string
		from  string
		mod   func(*Env)
		added bool
	}{
		{"C1_requester_adds", jane, nil, true},
		{"C1_cc_adds", joe, nil, true},
		{"C1_agent_adds", alice, nil, true},
		{"C1_light_agent_cannot", bob, nil, false},
		{"C1_third_party_cannot", vendor, nil, false},
		{"C1_ccs_disabled_ignores", jane, func(e *Env) { e.Policy.CCsEnabled = false }, false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var mods []func(*Env)
			if tc.mod != nil {
				mods = append(mods, tc.mod)
			}
			d := DecideMail(ticket(model.StatusOpen), mailFrom(tc.from, addrs(jane), addrs(kim)), env(mods...))
			if IsCC(d.Ticket, kim) != tc.added {
				t.Fatalf("kim added=%v, want %v (trace %v)", IsCC(d.Ticket, kim), tc.added, d.Trace)
			}
			if !tc.added && tc.from != vendor && !traceHas(d.Trace, "C1", "not added") {
				t.Errorf("trace does not say why: %v", d.Trace)
			}
		})
	}
}

func TestC2_BlocklistNeverAdds(t *testing.T) {
	d := DecideMail(ticket(model.StatusOpen), mailFrom(jane, nil, addrs("ceo@example.com", "bot@noreply.example.com")), env())
	if len(d.Ticket.CCs) != 1 || !traceHas(d.Trace, "C2", "not added") {
		t.Fatalf("blocklisted added: %+v", d.Ticket.CCs)
	}
	if _, r := DecideAction(ticket(model.StatusOpen), Action{Kind: model.OpAddCC, Person: model.Person{Email: "x@noreply.example.com"}}, env()); r == nil || r.Kind != RefuseNotAllowed {
		t.Fatalf("API added a blocklisted CC: %v", r)
	}
	e := env(func(e *Env) { e.Policy.CCBlocklist = append(e.Policy.CCBlocklist, dana) })
	if _, r := DecideAction(ticket(model.StatusOpen), Action{Kind: model.OpAddFollower, Person: model.Person{Email: dana}}, e); r == nil || r.Kind != RefuseNotAllowed {
		t.Fatalf("API added a blocklisted follower: %v", r)
	}
}

func TestC3_AgentCCBecomesFollower(t *testing.T) {
	d := DecideMail(ticket(model.StatusOpen), mailFrom(jane, nil, addrs(dana)), env())
	if IsCC(d.Ticket, dana) || !IsFollower(d.Ticket, dana) || !traceHas(d.Trace, "C3", "follower") {
		t.Fatalf("agent CC: ccs=%v followers=%v", d.Ticket.CCs, d.Ticket.Followers)
	}
	d = DecideMail(ticket(model.StatusOpen), mailFrom(jane, nil, addrs(dana)), env(func(e *Env) { e.Policy.AgentCCBecomesFollower = false }))
	if !IsCC(d.Ticket, dana) || IsFollower(d.Ticket, dana) {
		t.Fatalf("with the policy off the agent should be a CC: %+v", d.Ticket)
	}
}

func TestC4_NewCCGetsHistoryOnce(t *testing.T) {
	tk := ticket(model.StatusOpen)
	d, _ := DecideAction(tk, Action{Kind: model.OpAddCC, Person: model.Person{Email: kim}}, env())
	d2, _ := DecideAction(d.Ticket, Action{Kind: model.OpComment, Actor: alice, Public: true}, env())
	var kimHistory, joeHistory bool
	for _, n := range d2.Notifications {
		for _, r := range n.Recipients {
			if r.Email == kim {
				kimHistory = n.History
			}
			if r.Email == joe {
				joeHistory = n.History
			}
		}
	}
	if !kimHistory || joeHistory || !traceHas(d2.Trace, "C4", "history") {
		t.Fatalf("history: kim=%v joe=%v", kimHistory, joeHistory)
	}
	d3, _ := DecideAction(d2.Ticket, Action{Kind: model.OpComment, Actor: alice, Public: true}, env())
	for _, n := range d3.Notifications {
		if n.History {
			t.Fatal("history sent twice")
		}
	}
}

func TestC5_OwnAddressesAddNobody(t *testing.T) {
	m := mailFrom(jane, []Addr{{Email: "support@example.com", Own: true}, {Email: "support+5-tok@example.com", Own: true}}, []Addr{masked(joe)})
	d := DecideMail(ticket(model.StatusOpen), m, env())
	if len(d.Changes) != 0 {
		t.Fatalf("own addresses changed participants: %v", d.Changes)
	}
}

func TestC6_ExpertsManageCCs(t *testing.T) {
	d, r := DecideAction(ticket(model.StatusOpen), Action{Kind: model.OpAddCC, Person: model.Person{Email: kim}}, env(func(e *Env) { e.Policy.CCsEnabled = false }))
	if r != nil || !IsCC(d.Ticket, kim) || !traceHas(d.Trace, "C6", "added") {
		t.Fatalf("expert add: %v", r)
	}
	d, r = DecideAction(d.Ticket, Action{Kind: model.OpRemoveCC, Person: model.Person{Email: kim}}, env())
	if r != nil || IsCC(d.Ticket, kim) {
		t.Fatalf("expert remove: %v", r)
	}
	if _, r = DecideAction(d.Ticket, Action{Kind: model.OpRemoveCC, Person: model.Person{Email: kim}}, env()); r == nil || r.Kind != RefuseNotFound {
		t.Fatalf("removing a non-CC: %v", r)
	}
}

func TestC7_RemovalByMail(t *testing.T) {
	answered := &Answered{CCs: []string{joe}}
	reply := func(from string, to []Addr) Mail {
		m := mailFrom(from, to, nil)
		m.Answered = answered
		return m
	}
	d := DecideMail(ticket(model.StatusOpen), reply(jane, []Addr{{Email: "support+5-tok@example.com", Own: true}}), env())
	if IsCC(d.Ticket, joe) || !traceHas(d.Trace, "C7", "removed") {
		t.Fatalf("requester's Reply kept joe: %v", d.Trace)
	}
	d = DecideMail(ticket(model.StatusOpen), reply(jane, nil), env(func(e *Env) { e.Policy.CCRemoval = "expert_only" }))
	if !IsCC(d.Ticket, joe) {
		t.Fatal("expert_only: mail removed a CC")
	}
	tk := ticket(model.StatusOpen)
	tk.CCs = append(tk.CCs, model.Person{Email: kim})
	answered = &Answered{CCs: []string{joe, kim}}
	d = DecideMail(tk, reply(kim, nil), env())
	if !IsCC(d.Ticket, joe) || !traceHas(d.Trace, "C7", "no CC removed") {
		t.Fatal("a CC's Reply without the requester removed CCs")
	}
	d = DecideMail(tk, reply(vendor, addrs(jane)), env())
	if !IsCC(d.Ticket, joe) || !IsCC(d.Ticket, kim) {
		t.Fatal("a stranger removed CCs")
	}
	d = DecideMail(tk, reply(kim, addrs(jane)), env())
	if IsCC(d.Ticket, joe) || !IsCC(d.Ticket, kim) {
		t.Fatal("a CC's reply-all with the requester and without joe must remove joe only")
	}
}

func TestC8_CapOnCCs(t *testing.T) {
	d := DecideMail(ticket(model.StatusOpen), mailFrom(jane, nil, addrs(kim, "lee@customer.test")), env(func(e *Env) { e.MaxCCs = 2 }))
	if len(d.Ticket.CCs) != 2 || !traceHas(d.Trace, "C8", "not added") {
		t.Fatalf("cap: %v", d.Ticket.CCs)
	}
	if _, r := DecideAction(d.Ticket, Action{Kind: model.OpAddCC, Person: model.Person{Email: "z@customer.test"}}, env(func(e *Env) { e.MaxCCs = 2 })); r == nil || r.Kind != RefuseNotAllowed {
		t.Fatalf("API over the cap: %v", r)
	}
}

func TestF1_MailNeverAddsFollowers(t *testing.T) {
	d := DecideMail(ticket(model.StatusOpen), mailFrom(alice, addrs(jane), addrs(kim)), env())
	if IsFollower(d.Ticket, kim) {
		t.Fatal("an end user became a follower by mail")
	}
	d, r := DecideAction(ticket(model.StatusOpen), Action{Kind: model.OpAddFollower, Person: model.Person{Email: dana}}, env())
	if r != nil || !IsFollower(d.Ticket, dana) {
		t.Fatalf("expert could not add a follower: %v", r)
	}
	if _, r := DecideAction(ticket(model.StatusOpen), Action{Kind: model.OpAddFollower, Person: model.Person{Email: dana}}, env(func(e *Env) { e.Policy.FollowersEnabled = false })); r == nil || r.Kind != RefuseNotAllowed {
		t.Fatalf("followers disabled: %v", r)
	}
}

func TestF2_FollowersGetPublicAndInternal(t *testing.T) {
	for _, public := range []bool{true, false} {
		d, _ := DecideAction(ticket(model.StatusOpen), Action{Kind: model.OpComment, Actor: alice, Public: public}, env())
		if !has(recipients(d), carol+"/follower/agent") {
			t.Fatalf("public=%v: follower not notified: %v", public, recipients(d))
		}
	}
}

func TestF3_FollowerCopyIsApartFromEndUsers(t *testing.T) {
	tk := ticket(model.StatusOpen)
	tk.Assignee = dana
	d, _ := DecideAction(tk, Action{Kind: model.OpComment, Actor: alice, Public: true}, env())
	for _, n := range d.Notifications {
		agents, users := 0, 0
		for _, r := range n.Recipients {
			if env().IsAgent(r.Email) {
				agents++
			} else {
				users++
			}
			if r.Email == carol && (n.Copy != model.CopyAgent || r.Visible) {
				t.Fatalf("follower's copy: %+v", n)
			}
		}
		if agents > 0 && users > 0 {
			t.Fatalf("a copy mixes agents and end users: %+v", n)
		}
	}
}

func TestF4_FollowerReply(t *testing.T) {
	d := DecideMail(ticket(model.StatusOpen), mailFrom(carol, []Addr{{Email: "support+5-tok@example.com", Own: true}}, nil), env())
	if d.Comment.Public || !traceHas(d.Trace, "F4", "internal") {
		t.Fatalf("follower's Reply: %v", d.Trace)
	}
	d = DecideMail(ticket(model.StatusOpen), mailFrom(carol, []Addr{masked(jane)}, nil), env())
	if !d.Comment.Public || !traceHas(d.Trace, "F4", "public") {
		t.Fatalf("follower's Reply-all through the masked requester: %v", d.Trace)
	}
	tk := ticket(model.StatusOpen)
	tk.Followers = append(tk.Followers, model.Person{Email: bob})
	m := mailFrom(bob, []Addr{masked(jane)}, nil)
	if d = DecideMail(tk, m, env()); d.Comment.Public {
		t.Fatal("a light agent follower's Reply-all became public")
	}
}

func TestV1_RequesterMailIsPublic(t *testing.T) {
	d := DecideMail(ticket(model.StatusOpen), mailFrom(jane, nil, nil), env())
	if !d.Comment.Public || !traceHas(d.Trace, "V1", "public") {
		t.Fatal("requester's mail not public")
	}
}

func TestV2_CCReplyVsReplyAll(t *testing.T) {
	if d := DecideMail(ticket(model.StatusOpen), mailFrom(joe, nil, nil), env()); d.Comment.Public || !traceHas(d.Trace, "V2", "internal") {
		t.Fatal("CC's Reply was public")
	}
	if d := DecideMail(ticket(model.StatusOpen), mailFrom(joe, nil, addrs(jane)), env()); !d.Comment.Public {
		t.Fatal("CC's Reply-all was internal")
	}
}

func TestV3_AgentReplyVsReplyAll(t *testing.T) {
	if d := DecideMail(ticket(model.StatusOpen), mailFrom(alice, nil, nil), env()); d.Comment.Public {
		t.Fatal("agent's Reply was public")
	}
	if d := DecideMail(ticket(model.StatusOpen), mailFrom(alice, []Addr{masked(joe)}, nil), env()); !d.Comment.Public || !traceHas(d.Trace, "V3", "public") {
		t.Fatal("agent's Reply-all through a masked CC was internal")
	}
	if d := DecideMail(ticket(model.StatusOpen), mailFrom(bob, addrs(jane), nil), env()); d.Comment.Public {
		t.Fatal("light agent's mail was public")
	}
}

func TestV4_ExpertChoosesVisibility(t *testing.T) {
	if _, r := DecideAction(ticket(model.StatusOpen), Action{Kind: model.OpComment, Actor: bob, Public: true}, env()); r == nil || r.Kind != RefuseNotAllowed {
		t.Fatalf("light agent's public API comment: %v", r)
	}
	if _, r := DecideAction(ticket(model.StatusOpen), Action{Kind: model.OpComment, Actor: vendor, Public: false}, env()); r == nil || r.Kind != RefuseNotAllowed {
		t.Fatalf("non-agent API comment: %v", r)
	}
	d, r := DecideAction(ticket(model.StatusOpen), Action{Kind: model.OpComment, Actor: bob, Public: false}, env())
	if r != nil || d.Comment.Public {
		t.Fatalf("light agent's note: %v", r)
	}
}

// A light agent acting as an expert (the web desk, the API naming her) is held to what she may
// do by mail: no CCs (C1), nothing public (V4); she may still take herself out of the way.
func TestC1_V4_LightAgentExpertActions(t *testing.T) {
	_, r := DecideAction(ticket(model.StatusOpen), Action{Kind: model.OpAddCC, Actor: bob, Person: model.Person{Email: "new@example.org"}}, env())
	if r == nil || r.Kind != RefuseNotAllowed || r.Rule != "C1" || !strings.Contains(r.Msg, "light agent") {
		t.Fatalf("light agent added a CC: %v", r)
	}
	_, r = DecideAction(ticket(model.StatusOpen), Action{Kind: model.OpMakePublic, Actor: bob, CommentID: 9}, env())
	if r == nil || r.Kind != RefuseNotAllowed || r.Rule != "V4" {
		t.Fatalf("light agent made a comment public: %v", r)
	}
	if _, r := DecideAction(ticket(model.StatusOpen), Action{Kind: model.OpAddCC, Actor: alice, Person: model.Person{Email: "new@example.org"}}, env()); r != nil {
		t.Fatalf("agent refused a CC: %v", r)
	}
	if _, r := DecideAction(ticket(model.StatusOpen), Action{Kind: model.OpMakePrivate, Actor: bob, CommentID: 9, CommentPublic: true}, env()); r != nil {
		t.Fatalf("light agent refused making a comment internal: %v", r)
	}
}

func TestV5_MakeCommentInternal(t *testing.T) {
	d, r := DecideAction(ticket(model.StatusOpen), Action{Kind: model.OpMakePrivate, CommentID: 9, CommentPublic: true}, env())
	if r != nil || d.Restate == nil || d.Restate.CommentID != 9 || d.Restate.Public || !traceHas(d.Trace, "V5", "internal") || len(d.Notifications) != 0 {
		t.Fatalf("V5: %v %+v", r, d)
	}
}

func TestX1_ThirdParty(t *testing.T) {
	tk := ticket(model.StatusOpen)
	tk.Assignee = alice
	d := DecideMail(tk, mailFrom(vendor, addrs(jane), addrs(kim)), env())
	if d.Comment.Public || !d.Comment.ThirdParty || IsCC(d.Ticket, vendor) || IsCC(d.Ticket, kim) {
		t.Fatalf("third party: %+v ccs=%v", d.Comment, d.Ticket.CCs)
	}
	got := notifiedEmails(d)
	if !got[carol] || !got[alice] || got[jane] || got[joe] {
		t.Fatalf("third party's note went to %v, want follower and assignee only", got)
	}
}

func TestX2_ReplyToDiffersChangesNobody(t *testing.T) {
	m := mailFrom(jane, nil, addrs(kim))
	m.ReplyToDiffers = true
	m.Answered = &Answered{CCs: []string{joe}}
	d := DecideMail(ticket(model.StatusOpen), m, env())
	if len(d.Changes) != 0 || !d.Comment.ReplyToDiffers || !traceHas(d.Trace, "X2", "no participant changes") {
		t.Fatalf("X2: %v", d.Changes)
	}
}

func TestN1_PublicCommentAudience(t *testing.T) {
	tk := ticket(model.StatusOpen)
	tk.Assignee = dana
	d, _ := DecideAction(tk, Action{Kind: model.OpComment, Actor: alice, Public: true}, env())
	got := recipients(d)
	for _, want := range []string{jane + "/requester/end_user", joe + "/cc/end_user", carol + "/follower/agent", dana + "/assignee/agent"} {
		if !has(got, want) {
			t.Errorf("missing %s in %v", want, got)
		}
	}
	d, _ = DecideAction(tk, Action{Kind: model.OpComment, Actor: carol, Public: true}, env())
	if notifiedEmails(d)[carol] || !traceHas(d.Trace, "N1", "not notified") {
		t.Fatal("the author was notified of its own comment")
	}
}

func TestN2_InternalNoteAudience(t *testing.T) {
	tk := ticket(model.StatusOpen)
	tk.Assignee = dana
	d, _ := DecideAction(tk, Action{Kind: model.OpComment, Actor: alice, Public: false}, env())
	got := notifiedEmails(d)
	if got[jane] || got[joe] || !got[carol] || !got[dana] || !traceHas(d.Trace, "N2", "not notified") {
		t.Fatalf("internal note went to %v", got)
	}
}

func TestN3_DirectRecipientsAreLeftOut(t *testing.T) {
	d := DecideMail(ticket(model.StatusOpen), mailFrom(jane, nil, addrs(joe, carol)), env())
	got := notifiedEmails(d)
	if got[joe] || got[carol] || !traceHas(d.Trace, "N3", "not notified") {
		t.Fatalf("direct recipients notified again: %v", got)
	}
}

func TestN4_ReplyAudience(t *testing.T) {
	tk := ticket(model.StatusOpen)
	tk.CCs = append(tk.CCs, model.Person{Email: kim})
	m := mailFrom(jane, nil, addrs(joe))
	m.Answered = &Answered{CCs: []string{joe}}
	// kim became a CC after the notification jane answers.
	d := DecideMail(tk, m, env(func(e *Env) { e.Policy.CCRemoval = "expert_only" }))
	if notifiedEmails(d)[kim] || !traceHas(d.Trace, "N4", "not notified") {
		t.Fatalf("notification audience: kim notified: %v", recipients(d))
	}
	d = DecideMail(tk, m, env(func(e *Env) { e.Policy.CCRemoval = "expert_only"; e.Policy.ReplyAudience = "ticket" }))
	if !notifiedEmails(d)[kim] {
		t.Fatalf("ticket audience: kim not notified: %v", recipients(d))
	}
}

func TestN5_EventAudiences(t *testing.T) {
	tk := ticket(model.StatusOpen)
	d, _ := DecideAction(tk, Action{Kind: model.OpAssign, Person: model.Person{Email: alice}}, env())
	got := recipients(d)
	if !has(got, jane+"/requester/end_user") || !has(got, joe+"/cc/end_user") || !has(got, alice+"/assignee/agent") {
		t.Fatalf("assigned (requester_and_ccs): %v", got)
	}
	d, _ = DecideAction(tk, Action{Kind: model.OpAssign, Person: model.Person{Email: alice}}, env(func(e *Env) { e.Notifications.Assigned = "none" }))
	if got := recipients(d); len(got) != 1 || got[0] != alice+"/assignee/agent" {
		t.Fatalf("assigned (none): %v; the assignee is always told", got)
	}
	d, _ = DecideAction(tk, Action{Kind: model.OpStatus, Status: model.StatusSolved}, env(func(e *Env) { e.Notifications.Solved = "requester" }))
	if got := recipients(d); len(got) != 1 || got[0] != jane+"/requester/end_user" {
		t.Fatalf("solved (requester): %v", got)
	}
	for _, n := range d.Notifications {
		if !n.Automatic {
			t.Fatal("event notification not automatic")
		}
	}
	d = DecideMail(nil, mailFrom(jane, nil, addrs(kim)), env(func(e *Env) { e.Notifications.TicketCreated = "none" }))
	if len(d.Notifications) != 0 {
		t.Fatalf("ticket_created none: %v", recipients(d))
	}
}

func TestN6_AttachmentsAndCCs(t *testing.T) {
	m := mailFrom(jane, nil, nil)
	m.HasAttachments = true
	for _, ccAttach := range []bool{true, false} {
		d := DecideMail(ticket(model.StatusOpen), m, env(func(e *Env) { e.Policy.CCAttachments = ccAttach }))
		for _, n := range d.Notifications {
			for _, r := range n.Recipients {
				if r.Email == joe && n.Attachments != ccAttach {
					t.Errorf("cc_attachments=%v: CC got attachments=%v", ccAttach, n.Attachments)
				}
				if r.Email == carol && !n.Attachments {
					t.Errorf("follower lost the attachments")
				}
			}
		}
	}
}

func TestA1_SpoofNoteIsTraced(t *testing.T) {
	m := mailFrom(alice, addrs(jane), nil)
	id := Identify(env(), alice, AuthFacts{Mode: "dmarc", FromAddress: alice, DMARCSummary: "dmarc=fail (p=reject) header.from=example.com"})
	m.Role, m.Identified = id.Role, id.Step
	d := DecideMail(ticket(model.StatusOpen), m, env())
	if !traceHas(d.Trace, "A1", "end user") || !d.Comment.ThirdParty || d.Comment.Public {
		t.Fatalf("spoofed agent got an agent's powers: %+v", d.Comment)
	}
}

func TestT3_T5_RepeatVerdicts(t *testing.T) {
	if v, s := Repeat(Seen{Known: true, CommentID: 4, TicketID: 2}, "m@x"); v != Duplicate || s.Rule != "T3" {
		t.Errorf("stored message: %q %+v", v, s)
	}
	if v, s := Repeat(Seen{Known: true, SentByUs: true, TicketID: 2}, "m@x"); v != OwnMail || s.Rule != "T5" {
		t.Errorf("our own message: %q %+v", v, s)
	}
	if v, _ := Repeat(Seen{Known: true, TicketID: 2}, "m@x"); v != Fresh {
		t.Errorf("a message only referenced before is new: %q", v)
	}
}

func TestT5_SenderLimit(t *testing.T) {
	if limited, _ := SenderLimited(59, 60); limited {
		t.Error("under the limit refused")
	}
	if limited, s := SenderLimited(60, 60); !limited || s.Rule != "T5" {
		t.Error("at the limit accepted")
	}
	if limited, _ := SenderLimited(1000, 0); limited {
		t.Error("0 must turn the guard off")
	}
}

func TestC5_ExpertCannotAddOwnAddresses(t *testing.T) {
	for _, kind := range []model.Operation{model.OpAddCC, model.OpAddFollower} {
		_, r := DecideAction(ticket(model.StatusOpen), Action{Kind: kind, Person: model.Person{Email: "support@example.com"}, PersonIsOwn: true}, env())
		if r == nil || r.Kind != RefuseNotAllowed || r.Rule != "C5" {
			t.Errorf("%s of an own address: %v", kind, r)
		}
	}
}

func TestT4_InternalNoteDoesNotReopenButEndUserMailDoes(t *testing.T) {
	d := DecideMail(ticket(model.StatusSolved), mailFrom(alice, nil, nil), env())
	if d.Status != "" {
		t.Errorf("an agent's internal note by mail reopened a solved ticket")
	}
	d, _ = DecideAction(ticket(model.StatusSolved), Action{Kind: model.OpComment, Actor: alice, Public: false}, env())
	if d.Status != "" {
		t.Errorf("an agent's internal note by API reopened a solved ticket")
	}
	d = DecideMail(ticket(model.StatusSolved), mailFrom(joe, nil, nil), env())
	if d.Status != model.StatusOpen {
		t.Errorf("a CC's private reply left a solved ticket %q", d.Status)
	}
}

func TestH2_H3_Masking(t *testing.T) {
	e := env()
	if e.Masked(model.CopyEndUser, jane) || !e.Masked(model.CopyEndUser, dana) || !e.Masked(model.CopyAgent, jane) {
		t.Error("masking: end users real in end users' copies; agents always masked; everyone masked for agents")
	}
}

func TestM1_UndecodableMail(t *testing.T) {
	unreadable := mailFrom(jane, nil, addrs(joe))
	unreadable.Problems, unreadable.Unreadable = []string{"body: illegal base64 data"}, true
	d := DecideMail(ticket(model.StatusOpen), unreadable, env())
	if d.Comment.Public || !traceHas(d.Trace, "M1", "internal") {
		t.Fatalf("nothing readable left, yet public: %+v", d.Trace)
	}
	for _, n := range d.Notifications {
		for _, r := range n.Recipients {
			if r.Email == jane || r.Email == joe {
				t.Errorf("an end user (%s) was sent an unreadable mail", r.Email)
			}
		}
	}
	if d := DecideMail(nil, unreadable, env()); d.Comment.Public || !traceHas(d.Trace, "M1", "internal") {
		t.Errorf("a new ticket from unreadable mail opened with a public comment")
	}
	partly := mailFrom(jane, nil, nil)
	partly.Problems = []string{"attachment \"a.pdf\": illegal base64 data"}
	if d := DecideMail(ticket(model.StatusOpen), partly, env()); !d.Comment.Public || !traceHas(d.Trace, "M1", "decoding problems") {
		t.Errorf("readable mail with a broken file: public=%v %+v", d.Comment.Public, d.Trace)
	}
}
