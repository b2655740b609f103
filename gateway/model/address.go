package model

import (
	"strings"
	"unicode"
	"unicode/utf8"
)

// AddressKey is the form in which deskgate compares two mail addresses, as map keys and
// everywhere else: two addresses are one person exactly when their keys are equal, which is
// exactly when strings.EqualFold says they are. strings.ToLower is not that: it maps the
// dotted capital İ to an ASCII i, which would make alİce@example.com the agent
// alice@example.com, while EqualFold keeps them apart. For ASCII text the key is ToLower's.
// The address is expected in its canonical form (gateway/addr.Canonical).
func AddressKey(address string) string {
	address = strings.TrimSpace(address)
	ascii := true
	for i := 0; i < len(address); i++ {
		if address[i] >= utf8.RuneSelf {
			ascii = false
			break
		}
	}
	if ascii {
		return strings.ToLower(address)
	}
	var b strings.Builder
	b.Grow(len(address))
	for _, r := range address {
		b.WriteRune(foldRepresentative(r))
	}
	return b.String()
}

// foldRepresentative picks one rune of r's simple case-folding orbit (the runes EqualFold
// treats as equal to r): the smallest lowercase one, or the smallest when none is lowercase.
func foldRepresentative(r rune) rune {
	best, bestLower := r, unicode.IsLower(r)
	for f := unicode.SimpleFold(r); f != r; f = unicode.SimpleFold(f) {
		lower := unicode.IsLower(f)
		if lower && !bestLower || lower == bestLower && f < best {
			best, bestLower = f, lower
		}
	}
	return best
}
