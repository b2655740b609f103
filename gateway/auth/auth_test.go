package auth

import (
	"bytes"
	"context"
	"crypto"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"fmt"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-msgauth/dkim"

	"github.com/deskgate/deskgate/gateway/model"
	"github.com/deskgate/deskgate/gateway/rules"
	"github.com/deskgate/deskgate/internal/dnstest"
)

var loopback = net.ParseIP("127.0.0.1")

// zone is a DNS server with the records of the test domains.
type zone struct {
	*dnstest.Server
	rsaKey *rsa.PrivateKey
	edKey  ed25519.PrivateKey
}

var sharedRSA *rsa.PrivateKey

func newZone(t *testing.T) *zone {
	t.Helper()
	srv, err := dnstest.Start()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(srv.Close)
	if sharedRSA == nil {
		sharedRSA, err = rsa.GenerateKey(rand.Reader, 2048)
		if err != nil {
			t.Fatal(err)
		}
	}
	_, ed, _ := ed25519.GenerateKey(rand.Reader)
	return &zone{Server: srv, rsaKey: sharedRSA, edKey: ed}
}

// publish puts the RSA key under sel._domainkey.domain and the Ed25519 one under
// ed-sel.
func (z *zone) publish(domain, sel string) {
	der, _ := x509.MarshalPKIXPublicKey(&z.rsaKey.PublicKey)
	z.TXT(sel+"._domainkey."+domain, "v=DKIM1; k=rsa; p="+base64.StdEncoding.EncodeToString(der))
	z.TXT("ed-"+sel+"._domainkey."+domain, "v=DKIM1; k=ed25519; p="+base64.StdEncoding.EncodeToString(z.edKey.Public().(ed25519.PublicKey)))
}

func (z *zone) sign(t testing.TB, msg, domain, sel string, ed bool) []byte {
	t.Helper()
	var signer crypto.Signer = z.rsaKey
	if ed {
		signer, sel = z.edKey, "ed-"+sel
	}
	var out bytes.Buffer
	err := dkim.Sign(&out, strings.NewReader(msg), &dkim.SignOptions{Domain: domain, Selector: sel, Signer: signer,
		HeaderCanonicalization: dkim.CanonicalizationRelaxed, BodyCanonicalization: dkim.CanonicalizationRelaxed})
	if err != nil {
		t.Fatal(err)
	}
	return out.Bytes()
}

func (z *zone) checker(mode string) *Checker {
	return &Checker{Resolver: NewResolver(z.Addr), Timeout: 3 * time.Second, Mode: mode, TrustedIDs: []string{"mx.example.com"}}
}

func msgText(from, body string) string {
	return "From: " + from + "\r\nTo: support@example.com\r\nSubject: hello\r\nMessage-ID: <m1@x>\r\n\r\n" + body + "\r\n"
}

