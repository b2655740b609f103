package desk

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/deskgate/deskgate/gateway/model"
	"github.com/deskgate/deskgate/gateway/rules"
	"github.com/deskgate/deskgate/store"
)

var customer = Envelope{From: "x@customer.test", Recipients: []string{"support@example.com"}}

func receive(t *testing.T, s *Service, raw string) Result {
	t.Helper()
	res, err := s.Receive(context.Background(), customer, []byte(strings.ReplaceAll(raw, "\n", "\r\n")))
	if err != nil {
		t.Fatal(err)
	}
	return res
}

// withAttachment is a mail from `from`, copied to cc, with a small attached file.
func withAttachment(from, cc, id, extra string) string {
	return fmt.Sprintf(`From: %s
To: support@example.com
Cc: %s
Subject: about %s
Message-ID: <%s>
%sMIME-Version: 1.0
Content-Type: multipart/mixed; boundary=b

--b
Content-Type: text/plain

Hello from %s, write to %s
--b
Content-Type: application/octet-stream; name=log.bin
Content-Disposition: attachment; filename=log.bin

binarybinary
--b--
`, from, cc, from, id, extra, from, from)
}

func TestDeleteTicketRemovesEverythingOfIt(t *testing.T) {
	s := testService(t, nil)
	ctx := context.Background()
	doomed := receive(t, s, withAttachment("jane@customer.test", "bob@customer.test", "one@customer.test", ""))
	receive(t, s, withAttachment("jane@customer.test", "bob@customer.test", "two@customer.test", "In-Reply-To: <one@customer.test>\n"))
	kept := receive(t, s, withAttachment("carol@customer.test", "dan@customer.test", "three@customer.test", ""))

	var sentIDs []string
	s.store.View(func(tx *store.Tx) error {
		for _, id := range tx.QueuedDeliveries(100) {
			if d, _ := tx.Delivery(id); d.TicketID == doomed.TicketID {
				sentIDs = append(sentIDs, d.MessageID)
			}
		}
		return nil
	})
	if len(sentIDs) == 0 {
		t.Fatal("no notification queued for the ticket to delete")
	}
	var totalBefore int
	s.store.View(func(tx *store.Tx) error { _, totalBefore = tx.QueueCounts(); return nil })
	d, err := s.DeleteTicket(ctx, doomed.TicketID)
	if err != nil {
		t.Fatal(err)
	}
	if d.Comments != 2 || d.Attachments != 2 || d.Deliveries != len(sentIDs) || d.MessageIDs < 2+len(sentIDs) {
		t.Errorf("deleted %+v; want 2 comments, 2 attachments, %d deliveries, at least %d Message-IDs", d, len(sentIDs), 2+len(sentIDs))
	}
	s.store.View(func(tx *store.Tx) error {
		if _, err := tx.Ticket(doomed.TicketID); !errors.Is(err, store.ErrNotFound) {
			t.Errorf("ticket still there: %v", err)
		}
		if _, err := tx.Comment(doomed.CommentID); !errors.Is(err, store.ErrNotFound) {
			t.Errorf("comment still there: %v", err)
		}
		if tx.AttachmentData(doomed.CommentID, 0) != nil {
			t.Error("attachment bytes still there")
		}
		if _, ok, _ := tx.Original(doomed.CommentID); ok {
			t.Error("original mail still there")
		}
		for _, id := range append([]string{"one@customer.test", "two@customer.test"}, sentIDs...) {
			if _, ok := tx.MessageID(id); ok {
				t.Errorf("Message-ID %s still indexed", id)
			}
		}
		for _, id := range tx.QueuedDeliveries(100) {
			if dl, _ := tx.Delivery(id); dl == nil || dl.TicketID == doomed.TicketID {
				t.Errorf("delivery %d of the deleted ticket still queued", id)
			}
		}
		if ref, ok := tx.MessageID("three@customer.test"); !ok || ref.TicketID != kept.TicketID {
			t.Error("the other ticket's Message-ID went too")
		}
		if tickets, comments := tx.Counts(); tickets != 1 || comments != 1 {
			t.Errorf("counted %d tickets, %d comments after the delete; want 1 and 1", tickets, comments)
		}
		if _, total := tx.QueueCounts(); total != totalBefore-d.Deliveries {
			t.Errorf("%d deliveries counted after deleting %d of %d", total, d.Deliveries, totalBefore)
		}
		return nil
	})
	// Deleting it again says it is not there; a reply to it is not lost but opens a ticket.
	_, err = s.DeleteTicket(ctx, doomed.TicketID)
	var ref *rules.Refusal
	if !errors.As(err, &ref) || ref.Kind != rules.RefuseNotFound {
		t.Errorf("second delete: %v, want not found", err)
	}
	again := receive(t, s, withAttachment("jane@customer.test", "bob@customer.test", "four@customer.test", "In-Reply-To: <one@customer.test>\n"))
	if again.Outcome != "new ticket" || again.TicketID == doomed.TicketID {
		t.Errorf("reply to a deleted ticket: %+v, want a new ticket", again)
	}
}

