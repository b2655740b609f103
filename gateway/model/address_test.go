package model

import (
	"strings"
	"testing"
)

func TestAddressKeyAgreesWithEqualFold(t *testing.T) {
	pairs := []struct {
		a, b string
		same bool
	}{
		{"Alice@Example.com", "alice@example.com", true},
		{"JÖE@bücher.test", "jöe@bücher.test", true},
		// The dotted capital I is not an i: ToLower would say it is.
		{"alİce@example.com", "alice@example.com", false},
		// The long s and the Kelvin sign fold with s and k, as EqualFold has them.
		{"ſales@x.test", "sales@x.test", true},
		{"\u212aim@x.test", "kim@x.test", true},
		// Cyrillic а is another letter.
		{"аlice@example.com", "alice@example.com", false},
		{"ΣΊΣΥΦΟΣ@x.test", "σίσυφος@x.test", true},
	}
	for _, p := range pairs {
		if got := AddressKey(p.a) == AddressKey(p.b); got != p.same || got != strings.EqualFold(p.a, p.b) {
			t.Errorf("AddressKey(%q) == AddressKey(%q) is %v; want %v, as EqualFold", p.a, p.b, got, p.same)
		}
	}
	if AddressKey(" Jane@Example.COM ") != "jane@example.com" {
		t.Errorf("an ASCII key is ToLower's: %q", AddressKey(" Jane@Example.COM "))
	}
}

func FuzzAddressKey(f *testing.F) {
	f.Add("alİce@example.com", "alice@example.com")
	f.Add("ſ", "S")
	f.Fuzz(func(t *testing.T, a, b string) {
		a, b = strings.TrimSpace(a), strings.TrimSpace(b)
		if (AddressKey(a) == AddressKey(b)) != strings.EqualFold(a, b) {
			t.Fatalf("AddressKey and EqualFold disagree on %q and %q", a, b)
		}
	})
}