func TestA1_DMARC(t *testing.T) {
	z := newZone(t)
	z.publish("example.com", "s1")
	z.TXT("_dmarc.example.com", "v=DMARC1; p=reject")
	z.TXT("example.com", "v=spf1 -all")
	z.publish("evil.test", "s1")
	z.TXT("spf-ok.test", "v=spf1 ip4:127.0.0.1 -all")
	z.TXT("_dmarc.spf-ok.test", "v=DMARC1; p=reject")
	c := z.checker(ModeDMARC)
	alice := msgText("Alice <alice@example.com>", "hi")

	cases := []struct {
		name      string
		raw       []byte
		from      string
		mailFrom  string
		ip        net.IP
		dmarc     string
		proven    bool
		temporary bool
		summary   string
	}{
		{"signed for example.com (RSA)", z.sign(t, alice, "example.com", "s1", false), "alice@example.com", "alice@example.com", loopback, "pass", true, false, "dmarc=pass (p=reject) header.from=example.com, aligned dkim=pass"},
		{"signed for example.com (Ed25519)", z.sign(t, alice, "example.com", "s1", true), "alice@example.com", "alice@example.com", loopback, "pass", true, false, "aligned dkim=pass"},
		{"unsigned under p=reject", []byte(alice), "alice@example.com", "alice@example.com", loopback, "fail", false, false, "dmarc=fail (p=reject) header.from=example.com, spf=fail"},
		{"signed by evil.test", z.sign(t, alice, "evil.test", "s1", false), "alice@example.com", "x@evil.test", loopback, "fail", false, false, "dkim=pass header.d=evil.test (not aligned with example.com)"},
		{"SPF alone", []byte(msgText("bo@spf-ok.test", "hi")), "bo@spf-ok.test", "bo@spf-ok.test", loopback, "pass", true, false, "aligned spf=pass"},
		{"SPF pass for another domain", []byte(msgText("alice@example.com", "hi")), "alice@example.com", "bo@spf-ok.test", loopback, "fail", false, false, "spf=pass smtp.mailfrom=spf-ok.test"},
		{"LMTP: no IP, no SPF", []byte(msgText("bo@spf-ok.test", "hi")), "bo@spf-ok.test", "bo@spf-ok.test", nil, "fail", false, false, "spf=none"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			r := c.Check(context.Background(), Input{Raw: tc.raw, Author: tc.from, ClientIP: tc.ip, MailFrom: tc.mailFrom, Helo: "client.test"})
			f := r.Facts()
			if r.DMARC.Result != tc.dmarc || dmarcProves(f) != tc.proven || f.DMARCTemporary != tc.temporary {
				t.Errorf("dmarc=%s proven=%v temp=%v, want %s %v %v (%s)", r.DMARC.Result, dmarcProves(f), f.DMARCTemporary, tc.dmarc, tc.proven, tc.temporary, f.DMARCSummary)
			}
			if !strings.Contains(f.DMARCSummary, tc.summary) {
				t.Errorf("summary %q lacks %q", f.DMARCSummary, tc.summary)
			}
			h := r.Header("mx.deskgate.test")
			if !strings.HasPrefix(h, "mx.deskgate.test;") || !strings.Contains(h, "dmarc="+tc.dmarc) {
				t.Errorf("Authentication-Results: %s", h)
			}
		})
	}
}

func TestA1_BodyChangedAfterSigning(t *testing.T) {
	z := newZone(t)
	z.publish("example.com", "s1")
	z.TXT("_dmarc.example.com", "v=DMARC1; p=reject")
	signed := z.sign(t, msgText("alice@example.com", "Please refund the customer."), "example.com", "s1", false)
	tampered := bytes.Replace(signed, []byte("refund"), []byte("charge"), 1)
	r := z.checker(ModeDKIM).Check(context.Background(), Input{Raw: tampered, Author: "alice@example.com"})
	if len(r.DKIM) != 1 || r.DKIM[0].Result != "fail" || (r.Facts().DKIMAligned != "") {
		t.Fatalf("tampered body: %+v", r.DKIM)
	}
	if r.DMARC.Result != "fail" {
		t.Errorf("dmarc=%s", r.DMARC.Result)
	}
}

func TestA1_DKIMMode(t *testing.T) {
	z := newZone(t)
	z.publish("mail.example.com", "s1")
	z.publish("example.com", "s1")
	z.TXT("_dmarc.example.com", "v=DMARC1; p=none")
	z.publish("strict.test", "s1")
	z.publish("mail.strict.test", "s1")
	z.TXT("_dmarc.strict.test", "v=DMARC1; p=reject; adkim=s")
	c := z.checker(ModeDKIM)
	check := func(from, d string) (bool, string) {
		r := c.Check(context.Background(), Input{Raw: z.sign(t, msgText(from, "x"), d, "s1", false), Author: from})
		f := r.Facts()
		return (f.DKIMAligned != ""), f.DKIMSummary
	}
	if ok, s := check("alice@example.com", "mail.example.com"); !ok {
		t.Errorf("relaxed: a subdomain's signature must align: %s", s)
	}
	if ok, s := check("alice@strict.test", "mail.strict.test"); ok {
		t.Errorf("adkim=s: a subdomain's signature must not align: %s", s)
	}
	if ok, s := check("alice@strict.test", "strict.test"); !ok {
		t.Errorf("adkim=s: the exact domain aligns: %s", s)
	}
	r := c.Check(context.Background(), Input{Raw: []byte(msgText("alice@example.com", "x")), Author: "alice@example.com"})
	if f := r.Facts(); (f.DKIMAligned != "") || f.DKIMSummary != "dkim=none (no signature)" || r.ModeResult(r.Facts()) != "none" {
		t.Errorf("unsigned: %+v %s", f, r.ModeResult(r.Facts()))
	}
}