// Two deletes of one ticket at once: one deletes it, the other is told it is gone, and the
// counts stay right.
func TestDeleteTicketTwiceAtOnce(t *testing.T) {
	s := testService(t, nil)
	res := receive(t, s, withAttachment("jane@customer.test", "bob@customer.test", "one@customer.test", ""))
	receive(t, s, withAttachment("carol@customer.test", "dan@customer.test", "two@customer.test", ""))
	var wg sync.WaitGroup
	errs := make([]error, 2)
	for i := range errs {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			_, errs[i] = s.DeleteTicket(context.Background(), res.TicketID)
		}(i)
	}
	wg.Wait()
	if (errs[0] == nil) == (errs[1] == nil) {
		t.Fatalf("two deletes at once: %v and %v; want one success and one not found", errs[0], errs[1])
	}
	if tickets, comments := counts(s); tickets != 1 || comments != 1 {
		t.Fatalf("counted %d tickets, %d comments; want 1 and 1", tickets, comments)
	}
}

// A reply that arrives while its ticket is being deleted is never lost: it lands on the
// ticket before the delete, or becomes a new ticket after it.
func TestReplyDuringDeleteIsNotLost(t *testing.T) {
	for round := 0; round < 20; round++ {
		s := testService(t, nil)
		res := receive(t, s, withAttachment("jane@customer.test", "bob@customer.test", "one@customer.test", ""))
		var wg sync.WaitGroup
		var reply Result
		var replyErr error
		wg.Add(2)
		go func() {
			defer wg.Done()
			raw := withAttachment("jane@customer.test", "bob@customer.test", "reply@customer.test", "In-Reply-To: <one@customer.test>\n")
			reply, replyErr = s.Receive(context.Background(), customer, []byte(strings.ReplaceAll(raw, "\n", "\r\n")))
		}()
		go func() {
			defer wg.Done()
			if _, err := s.DeleteTicket(context.Background(), res.TicketID); err != nil {
				t.Error(err)
			}
		}()
		wg.Wait()
		if replyErr != nil {
			t.Fatal(replyErr)
		}
		s.store.View(func(tx *store.Tx) error {
			_, err := tx.Comment(reply.CommentID)
			switch {
			case reply.TicketID == res.TicketID && err == nil:
				t.Fatalf("round %d: the reply survives on the deleted ticket", round)
			case reply.TicketID != res.TicketID && err != nil:
				t.Fatalf("round %d: the reply was acknowledged as ticket %d but is not stored: %v", round, reply.TicketID, err)
			}
			return nil
		})
	}
}

