package auth

import (
	"bytes"
	"fmt"
	"io"
	"mime"
	"net/mail"
	"strings"

	gmail "github.com/emersion/go-message/mail"
	"golang.org/x/net/idna"
	"golang.org/x/net/publicsuffix"

	"github.com/deskgate/deskgate/gateway/addr"
)

// maxFields bounds how many header fields are looked at; mailparse already refuses a
// header block over 1 MiB, this keeps a block of a million one-byte lines cheap too.
const maxFields = 10000

// field is one header field, its continuation lines joined.
type field struct {
	name  string
	value string
}

// headerFields splits the header block of raw into fields, top first. Lines that are
// no field (no colon) end nothing: they are skipped, as go-message does.
func headerFields(raw []byte) []field {
	var out []field
	for len(raw) > 0 && len(out) < maxFields {
		line, rest, _ := bytes.Cut(raw, []byte("\n"))
		raw = rest
		line = bytes.TrimSuffix(line, []byte("\r"))
		if len(line) == 0 {
			break // the empty line that ends the header
		}
		if (line[0] == ' ' || line[0] == '\t') && len(out) > 0 {
			out[len(out)-1].value += " " + string(bytes.TrimSpace(line))
			continue
		}
		name, value, ok := bytes.Cut(line, []byte(":"))
		if !ok {
			continue
		}
		out = append(out, field{name: strings.TrimSpace(string(name)), value: strings.TrimSpace(string(value))})
	}
	return out
}

func fieldsNamed(fields []field, name string) []field {
	var out []field
	for _, f := range fields {
		if strings.EqualFold(f.name, name) {
			out = append(out, f)
		}
	}
	return out
}

// lenientWords decodes RFC 2047 words in any charset well enough to compare addresses:
// an unknown charset must not make two parsers disagree on who wrote a mail.
var lenientWords = &mime.WordDecoder{CharsetReader: func(_ string, r io.Reader) (io.Reader, error) { return r, nil }}

// HeaderFrom is the RFC5322.From that DMARC judges: the one address of the one From
// field, read alike by every parser, or why there is no such address.
type HeaderFrom struct {
	Address string // local@domain as written
	Domain  string // lowercased
	Problem string // non-empty: the From is ambiguous and can prove nobody
}

// readFrom finds the From address of a message. author is the address deskgate files
// the mail under (mailparse's reading): if it is not the address DMARC evaluates, the
// From says two things and is refused as proof.
func readFrom(fields []field, author string) HeaderFrom {
	froms := fieldsNamed(fields, "From")
	switch len(froms) {
	case 0:
		return HeaderFrom{Problem: "no From header field"}
	case 1:
	default:
		return HeaderFrom{Problem: fmt.Sprintf("%d From header fields", len(froms))}
	}
	value := froms[0].value
	p := mail.AddressParser{WordDecoder: lenientWords}
	list, err := p.ParseList(value)
	if err != nil {
		return HeaderFrom{Problem: fmt.Sprintf("From does not parse (%v)", err)}
	}
	if len(list) != 1 {
		return HeaderFrom{Problem: fmt.Sprintf("From names %d addresses", len(list))}
	}
	// A second, independent reading: go-message's. Where the two disagree, the text
	// is built to be read one way by one program and another way by another.
	h := gmail.Header{}
	h.Set("From", value)
	other, err := h.AddressList("From")
	if err != nil || len(other) != 1 || !strings.EqualFold(other[0].Address, list[0].Address) {
		return HeaderFrom{Problem: "From is read differently by different parsers"}
	}
	address := list[0].Address
	if author != "" && !sameAddress(author, address) {
		return HeaderFrom{Problem: fmt.Sprintf("From is read as %s here but as %s by the authentication check", author, address)}
	}
	at := strings.LastIndexByte(address, '@')
	if at <= 0 {
		return HeaderFrom{Problem: "From has no domain"}
	}
	// A domain of characters that IDNA maps to nothing (a lone U+034F) is empty once
	// in A-labels: there is no DMARC record to look up and nothing to align with.
	domain := asciiDomain(address[at+1:])
	if domain == "" {
		return HeaderFrom{Problem: "From has no domain"}
	}
	return HeaderFrom{Address: address, Domain: domain}
}