func TestA1_AlignmentWithMultiLabelSuffixes(t *testing.T) {
	cases := []struct {
		a, from string
		strict  bool
		want    bool
	}{
		{"mail.example.co.uk", "example.co.uk", false, true},
		{"mail.example.co.uk", "example.co.uk", true, false},
		{"example.co.uk", "other.co.uk", false, false}, // co.uk is a public suffix, not an organization
		{"co.uk", "example.co.uk", false, false},
		{"EXAMPLE.com.", "example.com", true, true},
		{"a.b.example.com", "c.example.com", false, true},
		{"example.com", "example.net", false, false},
		{"", "example.com", false, false},
		{"foo.github.io", "bar.github.io", false, false}, // private suffix section
	}
	for _, c := range cases {
		if got := Aligned(c.a, c.from, c.strict); got != c.want {
			t.Errorf("Aligned(%q, %q, strict=%v) = %v", c.a, c.from, c.strict, got)
		}
	}
	if OrgDomain("mail.example.co.uk") != "example.co.uk" || OrgDomain("x.y.example.com") != "example.com" {
		t.Error("organizational domain")
	}
}

func TestA1_OrganizationalDomainFallback(t *testing.T) {
	z := newZone(t)
	z.publish("example.co.uk", "s1")
	z.TXT("_dmarc.example.co.uk", "v=DMARC1; p=none; sp=reject")
	c := z.checker(ModeDMARC)
	raw := []byte(msgText("agent@help.example.co.uk", "x"))
	r := c.Check(context.Background(), Input{Raw: raw, Author: "agent@help.example.co.uk"})
	if r.DMARC.RecordDomain != "example.co.uk" || r.DMARC.Policy != "reject" || r.DMARC.Result != "fail" {
		t.Errorf("fallback: %+v", r.DMARC)
	}
	signed := z.sign(t, string(raw), "example.co.uk", "s1", false)
	if r := c.Check(context.Background(), Input{Raw: signed, Author: "agent@help.example.co.uk"}); r.DMARC.Result != "pass" {
		t.Errorf("org-domain signature under relaxed alignment: %+v", r.DMARC)
	}
}

func TestA1_NoRecordAlignedPassStillProves(t *testing.T) {
	z := newZone(t)
	z.publish("norecord.test", "s1")
	c := z.checker(ModeDMARC)
	r := c.Check(context.Background(), Input{Raw: z.sign(t, msgText("a@norecord.test", "x"), "norecord.test", "s1", false), Author: "a@norecord.test"})
	if f := r.Facts(); r.DMARC.Result != "none" || !dmarcProves(f) || !strings.Contains(f.DMARCSummary, "no DMARC record") {
		t.Errorf("%+v %s", r.DMARC, f.DMARCSummary)
	}
	r = c.Check(context.Background(), Input{Raw: []byte(msgText("a@norecord.test", "x")), Author: "a@norecord.test"})
	if dmarcProves(r.Facts()) {
		t.Error("nothing passed, nothing proven")
	}
}

