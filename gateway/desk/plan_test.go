package desk

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"testing"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/deskgate/deskgate/config"
	"github.com/deskgate/deskgate/gateway/metrics"
	"github.com/deskgate/deskgate/internal/pgtest"
	"github.com/deskgate/deskgate/store"
)

// Replies into one ticket at the same moment are planned on snapshots that each miss the
// others. Every CC each of them adds must still be on the ticket afterwards (C1), as if they
// had been taken one at a time.
func TestC1_ConcurrentRepliesKeepEveryCC(t *testing.T) {
	s := testService(t, nil)
	ctx := context.Background()
	env := Envelope{From: "jane@customer.test", Recipients: []string{"support@example.com"}}
	first, err := s.Receive(ctx, env, msg("jane@customer.test", "root@customer.test"))
	if err != nil {
		t.Fatal(err)
	}
	before := testutil.ToFloat64(metrics.WriterPlans.WithLabelValues("conflict")) + testutil.ToFloat64(metrics.WriterPlans.WithLabelValues("contended"))
	const n = 24
	repliesAtOnce(t, n, first.TicketID, func(int) *Service { return s })
	var ccs []string
	var commentIDs []uint64
	s.store.View(func(tx *store.Tx) error {
		tk, err := tx.Ticket(first.TicketID)
		if err != nil {
			t.Fatal(err)
		}
		for _, p := range tk.CCs {
			ccs = append(ccs, p.Email)
		}
		tx.Items(tk)
		commentIDs = tk.CommentIDs
		return nil
	})
	if len(ccs) != n {
		t.Fatalf("ticket has %d CCs after %d replies that each added one: %v", len(ccs), n, ccs)
	}
	// A replanned event reuses the ids it drew, so the comment ids have no gaps.
	want := make([]uint64, n+1)
	for i := range want {
		want[i] = first.CommentID + uint64(i)
	}
	if !slices.Equal(commentIDs, want) {
		t.Errorf("comment ids %v, want %v", commentIDs, want)
	}
	after := testutil.ToFloat64(metrics.WriterPlans.WithLabelValues("conflict")) + testutil.ToFloat64(metrics.WriterPlans.WithLabelValues("contended"))
	t.Logf("%v of %d replies were planned on the writer", after-before, n)
}

// The same message delivered twice at the same moment (two MX hosts, a client retrying) is
// one comment (T3), though both plans saw a store without it.
func TestT3_SameMessageAtOnceIsStoredOnce(t *testing.T) {
	s := testService(t, nil)
	ctx := context.Background()
	env := Envelope{From: "jane@customer.test", Recipients: []string{"support@example.com"}}
	const n = 8
	var wg sync.WaitGroup
	results := make(chan Result, n)
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			res, err := s.Receive(ctx, env, msg("jane@customer.test", "same@customer.test"))
			if err != nil {
				t.Error(err)
			}
			results <- res
		}()
	}
	wg.Wait()
	close(results)
	fresh := 0
	for res := range results {
		if !res.Duplicate {
			fresh++
		}
	}
	tickets, comments := counts(s)
	if fresh != 1 || tickets != 1 || comments != 1 {
		t.Fatalf("%d stored as new, %d tickets, %d comments; want 1 of each", fresh, tickets, comments)
	}
}

// New tickets created at once get consecutive numbers: ids drawn for a plan that was made
// again are reused.
func TestNewTicketsAtOnceHaveConsecutiveIDs(t *testing.T) {
	s := testService(t, nil)
	ctx := context.Background()
	const n = 16
	var wg sync.WaitGroup
	var mu sync.Mutex
	var ids []uint64
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			from := fmt.Sprintf("user%d@customer.test", i)
			res, err := s.Receive(ctx, Envelope{From: from, Recipients: []string{"support@example.com"}}, msg(from, fmt.Sprintf("new%d@customer.test", i)))
			if err != nil {
				t.Error(err)
			}
			mu.Lock()
			ids = append(ids, res.TicketID)
			mu.Unlock()
		}(i)
	}
	wg.Wait()
	slices.Sort(ids)
	for i, id := range ids {
		if id != uint64(i+1) {
			t.Fatalf("ticket ids %v, want 1 to %d", ids, n)
		}
	}
	if tickets, _ := counts(s); tickets != n {
		t.Fatalf("%d tickets counted, want %d", tickets, n)
	}
}

// repliesAtOnce sends n replies from the requester into the ticket of <root@customer.test> at
// the same moment, reply i through node(i), each adding CC cc<i>@customer.test, and checks that
// each was taken into ticket.
func repliesAtOnce(t *testing.T, n int, ticket uint64, node func(i int) *Service) {
	t.Helper()
	env := Envelope{From: "jane@customer.test", Recipients: []string{"support@example.com"}}
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			m := msg("jane@customer.test", fmt.Sprintf("reply%d@customer.test", i),
				"In-Reply-To: <root@customer.test>\r\n", fmt.Sprintf("Cc: cc%d@customer.test\r\n", i))
			res, err := node(i).Receive(context.Background(), env, m)
			if err == nil && res.TicketID != ticket {
				err = fmt.Errorf("reply %d threaded into ticket %d, not %d", i, res.TicketID, ticket)
			}
			errs <- err
		}(i)
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
}

// twoNodes are two desks on one PostgreSQL database, as two deskgate hosts run them.
func twoNodes(t *testing.T, mod func(*config.Config)) [2]*Service {
	url := pgtest.Database(t)
	var nodes [2]*Service
	for i := range nodes {
		st, err := store.OpenPostgres(url, "")
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { st.Close() })
		base := testService(t, mod)
		nodes[i] = New(base.Config(), st, base.log)
	}
	return nodes
}

// C1 across nodes: replies into one ticket at the same moment, half through each node, are
// planned on snapshots that miss each other's; every CC they add is kept, as on one node.
func TestC1_ConcurrentRepliesThroughTwoNodesKeepEveryCC(t *testing.T) {
	nodes := twoNodes(t, nil)
	ctx := context.Background()
	env := Envelope{From: "jane@customer.test", Recipients: []string{"support@example.com"}}
	first, err := nodes[0].Receive(ctx, env, msg("jane@customer.test", "root@customer.test"))
	if err != nil {
		t.Fatal(err)
	}
	const n = 16
	repliesAtOnce(t, n, first.TicketID, func(i int) *Service { return nodes[i%2] })
	nodes[1].store.View(func(tx *store.Tx) error {
		tk, err := tx.Ticket(first.TicketID)
		if err != nil {
			t.Fatal(err)
		}
		if len(tk.CCs) != n {
			t.Errorf("ticket has %d CCs after %d replies through two nodes that each added one", len(tk.CCs), n)
		}
		if comments, _ := tx.Comments(tk); len(comments) != n+1 {
			t.Errorf("ticket has %d comments, want %d", len(comments), n+1)
		}
		return nil
	})
}
