package store

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/deskgate/deskgate/gateway/model"
)

func addTicketWithComment(t *testing.T, s *Store, msgID string, refs ...string) (uint64, uint64) {
	t.Helper()
	var tid, cid uint64
	err := s.Update(context.Background(), func(tx *Tx) error {
		tk := &model.Ticket{Subject: "s", Status: model.StatusNew, Requester: model.Person{Email: "jane@customer.test"}}
		if err := tx.CreateTicket(tk); err != nil {
			return err
		}
		c := &model.Comment{Author: "jane@customer.test", Public: true, MessageID: msgID, References: refs, Body: "hello"}
		if err := tx.AddComment(tk, c); err != nil {
			return err
		}
		tid, cid = tk.ID, c.ID
		return tx.PutTicket(tk)
	})
	if err != nil {
		t.Fatal(err)
	}
	return tid, cid
}

func TestCommitSurvivesReopen(t *testing.T) { eachBackend(t, testCommitSurvivesReopen) }

func testCommitSurvivesReopen(t *testing.T, open opener) {
	s, err := open()
	if err != nil {
		t.Fatal(err)
	}
	secret := append([]byte(nil), s.Secret()...)
	tid, cid := addTicketWithComment(t, s, "<first@customer.test>", "<older@customer.test>")
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}

	s, err = open()
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if string(s.Secret()) != string(secret) {
		t.Error("the token secret changed across a reopen; every reply address would break")
	}
	err = s.View(func(tx *Tx) error {
		tk, err := tx.Ticket(tid)
		if err != nil {
			return err
		}
		cs, err := tx.Comments(tk)
		if err != nil {
			return err
		}
		if len(cs) != 1 || cs[0].ID != cid || cs[0].Body != "hello" {
			t.Errorf("comments after reopen = %+v", cs)
		}
		if ref, ok := tx.MessageID("first@customer.test"); !ok || ref.CommentID != cid || ref.TicketID != tid {
			t.Errorf("own Message-ID not indexed: %+v %v", ref, ok)
		}
		if ref, ok := tx.MessageID("<older@customer.test>"); !ok || ref.TicketID != tid || ref.CommentID != 0 {
			t.Errorf("referenced Message-ID not indexed: %+v %v", ref, ok)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

func TestFailedUpdateKeepsNothingAndSparesTheOthers(t *testing.T) {
	eachBackend(t, testFailedUpdateKeepsNothingAndSparesTheOthers)
}

func testFailedUpdateKeepsNothingAndSparesTheOthers(t *testing.T, open opener) {
	s, err := open()
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	boom := errors.New("boom")
	var wg sync.WaitGroup
	errs := make([]error, 20)
	for i := range errs {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			errs[i] = s.Update(context.Background(), func(tx *Tx) error {
				tk := &model.Ticket{Subject: "x", Status: model.StatusNew}
				if err := tx.CreateTicket(tk); err != nil {
					return err
				}
				if i%5 == 0 {
					return boom
				}
				return nil
			})
		}(i)
	}
	wg.Wait()
	failed := 0
	for i, err := range errs {
		if i%5 == 0 {
			if !errors.Is(err, boom) {
				t.Errorf("call %d: err = %v, want boom", i, err)
			}
			failed++
		} else if err != nil {
			t.Errorf("call %d failed with the others: %v", i, err)
		}
	}
	s.View(func(tx *Tx) error {
		if n, _ := tx.Counts(); n != len(errs)-failed {
			t.Errorf("%d tickets stored, want %d", n, len(errs)-failed)
		}
		return nil
	})
}

func TestMessageIDFirstSeenWins(t *testing.T) { eachBackend(t, testMessageIDFirstSeenWins) }

func testMessageIDFirstSeenWins(t *testing.T, open opener) {
	s, err := open()
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	t1, _ := addTicketWithComment(t, s, "a@x", "shared@x")
	addTicketWithComment(t, s, "b@x", "shared@x")
	s.View(func(tx *Tx) error {
		if ref, _ := tx.MessageID("shared@x"); ref.TicketID != t1 {
			t.Errorf("a later reference moved shared@x to ticket %d", ref.TicketID)
		}
		return nil
	})
}

func TestListTicketsNewestFirstWithFilters(t *testing.T) {
	eachBackend(t, testListTicketsNewestFirstWithFilters)
}

func testListTicketsNewestFirstWithFilters(t *testing.T, open opener) {
	s, err := open()
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	for i := 0; i < 5; i++ {
		addTicketWithComment(t, s, "")
	}
	s.Update(context.Background(), func(tx *Tx) error {
		tk, _ := tx.Ticket(2)
		tk.Status = model.StatusSolved
		return tx.PutTicket(tk)
	})
	s.View(func(tx *Tx) error {
		all, _ := tx.ListTickets("", 100, 0)
		if len(all) != 5 || all[0].ID != 5 || all[4].ID != 1 {
			t.Errorf("list order wrong: %v", ids(all))
		}
		page, _ := tx.ListTickets("", 2, 4)
		if len(page) != 2 || page[0].ID != 3 || page[1].ID != 2 {
			t.Errorf("before=4 limit=2 gave %v", ids(page))
		}
		solved, _ := tx.ListTickets(model.StatusSolved, 100, 0)
		if len(solved) != 1 || solved[0].ID != 2 {
			t.Errorf("status filter gave %v", ids(solved))
		}
		return nil
	})
}

func ids(ts []model.Ticket) []uint64 {
	var out []uint64
	for _, t := range ts {
		out = append(out, t.ID)
	}
	return out
}

func TestSecondOpenIsRefusedClearly(t *testing.T) {
	dir := t.TempDir()
	s, err := Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if _, err := Open(dir); err == nil {
		t.Fatal("a second process could open the database")
	}
}

// TestDueDeliveriesAreNotStarvedByDeferredOnes: thousands of deliveries waiting for a
// later retry must not hide one that is due now.
func TestDueDeliveriesAreNotStarvedByDeferredOnes(t *testing.T) {
	eachBackend(t, testDueDeliveriesAreNotStarvedByDeferredOnes)
}

func testDueDeliveriesAreNotStarvedByDeferredOnes(t *testing.T, open opener) {
	s, err := open()
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	now := time.Now()
	var due uint64
	s.Update(context.Background(), func(tx *Tx) error {
		for i := 0; i < 1500; i++ {
			id := s.NewIds().Delivery()
			next := now.Add(time.Hour)
			if i == 1499 {
				next, due = now.Add(-time.Second), id
			}
			if err := tx.QueueDelivery(&Delivery{ID: id, State: model.DeliveryQueued, NextTry: next}, []byte("m")); err != nil {
				return err
			}
		}
		return nil
	})
	s.View(func(tx *Tx) error {
		got := tx.DueDeliveries(now, 200)
		if len(got) != 1 || got[0] != due {
			t.Fatalf("due = %v, want [%d]", got, due)
		}
		return nil
	})
	// Moving a delivery's next try moves it on the queue.
	s.Update(context.Background(), func(tx *Tx) error {
		d, _ := tx.Delivery(due)
		d.NextTry = now.Add(time.Hour)
		return tx.PutDelivery(d)
	})
	s.View(func(tx *Tx) error {
		if got := tx.DueDeliveries(now, 200); len(got) != 0 {
			t.Fatalf("rescheduled delivery still due: %v", got)
		}
		if q, _ := tx.QueueCounts(); q != 1500 {
			t.Fatalf("queue holds %d, want 1500", q)
		}
		return nil
	})
}

func TestSentDeliveriesDropTheirBytes(t *testing.T) { eachBackend(t, testSentDeliveriesDropTheirBytes) }

func testSentDeliveriesDropTheirBytes(t *testing.T, open opener) {
	s, err := open()
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	s.Update(context.Background(), func(tx *Tx) error {
		for id := uint64(1); id <= 2; id++ {
			if err := tx.QueueDelivery(&Delivery{ID: id, State: model.DeliveryQueued, NextTry: time.Now(),
				Recipients: []model.DeliveryRecipient{{Email: "a@b", State: model.DeliveryQueued}}}, []byte("message")); err != nil {
				return err
			}
		}
		sent, _ := tx.Delivery(1)
		if err := tx.Settle(sent, []model.DeliveryRecipient{{Email: "a@b", State: model.DeliverySent, Reply: "ok"}}, model.DeliverySent, nil); err != nil {
			return err
		}
		if err := tx.PutDelivery(sent); err != nil {
			return err
		}
		failed, _ := tx.Delivery(2)
		tx.Settle(failed, []model.DeliveryRecipient{{Email: "a@b", State: model.DeliveryFailed, Reply: "550"}}, model.DeliveryFailed, nil)
		return tx.PutDelivery(failed)
	})
	s.View(func(tx *Tx) error {
		if len(tx.DeliveryMessage(1)) != 0 {
			t.Error("a sent delivery kept its message")
		}
		if string(tx.DeliveryMessage(2)) != "message" {
			t.Error("a failed delivery lost the message queue retry needs")
		}
		if q, _ := tx.QueueCounts(); q != 0 {
			t.Errorf("%d still queued", q)
		}
		return nil
	})
}

func TestListByStatusUsesTheIndexAndFollowsChanges(t *testing.T) {
	dir := t.TempDir()
	s, err := Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	statuses := []model.Status{model.StatusNew, model.StatusOpen, model.StatusSolved, model.StatusOpen, model.StatusNew, model.StatusOpen}
	s.Update(context.Background(), func(tx *Tx) error {
		for _, st := range statuses {
			if err := tx.CreateTicket(&model.Ticket{Status: st}); err != nil {
				return err
			}
		}
		tk, _ := tx.Ticket(2)
		tk.Status = model.StatusSolved // 2 leaves open
		return tx.PutTicket(tk)
	})
	ids := func(status model.Status, limit int, before uint64) []uint64 {
		var out []uint64
		s.View(func(tx *Tx) error {
			list, err := tx.ListTickets(status, limit, before)
			if err != nil {
				t.Fatal(err)
			}
			for _, tk := range list {
				out = append(out, tk.ID)
			}
			return nil
		})
		return out
	}
	for _, tc := range []struct {
		status model.Status
		limit  int
		before uint64
		want   string
	}{
		{model.StatusOpen, 10, 0, "[6 4]"},
		{model.StatusSolved, 10, 0, "[3 2]"},
		{model.StatusNew, 10, 0, "[5 1]"},
		{model.StatusOpen, 1, 0, "[6]"},
		{model.StatusOpen, 10, 6, "[4]"},
		{model.StatusNew, 10, 5, "[1]"},
		{model.StatusPending, 10, 0, "[]"},
		{"", 3, 0, "[6 5 4]"},
	} {
		if got := fmt.Sprint(ids(tc.status, tc.limit, tc.before)); got != tc.want {
			t.Errorf("%q limit %d before %d: %s, want %s", tc.status, tc.limit, tc.before, got, tc.want)
		}
	}
	s.Close()

	// A database from before the index (schema 0) gets it at the next start.
	db, err := bolt.Open(filepath.Join(dir, FileName), 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	db.Update(func(tx *bolt.Tx) error {
		tx.DeleteBucket(bucketByStatus)
		tx.Bucket(bucketMeta).Delete(keyTicketCount)
		tx.Bucket(bucketMeta).Delete(keyDeliveryCount)
		return tx.Bucket(bucketMeta).Delete(keySchema)
	})
	db.Close()
	if s, err = Open(dir); err != nil {
		t.Fatal(err)
	}
	if got := fmt.Sprint(ids(model.StatusOpen, 10, 0)); got != "[6 4]" {
		t.Errorf("after the migration: %s", got)
	}
	// ...and its ticket counter (migration 2), from the sequence of a desk that never
	// deleted a ticket.
	s.View(func(tx *Tx) error {
		if tickets, _ := tx.Counts(); tickets != 6 {
			t.Errorf("after the migration %d tickets counted, want 6", tickets)
		}
		return nil
	})
	s.Close()

	// A database from a newer deskgate is refused, not misread.
	db, _ = bolt.Open(filepath.Join(dir, FileName), 0o600, nil)
	db.Update(func(tx *bolt.Tx) error { return tx.Bucket(bucketMeta).Put(keySchema, []byte{0, 0, 0, 99}) })
	db.Close()
	if _, err := Open(dir); err == nil || !strings.Contains(err.Error(), "newer than this deskgate") {
		t.Errorf("a newer schema: %v", err)
	}
}

func TestStoredStatusReadsOnlyTheField(t *testing.T) {
	for _, tc := range []struct{ json, want string }{
		{`{"id":1,"subject":"a \"status\":\"x\" trick","status":"open","requester":{}}`, "open"},
		{`{"id":2,"subject":"","status":"solved"}`, "solved"},
		{``, ""},
	} {
		if got := storedStatus([]byte(tc.json)); got != tc.want {
			t.Errorf("%s: %q, want %q", tc.json, got, tc.want)
		}
	}
}