func TestA1_DNSFailures(t *testing.T) {
	z := newZone(t)
	z.publish("example.com", "s1")
	z.TXT("_dmarc.example.com", "v=DMARC1; p=reject")
	signed := z.sign(t, msgText("alice@example.com", "x"), "example.com", "s1", false)
	z.SetMode(dnstest.Drop)
	c := z.checker(ModeDMARC)
	c.Timeout = 1500 * time.Millisecond
	start := time.Now()
	r := c.Check(context.Background(), Input{Raw: signed, Author: "alice@example.com", ClientIP: loopback, MailFrom: "alice@example.com"})
	if took := time.Since(start); took > 3*time.Second {
		t.Errorf("a DNS server that never answers held the check for %s (timeout 1.5s)", took)
	}
	if f := r.Facts(); r.DMARC.Result != "temperror" || !f.DMARCTemporary || dmarcProves(f) {
		t.Errorf("hanging DNS: %+v", r.DMARC)
	}
	if r.SPF.Result != "temperror" || r.DKIM[0].Result != "temperror" {
		t.Errorf("spf=%s dkim=%+v", r.SPF.Result, r.DKIM)
	}

	z.SetMode(dnstest.ServFail)
	c.Resolver = NewResolver(z.Addr)
	r = c.Check(context.Background(), Input{Raw: signed, Author: "alice@example.com"})
	if r.DMARC.Result != "temperror" || !r.Facts().DMARCTemporary {
		t.Errorf("SERVFAIL: %+v", r.DMARC)
	}
}

func TestA1_HostileRecords(t *testing.T) {
	z := newZone(t)
	z.TXT("_dmarc.garbage.test", "v=DMARC1; p=maybe; adkim=x")
	// An SPF record that includes itself, and one that needs more than 10 lookups.
	z.TXT("loop.test", "v=spf1 include:loop.test -all")
	var many []string
	for i := range 15 {
		name := fmt.Sprintf("n%d.many.test", i)
		z.TXT(name, "v=spf1 -all")
		many = append(many, "include:"+name)
	}
	z.TXT("many.test", "v=spf1 "+strings.Join(many, " ")+" -all")
	z.TXT("huge.test", "v=spf1 "+strings.Repeat("ip4:10.0.0.1 ", 500)+"-all")
	c := z.checker(ModeDMARC)

	r := c.Check(context.Background(), Input{Raw: []byte(msgText("a@garbage.test", "x")), Author: "a@garbage.test"})
	if r.DMARC.Result != "permerror" || dmarcProves(r.Facts()) {
		t.Errorf("garbage DMARC record: %+v", r.DMARC)
	}
	for _, d := range []string{"loop.test", "many.test"} {
		r := c.Check(context.Background(), Input{Raw: []byte(msgText("a@"+d, "x")), Author: "a@" + d, ClientIP: loopback, MailFrom: "a@" + d})
		if r.SPF.Result != "permerror" {
			t.Errorf("%s: spf=%s (%s)", d, r.SPF.Result, r.SPF.Reason)
		}
	}
	r = c.Check(context.Background(), Input{Raw: []byte(msgText("a@huge.test", "x")), Author: "a@huge.test", ClientIP: loopback, MailFrom: "a@huge.test"})
	if r.SPF.Result != "fail" {
		t.Errorf("a huge SPF record (over TCP): spf=%s %s", r.SPF.Result, r.SPF.Reason)
	}
}

func TestA1_HostileSignatures(t *testing.T) {
	z := newZone(t)
	z.publish("example.com", "s1")
	signed := z.sign(t, msgText("alice@example.com", "x"), "example.com", "s1", false)
	var junk strings.Builder
	for i := range 50 {
		fmt.Fprintf(&junk, "DKIM-Signature: v=1; a=rsa-sha256; d=junk%d.test; s=s; h=from; bh=AAAA; b=AAAA\r\n", i)
	}
	hostile := []string{
		"DKIM-Signature: v=1; a=rsa-sha256; d=example.com; s=s1; h=from; l=0; bh=; b=\r\n",
		"DKIM-Signature: ;;;===;;\r\n",
		"DKIM-Signature: v=1; a=rsa-sha256; d=example.com; d=evil.test; s=s1; h=from; bh=x; b=y\r\n",
		"DKIM-Signature: v=1; a=rsa-sha1; d=example.com; s=s1; h=from; bh=x; b=y\r\n",
		"DKIM-Signature: v=1; a=rsa-sha256; d=" + strings.Repeat("a.", 200) + "com; s=s1; h=from; bh=x; b=y\r\n",
		"DKIM-Signature: \r\n",
		junk.String(),
	}
	c := z.checker(ModeDKIM)
	for i, h := range hostile {
		start := time.Now()
		r := c.Check(context.Background(), Input{Raw: []byte(h + msgText("alice@example.com", "x")), Author: "alice@example.com"})
		if took := time.Since(start); took > 3*time.Second {
			t.Errorf("hostile %d took %s", i, took)
		}
		if r.Facts().DKIMAligned != "" {
			t.Errorf("hostile %d proved alice: %+v", i, r.DKIM)
		}
		if len(r.DKIM) > MaxSignatures {
			t.Errorf("hostile %d: %d signatures verified", i, len(r.DKIM))
		}
	}
	r := c.Check(context.Background(), Input{Raw: []byte(junk.String() + string(signed)), Author: "alice@example.com"})
	if r.Unchecked != 46 || !strings.Contains(r.dkimSummary(), "46 more signatures not checked") {
		t.Errorf("51 signatures: unchecked=%d %s", r.Unchecked, r.dkimSummary())
	}
	if r.Facts().DKIMAligned != "" {
		t.Error("the valid signature came after the first five and must not have been checked")
	}
}

