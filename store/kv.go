package store

import (
	"io"
	"time"
)

// The store's records live in ordered key-value buckets. Everything above this file speaks
// buckets, keys and cursors; a backend gives them a home: one bbolt file for one host
// (bolt.go), PostgreSQL tables for several (postgres.go). What differs between the two beyond
// the buckets is a method of the backend too, so that nothing above this seam asks which one
// runs.

// kvTx is one transaction of a backend.
type kvTx interface {
	// Bucket returns the named bucket. The buckets are made at open, so it is never nil.
	Bucket(name []byte) kvBucket
	CreateBucketIfNotExists(name []byte) (kvBucket, error)
	Writable() bool
	// prefetch reads the records keys name in one go, ahead of the Gets that will ask for
	// them: on PostgreSQL, where each read is a round trip. bbolt reads from memory and does
	// nothing.
	prefetch(keys []bucketKey)
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
	// drawTogether draws one id from each bucket's counter in one round trip where each id
	// costs one (PostgreSQL); nil where the counters draw from memory (bbolt), or when the
	// database failed (the counters then draw one by one, and record the failure).
	drawTogether(buckets ...[]byte) []uint64

	// claim returns those of ids this process may send now, each leased to it until release
	// or until it stops (see Store.Claim).
	claim(ids []uint64) ([]uint64, error)
	// release gives back the leases of ids.
	release(ids []uint64)
	// onQueueChange sets what to call when another process commits a change to the outbound
	// queue (see Store.OnQueueChange).
	onQueueChange(fn func())
	// noteSender counts a mail from sender at now against the hour before it, as every
	// process sharing the backend saw them (see Store.NoteSender).
	noteSender(sender string, now time.Time, admit func(hits int) bool) error
	// forgetSender drops what noteSender holds of sender in memory.
	forgetSender(sender string)
	// ping says whether the database answers.
	ping() error
	// wedged reports a failure that a restart of this process may mend (see Store.Wedged).
	wedged() error
	// backup writes a consistent copy of the database to w, or ErrBackupElsewhere.
	backup(w io.Writer) (int64, error)
	// where names the database for the log, without secrets.
	where() string
	close() error
}

// updateDurably is update, returning once the transaction is durable.
func updateDurably(be backend, fn func(kvTx) error) error {
	wait, err := be.update(0, fn)
	if err == nil && wait != nil {
		err = wait()
	}
	return err
}

// What the nodes sharing a store coordinate, and what the daemon asks of its store, whichever
// backend holds it.

// Claim returns those of ids this node may send now: those no other live node holds, each now
// leased to this node until it is released or the node stops renewing it (on bbolt, one
// process, all of them). A caller reads the deliveries again after claiming them, since
// another node may have sent and recorded one just before.
func (s *Store) Claim(ids []uint64) ([]uint64, error) { return s.be.claim(ids) }

// Release gives back the leases of ids, after their results are committed.
func (s *Store) Release(ids []uint64) { s.be.release(ids) }

// OnQueueChange sets what to call when another node (or this one) commits a change to the
// outbound queue. On bbolt, whose one process knows its own changes, fn is never called.
func (s *Store) OnQueueChange(fn func()) { s.be.onQueueChange(fn) }

// NoteSender counts a mail from sender (a model.AddressKey) at now: admit hears how many mails
// from sender every node sharing the store counted in the hour before now, and says whether
// this one counts too. On error (the database unreachable) admit may not have been called.
func (s *Store) NoteSender(sender string, now time.Time, admit func(hits int) bool) error {
	return s.be.noteSender(sender, now, admit)
}

// ForgetSender drops what this process holds in memory of sender's mails (the counts of
// NoteSender), when the address is erased.
func (s *Store) ForgetSender(sender string) { s.be.forgetSender(sender) }

// Ping says whether the store answers: on PostgreSQL a query on a connection of the pool; on
// bbolt a read transaction.
func (s *Store) Ping() error { return s.be.ping() }

// Wedged reports a failure of the store that a restart of this process may mend, for the
// systemd watchdog: on bbolt, a file that does not answer a read (a read that hangs keeps
// Wedged from returning); on PostgreSQL never, as the pool reconnects by itself and the daemon
// answers 451 meanwhile.
func (s *Store) Wedged() error { return s.be.wedged() }

// Where names the store for the log: bbolt:<data_dir>, or the PostgreSQL URL without its
// password.
func (s *Store) Where() string { return s.be.where() }
