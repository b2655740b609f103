package store

import (
	"time"

	bolt "go.etcd.io/bbolt"
)

// The store's records live in ordered key-value buckets. Everything above this file speaks
// buckets, keys and cursors; a backend gives them a home: one bbolt file for one host
// (this file), PostgreSQL tables for several (postgres.go).

// kvTx is one transaction of a backend.
type kvTx interface {
	// Bucket returns the named bucket. The buckets are made at open, so it is never nil.
	Bucket(name []byte) kvBucket
	CreateBucketIfNotExists(name []byte) (kvBucket, error)
	Writable() bool
}

// kvBucket is one ordered map of byte keys to byte values. A value read is valid until the
// transaction ends; keep a copy to hold it longer.
type kvBucket interface {
	Get(key []byte) []byte
	Put(key, value []byte) error
	Delete(key []byte) error
	Cursor() kvCursor
	ForEach(fn func(k, v []byte) error) error
	// Sequence is the highest id written to the bucket (see useID).
	Sequence() uint64
	SetSequence(v uint64) error
}

// kvCursor walks a bucket in key order; a nil key means it ran off an end.
type kvCursor interface {
	First() (key, value []byte)
	Last() (key, value []byte)
	Seek(key []byte) (key2, value []byte)
	Next() (key, value []byte)
	Prev() (key, value []byte)
}

// prefetcher is a transaction that can read many records in one go, ahead of the Gets that
// will ask for them: PostgreSQL, where each read is a round trip. bbolt reads from memory.
type prefetcher interface {
	prefetch(keys []bucketKey)
}

// backend is where a Store keeps its buckets.
type backend interface {
	// update runs fn in one write transaction. Only one update runs at a time across every
	// process sharing the backend. It returns once the transaction is committed; with a wait
	// function, the commit is durable on disk only once wait has returned nil, and the next
	// update may run meanwhile. It gives up after limit when the database does not answer
	// (0: no limit, for migrations and copies).
	update(limit time.Duration, fn func(kvTx) error) (wait func() error, err error)
	// view runs fn on a consistent read-only snapshot, giving up after limit when the
	// database does not answer (0: no limit, for walks over the whole desk).
	view(limit time.Duration, fn func(kvTx) error) error
	// counter is the source of ids for bucket (see counters).
	counter(tx kvTx, bucket []byte) idCounter
	close() error
}

// boltBackend keeps the buckets in one bbolt file.
type boltBackend struct{ db *bolt.DB }

func (b boltBackend) update(_ time.Duration, fn func(kvTx) error) (func() error, error) {
	return nil, b.db.Update(func(btx *bolt.Tx) error {
		fillAppendOnly(btx)
		return fn(boltTx{btx})
	})
}

// updateDurably is update, returning once the transaction is durable.
func updateDurably(be backend, fn func(kvTx) error) error {
	wait, err := be.update(0, fn)
	if err == nil && wait != nil {
		err = wait()
	}
	return err
}

func (b boltBackend) view(_ time.Duration, fn func(kvTx) error) error {
	return b.db.View(func(btx *bolt.Tx) error { return fn(boltTx{btx}) })
}

func (b boltBackend) counter(tx kvTx, bucket []byte) idCounter {
	c := &processCounter{}
	c.n.Store(tx.Bucket(bucket).Sequence())
	return c
}

func (b boltBackend) close() error { return b.db.Close() }

type boltTx struct{ tx *bolt.Tx }

func (t boltTx) Writable() bool { return t.tx.Writable() }

func (t boltTx) Bucket(name []byte) kvBucket { return boltBucket{t.tx.Bucket(name)} }

func (t boltTx) CreateBucketIfNotExists(name []byte) (kvBucket, error) {
	b, err := t.tx.CreateBucketIfNotExists(name)
	return boltBucket{b}, err
}

type boltBucket struct{ *bolt.Bucket }

func (b boltBucket) Cursor() kvCursor { return b.Bucket.Cursor() }
