package store

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	bolt "go.etcd.io/bbolt"
	berrors "go.etcd.io/bbolt/errors"

	"github.com/deskgate/deskgate/internal/durable"
)

// Compacted is what compacting the database did.
type Compacted struct {
	Before, After int64 // file sizes in bytes
	Took          time.Duration
}

// compactSuffix names the file a compaction writes beside the database before it swaps it in.
const compactSuffix = ".compact"

// Compact rewrites the database in dir into a new file, page by page with no free space, and
// renames it over the old one. It refuses while another process (the daemon) holds the
// database. Until the rename the old file is untouched, so a full disk or a kill leaves it as
// it was; a half-written file from an interrupted run is removed by the next one.
func Compact(dir string) (Compacted, error) {
	var out Compacted
	start := time.Now()
	path := filepath.Join(dir, FileName)
	info, err := os.Stat(path)
	if err != nil {
		return out, err
	}
	out.Before = info.Size()
	// The exclusive lock keeps the daemon, or a second compaction, off the file until the
	// new one is in place.
	src, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: time.Second, FreelistType: bolt.FreelistArrayType})
	if err != nil {
		if errors.Is(err, berrors.ErrTimeout) {
			return out, fmt.Errorf("%s is in use by another process: stop the deskgate daemon first (compact works offline)", path)
		}
		return out, err
	}
	defer src.Close()
	if err := src.View(func(tx *bolt.Tx) error {
		if v := schemaVersion(boltTx{tx}); v > SchemaVersion {
			return fmt.Errorf("the database has schema version %d, newer than this deskgate's %d", v, SchemaVersion)
		}
		return nil
	}); err != nil {
		return out, err
	}
	tmp := path + compactSuffix
	if err := os.Remove(tmp); err != nil && !errors.Is(err, os.ErrNotExist) {
		return out, err
	}
	fail := func(err error) (Compacted, error) {
		os.Remove(tmp)
		return out, fmt.Errorf("compact: %w (the database is unchanged)", err)
	}
	// Synced once at the end rather than at every one of Compact's transactions.
	dst, err := bolt.Open(tmp, 0o600, &bolt.Options{NoSync: true, FreelistType: bolt.FreelistArrayType})
	if err != nil {
		return fail(err)
	}
	if err := bolt.Compact(dst, src, 64<<20); err != nil {
		dst.Close()
		return fail(err)
	}
	if err := dst.Sync(); err != nil {
		dst.Close()
		return fail(err)
	}
	if err := dst.Close(); err != nil {
		return fail(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		return fail(err)
	}
	if err := durable.SyncDir(dir); err != nil {
		return out, fmt.Errorf("compact: the new file is in place but its directory could not be synced: %w", err)
	}
	if info, err := os.Stat(path); err == nil {
		out.After = info.Size()
	}
	out.Took = time.Since(start)
	return out, nil
}
