package auth

import (
	"context"
	"net"
	"strings"
	"testing"

	"github.com/emersion/go-msgauth/authres"
)

// nxResolver answers every question with NXDOMAIN, so that fuzzing needs no network.
type nxResolver struct{}

func nx(name string) error { return &net.DNSError{Err: "no such host", Name: name, IsNotFound: true} }

func (nxResolver) LookupTXT(_ context.Context, n string) ([]string, error) { return nil, nx(n) }
func (nxResolver) LookupMX(_ context.Context, n string) ([]*net.MX, error) { return nil, nx(n) }
func (nxResolver) LookupIPAddr(_ context.Context, n string) ([]net.IPAddr, error) {
	return nil, nx(n)
}
func (nxResolver) LookupAddr(_ context.Context, n string) ([]string, error) { return nil, nx(n) }

// FuzzHeaders feeds hostile header blocks to everything this package parses: the From
// reading, DKIM-Signature tag lists, Authentication-Results with comments, and a whole
// check. Besides not panicking, a proof may only come from the header on top.
func FuzzHeaders(f *testing.F) {
	f.Add([]byte("Authentication-Results: mx.example.com; dmarc=pass header.from=example.com\r\nFrom: a@example.com\r\n\r\nx"))
	f.Add([]byte("Received: x\r\nAuthentication-Results: mx.example.com; dkim=pass (c) header.d=example.com\r\nFrom: a@example.com\r\n\r\n"))
	f.Add([]byte("DKIM-Signature: v=1; a=rsa-sha256; d=example.com; s=s; h=from; bh=AA==; b=AA==\r\nFrom: \"x\" <a@example.com>\r\n\r\nbody"))
	f.Add([]byte("From: alice@example.com <evil@x.test>\r\nFrom: b@c\r\n\r\n"))
	f.Add([]byte("Authentication-Results: mx.example.com; dmarc=fail (\"a\\\"(\" dmarc=pass) header.from=example.com\r\n\tfoo\r\n\r\n"))
	c := &Checker{Resolver: nxResolver{}, Mode: ModeTrustedRelay, TrustedIDs: []string{"mx.example.com"}}
	f.Fuzz(func(t *testing.T, raw []byte) {
		fields := headerFields(raw)
		from := readFrom(fields, "")
		if from.Problem == "" && (from.Domain == "" || !strings.Contains(from.Address, "@")) {
			t.Fatalf("a From without a domain passed: %+v", from)
		}
		for _, fl := range fields {
			tagList(fl.value)
			stripped := stripComments(fl.value)
			if i := commentOutsideQuotes(stripped); i >= 0 {
				t.Fatalf("stripComments left a comment at %d: %q -> %q", i, fl.value, stripped)
			}
			authres.Parse(stripped)
		}
		rr := c.relayResults(fields, from, true)
		if rr.DMARC == "pass" || rr.DKIMPass != "" {
			top := fields[0]
			id, _, _ := authres.Parse(stripComments(top.value))
			if !strings.EqualFold(top.name, "Authentication-Results") || !c.trusted(id) {
				t.Fatalf("proof taken from below the top: %+v", fields)
			}
		}
		res := c.Check(context.Background(), Input{Raw: raw, LMTP: true})
		if dmarcProves(res.Facts()) && from.Problem != "" {
			t.Fatalf("an ambiguous From proved by DMARC: %+v", res)
		}
	})
}

// commentOutsideQuotes is the index of a "(" outside quoted strings, or -1.
func commentOutsideQuotes(s string) int {
	quoted := false
	for i := 0; i < len(s); i++ {
		switch c := s[i]; {
		case c == '\\' && quoted:
			i++
		case c == '"':
			quoted = !quoted
		case c == '(' && !quoted:
			return i
		}
	}
	return -1
}
