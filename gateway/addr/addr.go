// Package addr knows mail addresses: the one canonical form in which deskgate keeps and
// compares every address (canonical.go), and deskgate's own addresses: the support
// addresses, the ticket reply addresses LOCAL+<id>-<token>, the masked participant
// addresses LOCAL+<id>-<token>-p<n>, the bounce addresses LOCAL+bounce-<id>-<token>, and the
// [#<id>-<token>] tags.
package addr

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base32"
	"fmt"
	"hash"
	"regexp"
	"strconv"
	"strings"
	"sync"

	"github.com/deskgate/deskgate/gateway/model"
)

// Kind is what one of deskgate's addresses is for.
type Kind int

const (
	// Support is a bare support address: mail to it opens or continues tickets.
	Support Kind = iota + 1
	// Ticket is a ticket's reply address.
	Ticket
	// Masked is a participant's masked address, shown in agents' copies.
	Masked
	// Bounce is the envelope sender of one outgoing delivery.
	Bounce
	// Unknown is LOCAL+something that is none of the above; it is accepted (so that
	// nobody learns which tokens exist) and threads nowhere.
	Unknown
)

// TokenLen is the length of a token: 12 base32 characters, 60 bits of HMAC.
const TokenLen = 12

// Parsed is one recipient address as deskgate reads it.
type Parsed struct {
	Kind        Kind
	Support     string // the support address it belongs to, in its ASCII form (Supports)
	ID          uint64 // ticket id (Ticket, Masked) or delivery id (Bounce)
	Token       string
	Participant int // n of -p<n>, for Masked
}

// Book holds the support addresses and the token secret.
type Book struct {
	tokens   tokenCache
	secret   []byte
	macs     sync.Pool         // keyed HMAC-SHA256 states: keying one costs two compressions
	supports map[string]string // canonical "local@domain" lowercased -> ASCII form
	order    []string          // ASCII forms, in configured order
	domains  []string          // canonical domains, in configured order
}

// NewBook makes a Book for the configured support addresses. The config has made them
// canonical and their local parts ASCII; an address that is not (a Book made by a test)
// is kept as it was given.
func NewBook(secret []byte, supportAddresses []string) *Book {
	b := &Book{secret: secret, supports: map[string]string{}}
	for _, a := range supportAddresses {
		if c, err := Canonical(a); err == nil {
			a = c
		}
		b.supports[model.AddressKey(a)] = asciiSupport(a)
		b.order = append(b.order, asciiSupport(a))
		_, d, _ := splitAt(a)
		b.domains = append(b.domains, d)
	}
	return b
}

// Supports lists the support addresses in configured order, each in its ASCII form (an
// internationalised domain in A-labels): deskgate writes them into From, X-Loop and every
// address it makes, and an upstream without SMTPUTF8 must be able to carry all of those.
func (b *Book) Supports() []string { return b.order }

// asciiSupport is a support address in the form deskgate writes it.
func asciiSupport(support string) string {
	if a, ok := ASCIIForm(support); ok {
		return a
	}
	return support
}

var encoding = base32.StdEncoding.WithPadding(base32.NoPadding)

func (b *Book) mac(purpose string, id uint64) string {
	m, _ := b.macs.Get().(hash.Hash)
	if m == nil {
		m = hmac.New(sha256.New, b.secret)
	}
	var in [64]byte
	msg := strconv.AppendUint(append(append(in[:0], purpose...), 0), id, 10)
	m.Write(msg)
	var sum [sha256.Size]byte
	var text [56]byte // base32 of 32 bytes, unpadded: 52
	encoding.Encode(text[:], m.Sum(sum[:0]))
	m.Reset()
	b.macs.Put(m)
	return strings.ToLower(string(text[:TokenLen]))
}

// TicketToken is the token of ticket id.
func (b *Book) TicketToken(id uint64) string {
	if t, ok := b.tokens.get(id); ok {
		return t
	}
	t := b.mac("ticket", id)
	b.tokens.put(id, t)
	return t
}

// tokenCache remembers recent ticket tokens: every masked address of every copy needs
// one, and an HMAC each time was a tenth of a fan-out's cost.
type tokenCache struct {
	mu sync.Mutex
	m  map[uint64]string
}

const tokenCacheSize = 4096

func (c *tokenCache) get(id uint64) (string, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	t, ok := c.m[id]
	return t, ok
}

func (c *tokenCache) put(id uint64, t string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.m == nil || len(c.m) >= tokenCacheSize {
		c.m = make(map[uint64]string, 64)
	}
	c.m[id] = t
}

// BounceToken is the token of delivery id's bounce address.
func (b *Book) BounceToken(id uint64) string { return b.mac("bounce", id) }

// ValidTicketToken compares in constant time, so that response timing tells nothing.
func (b *Book) ValidTicketToken(id uint64, token string) bool {
	return hmac.Equal([]byte(b.TicketToken(id)), []byte(strings.ToLower(token)))
}

// ValidBounceToken is ValidTicketToken for bounce addresses.
func (b *Book) ValidBounceToken(id uint64, token string) bool {
	return hmac.Equal([]byte(b.BounceToken(id)), []byte(strings.ToLower(token)))
}

func splitAt(a string) (local, domain string, ok bool) {
	i := strings.LastIndexByte(a, '@')
	if i <= 0 || i == len(a)-1 {
		return "", "", false
	}
	return a[:i], a[i+1:], true
}

