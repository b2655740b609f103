package addr

import (
	"errors"
	"fmt"
	"strings"
	"unicode"
	"unicode/utf8"

	"golang.org/x/net/idna"
	"golang.org/x/text/unicode/norm"
)

// MaxAddressBytes is the longest address deskgate takes: RFC 5321 4.5.3.1.3 allows a path
// of 256 octets, that is 254 between the angle brackets.
const MaxAddressBytes = 254

// ErrInvalidAddress is what every refusal of Canonical wraps, so that callers can tell bad
// input from their own failures.
var ErrInvalidAddress = errors.New("invalid mail address")

// Canonical is the one form in which deskgate keeps and compares a mail address: the local
// part as it was written but in Unicode normal form C, and the domain lowercased, an
// internationalised domain in its U-label form (checked by IDNA2008's lookup rules, so
// that bücher.test, BÜCHER.test, xn--bcher-kva.test and a decomposed ü are one domain).
// An address literal ([192.0.2.1]) is kept as it is. The local part's case is kept, as
// RFC 5321 asks; deskgate compares addresses without regard to case (rules.SameAddress).
//
// The error wraps ErrInvalidAddress and says what is wrong in words fit for an SMTP reply
// or an API error.
func Canonical(address string) (string, error) {
	address = strings.TrimSpace(address)
	if isCanonicalASCII(address) {
		return address, nil
	}
	return canonicalSlowly(address)
}

// canonicalSlowly is Canonical without the shortcut for addresses that are canonical already.
func canonicalSlowly(address string) (string, error) {
	local, domain, err := split(address)
	if err != nil {
		return "", err
	}
	if !IsASCII(local) {
		local = norm.NFC.String(local)
	}
	domain, asciiDomain, err := canonicalDomain(domain)
	if err != nil {
		return "", invalid("the domain of %q %s", address, err)
	}
	out := local + "@" + domain
	// Either form may be the one sent, so both must fit an SMTP path.
	if len(out) > MaxAddressBytes || len(local)+1+len(asciiDomain) > MaxAddressBytes {
		return "", invalid("%q is longer than %d bytes", address, MaxAddressBytes)
	}
	return out, nil
}

// CanonicalDomain is the domain part of Canonical, for the *@domain patterns of
// policy.cc_blocklist.
func CanonicalDomain(domain string) (string, error) {
	d, _, err := canonicalDomain(strings.TrimSpace(domain))
	if err != nil {
		return "", invalid("the domain %q %s", domain, err)
	}
	return d, nil
}

// ASCIIForm is address as a mail system without SMTPUTF8 can carry it: the domain in
// A-labels (RFC 5891), the local part unchanged. ok is false when the local part is not
// ASCII: such an address cannot be written in seven bits at all.
func ASCIIForm(address string) (string, bool) {
	if IsASCII(address) {
		return address, true
	}
	local, domain, err := split(address)
	if err != nil || !IsASCII(local) {
		return "", false
	}
	a, err := idna.Lookup.ToASCII(domain)
	if err != nil || !IsASCII(a) {
		return "", false
	}
	return local + "@" + a, true
}

// IsASCII reports whether s is seven-bit text. It takes bytes too, so that a message's header
// is checked where it lies, without a copy into a string.
func IsASCII[T ~string | ~[]byte](s T) bool {
	for i := 0; i < len(s); i++ {
		if s[i] >= utf8.RuneSelf {
			return false
		}
	}
	return true
}

func invalid(format string, args ...any) error {
	return fmt.Errorf("%w: "+format, append([]any{ErrInvalidAddress}, args...)...)
}

// split checks what every address needs whatever its domain: one @ with text on both sides,
// valid UTF-8, no control characters, and a length that fits an SMTP path.
func split(address string) (local, domain string, err error) {
	switch {
	case address == "":
		return "", "", invalid("the address is empty")
	case len(address) > MaxAddressBytes:
		return "", "", invalid("%.40q… is longer than %d bytes", address, MaxAddressBytes)
	case !utf8.ValidString(address):
		return "", "", invalid("%q is not valid UTF-8", address)
	}
	for _, r := range address {
		switch {
		case unicode.IsControl(r):
			return "", "", invalid("%q has a control character (U+%04X)", address, r)
		case r == utf8.RuneError:
			return "", "", invalid("%q has a replacement character (U+FFFD) where its text was damaged", address)
		case unicode.Is(unicode.Cf, r):
			// Invisible: a zero-width space or a bidi override would make an address look
			// like another (ali\u200bce@ as alice@) on every page that shows it.
			return "", "", invalid("%q has an invisible formatting character (U+%04X)", address, r)
		}
		if r != ' ' && unicode.IsSpace(r) {
			return "", "", invalid("%q has a space character (U+%04X)", address, r)
		}
	}
	at := strings.LastIndexByte(address, '@')
	if at <= 0 || at == len(address)-1 {
		return "", "", invalid("%q is not local@domain", address)
	}
	return address[:at], address[at+1:], nil
}

