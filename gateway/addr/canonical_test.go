package addr

import (
	"errors"
	"strings"
	"testing"
	"unicode/utf8"

	"golang.org/x/text/unicode/norm"
)

func TestCanonicalIsOneFormForEverySpelling(t *testing.T) {
	const want = "jöe@bücher.test"
	for _, given := range []string{
		"jöe@bücher.test",
		"jöe@BÜCHER.TEST",
		"jöe@xn--bcher-kva.test",
		"jöe@XN--BCHER-KVA.test",
		"jo\u0308e@bu\u0308cher.test", // both parts decomposed (NFD)
		"jöe@bücher.test.",            // the root's dot
		"  jöe@bücher.test ",
	} {
		got, err := Canonical(given)
		if err != nil || got != want {
			t.Errorf("Canonical(%q) = %q, %v; want %q", given, got, err, want)
		}
	}
	// The local part keeps its case (RFC 5321); comparisons ignore it elsewhere.
	if got, _ := Canonical("JÖE@BÜCHER.TEST"); got != "JÖE@bücher.test" {
		t.Errorf("Canonical(JÖE@BÜCHER.TEST) = %q", got)
	}
	if got, _ := Canonical("Jane.Doe+tag@Example.COM"); got != "Jane.Doe+tag@example.com" {
		t.Errorf("an ASCII address: %q", got)
	}
	// What every MTA takes in a plain host name, IDNA's label rules or not.
	for _, a := range []string{"jane@mail_gw.example.com", "jane@ab--cd.example.com"} {
		if got, err := Canonical(strings.ToUpper(a[:5]) + strings.ToUpper(a[5:])); err != nil || got != "JANE@"+a[5:] {
			t.Errorf("Canonical(%q) = %q, %v", strings.ToUpper(a), got, err)
		}
	}
	if got, _ := Canonical("root@[192.0.2.1]"); got != "root@[192.0.2.1]" {
		t.Errorf("an address literal: %q", got)
	}
}

func TestCanonicalRefusesWhatNamesNoMailbox(t *testing.T) {
	for given, says := range map[string]string{
		"":                             "empty",
		"jane":                         "not local@domain",
		"@example.com":                 "not local@domain",
		"jane@":                        "not local@domain",
		"ja\x00ne@example.com":         "control character",
		"ja\u0085ne@example.com":       "control character",
		"jane@exa\tmple.com":           "control character",
		"ja\u2028ne@example.com":       "space character",
		"ali\u200bce@example.com":      "invisible formatting character (U+200B)",
		"\u202ejane@example.com":       "invisible formatting character (U+202E)",
		"ja\ufffdne@example.com":       "replacement character",
		"jane@\xffexample.com":         "not valid UTF-8",
		"jane@xn--zz.test":             "not a valid domain name",
		"jane@-bad.test":               "not a valid domain name",
		"jane@exa mple.com":            "not a valid domain name",
		"jane@under_score.bücher.test": "not a valid domain name",
		"jane@bad!.test":               "not allowed in a host name",
		"jane@a..test":                 "empty label",
		"jane@.":                       "empty",
		// A label that mixes right-to-left and left-to-right scripts (RFC 5893's Bidi rule).
		"jane@\u05d0a.test":                         "not a valid domain name",
		"jane@" + strings.Repeat("a", 64) + ".test": "longer than 63",
		strings.Repeat("a", 250) + "@example.com":   "longer than",
		"jane@" + strings.Repeat("ü", 80) + ".test": "longer than",
	} {
		got, err := Canonical(given)
		if err == nil || !errors.Is(err, ErrInvalidAddress) || !strings.Contains(err.Error(), says) {
			t.Errorf("Canonical(%q) = %q, %v; want an error saying %q", given, got, err, says)
		}
	}
}

func TestASCIIForm(t *testing.T) {
	for given, want := range map[string]string{
		"joe@bücher.test":      "joe@xn--bcher-kva.test",
		"joe@example.com":      "joe@example.com",
		"jöe@example.com":      "",
		"jöe@bücher.test":      "",
		"help+1-x@bücher.test": "help+1-x@xn--bcher-kva.test",
	} {
		got, ok := ASCIIForm(given)
		if got != want || ok != (want != "") {
			t.Errorf("ASCIIForm(%q) = %q, %v; want %q", given, got, ok, want)
		}
	}
}

// FuzzCanonical: whatever it is given, Canonical either refuses it or gives a form that is
// valid UTF-8 in NFC with one domain spelling, that canonicalises to itself, and whose
// fast path agrees with the full one.
func FuzzCanonical(f *testing.F) {
	for _, s := range []string{"jöe@bücher.test", "JOE@XN--BCHER-KVA.TEST", "a@b", "x@[1.2.3.4]", "a@b..c", "ü@ü.ü", "\"a b\"@c.d", "a@xn--zz", "a@a-.b"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		c, err := Canonical(s)
		if err != nil {
			if !errors.Is(err, ErrInvalidAddress) {
				t.Fatalf("Canonical(%q): %v does not wrap ErrInvalidAddress", s, err)
			}
			return
		}
		if !utf8.ValidString(c) || !norm.NFC.IsNormalString(c) || len(c) > MaxAddressBytes {
			t.Fatalf("Canonical(%q) = %q: not valid NFC UTF-8 within the length", s, c)
		}
		again, err := Canonical(c)
		if err != nil || again != c {
			t.Fatalf("Canonical(%q) = %q, but Canonical of that = %q, %v", s, c, again, err)
		}
		local, domain, _ := split(c)
		if d, _, err := canonicalDomain(domain); err != nil || d != domain {
			t.Fatalf("Canonical(%q) = %q: its domain is not canonical (%q, %v)", s, c, d, err)
		}
		_ = local
		if isCanonicalASCII(s) {
			if slow, err := canonicalSlowly(s); err != nil || slow != s {
				t.Fatalf("the shortcut takes %q as canonical, but the full way gives %q, %v", s, slow, err)
			}
		}
		if a, ok := ASCIIForm(c); ok {
			if !IsASCII(a) {
				t.Fatalf("ASCIIForm(%q) = %q is not ASCII", c, a)
			}
			if back, err := Canonical(a); err != nil || back != c {
				t.Fatalf("ASCIIForm(%q) = %q does not come back (%q, %v)", c, a, back, err)
			}
		}
	})
}

// BenchmarkCanonical: the cost per address, for the common ASCII case (the shortcut) and for
// an internationalised one (IDNA and NFC).
func BenchmarkCanonical(b *testing.B) {
	for _, a := range []string{"jane.doe@example.com", "Jane.Doe@Example.COM", "jöe@xn--bcher-kva.test"} {
		b.Run(a, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if _, err := Canonical(a); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
