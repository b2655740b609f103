package addr

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base32"
	"fmt"
	"strings"
	"sync"
	"testing"
)

func book() *Book {
	return NewBook([]byte("0123456789abcdef0123456789abcdef"), []string{"support@example.com", "Help@Example.org"})
}

func TestClassify(t *testing.T) {
	b := book()
	tok := b.TicketToken(42)
	cases := []struct {
		in   string
		kind Kind
		id   uint64
		n    int
	}{
		{"support@example.com", Support, 0, 0},
		{"SUPPORT@EXAMPLE.COM", Support, 0, 0},
		{"<help@example.org>", Support, 0, 0},
		{"support+42-" + tok + "@example.com", Ticket, 42, 0},
		{"support+42-" + strings.ToUpper(tok) + "@example.com", Ticket, 42, 0},
		{"support+42-" + tok + "-p3@example.com", Masked, 42, 3},
		{"support+bounce-7-" + b.BounceToken(7) + "@example.com", Bounce, 7, 0},
		{"support+anything@example.com", Unknown, 0, 0},
		{"support+042-" + tok + "@example.com", Unknown, 0, 0},
		{"support+42-short@example.com", Unknown, 0, 0},
	}
	for _, tc := range cases {
		p, ok := b.Classify(tc.in)
		if !ok || p.Kind != tc.kind || p.ID != tc.id || p.Participant != tc.n {
			t.Errorf("Classify(%q) = %+v, %v", tc.in, p, ok)
		}
	}
	for _, other := range []string{"jane@customer.test", "support@example.net", "support", "@example.com", "supportx@example.com"} {
		if _, ok := b.Classify(other); ok {
			t.Errorf("Classify(%q) claimed a foreign address", other)
		}
	}
}

func TestAddressesRoundTrip(t *testing.T) {
	b := book()
	reply := b.ReplyAddress("support@example.com", 42)
	p, ok := b.Classify(reply)
	if !ok || p.Kind != Ticket || p.ID != 42 || !b.ValidTicketToken(p.ID, p.Token) {
		t.Fatalf("reply address %q reads back as %+v", reply, p)
	}
	masked := b.MaskedAddress("support@example.com", 42, 2)
	if p, _ := b.Classify(masked); p.Kind != Masked || p.Participant != 2 || !b.ValidTicketToken(42, p.Token) {
		t.Fatalf("masked address %q reads back as %+v", masked, p)
	}
	bounce := b.BounceAddress("support@example.com", 9)
	if p, _ := b.Classify(bounce); p.Kind != Bounce || !b.ValidBounceToken(9, p.Token) || b.ValidTicketToken(9, p.Token) {
		t.Fatalf("bounce address %q reads back as %+v", bounce, p)
	}
}

func TestTokensDependOnIDAndSecret(t *testing.T) {
	b := book()
	other := NewBook([]byte("another secret"), []string{"support@example.com"})
	if b.TicketToken(1) == b.TicketToken(2) || b.TicketToken(1) == other.TicketToken(1) {
		t.Fatal("tokens do not depend on id and secret")
	}
	if b.ValidTicketToken(2, b.TicketToken(1)) || b.ValidTicketToken(1, "") {
		t.Fatal("a token validated for the wrong ticket")
	}
	if len(b.TicketToken(1)) != TokenLen {
		t.Fatalf("token length %d", len(b.TicketToken(1)))
	}
}

func TestFindTags(t *testing.T) {
	b := book()
	tag := b.Tag(42)
	got := FindTags("Re: Printer " + tag + " and [#7] but not [#0] nor [#x]")
	if len(got) != 2 || got[0].ID != 42 || got[0].Token != b.TicketToken(42) || got[1].ID != 7 || got[1].Token != "" {
		t.Fatalf("FindTags = %+v", got)
	}
	if len(FindTags(strings.Repeat("[#1]", 1000))) > maxTags {
		t.Fatal("tag count not bounded")
	}
}

func FuzzClassify(f *testing.F) {
	b := book()
	for _, s := range []string{"support@example.com", b.ReplyAddress("support@example.com", 1), b.MaskedAddress("support@example.com", 18446744073709551615, 99),
		b.BounceAddress("help@example.org", 3), "support+--@example.com", "support+1-@example.com", "+@", "@@", "support+bounce-@example.com"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		p, ok := b.Classify(s)
		if !ok {
			return
		}
		if p.Support == "" {
			t.Fatalf("%q classified without its support address", s)
		}
		if (p.Kind == Ticket || p.Kind == Masked) && b.ValidTicketToken(p.ID, p.Token) {
			// Only addresses made from the secret may validate.
			if p.Token != b.TicketToken(p.ID) {
				t.Fatalf("%q validated with a foreign token", s)
			}
		}
	})
}

