package rules

import (
	"fmt"
	"strings"

	"github.com/deskgate/deskgate/gateway/model"
)

// AuthFacts is what gateway/auth found out about a mail's sender, reduced to what A1
// decides by. Summaries are in Authentication-Results words, for the trace.
type AuthFacts struct {
	Mode        string // authentication.agent_identity
	FromAddress string // the one From address that DMARC judged; "" if there is none
	FromProblem string // why the From is ambiguous, "" if it is not

	// DMARCResult is dmarc= (pass, fail, none, temperror, permerror); DMARCAligned is
	// set when an SPF or DKIM pass aligned with the From domain, record or not.
	DMARCResult    string
	DMARCAligned   bool
	DMARCTemporary bool // nothing aligned passed, but something might have with DNS up
	DMARCSummary   string
	// DMARCPolicy is the policy the From domain publishes for it (p=, or sp= for a
	// subdomain whose record is its organizational domain's): none, quarantine, reject;
	// "" without a record. DMARCPercent is its pct=, 100 when absent.
	DMARCPolicy  string
	DMARCPercent int
	// DMARCSPFUnchecked: SPF could not be checked (LMTP: deskgate does not see the client)
	// and an SPF pass could have been aligned, so a DMARC fail is not proven.
	DMARCSPFUnchecked bool
	// DKIMAligned is the d= of a valid signature aligned with the From domain.
	DKIMAligned   string
	DKIMTemporary bool
	DKIMSummary   string
	// What the trusted relay's Authentication-Results said for the From domain.
	RelayDMARC       string
	RelayDKIMAligned string
	RelaySummary     string
}

// Identity is A1's answer for one mail.
type Identity struct {
	Role model.Role
	// Defer is set when an agent's address is claimed and DNS could not say whether
	// the claim is true: the mail is refused for now (451 4.7.5), so that the sender's
	// MTA tries again, instead of filing an agent's reply as a stranger's.
	Defer bool
	// Refuse is set when the From domain publishes p=reject, the mail fails DMARC and
	// authentication.dmarc_reject is refuse: nothing of it is stored (550 5.7.1, RFC 7489
	// 6.7). RefusedDomain is the From domain whose policy it is.
	Refuse        bool
	RefusedDomain string
	// Unverified is set when the role was granted without proof (agent_identity none), so
	// that no log, metric or trace calls the sender proven.
	Unverified bool
	Step       model.TraceStep
}

// Values of authentication.dmarc_reject.
const (
	DMARCRefuse = "refuse"
	DMARCAccept = "accept"
)

// dmarcRejects tells whether the From domain's own policy asks for this mail to be
// refused, and why not when it does not quite. It applies under agent_identity: dmarc
// only: trusted_relay leaves it to the MTA in front, and under dkim the operator has said
// that SPF cannot pass on this path, so a DMARC fail proves less than the domain thinks.
//
// A From that names several addresses, or comes in several fields, proves nobody (permerror),
// yet the mail is filed under its first address: when that address's domain publishes
// p=reject, the mail is refused as if it failed, so that an ambiguous From is no way around
// the domain's policy (RFC 7489 6.6.1 lets a receiver reject such mail outright).
func dmarcRejects(env Env, from string, f AuthFacts) (refuse bool, whyNot string) {
	failed := f.DMARCResult == "fail" && f.FromProblem == "" && strings.Contains(f.FromAddress, "@")
	ambiguous := f.DMARCResult == "permerror" && f.FromProblem != "" && strings.Contains(from, "@")
	if f.Mode != "dmarc" || !(failed || ambiguous) || f.DMARCPolicy != "reject" {
		return false, ""
	}
	switch {
	case env.DMARCReject == DMARCAccept:
		return false, "not refused: dmarc_reject is accept"
	case f.DMARCPercent < 100:
		// RFC 7489 6.6.4 applies the next weaker policy, quarantine, to the rest. A
		// domain still trying its policy out is not refused by lot: the same mail would
		// be refused or kept at random.
		return false, fmt.Sprintf("not refused: pct=%d, p=reject applies only at pct=100", f.DMARCPercent)
	case failed && f.DMARCSPFUnchecked:
		return false, "not refused: SPF could not be checked (no client IP on LMTP) and might have passed aligned"
	}
	return true, ""
}

