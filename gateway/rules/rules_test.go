package rules

import (
	"strings"
	"testing"

	"github.com/deskgate/deskgate/store"
)

func traceHas(trace []store.TraceStep, rule, step string) bool {
	for _, s := range trace {
		if s.Rule == rule && strings.Contains(s.Step, step) {
			return true
		}
	}
	return false
}

func TestThread(t *testing.T) {
	cases := []struct {
		name   string
		facts  ThreadFacts
		want   uint64
		rule   string
		reason string
	}{
		{name: "T2a_reply_address_with_valid_token",
			facts: ThreadFacts{Recipients: []Recipient{{Address: "support+7-tok@x", TicketID: 7, TokenValid: true}}},
			want:  7, rule: "T2a"},
		{name: "T2a_masked_address_with_valid_token",
			facts: ThreadFacts{Recipients: []Recipient{{Address: "support+7-tok-p2@x", TicketID: 7, Masked: true, TokenValid: true}}},
			want:  7, rule: "T2a"},
		{name: "T2a_invalid_token_never_threads",
			facts: ThreadFacts{Recipients: []Recipient{{Address: "support+7-bad@x", TicketID: 7}}},
			want:  0, rule: "T2", reason: "not threaded"},
		{name: "T2a_wins_over_T2b",
			facts: ThreadFacts{Recipients: []Recipient{{TicketID: 7, TokenValid: true}}, References: []Reference{{MessageID: "a@b", TicketID: 9}}},
			want:  7, rule: "T2a"},
		{name: "T2b_known_reference",
			facts: ThreadFacts{References: []Reference{{MessageID: "a@b", TicketID: 9}}},
			want:  9, rule: "T2b"},
		{name: "T2b_wins_over_T2c",
			facts: ThreadFacts{References: []Reference{{MessageID: "a@b", TicketID: 9}}, Tags: []Tag{{TicketID: 3, Token: "t", TokenValid: true, InSubject: true}}},
			want:  9, rule: "T2b"},
		{name: "T2c_tag_with_valid_token_in_body",
			facts: ThreadFacts{Tags: []Tag{{TicketID: 3, Token: "t", TokenValid: true}}},
			want:  3, rule: "T2c"},
		{name: "T2c_tag_with_invalid_token_never_threads",
			facts: ThreadFacts{Tags: []Tag{{TicketID: 3, Token: "t", TokenValid: false, InSubject: true, SenderIsParticipant: true}}},
			want:  0, rule: "T2", reason: "not threaded"},
		{name: "T2c_wins_over_T2d",
			facts: ThreadFacts{Tags: []Tag{{TicketID: 4, InSubject: true, SenderIsParticipant: true}, {TicketID: 3, Token: "t", TokenValid: true}}},
			want:  3, rule: "T2c"},
		{name: "T2d_bare_subject_tag_from_participant",
			facts: ThreadFacts{Tags: []Tag{{TicketID: 4, InSubject: true, SenderIsParticipant: true}}},
			want:  4, rule: "T2d"},
		{name: "T2d_bare_subject_tag_from_stranger_does_not_thread",
			facts: ThreadFacts{Tags: []Tag{{TicketID: 4, InSubject: true}}},
			want:  0, rule: "T2d", reason: "not threaded"},
		{name: "T2d_bare_tag_in_body_does_not_thread",
			facts: ThreadFacts{Tags: []Tag{{TicketID: 4, SenderIsParticipant: true}}},
			want:  0},
		{name: "T1_nothing_threads", want: 0},
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

func ticket(status string) *store.Ticket {
	return &store.Ticket{ID: 5, Status: status, Requester: store.Person{Email: "jane@customer.test"},
		CCs: []store.Person{{Email: "joe@customer.test"}}}
}

func TestT1_NewTicketFromMail(t *testing.T) {
	d := ReceiveMail(nil, Mail{MessageID: "m@x", From: store.Person{Email: "jane@customer.test", Name: "Jane"}, Role: RoleEndUser, Subject: "  Printer on fire "}, nil, nil)
	if d.NewTicket == nil || d.NewTicket.Requester.Email != "jane@customer.test" || d.NewTicket.Subject != "Printer on fire" {
		t.Fatalf("new ticket = %+v", d.NewTicket)
	}
	if d.NewTicket.Status != store.StatusNew || !d.Public || !traceHas(d.Trace, "T1", "opened") {
		t.Errorf("decision = %+v", d)
	}
	d = ReceiveMail(nil, Mail{From: store.Person{Email: "x@y"}, Role: RoleEndUser}, nil, nil)
	if d.NewTicket.Subject != "(no subject)" {
		t.Errorf("empty subject became %q", d.NewTicket.Subject)
	}
}

func TestT3_DuplicateIsStoredOnce(t *testing.T) {
	d := ReceiveMail(ticket(store.StatusOpen), Mail{MessageID: "m@x", From: store.Person{Email: "jane@customer.test"}}, &Existing{TicketID: 5, CommentID: 9}, nil)
	if d.Duplicate == nil || d.Duplicate.CommentID != 9 || d.NewTicket != nil || d.Status != "" || !traceHas(d.Trace, "T3", "duplicate") {
		t.Fatalf("duplicate decision = %+v", d)
	}
}

func TestT3_ReplyNeverChangesRequester(t *testing.T) {
	tk := ticket(store.StatusOpen)
	d := ReceiveMail(tk, Mail{From: store.Person{Email: "joe@customer.test"}, Role: RoleEndUser}, nil, nil)
	if d.NewTicket != nil || tk.Requester.Email != "jane@customer.test" {
		t.Fatalf("reply changed the ticket: %+v", d)
	}
}

func TestT4_StatusChanges(t *testing.T) {
	cases := []struct {
		name, status, role, from, want string
	}{
		{"T4_reply_reopens_solved", store.StatusSolved, RoleEndUser, "jane@customer.test", store.StatusOpen},
		{"T4_reply_reopens_pending", store.StatusPending, RoleEndUser, "jane@customer.test", store.StatusOpen},
		{"T4_requester_reply_keeps_new", store.StatusNew, RoleEndUser, "jane@customer.test", ""},
		{"T4_first_agent_comment_opens_new", store.StatusNew, RoleAgent, "alice@example.com", store.StatusOpen},
		{"T4_light_agent_does_not_open_new", store.StatusNew, RoleLightAgent, "bob@example.com", ""},
		{"T4_open_stays_open", store.StatusOpen, RoleAgent, "alice@example.com", ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			d := ReceiveMail(ticket(tc.status), Mail{From: store.Person{Email: tc.from}, Role: tc.role}, nil, nil)
			if d.Status != tc.want {
				t.Fatalf("status = %q, want %q", d.Status, tc.want)
			}
			if tc.want != "" && !traceHas(d.Trace, "T4", "open") {
				t.Errorf("trace lacks T4: %v", d.Trace)
			}
		})
	}
	d := ReceiveMail(nil, Mail{From: store.Person{Email: "alice@example.com"}, Role: RoleAgent}, nil, nil)
	if d.NewTicket.Status != store.StatusOpen {
		t.Errorf("ticket opened by an agent is %q, want open", d.NewTicket.Status)
	}
}

func TestVisibilityOfReceivedMail(t *testing.T) {
	jane := store.Person{Email: "jane@customer.test"}
	cases := []struct {
		name       string
		mail       Mail
		public     bool
		thirdParty bool
		rule       string
	}{
		{"V1_requester_is_public", Mail{From: jane, Role: RoleEndUser}, true, false, "V1"},
		{"V2_cc_reply_is_internal", Mail{From: store.Person{Email: "joe@customer.test"}, Role: RoleEndUser}, false, false, "V2"},
		{"V2_cc_reply_all_is_public", Mail{From: store.Person{Email: "joe@customer.test"}, Role: RoleEndUser, Cc: []store.Person{jane}}, true, false, "V2"},
		{"V3_agent_to_ticket_is_internal", Mail{From: store.Person{Email: "alice@example.com"}, Role: RoleAgent}, false, false, "V3"},
		{"V3_agent_to_requester_is_public", Mail{From: store.Person{Email: "alice@example.com"}, Role: RoleAgent, To: []store.Person{jane}}, true, false, "V3"},
		{"V3_light_agent_always_internal", Mail{From: store.Person{Email: "bob@example.com"}, Role: RoleLightAgent, To: []store.Person{jane}}, false, false, "V3"},
		{"X1_stranger_is_third_party", Mail{From: store.Person{Email: "vendor@else.test"}, Role: RoleEndUser, To: []store.Person{jane}}, false, true, "X1"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			d := ReceiveMail(ticket(store.StatusOpen), tc.mail, nil, nil)
			if d.Public != tc.public || d.ThirdParty != tc.thirdParty || !traceHas(d.Trace, tc.rule, "") {
				t.Fatalf("public=%v third_party=%v trace=%v", d.Public, d.ThirdParty, d.Trace)
			}
		})
	}
}

func TestA1_SpoofNoteIsTraced(t *testing.T) {
	d := ReceiveMail(ticket(store.StatusOpen), Mail{From: store.Person{Email: "alice@example.com"}, Role: RoleEndUser, RoleNote: "spoofed agent: not authenticated"}, nil, nil)
	if !traceHas(d.Trace, "A1", "sender role") || !d.ThirdParty {
		t.Fatalf("spoofed agent decision = %+v", d)
	}
}
