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
		{"dmarc pass", alice, with(pass, "dmarc"), model.RoleAgent, false, "agent", "dmarc=pass"},
		{"dkim pass", alice, with(pass, "dkim"), model.RoleAgent, false, "agent", "dkim=pass"},
		{"relay pass", alice, with(pass, "trusted_relay"), model.RoleAgent, false, "agent", "relay pass"},
		{"light agent", "bob@example.com", with(AuthFacts{FromAddress: "bob@example.com", DMARCResult: "pass"}, "dmarc"), model.RoleLightAgent, false, "light agent", ""},
		{"none believes the From, unverified", alice, with(fail, "none"), model.RoleAgent, false, "agent", "unverified (agent_identity is none, the From is believed): dmarc=fail"},
		{"none: an end user is just that", "jane@customer.test", with(AuthFacts{FromAddress: "jane@customer.test", DMARCSummary: "dmarc=none"}, "none"), model.RoleEndUser, false, "end user", "not required"},
		{"dmarc fail", alice, with(fail, "dmarc"), model.RoleEndUser, false, "end user", "spoofed agent: dmarc=fail (p=reject)"},
		{"dkim mode ignores a dmarc pass", alice, with(AuthFacts{FromAddress: alice, DMARCResult: "pass", DKIMSummary: "dkim=none"}, "dkim"), model.RoleEndUser, false, "end user", "spoofed agent: dkim=none"},
		{"relay mode ignores our own checks", alice, with(AuthFacts{FromAddress: alice, DMARCResult: "pass", DKIMAligned: "example.com", RelaySummary: "no relay"}, "trusted_relay"), model.RoleEndUser, false, "end user", "spoofed agent: no relay"},
		{"dmarc temperror defers an agent", alice, with(temp, "dmarc"), model.RoleEndUser, true, "deferred", "DNS could not tell"},
		{"dkim temperror defers an agent", alice, with(temp, "dkim"), model.RoleEndUser, true, "deferred", "dkim=temperror"},
		{"temperror never defers an end user", "jane@customer.test", with(AuthFacts{FromAddress: "jane@customer.test", DMARCTemporary: true, DMARCSummary: "dmarc=temperror"}, "dmarc"), model.RoleEndUser, false, "end user", "dmarc=temperror"},
		{"ambiguous From beats a pass", alice, with(AuthFacts{FromAddress: "", FromProblem: "From names 2 addresses", DMARCResult: "pass"}, "dmarc"), model.RoleEndUser, false, "end user", "ambiguous From: From names 2 addresses"},
		{"ambiguous From is no reason to defer", alice, with(AuthFacts{FromProblem: "2 From header fields", DMARCTemporary: true}, "dmarc"), model.RoleEndUser, false, "end user", "ambiguous"},
		{"the proven From is another address", alice, with(AuthFacts{FromAddress: "evil@x.test", DMARCResult: "pass"}, "dmarc"), model.RoleEndUser, false, "end user", "the authenticated From is evil@x.test"},
		{"no DMARC record, aligned pass proves", alice, with(AuthFacts{FromAddress: alice, DMARCResult: "none", DMARCAligned: true}, "dmarc"), model.RoleAgent, false, "agent", ""},
		{"no DMARC record, nothing aligned", alice, with(AuthFacts{FromAddress: alice, DMARCResult: "none"}, "dmarc"), model.RoleEndUser, false, "end user", "spoofed agent"},
		{"a broken DMARC record proves nothing", alice, with(AuthFacts{FromAddress: alice, DMARCResult: "permerror", DMARCAligned: true}, "dmarc"), model.RoleEndUser, false, "end user", "spoofed agent"},
		{"relay dkim=pass aligned", alice, with(AuthFacts{FromAddress: alice, RelayDKIMAligned: "example.com", RelaySummary: "dkim=pass"}, "trusted_relay"), model.RoleAgent, false, "agent", "dkim=pass"},
		{"case does not matter", "ALICE@Example.com", with(pass, "dmarc"), model.RoleAgent, false, "agent", ""},
	}
	for _, c := range cases {
		id := Identify(env(), c.from, c.facts)
		if id.Role != c.role || id.Defer != c.deferred || id.Step.Rule != "A1" || id.Step.Step != c.step || !strings.Contains(id.Step.Detail, c.text) {
			t.Errorf("%s: %+v", c.name, id)
		}
		// Only agent_identity none grants a role without proof, and it says so.
		if unverified := c.facts.Mode == "none" && c.role != model.RoleEndUser; id.Unverified != unverified {
			t.Errorf("%s: Unverified = %v, want %v", c.name, id.Unverified, unverified)
		}
	}
}

