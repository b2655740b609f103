package relay

import (
	"testing"
	"time"

	"github.com/deskgate/deskgate/store"
)

func results(ids ...uint64) []attempt {
	var out []attempt
	for _, id := range ids {
		out = append(out, attempt{d: &store.Delivery{ID: id}})
	}
	return out
}

func inflight(ids ...uint64) map[uint64]bool {
	m := map[uint64]bool{}
	for _, id := range ids {
		m[id] = true
	}
	return m
}

// A lone delivery is recorded at once: the recorder waits only while more are in flight.
// (Were it to wait, the hour below would time the test out.)
func TestRecorderDoesNotWaitWithNothingElseInFlight(t *testing.T) {
	p := &stages{results: make(chan attempt, 8), fillTo: 48, inflight: inflight(1)}
	if got := p.fill(results(1), time.Hour); len(got) != 1 {
		t.Fatalf("batch of %d, want 1", len(got))
	}
}

// In a drain the recorder gathers the results that come in while more are in flight, up to
// its target, so that one commit records many.
func TestRecorderGathersABatchWhileMoreAreInFlight(t *testing.T) {
	p := &stages{results: make(chan attempt, 8), fillTo: 4, inflight: inflight(1, 2, 3, 4, 5, 6)}
	go func() {
		for _, a := range results(2, 3, 4, 5) {
			p.results <- a
		}
	}()
	got := p.fill(results(1), time.Hour)
	if len(got) != 4 {
		t.Fatalf("batch of %d, want 4 (its target)", len(got))
	}
	if a := <-p.results; a.d.ID != 5 {
		t.Fatalf("left %d for the next batch, want 5", a.d.ID)
	}
}

// A result whose fellows do not come (a slow upstream) is recorded after the wait, not held.
func TestRecorderWaitsNoLongerThanItsWait(t *testing.T) {
	p := &stages{results: make(chan attempt, 8), fillTo: 48, inflight: inflight(1, 2, 3)}
	p.results <- results(2)[0]
	got := p.fill(results(1), 10*time.Millisecond)
	if len(got) != 2 {
		t.Fatalf("batch of %d, want the 2 that came", len(got))
	}
}

// Results stop coming when the senders are done (shutdown): the batch is what came.
func TestRecorderStopsWhenTheSendersAreDone(t *testing.T) {
	p := &stages{results: make(chan attempt, 8), fillTo: 48, inflight: inflight(1, 2, 3)}
	p.results <- results(2)[0]
	close(p.results)
	if got := p.fill(results(1), time.Hour); len(got) != 2 {
		t.Fatalf("batch of %d, want 2", len(got))
	}
}
