package pgtest

import (
	"context"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"
)

// The cluster answers on loopback, and it has what a shared queue will need: row locks that
// skip rows another transaction holds (FOR UPDATE SKIP LOCKED).
func TestAThrowawayClusterAnswers(t *testing.T) {
	url := Start(t)
	if !strings.Contains(url, "@127.0.0.1:") {
		t.Fatalf("cluster URL %q is not on loopback", url)
	}
	ctx := context.Background()
	a, err := pgx.Connect(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close(ctx)
	var version string
	if err := a.QueryRow(ctx, "SHOW server_version").Scan(&version); err != nil || version == "" {
		t.Fatalf("server_version %q: %v", version, err)
	}
	t.Logf("PostgreSQL %s", version)
	if _, err := a.Exec(ctx, "CREATE TABLE q (id int PRIMARY KEY); INSERT INTO q VALUES (1), (2)"); err != nil {
		t.Fatal(err)
	}
	b, err := pgx.Connect(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close(ctx)
	txA, err := a.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer txA.Rollback(ctx)
	var first, second int
	if err := txA.QueryRow(ctx, "SELECT id FROM q ORDER BY id LIMIT 1 FOR UPDATE SKIP LOCKED").Scan(&first); err != nil {
		t.Fatal(err)
	}
	txB, err := b.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer txB.Rollback(ctx)
	if err := txB.QueryRow(ctx, "SELECT id FROM q ORDER BY id LIMIT 1 FOR UPDATE SKIP LOCKED").Scan(&second); err != nil {
		t.Fatal(err)
	}
	if first != 1 || second != 2 {
		t.Fatalf("two claimers got rows %d and %d, want 1 and 2", first, second)
	}
}