// canonicalDomain lowercases domain and, when it is or may be internationalised, checks it
// by IDNA2008 and gives its U-labels, and its A-labels as the length limits apply to them.
// A trailing dot (the root) is dropped.
func canonicalDomain(domain string) (unicodeForm, asciiForm string, err error) {
	if strings.HasPrefix(domain, "[") {
		if !strings.HasSuffix(domain, "]") || strings.ContainsAny(domain[1:len(domain)-1], "[]\\") {
			return "", "", errors.New("is not a valid address literal")
		}
		return domain, domain, nil
	}
	domain = strings.TrimSuffix(domain, ".")
	if domain == "" {
		return "", "", errors.New("is empty")
	}
	if IsASCII(domain) && !hasALabel(domain) {
		// A plain ASCII host name is taken as mail servers take it, which is more than
		// IDNA's rules for labels allow: an underscore (mail_gw.example.com) or hyphens in
		// the third and fourth places are refused by no MTA, so they are not refused here.
		d := strings.ToLower(domain)
		return d, d, checkHostLabels(d)
	}
	u, err := idna.Lookup.ToUnicode(domain)
	if err != nil {
		return "", "", fmt.Errorf("is not a valid domain name (%s)", strings.TrimPrefix(err.Error(), "idna: "))
	}
	// ToASCII of the U-labels refuses a label that merely looks like an A-label ("xn--"
	// and garbage), which the lookup profile leaves to the registry; the length limits of
	// DNS (RFC 1035 2.3.4) are checked on the A-labels, as they travel.
	a, err := idna.Lookup.ToASCII(u)
	if err != nil {
		return "", "", fmt.Errorf("is not a valid domain name (%s)", strings.TrimPrefix(err.Error(), "idna: "))
	}
	if len(a) > 253 {
		return "", "", errors.New("is longer than 253 bytes in A-labels")
	}
	for label := range strings.SplitSeq(a, ".") {
		switch {
		case label == "":
			return "", "", errors.New("has an empty label")
		case len(label) > 63:
			return "", "", fmt.Errorf("has a label longer than 63 bytes in A-labels (%.20s…)", label)
		}
	}
	return norm.NFC.String(u), a, nil
}

// hasALabel reports whether an ASCII domain has a label in the A-label form (xn--…), which
// IDNA must check and turn into U-labels.
func hasALabel(domain string) bool {
	for label := range strings.SplitSeq(domain, ".") {
		if len(label) >= 4 && strings.EqualFold(label[:4], "xn--") {
			return true
		}
	}
	return false
}

// checkHostLabels checks a lowercase ASCII domain: labels of 1 to 63 letters, digits,
// hyphens and underscores, none beginning or ending with a hyphen, 253 bytes in all.
func checkHostLabels(d string) error {
	if len(d) > 253 {
		return errors.New("is longer than 253 bytes")
	}
	for label := range strings.SplitSeq(d, ".") {
		switch {
		case label == "":
			return errors.New("has an empty label")
		case len(label) > 63:
			return fmt.Errorf("has a label longer than 63 bytes (%.20s…)", label)
		case label[0] == '-' || label[len(label)-1] == '-':
			return fmt.Errorf("is not a valid domain name (the label %q begins or ends with a hyphen)", label)
		}
		for i := 0; i < len(label); i++ {
			if c := label[i]; !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-' || c == '_') {
				return fmt.Errorf("is not a valid domain name (%q is not allowed in a host name)", rune(c))
			}
		}
	}
	return nil
}

// isCanonicalASCII is the common case: an ASCII address whose domain is lowercase
// letters, digits, hyphens and dots that IDNA would leave as they are, so that the
// address is already canonical and nothing needs to be built.
func isCanonicalASCII(a string) bool {
	at := strings.LastIndexByte(a, '@')
	if at <= 0 || at == len(a)-1 || len(a) > MaxAddressBytes {
		return false
	}
	for i := 0; i < at; i++ {
		if c := a[i]; c <= ' ' || c >= 0x7f {
			return false
		}
	}
	label := 0
	for i := at + 1; i <= len(a); i++ {
		if i == len(a) || a[i] == '.' {
			// A label must be 1 to 63 characters and not begin or end with a hyphen; an
			// A-label (xn--…) is left to IDNA.
			start := i - label
			if label == 0 || label > 63 || a[start] == '-' || a[i-1] == '-' ||
				(label >= 4 && a[start:start+4] == "xn--") {
				return false
			}
			label = 0
			continue
		}
		c := a[i]
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-' || c == '_') {
			return false
		}
		label++
	}
	return len(a)-at-1 <= 253
}