// Classify reads a recipient, in any form of it that Canonical takes (case, A-labels,
// NFD). ok is false when the address is not one of deskgate's, or not a valid address.
// Tokens are not checked here: see ValidTicketToken.
func (b *Book) Classify(address string) (Parsed, bool) {
	address, err := Canonical(strings.Trim(strings.TrimSpace(address), "<>"))
	if err != nil {
		return Parsed{}, false
	}
	local, domain, ok := splitAt(address)
	if !ok {
		return Parsed{}, false
	}
	base, ext, hasExt := strings.Cut(local, "+")
	support, known := b.supports[model.AddressKey(base+"@"+domain)]
	if !known {
		return Parsed{}, false
	}
	if !hasExt {
		return Parsed{Kind: Support, Support: support}, true
	}
	p := parseExtension(strings.ToLower(ext))
	p.Support = support
	return p, true
}

// Mailbox says under which address mail for address is filed: the address itself when it is
// one of deskgate's, and for the role mailboxes that RFC 5321 4.5.1 and RFC 2142 ask every
// mail domain to have (postmaster, bare or at a support domain, and abuse at a support
// domain) the first support address of that domain, or the first of all for a bare
// postmaster. ok is false for every other address. An address of deskgate's comes back in
// its canonical form.
func (b *Book) Mailbox(address string) (string, bool) {
	if strings.EqualFold(address, "postmaster") {
		if len(b.order) == 0 {
			return "", false
		}
		return b.order[0], true
	}
	address, err := Canonical(address)
	if err != nil {
		return "", false
	}
	if _, ok := b.Classify(address); ok {
		return address, true
	}
	local, domain, ok := splitAt(address)
	if !ok || !(strings.EqualFold(local, "postmaster") || strings.EqualFold(local, "abuse")) {
		return "", false
	}
	for i, d := range b.domains {
		if strings.EqualFold(d, domain) {
			return b.order[i], true
		}
	}
	return "", false
}

func parseExtension(ext string) Parsed {
	unknown := Parsed{Kind: Unknown}
	if rest, ok := strings.CutPrefix(ext, "bounce-"); ok {
		id, tok, ok := idToken(rest)
		if !ok {
			return unknown
		}
		return Parsed{Kind: Bounce, ID: id, Token: tok}
	}
	parts := strings.Split(ext, "-")
	switch len(parts) {
	case 2:
		id, tok, ok := idToken(ext)
		if !ok {
			return unknown
		}
		return Parsed{Kind: Ticket, ID: id, Token: tok}
	case 3:
		id, tok, ok := idToken(parts[0] + "-" + parts[1])
		n, err := strconv.Atoi(strings.TrimPrefix(parts[2], "p"))
		if !ok || !strings.HasPrefix(parts[2], "p") || err != nil || n < 0 {
			return unknown
		}
		return Parsed{Kind: Masked, ID: id, Token: tok, Participant: n}
	}
	return unknown
}

func idToken(s string) (uint64, string, bool) {
	idStr, tok, ok := strings.Cut(s, "-")
	if !ok || len(tok) != TokenLen || idStr == "" || idStr[0] == '0' {
		return 0, "", false
	}
	id, err := strconv.ParseUint(idStr, 10, 64)
	if err != nil || id == 0 {
		return 0, "", false
	}
	return id, tok, true
}

// withExt makes LOCAL+ext@DOMAIN of support, in ASCII whichever form support is stored in.
func (b *Book) withExt(support, ext string) string {
	local, domain, _ := splitAt(asciiSupport(support))
	return local + "+" + ext + "@" + domain
}

// ReplyAddress is ticket id's reply address under support.
func (b *Book) ReplyAddress(support string, id uint64) string {
	return b.withExt(support, fmt.Sprintf("%d-%s", id, b.TicketToken(id)))
}

// MaskedAddress is participant n's masked address on ticket id.
func (b *Book) MaskedAddress(support string, id uint64, n int) string {
	return b.withExt(support, fmt.Sprintf("%d-%s-p%d", id, b.TicketToken(id), n))
}

// BounceAddress is the envelope sender of delivery id.
func (b *Book) BounceAddress(support string, id uint64) string {
	return b.withExt(support, fmt.Sprintf("bounce-%d-%s", id, b.BounceToken(id)))
}

// ThreadAnchor is the Message-ID (without brackets) that ticket id's copies reference when
// they may name no mail of the ticket's (H4): no message has it, but mail clients thread on
// References whether or not they hold the message named, so every copy of the ticket still
// falls into one thread. It is made of the ticket's tag, which every copy shows anyway.
func (b *Book) ThreadAnchor(support string, id uint64) string {
	_, domain, _ := splitAt(asciiSupport(support))
	return fmt.Sprintf("ticket-%d-%s@%s", id, b.TicketToken(id), domain)
}

// Tag is the [#<id>-<token>] tag of ticket id, for subjects and bodies.
func (b *Book) Tag(id uint64) string { return fmt.Sprintf("[#%d-%s]", id, b.TicketToken(id)) }

// FoundTag is a [#id] or [#id-token] tag found in text; Token is "" for a bare tag.
type FoundTag struct {
	ID    uint64
	Token string
}

var tagPattern = regexp.MustCompile(`\[#([1-9][0-9]{0,18})(?:-([A-Za-z2-7]{12}))?\]`)

// maxTags bounds the work a hostile body full of tags can cause.
const maxTags = 20

// FindTags returns the ticket tags in s, in order of appearance.
func FindTags(s string) []FoundTag {
	var out []FoundTag
	for _, m := range tagPattern.FindAllStringSubmatch(s, maxTags) {
		id, err := strconv.ParseUint(m[1], 10, 64)
		if err != nil {
			continue
		}
		out = append(out, FoundTag{ID: id, Token: strings.ToLower(m[2])})
	}
	return out
}
