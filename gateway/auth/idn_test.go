package auth

import (
	"context"
	"strings"
	"testing"
)

// The desk hands the author's address over in its canonical form (domain in U-labels),
// whichever form the From header has; DNS and DKIM's d= speak A-labels. A From at an
// internationalised domain still aligns and proves, written either way.
func TestA1_InternationalisedDomain(t *testing.T) {
	z := newZone(t)
	z.publish("xn--bcher-kva.test", "s1")
	z.TXT("_dmarc.xn--bcher-kva.test", "v=DMARC1; p=reject")
	c := z.checker(ModeDMARC)
	for _, from := range []string{"Jöe <jöe@xn--bcher-kva.test>", "Jöe <jöe@bücher.test>", "JÖE@BÜCHER.TEST"} {
		raw := z.sign(t, msgText(from, "hi"), "xn--bcher-kva.test", "s1", false)
		author := "jöe@bücher.test"
		if from == "JÖE@BÜCHER.TEST" {
			author = "JÖE@bücher.test"
		}
		r := c.Check(context.Background(), Input{Raw: raw, Author: author, MailFrom: author, Helo: "client.test"})
		f := r.Facts()
		if r.From.Problem != "" || r.DMARC.Result != "pass" || !dmarcProves(f) {
			t.Errorf("From: %s: problem %q, dmarc %s (%s), want an aligned pass", from, r.From.Problem, r.DMARC.Result, f.DMARCSummary)
		}
		// The rules get the From in the author's form, so that an A-label or NFD From is
		// not "another address" than the author (which made an agent a spoofed agent).
		if !strings.EqualFold(f.FromAddress, author) {
			t.Errorf("From: %s: the rules get FromAddress %q, want %q", from, f.FromAddress, author)
		}
	}
}
