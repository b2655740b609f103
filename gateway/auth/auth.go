// Package auth finds out who really sent a mail: DKIM (RFC 6376), SPF (RFC 7208) and
// DMARC (RFC 7489) checked here, or Authentication-Results (RFC 8601) from a trusted MTA
// in front. It measures and reports; whether a result is enough to make the sender an
// agent is docs/rules.md A1's question, answered by gateway/rules.
package auth

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"strings"
	"sync"
	"time"

	"blitiri.com.ar/go/spf"
	"github.com/emersion/go-msgauth/authres"
	"github.com/emersion/go-msgauth/dkim"
	"github.com/emersion/go-msgauth/dmarc"

	"github.com/deskgate/deskgate/gateway/addr"
	"github.com/deskgate/deskgate/gateway/rules"
)

// MaxSignatures is how many DKIM signatures of one message are verified; the rest are
// reported as not checked. Real mail has one to three.
const MaxSignatures = 5

// Modes of authentication.agent_identity.
const (
	ModeDMARC        = "dmarc"
	ModeDKIM         = "dkim"
	ModeTrustedRelay = "trusted_relay"
	ModeNone         = "none"
)

// Input is one received mail and how it arrived.
type Input struct {
	Raw []byte
	// Author is the From address that deskgate files the mail under.
	Author   string
	ClientIP net.IP // nil on LMTP: Postfix talked to the client, not us
	Helo     string
	MailFrom string
	LMTP     bool
}

// Checker checks mail against DNS, within a time budget per message.
type Checker struct {
	Resolver Resolver
	// ResolverAddress is the authentication.dns_resolver the Resolver was made for.
	ResolverAddress string
	Timeout         time.Duration
	// TrustedIDs are the authserv-ids whose Authentication-Results count (on LMTP).
	TrustedIDs []string
	Mode       string
}

// SPFResult is the SPF check of the MAIL FROM (or HELO) domain.
type SPFResult struct {
	Result string // pass, fail, softfail, neutral, none, temperror, permerror
	Domain string
	Helo   bool // Domain is the HELO name: MAIL FROM was <>
	Reason string
}

// DKIMResult is one signature.
type DKIMResult struct {
	Result   string // pass, fail, neutral, temperror, permerror
	Domain   string
	Selector string
	Reason   string
}

// DMARCResult is the DMARC evaluation of the From domain.
type DMARCResult struct {
	Result string // pass, fail, none, temperror, permerror
	Policy string // the policy that applies to the From domain: none, quarantine, reject
	// Percent is the record's pct=, 100 when it has none.
	Percent int
	// RecordDomain is where the record was found: the From domain or its
	// organizational domain.
	RecordDomain          string
	StrictDKIM, StrictSPF bool
	Reason                string
	// Aligned is set when an aligned identifier passed, whether or not a record exists.
	Aligned string // "dkim", "spf" or ""
	// AlignedDKIM is the d= of a valid signature aligned with the From domain.
	AlignedDKIM string
	// DKIMTemporary: no aligned signature passed, but one might have, had DNS answered.
	DKIMTemporary bool
	// Temporary: nothing aligned passed, but something might have, had DNS answered.
	Temporary bool
	// SPFUnchecked: SPF could not be checked (LMTP) and its pass could have been
	// aligned, so a fail is short of proof.
	SPFUnchecked bool
}

// RelayResult is what the trusted MTA in front reported (trusted_relay).
type RelayResult struct {
	AuthservID string
	DMARC      string // its dmarc= result for our From domain, "" if it gave none
	DKIMPass   string // a d= of its dkim=pass results aligned with the From domain
	Reason     string // why nothing counted
}

// Result is everything deskgate found out about one mail.
type Result struct {
	Mode  string
	From  HeaderFrom
	SPF   SPFResult
	DKIM  []DKIMResult
	DMARC DMARCResult
	Relay *RelayResult
	// Unchecked counts DKIM signatures beyond MaxSignatures.
	Unchecked int
}

