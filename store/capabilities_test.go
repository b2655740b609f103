package store

import (
	"bytes"
	"context"
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/deskgate/deskgate/gateway/model"
)

// The capabilities behind the backend seam (kv.go) hold the same promises on every store; what
// only several nodes can show (leases taken from each other, wake-ups across nodes) is in
// postgres_test.go.

func TestHealthAndWhere(t *testing.T) { eachBackend(t, testHealthAndWhere) }

func testHealthAndWhere(t *testing.T, open opener) {
	s, err := open()
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if err := s.Ping(); err != nil {
		t.Errorf("Ping on an open store: %v", err)
	}
	if err := s.Wedged(); err != nil {
		t.Errorf("Wedged on an open store: %v", err)
	}
	if s.Where() == "" {
		t.Error("Where names nothing")
	}
}

func TestClaimAndReleaseOnOneNode(t *testing.T) { eachBackend(t, testClaimAndReleaseOnOneNode) }

// One node alone is given every delivery it asks for, again while it holds them, and again
// after it gave them back.
func testClaimAndReleaseOnOneNode(t *testing.T, open opener) {
	s, err := open()
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if got, err := s.Claim(nil); err != nil || len(got) != 0 {
		t.Errorf("Claim(nil) = %v, %v", got, err)
	}
	ids := []uint64{3, 1, 2}
	for _, step := range []string{"first", "while held"} {
		got, err := s.Claim(ids)
		slices.Sort(got)
		if err != nil || !slices.Equal(got, []uint64{1, 2, 3}) {
			t.Fatalf("%s claim: %v, %v", step, got, err)
		}
	}
	s.Release(ids[:1])
	s.Release(nil)
	got, err := s.Claim(ids)
	slices.Sort(got)
	if err != nil || !slices.Equal(got, []uint64{1, 2, 3}) {
		t.Fatalf("claim after a release: %v, %v", got, err)
	}
}

func TestNoteSenderCountsAdmittedMailForAnHour(t *testing.T) {
	eachBackend(t, testNoteSenderCountsAdmittedMailForAnHour)
}

func testNoteSenderCountsAdmittedMailForAnHour(t *testing.T, open opener) {
	s, err := open()
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	now := time.Date(2025, 3, 1, 10, 0, 30, 0, time.UTC)
	// note counts a mail at at when admit says so, and returns the hits admit heard.
	note := func(sender string, at time.Time, admit bool) int {
		t.Helper()
		heard := -1
		if err := s.NoteSender(sender, at, func(hits int) bool { heard = hits; return admit }); err != nil {
			t.Fatal(err)
		}
		if heard < 0 {
			t.Fatal("admit was not asked")
		}
		return heard
	}
	for i := 0; i < 3; i++ {
		if got := note("robot@x", now.Add(time.Duration(i)*time.Second), true); got != i {
			t.Fatalf("mail %d heard %d before it", i, got)
		}
	}
	// A mail not admitted is not counted.
	for i := 0; i < 2; i++ {
		if got := note("robot@x", now.Add(10*time.Second), false); got != 3 {
			t.Fatalf("refused mail %d heard %d, want 3", i, got)
		}
	}
	if got := note("jane@x", now, false); got != 0 {
		t.Errorf("another sender heard %d", got)
	}
	if got := note("robot@x", now.Add(61*time.Minute), false); got != 0 {
		t.Errorf("an hour later %d mails still counted", got)
	}
	// Erasing a person forgets her count at once, on every store.
	later := now.Add(62 * time.Minute)
	note("robot@x", later, true)
	s.ForgetSender("nobody@x")
	if got := note("robot@x", later.Add(time.Second), false); got != 1 {
		t.Fatalf("forgetting another sender changed robot@x's count to %d", got)
	}
	s.ForgetSender("robot@x")
	if got := note("robot@x", later.Add(2*time.Second), false); got != 0 {
		t.Errorf("after ForgetSender robot@x still has %d mails counted", got)
	}
}

func TestBackupCopiesOrSaysWhere(t *testing.T) { eachBackend(t, testBackupCopiesOrSaysWhere) }

// bbolt backs itself up; PostgreSQL says that its own tools do.
func testBackupCopiesOrSaysWhere(t *testing.T, open opener) {
	elsewhere := strings.HasSuffix(t.Name(), "/postgres")
	s, err := open()
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	addTicketWithComment(t, s, "<b@customer.test>")
	var buf bytes.Buffer
	n, err := s.Backup(&buf)
	switch {
	case errors.Is(err, ErrBackupElsewhere) != elsewhere:
		t.Fatalf("Backup on %s: %v", t.Name(), err)
	case errors.Is(err, ErrBackupElsewhere):
		if n != 0 || buf.Len() != 0 {
			t.Errorf("ErrBackupElsewhere after writing %d bytes", buf.Len())
		}
	case err != nil:
		t.Fatal(err)
	case n == 0 || int64(buf.Len()) != n:
		t.Errorf("Backup said %d bytes and wrote %d", n, buf.Len())
	}
}

func TestPrefetchedDeliveriesReadAsTheOthers(t *testing.T) {
	eachBackend(t, testPrefetchedDeliveriesReadAsTheOthers)
}

// Prefetching changes how many round trips the reads take, never what they return.
func testPrefetchedDeliveriesReadAsTheOthers(t *testing.T, open opener) {
	s, err := open()
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	id := s.NewIds().Delivery()
	err = s.Update(context.Background(), func(tx *Tx) error {
		return tx.QueueDelivery(&Delivery{ID: id, State: model.DeliveryQueued, NextTry: time.Now()}, []byte("the message"))
	})
	if err != nil {
		t.Fatal(err)
	}
	for _, update := range []bool{false, true} {
		read := func(tx *Tx) error {
			tx.PrefetchDeliveries([]uint64{id, id + 1000}, true)
			if d, err := tx.Delivery(id); err != nil || d.ID != id {
				t.Errorf("update %v: prefetched delivery: %+v, %v", update, d, err)
			}
			if m := tx.DeliveryMessage(id); string(m) != "the message" {
				t.Errorf("update %v: prefetched message %q", update, m)
			}
			if _, err := tx.Delivery(id + 1000); !errors.Is(err, ErrNotFound) {
				t.Errorf("update %v: a delivery that does not exist: %v", update, err)
			}
			return nil
		}
		if update {
			err = s.Update(context.Background(), read)
		} else {
			err = s.View(read)
		}
		if err != nil {
			t.Fatal(err)
		}
	}
}
