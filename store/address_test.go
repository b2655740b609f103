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

// An internationalised address is found in every form it may be written in: any case
// (where case changes the length in bytes too), its domain in A-labels, decomposed (NFD);
// and never inside a longer address whose neighbouring characters are letters of any script.
func TestReplaceAddressInternationalised(t *testing.T) {
	const m = "X"
	for _, tc := range []struct{ email, in, want string }{
		{"jöe@bücher.test", "jöe@bücher.test", "X"},
		{"jöe@bücher.test", "Jöe <JÖE@BÜCHER.TEST> wrote", "Jöe <X> wrote"},
		{"jöe@bücher.test", "jöe@xn--bcher-kva.test and JÖE@XN--BCHER-KVA.TEST", "X and X"},
		{"jöe@bücher.test", "jo\u0308e@bu\u0308cher.test.", "X."},
		{"jöe@bücher.test", "«jöe@bücher.test»", "«X»"},
		{"jöe@bücher.test", "ñjöe@bücher.test", "ñjöe@bücher.test"},
		{"jöe@bücher.test", "jöe@bücher.testé", "jöe@bücher.testé"},
		{"jöe@bücher.test", "jöe@bücher.test.ü", "jöe@bücher.test.ü"},
		// ß and its capital ẞ differ in length; so do the first bytes of р and Р.
		{"groß@x.test", "GROẞ@X.TEST, groß@x.test", "X, X"},
		{"рита@пример.test", "РИТА@ПРИМЕР.TEST", "X"},
		{"рита@пример.test", "рита@xn--e1afmkfd.test", "X"},
	} {
		if got := replaceAddress(tc.in, tc.email, m); got != tc.want {
			t.Errorf("%s in %q: %q, want %q", tc.email, tc.in, got, tc.want)
		}
		if got := containsAddress(tc.in, tc.email); got != (tc.want != tc.in) {
			t.Errorf("containsAddress(%q, %s) = %v", tc.in, tc.email, got)
		}
		// Mentioning's byte search, over the same forms.
		found := false
		for _, f := range addressForms(tc.email) {
			found = found || containsFold([]byte(tc.in), f)
		}
		if tc.want != tc.in && !found {
			t.Errorf("containsFold(%q) finds no form of %s", tc.in, tc.email)
		}
	}
}
