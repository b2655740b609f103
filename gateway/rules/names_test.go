package rules

import (
	"fmt"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"github.com/deskgate/deskgate/gateway/model"
)

// stepsOf lists the trace steps of rule.
func stepsOf(trace []model.TraceStep, rule string) []model.TraceStep {
	var out []model.TraceStep
	for _, s := range trace {
		if s.Rule == rule {
			out = append(out, s)
		}
	}
	return out
}

func customers(n, from int) []Addr {
	out := make([]Addr, n)
	for i := range out {
		out[i] = Addr{Email: fmt.Sprintf("u%04d@customer.test", from+i)}
	}
	return out
}

var notAddedCount = regexp.MustCompile(`(\d+) CCs? not added`)

// ignoredCount adds up the "N CCs not added" of every step: what the trace says was left out.
func ignoredCount(trace []model.TraceStep) int {
	total := 0
	for _, s := range trace {
		for _, m := range notAddedCount.FindAllStringSubmatch(s.Step+" "+s.Detail, -1) {
			n, _ := strconv.Atoi(m[1])
			total += n
		}
	}
	return total
}

// A mail naming 1,000 new CCs on a ticket that has one: 47 are added, and the 952 left out
// are one C8 step with the count, not 952 lines; the step lists a few addresses, not all.
func TestC8_ManyCCsOneStep(t *testing.T) {
	m := mailFrom(jane, nil, customers(1000, 0))
	d := DecideMail(ticket(model.StatusOpen), m, env())
	if len(d.Ticket.CCs) != 48 {
		t.Fatalf("%d CCs, want 48", len(d.Ticket.CCs))
	}
	c8 := stepsOf(d.Trace, "C8")
	if len(c8) != 1 {
		t.Fatalf("%d C8 steps, want one: %v", len(c8), c8)
	}
	if c8[0].Step != "953 CCs not added" || !strings.Contains(c8[0].Detail, "limits.max_ccs=48") {
		t.Errorf("C8 step = %+v, want the count and the limit", c8[0])
	}
	if strings.Count(c8[0].Detail, "@") > 5 || !strings.Contains(c8[0].Detail, "u0047@customer.test") || !strings.Contains(c8[0].Detail, "and 948 more") {
		t.Errorf("C8 detail lists too many or too few addresses: %q", c8[0].Detail)
	}
	// Past the cap, more names make no more steps: the steps that name people one by one
	// (CCs added, who is notified) are bounded by limits.max_ccs, not by the mail.
	fewer := DecideMail(ticket(model.StatusOpen), mailFrom(jane, nil, customers(100, 0)), env())
	if len(d.Trace) != len(fewer.Trace) {
		t.Errorf("1000 names make %d steps, 100 names %d", len(d.Trace), len(fewer.Trace))
	}
}

// Addresses on the blocklist are one C2 step too.
func TestC2_ManyBlockedOneStep(t *testing.T) {
	var cc []Addr
	for i := 0; i < 200; i++ {
		cc = append(cc, Addr{Email: fmt.Sprintf("bot%d@noreply.example.com", i)})
	}
	d := DecideMail(ticket(model.StatusOpen), mailFrom(jane, nil, cc), env())
	c2 := stepsOf(d.Trace, "C2")
	if len(c2) != 1 || c2[0].Step != "200 CCs not added" || !strings.Contains(c2[0].Detail, "policy.cc_blocklist") {
		t.Fatalf("C2 steps: %v", c2)
	}
}

// A third party's To/Cc names are not added (X1), and the trace says how many and why.
func TestX1_IgnoredNamesTraced(t *testing.T) {
	d := DecideMail(ticket(model.StatusOpen), mailFrom(vendor, addrs(jane), addrs(kim, "lee@customer.test", "KIM@customer.test")), env())
	x1 := stepsOf(d.Trace, "X1")
	var found bool
	for _, s := range x1 {
		if s.Step == "2 CCs not added" && strings.Contains(s.Detail, "third party") &&
			strings.Contains(s.Detail, kim) && strings.Contains(s.Detail, "lee@customer.test") {
			found = true
		}
	}
	if !found {
		t.Fatalf("no X1 step counts the names ignored: %v", d.Trace)
	}
}

