package store

import (
	"context"
	"errors"
	"fmt"
	"testing"

	"github.com/deskgate/deskgate/gateway/model"
)

// countsText is a desk's ticket counts as one line, and the same counted the slow way, by
// listing each status through its index.
func countsText(t *testing.T, s *Store) (counted, listed string) {
	t.Helper()
	err := s.View(func(tx *Tx) error {
		c := tx.TicketCounts()
		counted = fmt.Sprintf("total %d new %d open %d pending %d solved %d", c.Total,
			c.ByStatus[model.StatusNew], c.ByStatus[model.StatusOpen], c.ByStatus[model.StatusPending], c.ByStatus[model.StatusSolved])
		n := map[model.Status]int{}
		total := 0
		for _, st := range ticketStatuses {
			list, err := tx.ListTickets(st, 1000, 0)
			if err != nil {
				return err
			}
			n[st] = len(list)
			total += len(list)
		}
		listed = fmt.Sprintf("total %d new %d open %d pending %d solved %d", total,
			n[model.StatusNew], n[model.StatusOpen], n[model.StatusPending], n[model.StatusSolved])
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return counted, listed
}

func wantCounts(t *testing.T, s *Store, when, want string) {
	t.Helper()
	counted, listed := countsText(t, s)
	if counted != want {
		t.Errorf("%s: counted %q, want %q", when, counted, want)
	}
	if listed != want {
		t.Errorf("%s: the status index lists %q, want %q", when, listed, want)
	}
}

func setStatus(t *testing.T, s *Store, id uint64, st model.Status) {
	t.Helper()
	err := s.Update(context.Background(), func(tx *Tx) error {
		tk, err := tx.Ticket(id)
		if err != nil {
			return err
		}
		tk.Status = st
		return tx.PutTicket(tk)
	})
	if err != nil {
		t.Fatal(err)
	}
}

func TestTicketCountsFollowStatus(t *testing.T) { eachBackend(t, testTicketCountsFollowStatus) }

func testTicketCountsFollowStatus(t *testing.T, open opener) {
	s, err := open()
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	wantCounts(t, s, "an empty desk", "total 0 new 0 open 0 pending 0 solved 0")

	var ids []uint64
	err = s.Update(context.Background(), func(tx *Tx) error {
		for _, st := range []model.Status{model.StatusNew, model.StatusNew, model.StatusOpen, model.StatusPending, model.StatusSolved, model.StatusNew} {
			tk := &model.Ticket{Subject: "s", Status: st}
			if err := tx.CreateTicket(tk); err != nil {
				return err
			}
			ids = append(ids, tk.ID)
		}
		// A ticket made and moved on in one transaction is counted once, in its last status.
		tk, err := tx.Ticket(ids[5])
		if err != nil {
			return err
		}
		tk.Status = model.StatusOpen
		return tx.PutTicket(tk)
	})
	if err != nil {
		t.Fatal(err)
	}
	wantCounts(t, s, "six tickets made", "total 6 new 2 open 2 pending 1 solved 1")

	setStatus(t, s, ids[0], model.StatusOpen)
	setStatus(t, s, ids[3], model.StatusSolved)
	wantCounts(t, s, "new->open, pending->solved", "total 6 new 1 open 3 pending 0 solved 2")

	// Saving a ticket whose status did not change (a CC added, say) counts nothing.
	setStatus(t, s, ids[2], model.StatusOpen)
	wantCounts(t, s, "open saved as open", "total 6 new 1 open 3 pending 0 solved 2")

	// A transaction that fails takes its counting back with it.
	boom := errors.New("boom")
	err = s.Update(context.Background(), func(tx *Tx) error {
		tk, err := tx.Ticket(ids[1])
		if err != nil {
			return err
		}
		tk.Status = model.StatusSolved
		if err := tx.PutTicket(tk); err != nil {
			return err
		}
		return boom
	})
	if !errors.Is(err, boom) {
		t.Fatalf("the failing update: %v", err)
	}
	wantCounts(t, s, "after a failed update", "total 6 new 1 open 3 pending 0 solved 2")

	err = s.Update(context.Background(), func(tx *Tx) error {
		_, err := tx.DeleteTicket(ids[4]) // solved
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	wantCounts(t, s, "a solved ticket deleted", "total 5 new 1 open 3 pending 0 solved 1")

	// Reopened, the desk reads the same counters.
	s.Close()
	if s, err = open(); err != nil {
		t.Fatal(err)
	}
	wantCounts(t, s, "reopened", "total 5 new 1 open 3 pending 0 solved 1")
}

func TestTicketCountsMigration(t *testing.T) { eachBackend(t, testTicketCountsMigration) }

// A desk written by schema version 5, which kept no counter per status, gets them at its next
// start, counted from the status index.
func testTicketCountsMigration(t *testing.T, open opener) {
	s, err := open()
	if err != nil {
		t.Fatal(err)
	}
	var ids []uint64
	err = s.Update(context.Background(), func(tx *Tx) error {
		for _, st := range []model.Status{model.StatusOpen, model.StatusNew, model.StatusOpen, model.StatusSolved, model.StatusSolved, model.StatusSolved} {
			tk := &model.Ticket{Subject: "s", Status: st}
			if err := tx.CreateTicket(tk); err != nil {
				return err
			}
			ids = append(ids, tk.ID)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	setStatus(t, s, ids[1], model.StatusPending)
	// Make it the desk version 5 wrote: no per-status counters, and that version's number.
	err = updateDurably(s.be, func(tx kvTx) error {
		meta := tx.Bucket(bucketMeta)
		for _, st := range ticketStatuses {
			if err := meta.Delete(statusCountKey(string(st))); err != nil {
				return err
			}
		}
		return meta.Put(keySchema, []byte{0, 0, 0, 5})
	})
	if err != nil {
		t.Fatal(err)
	}
	s.Close()

	if s, err = open(); err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if s.MigratedFrom() != 5 {
		t.Errorf("opened from schema version %d, want 5", s.MigratedFrom())
	}
	wantCounts(t, s, "after the migration", "total 6 new 0 open 2 pending 1 solved 3")
	// The migrated counters go on counting.
	setStatus(t, s, ids[3], model.StatusOpen)
	wantCounts(t, s, "after the migration, a solved ticket reopened", "total 6 new 0 open 3 pending 1 solved 2")
}
