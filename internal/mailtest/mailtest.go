// Package mailtest holds what the tests of several packages need to judge mail.
package mailtest

import "strings"

// HasAddress reports whether text names addr as a whole address: "bob@example.com" is
// not in "support+bounce-1-x2bob@example.com", whose random token may end in "bob".
func HasAddress(text, addr string) bool {
	text, addr = strings.ToLower(text), strings.ToLower(addr)
	for i := 0; ; {
		j := strings.Index(text[i:], addr)
		if j < 0 {
			return false
		}
		at := i + j
		if at == 0 || !strings.ContainsRune("abcdefghijklmnopqrstuvwxyz0123456789.+-_", rune(text[at-1])) {
			return true
		}
		i = at + 1
	}
}