func FuzzFindTags(f *testing.F) {
	b := book()
	for _, s := range []string{"Re: " + b.Tag(5), "[#1][#2-abcdefghijkl]", "[#99999999999999999999]", "[#", "[#1-ABCDEFGHIJKL]"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		for _, tag := range FindTags(s) {
			if tag.ID == 0 || (tag.Token != "" && len(tag.Token) != TokenLen) {
				t.Fatalf("FindTags(%q) returned %+v", s, tag)
			}
		}
	})
}

// An internationalised support domain is one address in every form a sender may write it,
// and what deskgate makes from it is ASCII, so that any upstream carries it.
func TestIDNSupportAddress(t *testing.T) {
	b := NewBook([]byte("0123456789abcdef0123456789abcdef"), []string{"help@bücher.test", "support@example.com"})
	tok := b.TicketToken(42)
	for _, in := range []string{"help@bücher.test", "HELP@BÜCHER.TEST", "help@xn--bcher-kva.test", "help@XN--BCHER-KVA.TEST", "help@bu\u0308cher.test"} {
		p, ok := b.Classify(in)
		if !ok || p.Kind != Support || p.Support != "help@xn--bcher-kva.test" {
			t.Errorf("Classify(%q) = %+v, %v; want the support address help@xn--bcher-kva.test", in, p, ok)
		}
		// The local part keeps its case (RFC 5321); the domain is one.
		if got, ok := b.Mailbox(in); !ok || !strings.EqualFold(got, "help@bücher.test") || !strings.HasSuffix(got, "@bücher.test") {
			t.Errorf("Mailbox(%q) = %q, %v; want help@bücher.test", in, got, ok)
		}
	}
	for _, in := range []string{"help+42-" + tok + "@bücher.test", "help+42-" + tok + "@xn--bcher-kva.test"} {
		if p, ok := b.Classify(in); !ok || p.Kind != Ticket || p.ID != 42 {
			t.Errorf("Classify(%q) = %+v, %v; want ticket 42", in, p, ok)
		}
	}
	if got, ok := b.Mailbox("postmaster@BÜCHER.test"); !ok || got != "help@xn--bcher-kva.test" {
		t.Errorf("Mailbox(postmaster@BÜCHER.test) = %q, %v", got, ok)
	}
	if got := b.Supports(); got[0] != "help@xn--bcher-kva.test" || got[1] != "support@example.com" {
		t.Errorf("Supports() = %q", got)
	}
	// The stored support of a ticket may be in either form; what is made is ASCII.
	for _, support := range []string{"help@bücher.test", "help@xn--bcher-kva.test"} {
		for _, made := range []string{b.ReplyAddress(support, 42), b.MaskedAddress(support, 42, 1), b.BounceAddress(support, 7), b.ThreadAnchor(support, 42)} {
			if !IsASCII(made) || !strings.HasSuffix(made, "@xn--bcher-kva.test") {
				t.Errorf("from %q deskgate made %q, want ASCII at xn--bcher-kva.test", support, made)
			}
		}
	}
	for _, bad := range []string{"help@xn--zz.test", "help@bücher.test\x00", "jöe@bücher.test", ""} {
		if p, ok := b.Classify(bad); ok {
			t.Errorf("Classify(%q) = %+v, want not ours", bad, p)
		}
	}
}

func TestMailboxIsCanonical(t *testing.T) {
	b := book()
	if got, ok := b.Mailbox("SUPPORT@EXAMPLE.COM"); !ok || got != "SUPPORT@example.com" {
		t.Errorf("Mailbox(SUPPORT@EXAMPLE.COM) = %q, %v; want SUPPORT@example.com", got, ok)
	}
}

// The tokens are the HMAC they always were: reply addresses and tags made before the keyed
// states were reused, and by other nodes, must keep matching, however many callers at once.
func TestTokensAreTheKeyedHMAC(t *testing.T) {
	secret := []byte("a secret of the desk")
	b := NewBook(secret, []string{"support@example.com"})
	want := func(purpose string, id uint64) string {
		m := hmac.New(sha256.New, secret)
		fmt.Fprintf(m, "%s\x00%d", purpose, id)
		return strings.ToLower(base32.StdEncoding.WithPadding(base32.NoPadding).EncodeToString(m.Sum(nil)))[:TokenLen]
	}
	var wg sync.WaitGroup
	for g := 0; g < 4; g++ {
		wg.Add(1)
		go func(g uint64) {
			defer wg.Done()
			for id := g * 1000; id < g*1000+300; id++ {
				if got, w := b.TicketToken(id), want("ticket", id); got != w {
					t.Errorf("ticket %d: token %s, want %s", id, got, w)
				}
				if got, w := b.BounceToken(id), want("bounce", id); got != w {
					t.Errorf("delivery %d: bounce token %s, want %s", id, got, w)
				}
			}
		}(uint64(g))
	}
	wg.Wait()
}

// BenchmarkTicketToken is a new ticket's token, which no cache holds yet.
func BenchmarkTicketToken(b *testing.B) {
	book := NewBook([]byte("a secret of the desk"), []string{"support@example.com"})
	id := uint64(0)
	for b.Loop() {
		id++
		book.mac("ticket", id)
	}
}
