package store

import "testing"

// Only the address itself is replaced, never a longer address that contains it.
func TestReplaceAddressLeavesLongerAddressesAlone(t *testing.T) {
	const m = "X"
	for _, tc := range []struct{ in, want string }{
		{"ann@x.test", "X"},
		{"Ann <ANN@X.test>", "Ann <X>"},
		{"write to ann@x.test.", "write to X."},
		{"ann@x.test,ann@x.test; ann@x.test", "X,X; X"},
		{"mailto:ann@x.test?subject=hi", "mailto:X?subject=hi"},
		{"joann@x.test", "joann@x.test"},
		{"jo.ann@x.test", "jo.ann@x.test"},
		{"ann@x.test.example", "ann@x.test.example"},
		{"ann@x.testing", "ann@x.testing"},
		{"ann@x.test-mail.org", "ann@x.test-mail.org"},
		{"", ""},
	} {
		if got := replaceAddress(tc.in, "ann@x.test", m); got != tc.want {
			t.Errorf("%q: %q, want %q", tc.in, got, tc.want)
		}
		if got := containsAddress(tc.in, "ann@x.test"); got != (tc.want != tc.in) {
			t.Errorf("containsAddress(%q) = %v", tc.in, got)
		}
	}
}