func TestA1_AmbiguousFrom(t *testing.T) {
	z := newZone(t)
	z.publish("x.test", "s1")
	z.TXT("_dmarc.x.test", "v=DMARC1; p=reject")
	c := z.checker(ModeDMARC)
	cases := []struct{ from, author, problem string }{
		{"alice@example.com <evil@x.test>", "alice@example.com", "From does not parse"},
		{"alice@example.com, evil@x.test", "alice@example.com", "From names 2 addresses"},
		{"\"Alice\" <evil@x.test>", "alice@example.com", "read as alice@example.com here but as evil@x.test"},
		{"=?utf-8?q?alice=40example=2Ecom?= <evil@x.test>", "evil@x.test", ""},
		// U+034F is mapped to nothing by IDNA: the domain is empty once in A-labels.
		{"alice@\u034f", "", "From has no domain"},
	}
	for _, tc := range cases {
		raw := z.sign(t, msgText(tc.from, "x"), "x.test", "s1", false)
		r := c.Check(context.Background(), Input{Raw: raw, Author: tc.author})
		if tc.problem == "" {
			if r.From.Problem != "" || r.From.Address != "evil@x.test" || r.DMARC.Result != "pass" {
				t.Errorf("%s: %+v %+v", tc.from, r.From, r.DMARC)
			}
			continue
		}
		if !strings.Contains(r.From.Problem, tc.problem) || r.DMARC.Result != "permerror" || dmarcProves(r.Facts()) {
			t.Errorf("%s: problem %q, dmarc %+v", tc.from, r.From.Problem, r.DMARC)
		}
	}
	twoFroms := "From: alice@example.com\r\n" + msgText("evil@x.test", "x")
	raw := z.sign(t, twoFroms, "x.test", "s1", false)
	if r := c.Check(context.Background(), Input{Raw: raw, Author: "alice@example.com"}); !strings.Contains(r.From.Problem, "2 From header fields") || dmarcProves(r.Facts()) {
		t.Errorf("two From fields: %+v", r.From)
	}
}