func TestEraseRemovesAPersonFromEveryTicket(t *testing.T) {
	s := testService(t, nil)
	ctx := context.Background()
	own := receive(t, s, withAttachment("jane@customer.test", "bob@customer.test", "jane1@customer.test", ""))
	other := receive(t, s, withAttachment("carol@customer.test", "Jane <JANE@customer.test>", "carol1@customer.test", ""))
	janeWrote := receive(t, s, withAttachment("jane@customer.test", "carol@customer.test", "jane2@customer.test", "In-Reply-To: <carol1@customer.test>\n"))
	if janeWrote.TicketID != other.TicketID {
		t.Fatalf("jane's reply went to ticket %d, not %d", janeWrote.TicketID, other.TicketID)
	}
	untouched := receive(t, s, withAttachment("dan@customer.test", "erin@customer.test", "dan1@customer.test", ""))

	dry, err := s.Erase(ctx, "jane@customer.test", true)
	if err != nil {
		t.Fatal(err)
	}
	if dry.Tickets != 2 || len(dry.Actions) == 0 || !strings.Contains(strings.Join(dry.Actions, "\n"), fmt.Sprintf("ticket %d: deleted (requester)", own.TicketID)) {
		t.Fatalf("dry run: %+v", dry)
	}
	if tickets, _ := counts(s); tickets != 3 {
		t.Fatalf("a dry run changed the desk: %d tickets", tickets)
	}

	done, err := s.Erase(ctx, "jane@customer.test", false)
	if err != nil {
		t.Fatal(err)
	}
	if len(done.Actions) != len(dry.Actions) {
		t.Errorf("the erasure did %d changes, the dry run listed %d:\n%s\n--\n%s", len(done.Actions), len(dry.Actions),
			strings.Join(done.Actions, "\n"), strings.Join(dry.Actions, "\n"))
	}
	s.store.View(func(tx *store.Tx) error {
		if _, err := tx.Ticket(own.TicketID); !errors.Is(err, store.ErrNotFound) {
			t.Errorf("the ticket jane opened is still there: %v", err)
		}
		if left, _ := tx.Mentioning("jane@customer.test"); len(left) != 0 {
			t.Errorf("tickets %v still mention jane", left)
		}
		tk, err := tx.Ticket(other.TicketID)
		if err != nil {
			t.Fatal(err)
		}
		for _, p := range tk.CCs {
			if strings.Contains(strings.ToLower(p.Email+p.Name), "jane") {
				t.Errorf("jane is still a CC: %+v", p)
			}
		}
		c, err := tx.Comment(janeWrote.CommentID)
		if err != nil {
			t.Fatal(err)
		}
		if c.Author != done.Marker || c.Body != rules.ErasedText || len(c.Attachments) != 0 || tx.AttachmentData(c.ID, 0) != nil {
			t.Errorf("jane's comment after the erasure: author %q, body %q, %d attachments", c.Author, c.Body, len(c.Attachments))
		}
		if _, ok, _ := tx.Original(c.ID); ok {
			t.Error("jane's original mail is still kept")
		}
		first, _ := tx.Comment(other.CommentID)
		if raw, _, _ := tx.Original(first.ID); strings.Contains(strings.ToLower(string(raw)), "jane@customer.test") {
			t.Error("carol's original still shows jane's address")
		}
		for _, id := range tx.QueuedDeliveries(100) {
			d, _ := tx.Delivery(id)
			if strings.Contains(strings.ToLower(string(tx.DeliveryMessage(id))), "jane@customer.test") {
				t.Errorf("queued delivery %d still carries jane's address", id)
			}
			for _, r := range d.Recipients {
				if r.Email == done.Marker && r.State == model.DeliveryQueued {
					t.Errorf("delivery %d is still to be sent to the erased address", id)
				}
			}
		}
		if c, _ := tx.Comment(untouched.CommentID); c == nil || c.Author != "dan@customer.test" {
			t.Error("a ticket jane never saw was changed")
		}
		return nil
	})
}

func TestEraseRefusesAgentsAndOwnAddresses(t *testing.T) {
	s := testService(t, nil)
	for _, tc := range []struct {
		address string
		kind    rules.RefusalKind
	}{
		{"alice@example.com", rules.RefuseNotAllowed},
		{"ALICE@example.com", rules.RefuseNotAllowed},
		{"support@example.com", rules.RefuseNotAllowed},
		{"not an address", rules.RefuseInvalid},
		{"jöe@xn--zz.test", rules.RefuseInvalid},
		{"SUPPORT@EXAMPLE.COM", rules.RefuseNotAllowed},
		{"", rules.RefuseInvalid},
	} {
		_, err := s.Erase(context.Background(), tc.address, false)
		var ref *rules.Refusal
		if !errors.As(err, &ref) || ref.Kind != tc.kind {
			t.Errorf("erase %q: %v, want refusal of kind %d", tc.address, err, tc.kind)
		}
	}
}

func TestRetentionDeletesOnlyOldSolvedTickets(t *testing.T) {
	s := testService(t, nil)
	ctx := context.Background()
	now := time.Date(2026, 11, 24, 12, 0, 0, 0, time.UTC)
	s.Now = func() time.Time { return now.AddDate(-2, 0, 0) }
	var old []uint64
	for i := 0; i < 40; i++ { // more than one batch
		res := receive(t, s, fmt.Sprintf("From: u%d@customer.test\nTo: support@example.com\nSubject: s\nMessage-ID: <old%d@x>\n\nhi\n", i, i))
		old = append(old, res.TicketID)
	}
	for _, id := range old[:38] {
		if _, err := s.Act(ctx, id, []rules.Action{{Kind: model.OpStatus, Actor: "alice@example.com", Status: "solved"}}, ""); err != nil {
			t.Fatal(err)
		}
	}
	s.Now = func() time.Time { return now }
	recent := receive(t, s, "From: new@customer.test\nTo: support@example.com\nSubject: s\nMessage-ID: <recent@x>\n\nhi\n")
	if _, err := s.Act(ctx, recent.TicketID, []rules.Action{{Kind: model.OpStatus, Actor: "alice@example.com", Status: "solved"}}, ""); err != nil {
		t.Fatal(err)
	}
	n, err := s.DeleteSolvedBefore(ctx, now.AddDate(-1, 0, 0))
	if err != nil {
		t.Fatal(err)
	}
	if n != 38 {
		t.Errorf("deleted %d tickets, want the 38 solved two years ago", n)
	}
	s.store.View(func(tx *store.Tx) error {
		for _, id := range append(old[38:], recent.TicketID) {
			if _, err := tx.Ticket(id); err != nil {
				t.Errorf("ticket %d (open, or solved today) was deleted", id)
			}
		}
		if tickets, _ := tx.Counts(); tickets != 3 {
			t.Errorf("%d tickets left, want 3", tickets)
		}
		return nil
	})
}