// forgedUnderReject is a mail whose From domain publishes p=reject and which DMARC fails:
// no aligned DKIM signature, no aligned SPF pass, every answer in.
func forgedUnderReject(from string) AuthFacts {
	return AuthFacts{Mode: "dmarc", FromAddress: from, DMARCResult: "fail", DMARCPolicy: "reject", DMARCPercent: 100,
		DMARCSummary: "dmarc=fail (p=reject) header.from=example.com, spf=fail smtp.mailfrom=evil.test, dkim=none (no signature)"}
}

func TestA1_DMARCReject_RefusesUnderRefuse(t *testing.T) {
	for _, e := range []Env{env(), env(func(e *Env) { e.DMARCReject = DMARCRefuse })} {
		id := Identify(e, alice, forgedUnderReject(alice))
		if !id.Refuse || id.Defer || id.Role != model.RoleEndUser || id.Step.Rule != "A1" || id.Step.Step != "refused" {
			t.Fatalf("a forged agent's mail under p=reject (dmarc_reject %q): %+v", e.DMARCReject, id)
		}
		if id.RefusedDomain != "example.com" || !strings.Contains(id.Step.Detail, "dmarc=fail (p=reject)") || !strings.Contains(id.Step.Detail, "dmarc_reject") {
			t.Errorf("the refusal does not say why: %+v", id)
		}
	}
}

// Every mail is refused, not only an agent's: the domain asked receivers to, and a forged
// customer's mail would open a ticket whose acknowledgement goes to the real owner.
func TestA1_DMARCReject_RefusesEndUsersToo(t *testing.T) {
	f := forgedUnderReject("ceo@bank.test")
	f.DMARCSummary = "dmarc=fail (p=reject) header.from=bank.test"
	id := Identify(env(), "ceo@bank.test", f)
	if !id.Refuse || id.RefusedDomain != "bank.test" || id.Step.Step != "refused" {
		t.Errorf("a forged end user's mail under p=reject: %+v", id)
	}
}

func TestA1_DMARCReject_AcceptFilesAsToday(t *testing.T) {
	accept := env(func(e *Env) { e.DMARCReject = DMARCAccept })
	id := Identify(accept, alice, forgedUnderReject(alice))
	if id.Refuse || id.Defer || id.Role != model.RoleEndUser || id.Step.Step != "end user" || !strings.Contains(id.Step.Detail, "spoofed agent: dmarc=fail (p=reject)") {
		t.Errorf("accept: %+v, want today's spoofed agent", id)
	}
	if id := Identify(accept, "jane@customer.test", forgedUnderReject("jane@customer.test")); id.Refuse || id.Step.Step != "end user" {
		t.Errorf("accept, an end user: %+v", id)
	}
}

func TestA1_DMARCReject_PassIsNeverRefused(t *testing.T) {
	f := forgedUnderReject(alice)
	f.DMARCResult, f.DMARCAligned = "pass", true
	if id := Identify(env(), alice, f); id.Refuse || id.Role != model.RoleAgent {
		t.Errorf("a DMARC pass under p=reject: %+v", id)
	}
}

