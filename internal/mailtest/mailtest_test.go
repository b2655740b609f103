package mailtest

import "testing"

func TestHasAddressMatchesWholeAddressesOnly(t *testing.T) {
	for text, want := range map[string]bool{
		"To: <bob@example.com>":    true,
		"cc: bob@example.com, x@y": true,
		"bob@example.com":          true,
		"Return-Path: <support+bounce-15-cfn5sg5p2bob@example.com>": false,
		"to: jimbob@example.com":                                    false,
	} {
		if got := HasAddress(text, "bob@example.com"); got != want {
			t.Errorf("HasAddress(%q) = %v, want %v", text, got, want)
		}
	}
}