func TestA1_TrustedRelay(t *testing.T) {
	z := newZone(t)
	c := z.checker(ModeTrustedRelay)
	body := msgText("Alice <alice@example.com>", "x")
	trusted := "Authentication-Results: mx.example.com; dkim=pass (2048-bit key) header.d=example.com header.i=@example.com; dmarc=pass (p=reject dis=none) header.from=example.com\r\n"
	received := "Received: from client.test (client.test [192.0.2.1]) by mx.example.com (Postfix) with ESMTPS id 4Xy; Tue, 24 Nov 2026 10:00:00 +0000\r\n"
	forged := "Authentication-Results: mx.example.com; dmarc=pass header.from=example.com\r\n"
	cases := []struct {
		name   string
		raw    string
		lmtp   bool
		proven bool
		why    string
	}{
		{"trusted header on top", trusted + received + body, true, true, "dmarc=pass header.from=example.com (Authentication-Results of mx.example.com)"},
		{"only dkim=pass, aligned", "Authentication-Results: mx.example.com; dkim=pass header.d=mail.example.com\r\n" + received + body, true, true, "dkim=pass header.d=mail.example.com"},
		{"forged header below the relay's Received", received + forged + body, true, false, "no Authentication-Results of a trusted_authserv_id at the top"},
		{"relay says fail, forged pass below", "Authentication-Results: mx.example.com; dmarc=fail header.from=example.com\r\n" + received + forged + body, true, false, "dmarc=fail header.from=example.com"},
		{"untrusted authserv-id", strings.Replace(trusted, "mx.example.com", "mx.evil.test", 1) + body, true, false, "no Authentication-Results"},
		{"untrusted on top hides a trusted one", "Authentication-Results: mx.evil.test; none\r\n" + trusted + body, true, false, "no Authentication-Results"},
		{"over SMTP", trusted + received + body, false, false, "only on LMTP"},
		{"dmarc=pass for another From domain", strings.NewReplacer("=example.com", "=evil.test", "@example.com", "@evil.test").Replace(trusted) + body, true, false, "dmarc=none"},
		{"pass hidden in a comment", "Authentication-Results: mx.example.com; dmarc=fail (dmarc=pass) header.from=example.com (header.from=x)\r\n" + body, true, false, "dmarc=fail"},
		{"dkim=pass not aligned", "Authentication-Results: mx.example.com; dkim=pass header.d=evil.test\r\n" + body, true, false, "no aligned dkim=pass"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			r := c.Check(context.Background(), Input{Raw: []byte(tc.raw), Author: "alice@example.com", LMTP: tc.lmtp})
			f := r.Facts()
			if relayProves(f) != tc.proven || !strings.Contains(f.RelaySummary, tc.why) {
				t.Errorf("proven=%v %q; want %v, %q", relayProves(f), f.RelaySummary, tc.proven, tc.why)
			}
			if r.ModeResult(r.Facts()) != map[bool]string{true: "pass", false: "none"}[tc.proven] {
				t.Errorf("mode result %s", r.ModeResult(r.Facts()))
			}
		})
	}
}

func TestResolverCachesByTTL(t *testing.T) {
	z := newZone(t)
	z.TXT("cached.test", "v=spf1 -all")
	r := NewResolver(z.Addr)
	now := time.Unix(1e9, 0)
	r.now = func() time.Time { return now }
	ctx := context.Background()
	for range 3 {
		if txt, err := r.LookupTXT(ctx, "cached.test"); err != nil || len(txt) != 1 {
			t.Fatal(txt, err)
		}
	}
	if _, err := r.LookupTXT(ctx, "missing.cached.test"); !isNotFound(err) {
		t.Fatalf("NXDOMAIN: %v", err)
	}
	r.LookupTXT(ctx, "missing.cached.test")
	if q := z.Queries(); q != 2 {
		t.Errorf("%d queries for two names asked five times", q)
	}
	now = now.Add(301 * time.Second) // past the TTL of 300
	r.LookupTXT(ctx, "cached.test")
	if q := z.Queries(); q != 3 {
		t.Errorf("an expired answer was not asked again: %d queries", q)
	}
	long := strings.Repeat("k", 1000)
	z.TXT("long.test", long)
	if txt, err := r.LookupTXT(ctx, "long.test"); err != nil || len(txt) != 1 || txt[0] != long {
		t.Errorf("a 1000-byte TXT record (strings joined, over TCP): %d %v", len(txt), err)
	}
}

func isNotFound(err error) bool {
	de, ok := err.(*net.DNSError)
	return ok && de.IsNotFound
}

// dmarcProves is A1's verdict on f under agent_identity: dmarc, for a From that is an
// agent's address: the checks above feed the real decision.
func dmarcProves(f rules.AuthFacts) bool { return provesUnder("dmarc", f) }

func relayProves(f rules.AuthFacts) bool { return provesUnder("trusted_relay", f) }

func provesUnder(mode string, f rules.AuthFacts) bool {
	f.Mode = mode
	from := f.FromAddress
	if from == "" {
		from = "alice@example.com"
	}
	env := rules.Env{Agents: map[string]model.Role{strings.ToLower(from): model.RoleAgent}}
	return rules.Identify(env, from, f).Role == model.RoleAgent
}

