package relay

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/deskgate/deskgate/gateway/metrics"
	"github.com/deskgate/deskgate/gateway/model"
	"github.com/deskgate/deskgate/internal/storetest"
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

// Each recipient's result is counted in deskgate_relay_recipients_total and logged: the
// delivered line at info, the failed and deferred lines at warn, with what the upstream said.
func TestRecordedResultsAreCountedAndLogged(t *testing.T) {
	up := &upstreamServer{refuse: map[string]int{"gone@customer.test": 550, "busy@customer.test": 450}}
	for _, level := range []slog.Level{slog.LevelInfo, slog.LevelWarn} {
		var log bytes.Buffer
		st := storetest.Open(t, t.TempDir())
		w := New(testConfig(t, serve(t, up), nil), st, slog.New(slog.NewTextHandler(&log, &slog.HandlerOptions{Level: level})), nil)
		queueOne(t, st, "a@customer.test", "gone@customer.test", "busy@customer.test")
		before := map[string]float64{}
		for _, r := range []string{"sent", "failed", "deferred"} {
			before[r] = testutil.ToFloat64(metrics.RelayRecipients.WithLabelValues(r))
		}
		w.RunOnce(context.Background())
		for _, r := range []string{"sent", "failed", "deferred"} {
			if got := testutil.ToFloat64(metrics.RelayRecipients.WithLabelValues(r)) - before[r]; got != 1 {
				t.Errorf("level %v: %s counted %v times, want 1", level, r, got)
			}
		}
		out := log.String()
		if delivered := strings.Contains(out, "msg=delivered") && strings.Contains(out, "rcpt=a@customer.test"); delivered != (level == slog.LevelInfo) {
			t.Errorf("level %v: delivered line logged %v:\n%s", level, delivered, out)
		}
		if !strings.Contains(out, `msg="delivery failed"`) || !strings.Contains(out, "rcpt=gone@customer.test") || !strings.Contains(out, `reply="550 5.1.1 no thanks"`) {
			t.Errorf("level %v: no failed line for gone@:\n%s", level, out)
		}
		if !strings.Contains(out, `msg="delivery deferred"`) || !strings.Contains(out, "rcpt=busy@customer.test") {
			t.Errorf("level %v: no deferred line for busy@:\n%s", level, out)
		}
	}
}

// A delivery whose turn in a chain never came (the connection ended before it) was not tried:
// no attempt is counted against it, no backoff delays it, and it stays queued and due.
func TestCutFromAChainIsNoAttempt(t *testing.T) {
	w, st := newWorker(t, testConfig(t, serve(t, &upstreamServer{}), nil))
	id := queueOne(t, st, "a@customer.test", "b@customer.test")
	var d *store.Delivery
	st.View(func(tx *store.Tx) error { d, _ = tx.Delivery(id); return nil })
	cut := fmt.Errorf("%w: 421 4.3.0 going down", errChainCut)
	if !w.record([]attempt{{d: d, rcpts: []string{"a@customer.test", "b@customer.test"}, errs: []error{cut, cut}, via: "upstream"}}) {
		t.Fatal("record failed")
	}
	st.View(func(tx *store.Tx) error {
		got, err := tx.Delivery(id)
		if err != nil {
			t.Fatal(err)
		}
		if got.Attempts != 0 || got.State != model.DeliveryQueued || got.NextTry.After(time.Now()) {
			t.Errorf("after a cut chain: attempts %d, state %s, next try in %v; want 0, queued, due now",
				got.Attempts, got.State, time.Until(got.NextTry))
		}
		return nil
	})
}
