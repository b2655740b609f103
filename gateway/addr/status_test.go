package addr

import (
	"strings"
	"testing"
)

func TestStatusTokenBindsTicketAndAddress(t *testing.T) {
	b := book()
	tok := b.StatusToken(42, "jane@customer.test")
	if len(tok) != StatusTokenLen || tok != strings.ToLower(tok) || strings.ContainsAny(tok, "-_=+/") {
		t.Fatalf("token %q: want %d lowercase base32 characters", tok, StatusTokenLen)
	}
	if b.StatusToken(42, " Jane@Customer.TEST ") != tok {
		t.Error("the token depends on the address's case or blanks")
	}
	if !b.ValidStatusToken(42, "JANE@customer.test", strings.ToUpper(tok)) {
		t.Error("a valid token in capitals refused")
	}
	for _, c := range []struct {
		id    uint64
		email string
		token string
	}{
		{43, "jane@customer.test", tok},            // another ticket
		{42, "john@customer.test", tok},            // another person
		{42, "jane@customer.test", tok[:25] + "a"}, // tampered
		{42, "jane@customer.test", ""},
		{42, "jane@customer.test", b.TicketToken(42)}, // the reply address's token is no status token
	} {
		if c.token != tok && c.token == b.StatusToken(c.id, c.email) {
			continue // the tampered one happened to be right: cannot happen with this secret
		}
		if b.ValidStatusToken(c.id, c.email, c.token) {
			t.Errorf("ValidStatusToken(%d, %q, %q) = true", c.id, c.email, c.token)
		}
	}
	other := NewBook([]byte("another desk's secret, 32 bytes!"), nil)
	if other.ValidStatusToken(42, "jane@customer.test", tok) {
		t.Error("another desk's secret accepts the token")
	}
	if got, want := b.StatusPath(42, "jane@customer.test"), "/requests/42-"+tok; got != want {
		t.Errorf("StatusPath = %q, want %q", got, want)
	}
}

func TestStatusTokenOwner(t *testing.T) {
	b := book()
	people := []string{"jane@customer.test", "cc1@partner.test", "cc2@partner.test"}
	for i, p := range people {
		if n, ok := b.StatusTokenOwner(7, b.StatusToken(7, p), people...); !ok || n != i {
			t.Errorf("token of %s: owner %d, %v; want %d", p, n, ok, i)
		}
	}
	// A CC removed from the ticket is no longer a candidate: her link opens nothing.
	if _, ok := b.StatusTokenOwner(7, b.StatusToken(7, "cc2@partner.test"), people[:2]...); ok {
		t.Error("the token of an address that is no candidate found an owner")
	}
	if _, ok := b.StatusTokenOwner(7, b.StatusToken(8, "jane@customer.test"), people...); ok {
		t.Error("another ticket's token found an owner")
	}
	if _, ok := b.StatusTokenOwner(7, "", "", ""); ok {
		t.Error("an empty token matched an empty candidate")
	}
}

func TestParseStatusRef(t *testing.T) {
	tok := book().StatusToken(42, "jane@customer.test")
	if id, got, ok := ParseStatusRef("42-" + strings.ToUpper(tok)); !ok || id != 42 || got != tok {
		t.Errorf("ParseStatusRef = %d %q %v", id, got, ok)
	}
	for _, bad := range []string{
		"", "42", "42-", "-" + tok, "042-" + tok, "x2-" + tok, "42-" + tok[:25], "42-" + tok + "a",
		"42-" + tok[:25] + "1", "42-" + tok[:25] + "-", "18446744073709551616-" + tok,
	} {
		if _, _, ok := ParseStatusRef(bad); ok {
			t.Errorf("ParseStatusRef(%q) accepted", bad)
		}
	}
}
