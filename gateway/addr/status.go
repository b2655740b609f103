package addr

import (
	"crypto/hmac"
	"crypto/sha256"
	"fmt"
	"strconv"
	"strings"

	"github.com/deskgate/deskgate/gateway/model"
)

// The request status view's links, /requests/<id>-<token>: the token is an HMAC over the
// ticket and one participant's address, so a link works for that person on that ticket only,
// and stops working once the page no longer counts the address among the ticket's
// participants (the ticket deleted, the person erased, a CC removed).

// StatusTokenLen is the length of a status token: 26 lowercase base32 characters, 130 bits of
// HMAC. Longer than a reply address's token: this one opens a page, on the open web.
const StatusTokenLen = 26

// StatusToken is the status view token of ticket id for email (compared case-insensitively,
// as deskgate compares addresses everywhere).
func (b *Book) StatusToken(id uint64, email string) string {
	m := hmac.New(sha256.New, b.secret)
	// A purpose of its own, so that no other token of the desk is ever a status token.
	fmt.Fprintf(m, "status-view\x00%d\x00%s", id, model.AddressKey(email))
	return strings.ToLower(encoding.EncodeToString(m.Sum(nil)))[:StatusTokenLen]
}

// ValidStatusToken compares in constant time, so that response timing tells nothing.
func (b *Book) ValidStatusToken(id uint64, email, token string) bool {
	return hmac.Equal([]byte(b.StatusToken(id, email)), []byte(strings.ToLower(token)))
}

// StatusPath is the path of email's status view of ticket id, to be put after
// web.public_url.
func (b *Book) StatusPath(id uint64, email string) string {
	return fmt.Sprintf("/requests/%d-%s", id, b.StatusToken(id, email))
}

// StatusTokenOwner says which of candidates (a ticket's requester and, where the config lets
// them have the view, its CCs) token was made for: its index, or ok false for none. Every
// candidate is checked, so the time taken does not tell which one matched.
func (b *Book) StatusTokenOwner(id uint64, token string, candidates ...string) (index int, ok bool) {
	index = -1
	for i, c := range candidates {
		if c != "" && b.ValidStatusToken(id, c, token) && index < 0 {
			index = i
		}
	}
	return index, index >= 0
}

// ParseStatusRef reads the "<id>-<token>" of a status view path. It checks the form only;
// ValidStatusToken or StatusTokenOwner checks the token.
func ParseStatusRef(ref string) (id uint64, token string, ok bool) {
	idStr, token, found := strings.Cut(ref, "-")
	if !found || len(token) != StatusTokenLen || idStr == "" || idStr[0] == '0' {
		return 0, "", false
	}
	id, err := strconv.ParseUint(idStr, 10, 64)
	if err != nil {
		return 0, "", false
	}
	for i := 0; i < len(token); i++ {
		c := token[i] | 0x20 // ASCII lowercase; base32 is letters and 2-7
		if !('a' <= c && c <= 'z' || '2' <= token[i] && token[i] <= '7') {
			return 0, "", false
		}
	}
	return id, strings.ToLower(token), true
}
