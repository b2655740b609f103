package addr

import (
	"iter"
	"strings"
)

// Bracketed yields each "<...>" span of a header value, brackets included, from left to
// right: the angle-addrs of an address field, the msg-ids of References. A '<' with no '>'
// after it ends the value. What the span holds is the caller's to judge.
func Bracketed(value string) iter.Seq[string] {
	return func(yield func(string) bool) {
		for rest := value; ; {
			open := strings.IndexByte(rest, '<')
			if open < 0 {
				return
			}
			end := strings.IndexByte(rest[open:], '>')
			if end < 0 {
				return
			}
			if !yield(rest[open : open+end+1]) {
				return
			}
			rest = rest[open+end+1:]
		}
	}
}
