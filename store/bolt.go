package store

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sync"
	"time"

	bolt "go.etcd.io/bbolt"
	berrors "go.etcd.io/bbolt/errors"
)

// On bbolt the buckets are bbolt's own, in one file that one process holds: what the nodes of
// PostgreSQL coordinate (claims, the queue's wake-ups, the per-sender counts) is that process's
// own business, in memory or not at all.

// FileName is the database's name inside data_dir.
const FileName = "deskgate.db"

// Open opens (creating if needed) the database in dir.
func Open(dir string) (*Store, error) {
	if err := os.MkdirAll(dir, 0o750); err != nil {
		return nil, err
	}
	path := filepath.Join(dir, FileName)
	db, err := bolt.Open(path, 0o600, &bolt.Options{
		Timeout: 2 * time.Second,
		// The freelist is written at every commit. Without it bbolt finds the free pages at
		// open by reading every page of the file: 3 s for a cold 350 MB desk, minutes for a
		// desk of a million tickets, against one more page in each commit's write. The array
		// freelist keeps its ids sorted; the map one sorts them all at every commit, which
		// took a quarter of the CPU while the relay drained a queue.
		FreelistType: bolt.FreelistArrayType,
	})
	if err != nil {
		if errors.Is(err, berrors.ErrTimeout) {
			return nil, fmt.Errorf("open %s: the database is in use by another process (is deskgate already running?)", path)
		}
		return nil, fmt.Errorf("open %s: %w", path, err)
	}
	s := &Store{be: &boltBackend{db: db, dir: dir}}
	if err := s.start(); err != nil {
		db.Close()
		return nil, fmt.Errorf("open %s: %w", path, err)
	}
	return s, nil
}

// boltBackend keeps the buckets in one bbolt file.
type boltBackend struct {
	db *bolt.DB
	// dir is the data_dir the file is in.
	dir     string
	senders senderWindow
}

func (b *boltBackend) update(_ time.Duration, fn func(kvTx) error) (func() error, error) {
	return nil, b.db.Update(func(btx *bolt.Tx) error {
		fillAppendOnly(btx)
		return fn(boltTx{btx})
	})
}

// appendOnly are the buckets whose keys only grow (ids drawn in order). bbolt splits a full
// page in half, which for keys that only grow leaves every page half empty; filled to 90 %
// instead, the same records take about 40 % fewer pages, and each commit fewer page writes.
var appendOnly = [][]byte{bucketTickets, bucketComments, bucketEvents, bucketAttach, bucketDeliv, bucketDelivMsg, bucketOrig}

func fillAppendOnly(btx *bolt.Tx) {
	for _, name := range appendOnly {
		if b := btx.Bucket(name); b != nil {
			b.FillPercent = 0.9
		}
	}
}

func (b *boltBackend) view(_ time.Duration, fn func(kvTx) error) error {
	return b.db.View(func(btx *bolt.Tx) error { return fn(boltTx{btx}) })
}

func (b *boltBackend) counter(tx kvTx, bucket []byte) idCounter {
	c := &processCounter{}
	c.n.Store(tx.Bucket(bucket).Sequence())
	return c
}

// drawTogether leaves the ids to the counters, which draw them from memory.
func (b *boltBackend) drawTogether(...[]byte) []uint64 { return nil }

// claim gives every delivery to the one process there is.
func (b *boltBackend) claim(ids []uint64) ([]uint64, error) { return ids, nil }

func (b *boltBackend) release([]uint64) {}

// onQueueChange never calls fn: the one process knows its own changes.
func (b *boltBackend) onQueueChange(func()) {}

func (b *boltBackend) noteSender(sender string, now time.Time, admit func(hits int) bool) error {
	b.senders.note(sender, now, admit)
	return nil
}

func (b *boltBackend) forgetSender(sender string) { b.senders.forget(sender) }

// ping is a read transaction.
func (b *boltBackend) ping() error {
	return b.db.View(func(*bolt.Tx) error { return nil })
}

// wedged is ping: a file that does not answer a read is held by this process, and a restart
// may free it.
func (b *boltBackend) wedged() error { return b.ping() }

func (b *boltBackend) backup(w io.Writer) (int64, error) {
	var n int64
	err := b.db.View(func(tx *bolt.Tx) error {
		var err error
		n, err = tx.WriteTo(w)
		return err
	})
	return n, err
}

func (b *boltBackend) where() string { return "bbolt:" + b.dir }

func (b *boltBackend) close() error { return b.db.Close() }

// senderWindow counts each sender's mails over the last hour in memory: the one process that
// holds the file sees every mail.
type senderWindow struct {
	mu   sync.Mutex
	seen map[string][]time.Time
}

// maxSenders bounds the memory a flood of distinct senders can take.
const maxSenders = 100000

func (w *senderWindow) note(sender string, now time.Time, admit func(hits int) bool) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.seen == nil {
		w.seen = map[string][]time.Time{}
	}
	kept := w.seen[sender][:0]
	for _, t := range w.seen[sender] {
		if now.Sub(t) < time.Hour {
			kept = append(kept, t)
		}
	}
	if admit(len(kept)) {
		kept = append(kept, now)
	}
	w.seen[sender] = kept
	if len(w.seen) > maxSenders {
		for k, v := range w.seen {
			if len(v) == 0 || now.Sub(v[len(v)-1]) >= time.Hour {
				delete(w.seen, k)
			}
		}
	}
}

func (w *senderWindow) forget(sender string) {
	w.mu.Lock()
	delete(w.seen, sender)
	w.mu.Unlock()
}

type boltTx struct{ tx *bolt.Tx }

func (t boltTx) Writable() bool { return t.tx.Writable() }

func (t boltTx) Bucket(name []byte) kvBucket { return boltBucket{t.tx.Bucket(name)} }

func (t boltTx) CreateBucketIfNotExists(name []byte) (kvBucket, error) {
	b, err := t.tx.CreateBucketIfNotExists(name)
	return boltBucket{b}, err
}

// prefetch does nothing: bbolt reads from memory.
func (t boltTx) prefetch([]bucketKey) {}

type boltBucket struct{ *bolt.Bucket }

func (b boltBucket) Cursor() kvCursor { return b.Bucket.Cursor() }