func TestA1_DMARCReject_OnlyPolicyReject(t *testing.T) {
	for _, policy := range []string{"none", "quarantine", ""} {
		f := forgedUnderReject(alice)
		f.DMARCPolicy = policy
		if id := Identify(env(), alice, f); id.Refuse || id.Step.Step != "end user" || !strings.Contains(id.Step.Detail, "spoofed agent") {
			t.Errorf("p=%q: %+v, want filed as a spoofed agent", policy, id)
		}
	}
	// A missing or broken record is no policy at all.
	for _, result := range []string{"none", "permerror"} {
		f := forgedUnderReject(alice)
		f.DMARCResult = result
		if id := Identify(env(), alice, f); id.Refuse {
			t.Errorf("dmarc=%s: %+v", result, id)
		}
	}
}

// DNS that did not answer leaves the old answer: an agent's claim is deferred (451), an end
// user's mail accepted; nothing is refused on a guess.
func TestA1_DMARCReject_TemperrorIsNotRefused(t *testing.T) {
	f := forgedUnderReject(alice)
	f.DMARCResult, f.DMARCTemporary = "temperror", true
	if id := Identify(env(), alice, f); id.Refuse || !id.Defer {
		t.Errorf("temperror, an agent: %+v, want deferred", id)
	}
	f = forgedUnderReject("jane@customer.test")
	f.DMARCResult, f.DMARCTemporary = "temperror", true
	if id := Identify(env(), "jane@customer.test", f); id.Refuse || id.Defer {
		t.Errorf("temperror, an end user: %+v, want accepted", id)
	}
}

// pct below 100 is a domain still trying its policy out: RFC 7489 6.6.4 applies the next
// weaker policy (quarantine) to the rest, and deskgate does not draw lots.
func TestA1_DMARCReject_PctBelow100IsNotRefused(t *testing.T) {
	f := forgedUnderReject(alice)
	f.DMARCPercent = 50
	id := Identify(env(), alice, f)
	if id.Refuse || id.Step.Step != "end user" || !strings.Contains(id.Step.Detail, "pct=50") {
		t.Errorf("pct=50: %+v", id)
	}
}

// Only agent_identity: dmarc refuses: trusted_relay leaves it to the MTA in front, dkim says
// SPF cannot be believed on this path, none is for tests.
func TestA1_DMARCReject_OnlyUnderModeDMARC(t *testing.T) {
	for _, mode := range []string{"dkim", "trusted_relay", "none"} {
		f := forgedUnderReject(alice)
		f.Mode = mode
		if id := Identify(env(), alice, f); id.Refuse {
			t.Errorf("mode %s: %+v", mode, id)
		}
	}
}

// Over LMTP deskgate does not see the client, so SPF is unknown; when MAIL FROM is in the
// From's domain an SPF pass might have made DMARC pass, and the fail is no proof.
func TestA1_DMARCReject_UncheckedSPFIsNoProof(t *testing.T) {
	f := forgedUnderReject(alice)
	f.DMARCSPFUnchecked = true
	id := Identify(env(), alice, f)
	if id.Refuse || id.Step.Step != "end user" || !strings.Contains(id.Step.Detail, "spoofed agent") {
		t.Errorf("SPF unchecked: %+v", id)
	}
}

// A From that says two things proves nobody (permerror), but the mail is filed under its
// first address: when that domain publishes p=reject, an ambiguous From is no way around it.
func TestA1_DMARCReject_AmbiguousFromIsRefusedForTheFiledDomain(t *testing.T) {
	f := forgedUnderReject("")
	f.FromProblem = "From names 2 addresses"
	f.DMARCResult = "permerror"
	f.DMARCSummary = "dmarc=permerror (From names 2 addresses)"
	id := Identify(env(), alice, f)
	if !id.Refuse || id.RefusedDomain != "example.com" || !strings.Contains(id.Step.Detail, "example.com is reject") {
		t.Errorf("ambiguous From under p=reject: %+v", id)
	}
	if id := Identify(env(func(e *Env) { e.DMARCReject = DMARCAccept }), alice, f); id.Refuse || strings.Contains(id.Step.Detail, "proven") {
		t.Errorf("ambiguous From under dmarc_reject: accept: %+v", id)
	}
	f.DMARCPolicy = "quarantine"
	if id := Identify(env(), alice, f); id.Refuse {
		t.Errorf("ambiguous From under p=quarantine: %+v", id)
	}
}