// Check runs every check that applies to in, within c.Timeout. It never fails: what
// could not be found out is a temperror or permerror in the result.
func (c *Checker) Check(ctx context.Context, in Input) *Result {
	timeout := c.Timeout
	if timeout <= 0 {
		timeout = 10 * time.Second
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()

	fields := headerFields(in.Raw)
	res := &Result{Mode: c.Mode, From: readFrom(fields, in.Author)}
	if c.Mode == ModeTrustedRelay {
		rr := c.relayResults(fields, res.From, in.LMTP)
		res.Relay = &rr
	}

	var wg sync.WaitGroup
	wg.Add(3)
	go func() { defer wg.Done(); res.SPF = c.checkSPF(ctx, in) }()
	go func() { defer wg.Done(); res.DKIM, res.Unchecked = c.checkDKIM(ctx, in.Raw, fields) }()
	var rec *dmarc.Record
	var recErr error
	go func() {
		defer wg.Done()
		// An ambiguous From proves nobody, but the mail is still filed under its first
		// address (in.Author): that domain's policy says what to do with mail that fails
		// DMARC for it, and an ambiguous From fails it (RFC 7489 6.6.1).
		if d := policyDomain(res.From, in.Author); d != "" {
			rec, res.DMARC.RecordDomain, recErr = c.lookupDMARC(ctx, d)
		}
	}()
	wg.Wait()
	res.DMARC = evaluateDMARC(res, rec, res.DMARC.RecordDomain, recErr, in.Author)
	if in.ClientIP == nil && res.DMARC.Result == "fail" {
		// Over LMTP the MTA in front saw the client; deskgate did not. With MAIL FROM <>
		// SPF would have checked the client's HELO name, which nobody passed on.
		d := domainOf(in.MailFrom)
		res.DMARC.SPFUnchecked = d == "" || Aligned(d, res.From.Domain, res.DMARC.StrictSPF)
	}
	return res
}

func (c *Checker) checkSPF(ctx context.Context, in Input) SPFResult {
	if in.ClientIP == nil {
		return SPFResult{Result: "none", Reason: "no client IP (LMTP)"}
	}
	domain, isHelo := domainOf(in.MailFrom), false
	if strings.TrimSpace(in.MailFrom) == "" {
		domain, isHelo = strings.ToLower(strings.TrimSuffix(in.Helo, ".")), true
	}
	if domain == "" {
		return SPFResult{Result: "none", Reason: "no domain to check"}
	}
	sender := in.MailFrom
	if isHelo {
		sender = "postmaster@" + domain
	}
	r, err := spf.CheckHostWithSender(in.ClientIP, in.Helo, sender,
		spf.WithContext(ctx), spf.WithResolver(c.Resolver))
	out := SPFResult{Result: string(r), Domain: domain, Helo: isHelo}
	if err != nil && r != spf.Pass {
		out.Reason = err.Error()
	}
	return out
}

func (c *Checker) lookupTXT(ctx context.Context) func(string) ([]string, error) {
	return func(name string) ([]string, error) {
		txts, err := c.Resolver.LookupTXT(ctx, name)
		if err != nil {
			// go-msgauth tells temporary from permanent DNS failures by net.Error.
			return nil, err
		}
		return txts, nil
	}
}

func (c *Checker) checkDKIM(ctx context.Context, raw []byte, fields []field) ([]DKIMResult, int) {
	sigs := fieldsNamed(fields, "DKIM-Signature")
	if len(sigs) == 0 {
		return nil, 0
	}
	unchecked := max(0, len(sigs)-MaxSignatures)
	verifs, err := dkim.VerifyWithOptions(bytes.NewReader(raw), &dkim.VerifyOptions{
		LookupTXT: c.lookupTXT(ctx), MaxVerifications: MaxSignatures,
	})
	out := make([]DKIMResult, 0, min(len(sigs), MaxSignatures))
	for i, s := range sigs[:min(len(sigs), MaxSignatures)] {
		tags := tagList(s.value)
		r := DKIMResult{Domain: strings.ToLower(tags["d"]), Selector: tags["s"]}
		switch {
		case err != nil && !errors.Is(err, dkim.ErrTooManySignatures):
			r.Result, r.Reason = "permerror", err.Error()
		case i >= len(verifs):
			r.Result, r.Reason = "permerror", "not verified"
		default:
			v := verifs[i]
			if v.Domain != "" {
				r.Domain = strings.ToLower(v.Domain)
			}
			switch {
			case v.Err == nil:
				r.Result = "pass"
			case dkim.IsTempFail(v.Err):
				r.Result, r.Reason = "temperror", trimPrefix(v.Err.Error())
			case dkim.IsPermFail(v.Err):
				r.Result, r.Reason = "permerror", trimPrefix(v.Err.Error())
			default:
				r.Result, r.Reason = "fail", trimPrefix(v.Err.Error())
			}
		}
		if r.Result != "pass" && ctx.Err() != nil {
			r.Result, r.Reason = "temperror", "authentication.timeout reached"
		}
		out = append(out, r)
	}
	return out, unchecked
}

func trimPrefix(s string) string { return strings.TrimPrefix(s, "dkim: ") }

// lookupDMARC finds the DMARC record for domain, falling back to its organizational
// domain (RFC 7489 6.6.3).
func (c *Checker) lookupDMARC(ctx context.Context, domain string) (*dmarc.Record, string, error) {
	opts := &dmarc.LookupOptions{LookupTXT: c.lookupTXT(ctx)}
	rec, err := dmarc.LookupWithOptions(domain, opts)
	if errors.Is(err, dmarc.ErrNoPolicy) {
		if org := OrgDomain(domain); org != domain {
			rec, err = dmarc.LookupWithOptions(org, opts)
			return rec, org, err
		}
	}
	return rec, domain, err
}

// policyDomain is the domain whose DMARC record applies to a mail: the From's, or for an
// ambiguous From the domain of the address the mail is filed under.
func policyDomain(from HeaderFrom, author string) string {
	if from.Problem == "" {
		return from.Domain
	}
	return domainOf(author)
}

// applyPolicy records the policy that rec, found at recordDomain, sets for mail from domain:
// p=, or sp= when the record is the organizational domain's; and pct=, 100 when absent.
func (out *DMARCResult) applyPolicy(rec *dmarc.Record, recordDomain, domain string) {
	out.Policy = string(rec.Policy)
	if recordDomain != domain && rec.SubdomainPolicy != "" {
		out.Policy = string(rec.SubdomainPolicy)
	}
	out.Percent = 100
	if rec.Percent != nil {
		out.Percent = *rec.Percent
	}
}

func evaluateDMARC(res *Result, rec *dmarc.Record, recordDomain string, recErr error, author string) DMARCResult {
	out := DMARCResult{RecordDomain: recordDomain}
	if res.From.Problem != "" {
		out.Result, out.Reason = "permerror", res.From.Problem
		if recErr == nil && rec != nil {
			out.applyPolicy(rec, recordDomain, domainOf(author))
		}
		return out
	}
	from := res.From.Domain
	switch {
	case recErr == nil && rec != nil:
		out.StrictDKIM = rec.DKIMAlignment == dmarc.AlignmentStrict
		out.StrictSPF = rec.SPFAlignment == dmarc.AlignmentStrict
		out.applyPolicy(rec, recordDomain, from)
	case errors.Is(recErr, dmarc.ErrNoPolicy):
		out.Result, out.Reason = "none", "no DMARC record"
	case dmarc.IsTempFail(recErr), isTemporary(recErr):
		out.Result, out.Reason = "temperror", "DMARC record lookup: "+recErr.Error()
	default:
		out.Result, out.Reason = "permerror", "DMARC record of "+recordDomain+": "+strings.TrimPrefix(fmt.Sprint(recErr), "dmarc: ")
	}
	unsure := out.Result == "temperror"
	for _, d := range res.DKIM {
		pass, temporary := alignment(d.Result, d.Domain, from, out.StrictDKIM, unsure)
		if pass {
			out.AlignedDKIM = d.Domain
			break
		}
		out.DKIMTemporary = out.DKIMTemporary || temporary
	}
	spfPass, spfTemporary := alignment(res.SPF.Result, res.SPF.Domain, from, out.StrictSPF, unsure)
	switch {
	case out.AlignedDKIM != "":
		out.Aligned = "dkim"
	case spfPass:
		out.Aligned = "spf"
	}
	out.Temporary = out.Aligned == "" && (out.DKIMTemporary || spfTemporary)

	switch {
	case out.Result == "none" || out.Result == "permerror":
		// No policy to apply; the alignment found is still reported.
	case out.Aligned != "":
		out.Result, out.Reason = "pass", ""
	case out.Temporary || unsure:
		out.Result = "temperror"
		if out.Reason == "" {
			out.Reason = "an aligned check failed temporarily"
		}
	default:
		out.Result = "fail"
	}
	return out
}

// alignment tells whether one check (SPF or a DKIM signature) passed for a domain aligned
// with the From domain, or might have: temporary when it failed temporarily, or when it
// passed aligned only in the relaxed sense and the record that says which could not be
// read (unsure).
func alignment(result, domain, from string, strict, unsure bool) (pass, temporary bool) {
	switch {
	case !Aligned(domain, from, strict && !unsure):
		return false, false
	case result == "temperror":
		return false, true
	case result != "pass":
		return false, false
	case unsure && !Aligned(domain, from, true):
		return false, true
	}
	return true, false
}

func isTemporary(err error) bool {
	var de *net.DNSError
	if errors.As(err, &de) {
		return de.Temporary()
	}
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

func domainOf(address string) string {
	address = strings.Trim(strings.TrimSpace(address), "<>")
	at := strings.LastIndexByte(address, '@')
	if at < 0 {
		return ""
	}
	return asciiDomain(address[at+1:])
}

// relayResults reads the Authentication-Results that the trusted MTA in front put at
// the top of the message. Only the leading run of such fields counts: anything below
// the first field the relay did not add (its own Received line, the sender's headers)
// was in the message when the relay got it, and anybody can write that.
func (c *Checker) relayResults(fields []field, from HeaderFrom, lmtp bool) RelayResult {
	var out RelayResult
	if !lmtp {
		out.Reason = "Authentication-Results count only on LMTP, from the MTA in front"
		return out
	}
	if from.Problem != "" {
		out.Reason = from.Problem
		return out
	}
	for _, f := range fields {
		if !strings.EqualFold(f.name, "Authentication-Results") {
			break
		}
		id, results, err := authres.Parse(stripComments(f.value))
		if !c.trusted(id) {
			break
		}
		if out.AuthservID == "" {
			out.AuthservID = id
		}
		if err != nil && len(results) == 0 {
			continue
		}
		for _, r := range results {
			switch r := r.(type) {
			case *authres.DMARCResult:
				if strings.EqualFold(strings.TrimSuffix(r.From, "."), from.Domain) && (out.DMARC == "" || r.Value == authres.ResultPass) {
					out.DMARC = string(r.Value)
				}
			case *authres.DKIMResult:
				d := r.Domain
				if d == "" {
					d = domainOf(r.Identifier)
				}
				if r.Value == authres.ResultPass && Aligned(d, from.Domain, false) && out.DKIMPass == "" {
					out.DKIMPass = strings.ToLower(d)
				}
			}
		}
	}
	if out.AuthservID == "" {
		out.Reason = "no Authentication-Results of a trusted_authserv_id at the top of the message"
	}
	return out
}

func (c *Checker) trusted(id string) bool {
	for _, t := range c.TrustedIDs {
		if strings.EqualFold(strings.TrimSpace(t), id) {
			return true
		}
	}
	return false
}

// Header is the value of the Authentication-Results field deskgate adds on top of the
// stored message (RFC 8601), authserv-id hostname.
func (r *Result) Header(hostname string) string {
	var results []authres.Result
	if r.Relay != nil && r.Relay.AuthservID != "" {
		results = append(results, &authres.GenericResult{Method: "x-trusted-relay", Value: authres.ResultPass,
			Params: map[string]string{"policy.authserv-id": r.Relay.AuthservID}})
	}
	spfParams := map[string]string{}
	if r.SPF.Domain != "" {
		if r.SPF.Helo {
			spfParams["smtp.helo"] = r.SPF.Domain
		} else {
			spfParams["smtp.mailfrom"] = r.SPF.Domain
		}
	}
	results = append(results, &authres.GenericResult{Method: "spf", Value: authres.ResultValue(r.SPF.Result), Params: spfParams})
	if len(r.DKIM) == 0 {
		results = append(results, &authres.DKIMResult{Value: authres.ResultNone})
	}
	for _, d := range r.DKIM {
		results = append(results, &authres.GenericResult{Method: "dkim", Value: authres.ResultValue(d.Result),
			Params: map[string]string{"header.d": d.Domain, "header.s": d.Selector}})
	}
	dm := map[string]string{}
	if r.From.Domain != "" {
		dm["header.from"] = r.From.Domain
	}
	if r.DMARC.Policy != "" {
		dm["policy.dmarc"] = r.DMARC.Policy
	}
	results = append(results, &authres.GenericResult{Method: "dmarc", Value: authres.ResultValue(r.DMARC.Result), Params: dm})
	return authres.Format(hostname, results)
}

// Facts is what the rules need to decide A1 from this result.
func (r *Result) Facts() rules.AuthFacts {
	// The rules compare the From with the desk's canonical author, so the From goes to
	// them in the same form, whether the header wrote its domain in A-labels or NFD.
	fromAddress := r.From.Address
	if c, err := addr.Canonical(fromAddress); err == nil {
		fromAddress = c
	}
	f := rules.AuthFacts{Mode: r.Mode, FromAddress: fromAddress, FromProblem: r.From.Problem,
		DMARCResult: r.DMARC.Result, DMARCAligned: r.DMARC.Aligned != "", DMARCTemporary: r.DMARC.Temporary,
		DMARCSummary: r.dmarcSummary(), DMARCPolicy: r.DMARC.Policy, DMARCPercent: r.DMARC.Percent,
		DMARCSPFUnchecked: r.DMARC.SPFUnchecked, DKIMAligned: r.DMARC.AlignedDKIM, DKIMTemporary: r.DMARC.DKIMTemporary}
	if f.DKIMAligned != "" {
		f.DKIMSummary = fmt.Sprintf("dkim=pass header.d=%s header.from=%s", f.DKIMAligned, r.From.Domain)
	} else {
		f.DKIMSummary = r.dkimSummary()
	}
	if rr := r.Relay; rr != nil {
		f.RelayDMARC, f.RelayDKIMAligned = rr.DMARC, rr.DKIMPass
		switch {
		case rr.DMARC == "pass":
			f.RelaySummary = fmt.Sprintf("dmarc=pass header.from=%s (Authentication-Results of %s)", r.From.Domain, rr.AuthservID)
		case rr.DKIMPass != "":
			f.RelaySummary = fmt.Sprintf("dkim=pass header.d=%s header.from=%s (Authentication-Results of %s)", rr.DKIMPass, r.From.Domain, rr.AuthservID)
		case rr.Reason != "":
			f.RelaySummary = "trusted relay: " + rr.Reason
		default:
			dm := rr.DMARC
			if dm == "" {
				dm = "none"
			}
			f.RelaySummary = fmt.Sprintf("dmarc=%s header.from=%s, no aligned dkim=pass (Authentication-Results of %s)", dm, r.From.Domain, rr.AuthservID)
		}
	}
	return f
}

func (r *Result) dmarcSummary() string {
	if r.From.Problem != "" {
		return "dmarc=permerror (" + r.From.Problem + ")"
	}
	s := "dmarc=" + r.DMARC.Result
	if r.DMARC.Policy != "" {
		s += " (p=" + r.DMARC.Policy
		if r.DMARC.Percent < 100 {
			s += fmt.Sprintf(" pct=%d", r.DMARC.Percent)
		}
		s += ")"
	}
	s += " header.from=" + r.From.Domain
	switch {
	case r.DMARC.Aligned != "":
		s += ", aligned " + r.DMARC.Aligned + "=pass"
		if r.DMARC.Result == "none" {
			s += " (no DMARC record: relaxed alignment)"
		}
	default:
		s += fmt.Sprintf(", spf=%s", r.SPF.Result)
		if r.SPF.Domain != "" {
			s += " smtp.mailfrom=" + r.SPF.Domain
		}
		s += ", " + r.dkimSummary()
	}
	if r.DMARC.Reason != "" && r.DMARC.Aligned == "" {
		s += " (" + r.DMARC.Reason + ")"
	}
	return s
}

func (r *Result) dkimSummary() string {
	if len(r.DKIM) == 0 {
		return "dkim=none (no signature)"
	}
	parts := make([]string, 0, len(r.DKIM))
	for _, d := range r.DKIM {
		p := fmt.Sprintf("dkim=%s header.d=%s", d.Result, orNone(d.Domain))
		if d.Result == "pass" && !Aligned(d.Domain, r.From.Domain, r.DMARC.StrictDKIM) {
			p += " (not aligned with " + orNone(r.From.Domain) + ")"
		} else if d.Reason != "" {
			p += " (" + d.Reason + ")"
		}
		parts = append(parts, p)
	}
	if r.Unchecked > 0 {
		parts = append(parts, fmt.Sprintf("%d more signatures not checked", r.Unchecked))
	}
	return strings.Join(parts, ", ")
}

func orNone(s string) string {
	if s == "" {
		return "(none)"
	}
	return s
}

// ModeResult is the one result that the mode decides by, for /metrics; f is r.Facts().
func (r *Result) ModeResult(f rules.AuthFacts) string {
	switch f.Mode {
	case ModeDKIM:
		switch {
		case f.DKIMAligned != "":
			return "pass"
		case f.DKIMTemporary:
			return "temperror"
		case len(r.DKIM) == 0:
			return "none"
		}
		return "fail"
	case ModeTrustedRelay:
		if f.RelayDMARC == "pass" || f.RelayDKIMAligned != "" {
			return "pass"
		}
		return "none"
	}
	return f.DMARCResult
}
