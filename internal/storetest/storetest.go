// Package storetest opens the store a package's tests run on: bbolt in a test's directory, or,
// with DESKGATE_TEST_STORE=postgres, a fresh database on a throwaway PostgreSQL cluster. `make
// test` runs the desk and relay tests both ways, so that every behaviour they assert is asserted
// on both stores; the web tests open their store here too but run on bbolt only (set the
// variable to run them on PostgreSQL), and admin's tests open bbolt themselves. The store's own
// conformance tests run on both stores without the variable (eachBackend in store).
package storetest

import (
	"os"
	"testing"

	"github.com/deskgate/deskgate/internal/pgtest"
	"github.com/deskgate/deskgate/store"
)

// Env names the variable that picks the store.
const Env = "DESKGATE_TEST_STORE"

// Open opens the store for t (bbolt in dir unless the variable says postgres) and closes it
// when t ends.
func Open(t testing.TB, dir string) *store.Store {
	t.Helper()
	var st *store.Store
	var err error
	switch os.Getenv(Env) {
	case "", "bbolt":
		st, err = store.Open(dir)
	case "postgres":
		st, err = store.OpenPostgres(pgtest.Database(t), "")
	default:
		t.Fatalf("%s=%q: want bbolt or postgres", Env, os.Getenv(Env))
	}
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	return st
}

// Main runs a package's tests and stops the shared PostgreSQL cluster afterwards.
func Main(m *testing.M) { pgtest.Main(m) }
