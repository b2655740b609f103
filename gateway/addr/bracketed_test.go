package addr

import (
	"slices"
	"testing"
)

func TestBracketedYieldsEachSpan(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want []string
	}{
		{"<a@x> <b@y>", []string{"<a@x>", "<b@y>"}},
		{`"Eve <a@x>" <evil@y>`, []string{"<a@x>", "<evil@y>"}},
		{"<<a@x>>", []string{"<<a@x>"}},
		{"no brackets", nil},
		{"<open@x and never closed", nil},
		{"<a@x> <unclosed", []string{"<a@x>"}},
		{"<>", []string{"<>"}},
		{"", nil},
	} {
		if got := slices.Collect(Bracketed(tc.in)); !slices.Equal(got, tc.want) {
			t.Errorf("Bracketed(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
	// A caller may stop early.
	for span := range Bracketed("<a@x> <b@y>") {
		if span != "<a@x>" {
			t.Errorf("first span %q", span)
		}
		break
	}
}
