package desk

import (
	"context"
	"testing"

	"github.com/deskgate/deskgate/config"
	"github.com/deskgate/deskgate/store"
)

// A customer with an internationalised address is one person however the address is
// written: a reply from JÖE@BÜCHER.TEST (or in A-labels, or decomposed) to the tag of the
// ticket jöe@bücher.test opened threads to that ticket as the requester's own comment, and a
// new mail from it to an IDN support address written in A-labels is filed there.
func TestInternationalisedAddressThreads(t *testing.T) {
	s := testService(t, func(c *config.Config) {
		c.Support.Addresses = []string{"support@example.com", "hilfe@bücher.test"}
	})
	ctx := context.Background()
	first, err := s.Receive(ctx, Envelope{From: "jöe@bücher.test", Recipients: []string{"hilfe@xn--bcher-kva.test"}},
		[]byte("From: Jöe <jöe@bücher.test>\r\nTo: hilfe@bücher.test\r\nSubject: Grüße\r\nMessage-ID: <j1@bücher.test>\r\n\r\nHallo\r\n"))
	if err != nil || first.Outcome != "new ticket" {
		t.Fatalf("first mail: %+v %v", first, err)
	}
	tag := s.Book().Tag(first.TicketID)
	for i, from := range []string{"JÖE@BÜCHER.TEST", "jöe@XN--BCHER-KVA.test", "jo\u0308e@bu\u0308cher.test"} {
		res, err := s.Receive(ctx, Envelope{From: from, Recipients: []string{"HILFE@BÜCHER.TEST"}},
			[]byte("From: "+from+"\r\nTo: hilfe@bücher.test\r\nSubject: Re: Grüße "+tag+"\r\nMessage-ID: <j"+string(rune('2'+i))+"@x.test>\r\n\r\nNoch da?\r\n"))
		if err != nil || res.TicketID != first.TicketID || res.Outcome != "comment" {
			t.Errorf("reply from %s: %+v %v, want a comment on ticket %d", from, res, err, first.TicketID)
		}
	}
	s.store.View(func(tx *store.Tx) error {
		tk, err := tx.Ticket(first.TicketID)
		if err != nil {
			t.Fatal(err)
		}
		if tk.Requester.Email != "jöe@bücher.test" || len(tk.CCs) != 0 {
			t.Errorf("requester %+v, CCs %+v; want jöe@bücher.test alone", tk.Requester, tk.CCs)
		}
		if tk.Support != "hilfe@xn--bcher-kva.test" {
			t.Errorf("ticket support %q, want the ASCII form hilfe@xn--bcher-kva.test", tk.Support)
		}
		comments, _ := tx.Comments(tk)
		for _, c := range comments {
			if !sameAsJoe(c.Author) || !c.Public {
				t.Errorf("comment %d by %q (public %v), want the requester's public reply", c.ID, c.Author, c.Public)
			}
		}
		return nil
	})
}

func sameAsJoe(a string) bool {
	switch a {
	case "jöe@bücher.test", "JÖE@bücher.test":
		return true
	}
	return false
}