// Every name in To/Cc that could have become a CC is either added or counted in a step that
// says why not: for each sender and policy that ignores names (C1 light agent, C1 CCs
// disabled, X1, X2, T5, C2, C8).
func TestC1_EveryIgnoredNameCounted(t *testing.T) {
	names := append(customers(60, 0), Addr{Email: "x@noreply.example.com"}, Addr{Email: joe}, Addr{Email: "support@example.com", Own: true})
	cases := []struct {
		name   string
		from   string
		rule   string
		mod    func(*Env)
		mail   func(*Mail)
		addNum int
	}{
		{"C1_light_agent", bob, "C1", nil, nil, 0},
		{"C1_ccs_disabled", jane, "C1", func(e *Env) { e.Policy.CCsEnabled = false }, nil, 0},
		{"X1_third_party", vendor, "X1", nil, nil, 0},
		{"X2_reply_to_differs", jane, "X2", nil, func(m *Mail) { m.ReplyToDiffers = true }, 0},
		{"T5_automatic", jane, "T5", nil, func(m *Mail) { m.Automatic = "Precedence: bulk" }, 0},
		{"C2_C8_requester", jane, "C8", nil, nil, 47},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			m := mailFrom(tc.from, addrs(jane), names)
			if tc.mail != nil {
				tc.mail(&m)
			}
			var mods []func(*Env)
			if tc.mod != nil {
				mods = append(mods, tc.mod)
			}
			for _, tk := range []*model.Ticket{ticket(model.StatusOpen), nil} {
				if tk == nil && (tc.from != jane || tc.rule == "C8") {
					continue
				}
				d := DecideMail(tk, m, env(mods...))
				candidates := 61 // 60 customers and the blocklisted one; joe is a CC already
				if tk == nil {
					candidates = 62
				}
				added := 0
				for _, c := range d.Changes {
					if c.Op == OpAddCC || c.Op == OpAddFollower {
						added++
					}
				}
				if tk != nil && added != tc.addNum {
					t.Errorf("%d added, want %d", added, tc.addNum)
				}
				if got := ignoredCount(d.Trace); got+added != candidates {
					t.Errorf("new ticket %v: %d added and %d counted as not added, want %d names accounted for; trace:\n%v", tk == nil, added, got, candidates, d.Trace)
				}
				if len(stepsOf(d.Trace, tc.rule)) == 0 {
					t.Errorf("no %s step", tc.rule)
				}
			}
		})
	}
}

// Names past what the parser reads (mailparse reads the first 1,000 of each of To and Cc)
// are counted in a C1 step, whoever sent the mail.
func TestC1_NamesNotReadAreCounted(t *testing.T) {
	for _, from := range []string{jane, vendor} {
		m := mailFrom(from, nil, customers(10, 0))
		m.NotRead, m.ReadLimit = 4000, 1000
		d := DecideMail(ticket(model.StatusOpen), m, env())
		var found bool
		for _, s := range stepsOf(d.Trace, "C1") {
			if s.Step == "4000 names not read" && strings.Contains(s.Detail, "1000") {
				found = true
			}
		}
		if !found {
			t.Errorf("from %s: no C1 step for the names not read: %v", from, d.Trace)
		}
		if d := DecideMail(nil, m, env()); !traceHas(d.Trace, "C1", "4000 names not read") {
			t.Errorf("new ticket: no C1 step for the names not read: %v", d.Trace)
		}
	}
}

// An expert's action names the expert the same way in every step: the address when the
// request named one, else "an expert (admin API)".
func TestC6_ExpertNamedOneWay(t *testing.T) {
	if ExpertName("") != "an expert (admin API)" || ExpertName(alice) != alice {
		t.Fatalf("ExpertName: %q %q", ExpertName(""), ExpertName(alice))
	}
	for _, actor := range []string{"", alice} {
		want := "by " + ExpertName(actor)
		d, r := DecideAction(ticket(model.StatusOpen), Action{Kind: model.OpAddCC, Actor: actor, Person: model.Person{Email: kim}}, env())
		if r != nil || !strings.Contains(d.Trace[0].Detail, want) {
			t.Errorf("C6 add: %v %v, want %q", r, d.Trace, want)
		}
		// An agent added as a CC becomes a follower (C3 on every path): the C6 step names the
		// expert the same way.
		d, r = DecideAction(ticket(model.StatusOpen), Action{Kind: model.OpAddCC, Actor: actor, Person: model.Person{Email: dana}}, env())
		if r != nil || !IsFollower(d.Ticket, dana) || !strings.Contains(stepsOf(d.Trace, "C6")[0].Detail, want) {
			t.Errorf("C6 add of an agent: %v %v, want %q", r, d.Trace, want)
		}
		d, r = DecideAction(ticket(model.StatusOpen), Action{Kind: model.OpStatus, Actor: actor, Status: model.StatusPending}, env())
		if r != nil || !strings.Contains(d.Trace[0].Detail, want) {
			t.Errorf("T4: %v %v, want %q", r, d.Trace, want)
		}
		d, r = DecideAction(ticket(model.StatusOpen), Action{Kind: model.OpMakePublic, Actor: actor, CommentID: 3}, env())
		if r != nil || !strings.Contains(d.Trace[0].Detail, want) {
			t.Errorf("X1 made public: %v %v, want %q", r, d.Trace, want)
		}
	}
}