// sameAddress compares the desk's author, which is canonical (addr.Canonical), with the
// address as the header writes it, whose domain may be in A-labels or another case.
func sameAddress(author, address string) bool {
	if strings.EqualFold(author, address) {
		return true
	}
	a, errA := addr.Canonical(author)
	b, errB := addr.Canonical(address)
	return errA == nil && errB == nil && strings.EqualFold(a, b)
}

// asciiDomain is domain as DNS and DKIM's d= name it (RFC 8616): lowercased, an
// internationalised domain in A-labels, so that the From domain aligns with a signature and
// its DMARC record is looked up whichever form the From has.
func asciiDomain(domain string) string {
	domain = strings.ToLower(strings.TrimSuffix(domain, "."))
	if a, err := idna.Lookup.ToASCII(domain); err == nil {
		return a
	}
	return domain
}

// tagList parses a DKIM-Signature style tag list (RFC 6376 3.2): "k=v; k2=v2". It
// returns nil for a list that is not well formed, and the first value of a repeated tag
// is kept, though a repeated tag already makes the signature invalid.
func tagList(s string) map[string]string {
	out := map[string]string{}
	for part := range strings.SplitSeq(s, ";") {
		part = strings.TrimSpace(part)
		if part == "" {
			continue
		}
		k, v, ok := strings.Cut(part, "=")
		k = strings.TrimSpace(k)
		if !ok || k == "" {
			return nil
		}
		if _, seen := out[k]; !seen {
			out[k] = stripFWS(v)
		}
	}
	return out
}

func stripFWS(s string) string {
	return strings.Map(func(r rune) rune {
		if r == ' ' || r == '\t' || r == '\r' || r == '\n' {
			return -1
		}
		return r
	}, s)
}

// stripComments removes RFC 5322 comments ("(...)", nested, with quoted pairs) outside
// quoted strings, so that text a relay writes in parentheses is never read as a
// property. An unclosed comment drops the rest: half a comment proves nothing.
func stripComments(s string) string {
	var b strings.Builder
	depth := 0
	quoted := false
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c == '\\' && (depth > 0 || quoted):
			if depth == 0 {
				b.WriteByte(c)
				if i+1 < len(s) {
					b.WriteByte(s[i+1])
				}
			}
			i++
		case quoted:
			b.WriteByte(c)
			if c == '"' {
				quoted = false
			}
		case c == '(':
			depth++
		case c == ')' && depth > 0:
			depth--
			if depth == 0 {
				b.WriteByte(' ')
			}
		case depth > 0:
		case c == '"':
			quoted = true
			b.WriteByte(c)
		default:
			b.WriteByte(c)
		}
	}
	return b.String()
}

// OrgDomain is the organizational domain of domain (RFC 7489 3.2): the public suffix
// plus one label. A domain that is itself a public suffix, or that the list does not
// know, is its own organizational domain.
func OrgDomain(domain string) string {
	domain = strings.ToLower(strings.TrimSuffix(domain, "."))
	org, err := publicsuffix.EffectiveTLDPlusOne(domain)
	if err != nil {
		return domain
	}
	return org
}

// Aligned reports whether an authenticated domain is aligned with the From domain:
// equal under strict alignment, the same organizational domain under relaxed.
func Aligned(authenticated, from string, strict bool) bool {
	a := strings.ToLower(strings.TrimSuffix(authenticated, "."))
	f := strings.ToLower(strings.TrimSuffix(from, "."))
	if a == "" || f == "" {
		return false
	}
	if a == f {
		return true
	}
	return !strict && OrgDomain(a) == OrgDomain(f)
}