// Identify decides the role a mail's sender gets (A1): the configured role of the From
// address when the mail proves it as authentication.agent_identity requires, else an
// end user's. from is the address the mail is filed under.
func Identify(env Env, from string, f AuthFacts) Identity {
	claimed := env.AgentRole(from)
	proven, temporary, summary := false, false, f.DMARCSummary
	unverified := false
	switch f.Mode {
	case "none":
		proven, unverified = true, true
	case "dmarc":
		// DMARC passes; or the domain publishes no record, and an identifier aligned
		// with it passed: the proof a record would have asked for. A broken record
		// proves nothing, so that its owner sees the error in explain.
		proven = f.DMARCResult == "pass" || (f.DMARCResult == "none" && f.DMARCAligned)
		temporary = f.DMARCTemporary
	case "dkim":
		proven, temporary, summary = f.DKIMAligned != "", f.DKIMTemporary, f.DKIMSummary
	case "trusted_relay":
		proven, summary = f.RelayDMARC == "pass" || f.RelayDKIMAligned != "", f.RelaySummary
	}
	if f.FromProblem != "" {
		// The From says two things: whatever passed, it did not prove this address.
		proven, temporary, unverified = false, false, false
		summary = "ambiguous From: " + f.FromProblem
	}
	if f.FromAddress != "" && !SameAddress(f.FromAddress, from) {
		proven, temporary, unverified = false, false, false
		summary = fmt.Sprintf("the authenticated From is %s, not %s", f.FromAddress, from)
	}
	if refuse, whyNot := dmarcRejects(env, from, f); refuse {
		filed := f.FromAddress
		if filed == "" {
			filed = from
		}
		domain := filed[strings.LastIndexByte(filed, '@')+1:]
		return Identity{Role: model.RoleEndUser, Refuse: true, RefusedDomain: strings.ToLower(domain), Step: model.TraceStep{Rule: "A1", Step: "refused",
			Detail: fmt.Sprintf("%s: the DMARC policy of %s is reject (dmarc_reject: refuse)", f.DMARCSummary, strings.ToLower(domain))}}
	} else if whyNot != "" {
		summary += " (" + whyNot + ")"
	}
	switch {
	case claimed == model.RoleEndUser:
		if unverified {
			summary += " (not required: agent_identity is none)"
		}
		return Identity{Role: model.RoleEndUser, Step: model.TraceStep{Rule: "A1", Step: "end user", Detail: summary}}
	case unverified:
		// The role is the config's word alone; what the mail did prove is kept beside it, so
		// that an operator sees what dmarc would have decided.
		return Identity{Role: claimed, Unverified: true, Step: model.TraceStep{Rule: "A1", Step: roleWord(claimed),
			Detail: "unverified (agent_identity is none, the From is believed): " + summary}}
	case proven:
		return Identity{Role: claimed, Step: model.TraceStep{Rule: "A1", Step: roleWord(claimed), Detail: summary}}
	case temporary:
		return Identity{Role: model.RoleEndUser, Defer: true, Step: model.TraceStep{Rule: "A1", Step: "deferred",
			Detail: fmt.Sprintf("%s is an agent address and DNS could not tell whether the mail proves it: %s", from, summary)}}
	}
	return Identity{Role: model.RoleEndUser, Step: model.TraceStep{Rule: "A1", Step: "end user",
		Detail: fmt.Sprintf("spoofed agent: %s (%s is an agent address, agent_identity=%s)", summary, from, f.Mode)}}
}

func roleWord(role model.Role) string {
	if role == model.RoleLightAgent {
		return "light agent"
	}
	return "agent"
}