// Erasing ann@customer.test leaves joann@customer.test, an address that contains it, as it was:
// on her own ticket, as a CC, and where the text names her.
func TestEraseLeavesLongerAddressesAlone(t *testing.T) {
	s := testService(t, nil)
	ann := receive(t, s, withAttachment("carol@customer.test", "ann@customer.test", "c1@customer.test", ""))
	joann := receive(t, s, withAttachment("joann@customer.test", "dan@customer.test", "j1@customer.test", ""))
	other := receive(t, s, withAttachment("erin@customer.test", "joann@customer.test", "e1@customer.test", ""))
	before := map[uint64][]byte{}
	s.store.View(func(tx *store.Tx) error {
		for _, r := range []Result{joann, other} {
			c, _ := tx.Comment(r.CommentID)
			raw, _, _ := tx.Original(r.CommentID)
			before[r.CommentID] = []byte(fmt.Sprint(*c) + string(raw))
		}
		return nil
	})
	e, err := s.Erase(context.Background(), "ann@customer.test", false)
	if err != nil {
		t.Fatal(err)
	}
	if e.Tickets != 1 {
		t.Errorf("erased from %d tickets, want 1 (ticket %d): %v", e.Tickets, ann.TicketID, e.Actions)
	}
	s.store.View(func(tx *store.Tx) error {
		for _, r := range []Result{joann, other} {
			c, _ := tx.Comment(r.CommentID)
			raw, _, _ := tx.Original(r.CommentID)
			if string(before[r.CommentID]) != fmt.Sprint(*c)+string(raw) {
				t.Errorf("comment %d, which only names joann, was changed", r.CommentID)
			}
		}
		tk, _ := tx.Ticket(other.TicketID)
		if len(tk.CCs) != 1 || tk.CCs[0].Email != "joann@customer.test" {
			t.Errorf("joann as a CC after erasing ann: %+v", tk.CCs)
		}
		return nil
	})
}

// erase finds a person with an internationalised address in whichever form the address is
// given (upper case, A-labels, NFD) and in whichever form it stands in stored text.
func TestEraseInternationalisedAddress(t *testing.T) {
	for _, given := range []string{"jöe@bücher.test", "JÖE@BÜCHER.TEST", "jöe@xn--bcher-kva.test", "jo\u0308e@bu\u0308cher.test"} {
		s := testService(t, nil)
		ctx := context.Background()
		res := receive(t, s, "From: Carol <carol@customer.test>\nTo: support@example.com\nCc: Jöe <JÖE@XN--BCHER-KVA.TEST>\n"+
			"Subject: for jöe@bücher.test\nMessage-ID: <c1@customer.test>\n\nAsk JÖE@BÜCHER.TEST, or jöe@xn--bcher-kva.test.\n")
		done, err := s.Erase(ctx, given, false)
		if err != nil {
			t.Fatalf("erase %q: %v", given, err)
		}
		if done.Tickets != 1 || !strings.EqualFold(done.Address, "jöe@bücher.test") || !strings.HasSuffix(done.Address, "@bücher.test") {
			t.Errorf("erase %q: %+v, want ticket %d and the canonical address", given, done, res.TicketID)
		}
		s.store.View(func(tx *store.Tx) error {
			tk, err := tx.Ticket(res.TicketID)
			if err != nil {
				t.Fatal(err)
			}
			if len(tk.CCs) != 0 {
				t.Errorf("erase %q: CCs left %+v", given, tk.CCs)
			}
			c, _ := tx.Comment(res.CommentID)
			raw, _, _ := tx.Original(res.CommentID)
			for what, text := range map[string]string{"subject": tk.Subject, "comment": c.Body, "original": string(raw)} {
				low := strings.ToLower(text)
				if strings.Contains(low, "jöe@") || strings.Contains(low, "xn--bcher-kva") {
					t.Errorf("erase %q: the %s still names jöe: %q", given, what, text)
				}
			}
			if left, _ := tx.Mentioning("jöe@bücher.test"); len(left) != 0 {
				t.Errorf("erase %q: tickets %v still mention jöe", given, left)
			}
			return nil
		})
	}
}
