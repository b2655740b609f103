package inbound

import (
	"strings"
	"testing"
)

// A reply that quotes a UTF-8 address says which letters it had, in seven bits, and never
// carries a control byte or a line break back.
func TestPrintableRepliesKeepTheLetters(t *testing.T) {
	for in, want := range map[string]string{
		"<jöe@bücher.test>: no such support address here": `<j\u{00F6}e@b\u{00FC}cher.test>: no such support address here`,
		"bad\r\nRCPT TO:<x@y>":                            "bad??RCPT TO:<x@y>",
		"broken \xff byte":                                "broken ? byte",
	} {
		if got := printable(in); got != want {
			t.Errorf("printable(%q) = %q, want %q", in, got, want)
		}
	}
	if got := printable(strings.Repeat("ö", 1000)); len(got) > 410 {
		t.Errorf("a long reply is %d bytes", len(got))
	}
}
