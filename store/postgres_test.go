package store

import (
	"context"
	"slices"
	"testing"
	"time"

	"github.com/deskgate/deskgate/gateway/model"
	"github.com/deskgate/deskgate/internal/pgtest"
)

// Two nodes on one database: a delivery is claimed by one of them only, until it is released;
// and a change to the queue committed by one wakes the other (LISTEN/NOTIFY).
func TestPostgresClaimsAndWakeUpsAcrossNodes(t *testing.T) {
	url := pgtest.Database(t)
	a, err := OpenPostgres(url, "")
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	b, err := OpenPostgres(url, "")
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	woken := make(chan struct{}, 16)
	b.OnQueueChange(func() { woken <- struct{}{} })
	// The listener says hello once when it connects; wait for that before the real test.
	select {
	case <-woken:
	case <-time.After(10 * time.Second):
		t.Fatal("b's listener never connected")
	}

	var ids []uint64
	err = a.Update(context.Background(), func(tx *Tx) error {
		for i := 0; i < 4; i++ {
			id := a.NewIds().Delivery()
			ids = append(ids, id)
			if err := tx.QueueDelivery(&Delivery{ID: id, State: model.DeliveryQueued, NextTry: time.Now()}, []byte("m")); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	select {
	case <-woken:
	case <-time.After(5 * time.Second):
		t.Fatal("a's commit to the queue did not wake b")
	}

	gotA, err := a.Claim(ids[:3])
	if err != nil {
		t.Fatal(err)
	}
	gotB, err := b.Claim(ids)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(gotA, ids[:3]) || !slices.Equal(gotB, ids[3:]) {
		t.Fatalf("a claimed %v and b %v of %v: each delivery must go to one node", gotA, gotB, ids)
	}
	if again, _ := a.Claim(ids[:3]); len(again) != 3 {
		t.Errorf("a could not claim again what it holds: %v", again)
	}
	a.Release(ids[:1])
	if got, _ := b.Claim(ids[:3]); !slices.Equal(got, ids[:1]) {
		t.Errorf("after a released %d, b claimed %v", ids[0], got)
	}
	a.Close()
	// A node that stops gives its leases back at once.
	if got, _ := b.Claim(ids); len(got) != 4 {
		t.Errorf("after a stopped, b claimed %v of %v", got, ids)
	}
}
