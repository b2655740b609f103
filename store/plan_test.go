package store

import (
	"context"
	"path/filepath"
	"testing"

	bolt "go.etcd.io/bbolt"

	"github.com/deskgate/deskgate/gateway/model"
)

// A plan holds while nothing it read has changed, and is replaced by a plan made on the writer
// once a record it read, or a key it found empty, has been written since.
func TestPlanHoldsOnlyWhileWhatItReadIsUnchanged(t *testing.T) {
	eachBackend(t, testPlanHoldsOnlyWhileWhatItReadIsUnchanged)
}

func testPlanHoldsOnlyWhileWhatItReadIsUnchanged(t *testing.T, open opener) {
	s, err := open()
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	ctx := context.Background()
	tid, _ := addTicketWithComment(t, s, "root@x")

	readTicket := func() *ReadSet {
		rs, err := s.Plan(func(tx *Tx) error {
			_, err := tx.Ticket(tid)
			return err
		})
		if err != nil {
			t.Fatal(err)
		}
		return rs
	}
	apply := func(rs *ReadSet) (held bool, which string) {
		held, err := s.Apply(ctx, rs, func(*Tx) error { which = "plan"; return nil }, func(*Tx) error { which = "replan"; return nil })
		if err != nil {
			t.Fatal(err)
		}
		return held, which
	}

	if held, which := apply(readTicket()); !held || which != "plan" {
		t.Fatalf("unchanged ticket: held %v, ran %s", held, which)
	}
	rs := readTicket()
	if err := s.Update(ctx, func(tx *Tx) error {
		tk, err := tx.Ticket(tid)
		if err != nil {
			return err
		}
		tk.Subject = "changed"
		return tx.PutTicket(tk)
	}); err != nil {
		t.Fatal(err)
	}
	if held, which := apply(rs); held || which != "replan" {
		t.Fatalf("ticket changed after the plan read it: held %v, ran %s", held, which)
	}

	// A Message-ID the plan found unknown and another write then indexed.
	rs, err = s.Plan(func(tx *Tx) error {
		if _, ok := tx.MessageID("new@x"); ok {
			t.Fatal("new@x known before it was stored")
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	addTicketWithComment(t, s, "new@x")
	if held, which := apply(rs); held || which != "replan" {
		t.Fatalf("Message-ID indexed after the plan looked: held %v, ran %s", held, which)
	}
}

// Ids drawn by a plan are reused when the event is planned again, and survive a restart as
// the sequence to start from.
func TestIdsAreReusedByAReplanAndPersist(t *testing.T) {
	eachBackend(t, testIdsAreReusedByAReplanAndPersist)
}

func testIdsAreReusedByAReplanAndPersist(t *testing.T, open opener) {
	s, err := open()
	if err != nil {
		t.Fatal(err)
	}
	ids := s.NewIds()
	first := []uint64{ids.Ticket(), ids.Item(), ids.Item(), ids.Delivery()}
	ids.Restart()
	again := []uint64{ids.Ticket(), ids.Item(), ids.Item(), ids.Delivery()}
	if first[0] != again[0] || first[1] != again[1] || first[2] != again[2] || first[3] != again[3] {
		t.Fatalf("replan drew %v, first plan %v", again, first)
	}
	if first[1] == first[2] {
		t.Fatalf("two items of one event share id %d", first[1])
	}
	err = s.Update(context.Background(), func(tx *Tx) error {
		tk := &model.Ticket{ID: first[0], Subject: "s", Status: model.StatusNew}
		if err := tx.CreateTicket(tk); err != nil {
			return err
		}
		return tx.PutTicket(tk)
	})
	if err != nil {
		t.Fatal(err)
	}
	s.Close()
	s, err = open()
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if next := s.NewIds().Ticket(); next != first[0]+1 {
		t.Fatalf("after a restart the next ticket id is %d, want %d", next, first[0]+1)
	}
	s.View(func(tx *Tx) error {
		if tickets, _ := tx.Counts(); tickets != 1 {
			t.Errorf("%d tickets counted, want 1", tickets)
		}
		return nil
	})
}

// Migration 4 counts the deliveries a database already holds.
func TestMigrationCountsDeliveries(t *testing.T) {
	dir := t.TempDir()
	s, err := Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	err = s.Update(context.Background(), func(tx *Tx) error {
		for i := 0; i < 3; i++ {
			if err := tx.QueueDelivery(&Delivery{ID: s.NewIds().Delivery(), State: model.DeliveryQueued}, []byte("m")); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	s.Close()
	db, err := bolt.Open(filepath.Join(dir, FileName), 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	db.Update(func(tx *bolt.Tx) error {
		tx.Bucket(bucketMeta).Delete(keyDeliveryCount)
		return tx.Bucket(bucketMeta).Put(keySchema, []byte{0, 0, 0, 3})
	})
	db.Close()
	if s, err = Open(dir); err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	s.View(func(tx *Tx) error {
		if _, total := tx.QueueCounts(); total != 3 {
			t.Errorf("%d deliveries counted after the migration, want 3", total)
		}
		return nil
	})
}