func TestA1_AlignmentUnderAnUnknownRecord(t *testing.T) {
	cases := []struct {
		result, domain      string
		strict, unsure      bool
		wantPass, wantDefer bool
	}{
		{"pass", "example.com", false, false, true, false},
		{"pass", "mail.example.com", false, false, true, false},
		{"pass", "mail.example.com", true, false, false, false}, // adkim=s
		{"pass", "mail.example.com", false, true, false, true},  // the record might say s
		{"pass", "example.com", false, true, true, false},       // exact: aligned either way
		{"temperror", "example.com", false, false, false, true},
		{"fail", "example.com", false, true, false, false}, // nothing to wait for
		{"pass", "evil.test", false, true, false, false},
	}
	for _, c := range cases {
		pass, temporary := alignment(c.result, c.domain, "example.com", c.strict, c.unsure)
		if pass != c.wantPass || temporary != c.wantDefer {
			t.Errorf("%+v: pass=%v temporary=%v", c, pass, temporary)
		}
	}
}

// The facts A1's p=reject decision needs: the policy that applies to the From domain (sp=
// for a subdomain that has no record of its own), its pct=, and whether a missing SPF check
// (LMTP) leaves the fail unproven.
func TestA1_DMARCReject_PolicyFacts(t *testing.T) {
	z := newZone(t)
	z.TXT("_dmarc.example.com", "v=DMARC1; p=reject; sp=none")
	z.TXT("example.com", "v=spf1 -all")
	z.TXT("_dmarc.trial.test", "v=DMARC1; p=reject; pct=50")
	z.TXT("_dmarc.strict.test", "v=DMARC1; p=reject")
	c := z.checker(ModeDMARC)
	cases := []struct {
		name, from, mailFrom string
		ip                   net.IP
		policy               string
		pct                  int
		unchecked            bool
	}{
		{"p=reject, no pct", "alice@example.com", "x@evil.test", loopback, "reject", 100, false},
		{"a subdomain takes sp=", "bo@mail.example.com", "x@evil.test", loopback, "none", 100, false},
		{"pct=50", "bo@trial.test", "x@evil.test", loopback, "reject", 50, false},
		{"LMTP, MAIL FROM aligned: SPF might have passed", "bo@strict.test", "bo@strict.test", nil, "reject", 100, true},
		{"LMTP, MAIL FROM a subdomain: relaxed alignment", "bo@strict.test", "bounce@mail.strict.test", nil, "reject", 100, true},
		{"LMTP, MAIL FROM elsewhere: SPF could not align", "bo@strict.test", "x@evil.test", nil, "reject", 100, false},
		{"LMTP, MAIL FROM <>: the client's HELO is unknown", "bo@strict.test", "", nil, "reject", 100, true},
	}
	for _, tc := range cases {
		r := c.Check(context.Background(), Input{Raw: []byte(msgText(tc.from, "hi")), Author: tc.from, ClientIP: tc.ip, MailFrom: tc.mailFrom, Helo: "client.test", LMTP: tc.ip == nil})
		f := r.Facts()
		if f.DMARCResult != "fail" || f.DMARCPolicy != tc.policy || f.DMARCPercent != tc.pct || f.DMARCSPFUnchecked != tc.unchecked {
			t.Errorf("%s: dmarc=%s p=%q pct=%d spf unchecked=%v, want fail %q %d %v (%s)", tc.name, f.DMARCResult, f.DMARCPolicy,
				f.DMARCPercent, f.DMARCSPFUnchecked, tc.policy, tc.pct, tc.unchecked, f.DMARCSummary)
		}
	}
	if f := c.Check(context.Background(), Input{Raw: []byte(msgText("bo@trial.test", "hi")), Author: "bo@trial.test", ClientIP: loopback, MailFrom: "x@evil.test"}).Facts(); !strings.Contains(f.DMARCSummary, "(p=reject pct=50)") {
		t.Errorf("the summary does not name pct: %s", f.DMARCSummary)
	}
}
