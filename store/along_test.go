package store

import (
	"context"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/deskgate/deskgate/gateway/metrics"
)

// waitLonger makes the timing of UpdateAlong's rules such that only the rule itself, not the
// speed of the machine, decides what is committed with what; it restores them after the test.
func waitLonger(t *testing.T, wait, window time.Duration) {
	oldWait, oldWindow := alongMax, flowing
	alongMax, flowing = wait, window
	t.Cleanup(func() { alongMax, flowing = oldWait, oldWindow })
}

// While other writes flow, the relay's bookkeeping rides in the next commit that carries
// them instead of paying for a commit of its own; it is durable when UpdateAlong returns.
func TestUpdateAlongJoinsTheNextCommit(t *testing.T) {
	waitLonger(t, time.Hour, time.Hour)
	eachBackend(t, func(t *testing.T, open opener) {
		s, err := open()
		if err != nil {
			t.Fatal(err)
		}
		addTicketWithComment(t, s, "<flowing@customer.test>")
		commits := testutil.ToFloat64(metrics.StoreCommits)
		along := make(chan error, 1)
		go func() {
			along <- s.UpdateAlong(context.Background(), func(tx *Tx) error {
				return tx.tx.Bucket(bucketMeta).Put([]byte("along"), []byte("recorded"))
			})
		}()
		select {
		case err := <-along:
			t.Fatalf("a write sent along was committed on its own while others were flowing (err %v)", err)
		case <-time.After(200 * time.Millisecond):
		}
		addTicketWithComment(t, s, "<company@customer.test>")
		if err := <-along; err != nil {
			t.Fatal(err)
		}
		if got := testutil.ToFloat64(metrics.StoreCommits) - commits; got != 1 {
			t.Errorf("%v commits for the ticket and the write sent along, want 1", got)
		}
		s.Close()
		s, err = open()
		if err != nil {
			t.Fatal(err)
		}
		defer s.Close()
		s.View(func(tx *Tx) error {
			if v := tx.tx.Bucket(bucketMeta).Get([]byte("along")); string(v) != "recorded" {
				t.Errorf("after a reopen the write sent along reads %q", v)
			}
			return nil
		})
	})
}

// With nothing else being written, a write sent along is committed at once, as Update would:
// a relay draining its queue alone must not wait for company that is not coming.
func TestUpdateAlongAloneIsCommittedAtOnce(t *testing.T) {
	waitLonger(t, time.Hour, 50*time.Millisecond)
	eachBackend(t, func(t *testing.T, open opener) {
		s, err := open()
		if err != nil {
			t.Fatal(err)
		}
		defer s.Close()
		addTicketWithComment(t, s, "<earlier@customer.test>")
		time.Sleep(100 * time.Millisecond) // past the window in which others count as flowing
		along := make(chan error, 1)
		go func() {
			along <- s.UpdateAlong(context.Background(), func(tx *Tx) error {
				return tx.tx.Bucket(bucketMeta).Put([]byte("along"), []byte("alone"))
			})
		}()
		select {
		case err := <-along:
			if err != nil {
				t.Fatal(err)
			}
		case <-time.After(30 * time.Second):
			t.Fatal("a write sent along with nothing else being written was held for company")
		}
	})
}
