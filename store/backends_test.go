package store

import (
	"testing"

	"github.com/deskgate/deskgate/internal/pgtest"
)

func TestMain(m *testing.M) { pgtest.Main(m) }

// opener opens the same store each time it is called.
type opener func() (*Store, error)

// eachBackend runs a conformance test on every store: bbolt always, PostgreSQL where a
// throwaway cluster can start (the subtest says why when it cannot).
func eachBackend(t *testing.T, test func(t *testing.T, open opener)) {
	t.Run("bbolt", func(t *testing.T) {
		dir := t.TempDir()
		test(t, func() (*Store, error) { return Open(dir) })
	})
	t.Run("postgres", func(t *testing.T) {
		url := pgtest.Database(t)
		test(t, func() (*Store, error) { return OpenPostgres(url, "") })
	})
}
