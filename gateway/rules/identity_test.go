package rules

import (
	"strings"
	"testing"

	"github.com/deskgate/deskgate/gateway/model"
)

func TestA1_IdentifyByMode(t *testing.T) {
	pass := AuthFacts{FromAddress: alice, DMARCResult: "pass", DMARCAligned: true, DMARCSummary: "dmarc=pass header.from=example.com",
		DKIMAligned: "example.com", DKIMSummary: "dkim=pass header.d=example.com", RelayDMARC: "pass", RelaySummary: "relay pass"}
	fail := AuthFacts{FromAddress: alice, DMARCSummary: "dmarc=fail (p=reject) header.from=example.com", DKIMSummary: "dkim=none", RelaySummary: "no relay results"}
	temp := AuthFacts{FromAddress: alice, DMARCTemporary: true, DKIMTemporary: true, DMARCSummary: "dmarc=temperror", DKIMSummary: "dkim=temperror"}
	with := func(f AuthFacts, mode string) AuthFacts { f.Mode = mode; return f }
	cases := []struct {
		name     string
		from     string
		facts    AuthFacts
		role     model.Role
		deferred bool
		step     string
		text     string
	}{
		{"dmarc pass", alice, with(pass, "dmarc"), RoleAgent, false, "agent", "dmarc=pass"},
		{"dkim pass", alice, with(pass, "dkim"), RoleAgent, false, "agent", "dkim=pass"},
		{"relay pass", alice, with(pass, "trusted_relay"), RoleAgent, false, "agent", "relay pass"},
		{"light agent", "bob@example.com", with(AuthFacts{FromAddress: "bob@example.com", DMARCResult: "pass"}, "dmarc"), RoleLightAgent, false, "light agent", ""},
		{"none believes the From, unverified", alice, with(fail, "none"), RoleAgent, false, "agent", "unverified (agent_identity is none, the From is believed): dmarc=fail"},
		{"none: an end user is just that", "jane@customer.test", with(AuthFacts{FromAddress: "jane@customer.test", DMARCSummary: "dmarc=none"}, "none"), RoleEndUser, false, "end user", "not required"},
		{"dmarc fail", alice, with(fail, "dmarc"), RoleEndUser, false, "end user", "spoofed agent: dmarc=fail (p=reject)"},
		{"dkim mode ignores a dmarc pass", alice, with(AuthFacts{FromAddress: alice, DMARCResult: "pass", DKIMSummary: "dkim=none"}, "dkim"), RoleEndUser, false, "end user", "spoofed agent: dkim=none"},
		{"relay mode ignores our own checks", alice, with(AuthFacts{FromAddress: alice, DMARCResult: "pass", DKIMAligned: "example.com", RelaySummary: "no relay"}, "trusted_relay"), RoleEndUser, false, "end user", "spoofed agent: no relay"},
		{"dmarc temperror defers an agent", alice, with(temp, "dmarc"), RoleEndUser, true, "deferred", "DNS could not tell"},
		{"dkim temperror defers an agent", alice, with(temp, "dkim"), RoleEndUser, true, "deferred", "dkim=temperror"},
		{"temperror never defers an end user", "jane@customer.test", with(AuthFacts{FromAddress: "jane@customer.test", DMARCTemporary: true, DMARCSummary: "dmarc=temperror"}, "dmarc"), RoleEndUser, false, "end user", "dmarc=temperror"},
		{"ambiguous From beats a pass", alice, with(AuthFacts{FromAddress: "", FromProblem: "From names 2 addresses", DMARCResult: "pass"}, "dmarc"), RoleEndUser, false, "end user", "ambiguous From: From names 2 addresses"},
		{"ambiguous From is no reason to defer", alice, with(AuthFacts{FromProblem: "2 From header fields", DMARCTemporary: true}, "dmarc"), RoleEndUser, false, "end user", "ambiguous"},
		{"the proven From is another address", alice, with(AuthFacts{FromAddress: "evil@x.test", DMARCResult: "pass"}, "dmarc"), RoleEndUser, false, "end user", "the authenticated From is evil@x.test"},
		{"no DMARC record, aligned pass proves", alice, with(AuthFacts{FromAddress: alice, DMARCResult: "none", DMARCAligned: true}, "dmarc"), RoleAgent, false, "agent", ""},
		{"no DMARC record, nothing aligned", alice, with(AuthFacts{FromAddress: alice, DMARCResult: "none"}, "dmarc"), RoleEndUser, false, "end user", "spoofed agent"},
		{"a broken DMARC record proves nothing", alice, with(AuthFacts{FromAddress: alice, DMARCResult: "permerror", DMARCAligned: true}, "dmarc"), RoleEndUser, false, "end user", "spoofed agent"},
		{"relay dkim=pass aligned", alice, with(AuthFacts{FromAddress: alice, RelayDKIMAligned: "example.com", RelaySummary: "dkim=pass"}, "trusted_relay"), RoleAgent, false, "agent", "dkim=pass"},
		{"case does not matter", "ALICE@Example.com", with(pass, "dmarc"), RoleAgent, false, "agent", ""},
	}
	for _, c := range cases {
		id := Identify(env(), c.from, c.facts)
		if id.Role != c.role || id.Defer != c.deferred || id.Step.Rule != "A1" || id.Step.Step != c.step || !strings.Contains(id.Step.Detail, c.text) {
			t.Errorf("%s: %+v", c.name, id)
		}
		// Only agent_identity none grants a role without proof, and it says so.
		if unverified := c.facts.Mode == "none" && c.role != RoleEndUser; id.Unverified != unverified {
			t.Errorf("%s: Unverified = %v, want %v", c.name, id.Unverified, unverified)
		}
	}
}
