package store

import (
	"context"
	"errors"
	"hash/maphash"
	"sync/atomic"

	bolt "go.etcd.io/bbolt"
)

// Deciding what a mail or an action does, and composing the notifications it sends, reads a
// few records and spends most of its CPU on MIME. That work runs on a snapshot (Plan), on the
// caller's goroutine, so that the one writer goroutine only writes what was planned (Apply).
// Plan remembers every record it read; Apply checks in the write transaction that each one is
// still what it was, which makes the result the same as if the plan had been made inside the
// write transaction.

// ReadSet is what a plan read: each record's bucket, key and a hash of its value.
type ReadSet struct {
	reads []read
}

type read struct {
	bucket []byte
	key    string
	sum    uint64
}

// hashSeed is one per process: the sums are compared only within it.
var hashSeed = maphash.MakeSeed()

// absent is the sum recorded for a key that had no value. A present value whose hash is 0
// would be taken for absent and fail the check; that costs one replan, never a wrong write.
const absent = 0

func sum(v []byte) uint64 {
	if v == nil {
		return absent
	}
	return maphash.Bytes(hashSeed, v)
}

// get reads key from bucket, noting it in the read set when the transaction plans.
func (t *Tx) get(bucket, key []byte) []byte {
	v := t.tx.Bucket(bucket).Get(key)
	if t.reads != nil {
		t.reads.reads = append(t.reads.reads, read{bucket: bucket, key: string(key), sum: sum(v)})
	}
	return v
}

// Unchanged says whether every record rs read still has the value it had.
func (t *Tx) Unchanged(rs *ReadSet) bool {
	for _, r := range rs.reads {
		if sum(t.tx.Bucket(r.bucket).Get([]byte(r.key))) != r.sum {
			return false
		}
	}
	return true
}

// Plan runs fn on a read-only snapshot and returns what it read.
func (s *Store) Plan(fn func(*Tx) error) (*ReadSet, error) {
	rs := &ReadSet{}
	err := s.db.View(func(btx *bolt.Tx) error { return fn(&Tx{tx: btx, st: s, reads: rs}) })
	return rs, err
}

// Apply writes a plan made by Plan: in the write transaction it runs write when nothing the
// plan read has changed since, and replan otherwise (the event decided again, now on the
// writer, against what another write changed). It returns once the transaction is durable,
// with whether the plan held.
func (s *Store) Apply(ctx context.Context, rs *ReadSet, write, replan func(*Tx) error) (held bool, err error) {
	var heldNow bool
	err = s.Update(ctx, func(tx *Tx) error {
		heldNow = tx.Unchanged(rs)
		if heldNow {
			return write(tx)
		}
		return replan(tx)
	})
	return heldNow && err == nil, err
}

// Ids are handed out by the process, not by the write transaction, so that a plan made on a
// snapshot can name the ticket, comment and deliveries it will create (a ticket's reply
// address and a delivery's bounce address are made from them). One process holds the file,
// so its counters are the truth; a write stores the highest id it used as the bucket's
// sequence, and the next start begins past it. An id drawn and never written is skipped.
type counters struct {
	ticket, comment, delivery atomic.Uint64
}

func (c *counters) load(tx *bolt.Tx) {
	c.ticket.Store(tx.Bucket(bucketTickets).Sequence())
	c.comment.Store(tx.Bucket(bucketComments).Sequence())
	c.delivery.Store(tx.Bucket(bucketDeliv).Sequence())
}

// Ids draws ids for one event. What a plan draws is kept, so that planning the event again
// (after a conflict) reuses the same ids in the same order instead of leaving gaps.
type Ids struct {
	st         *Store
	ticket     uint64
	items      drawn
	deliveries drawn
}

// drawn is the ids one event drew from a counter, and how many of them this plan used.
type drawn struct {
	ids  []uint64
	used int
}

func (d *drawn) next(c *atomic.Uint64) uint64 {
	if d.used == len(d.ids) {
		d.ids = append(d.ids, c.Add(1))
	}
	d.used++
	return d.ids[d.used-1]
}

// NewIds starts drawing ids for one event.
func (s *Store) NewIds() *Ids { return &Ids{st: s} }

// Ticket is the new ticket's id.
func (i *Ids) Ticket() uint64 {
	if i.ticket == 0 {
		i.ticket = i.st.ids.ticket.Add(1)
	}
	return i.ticket
}

// Item is the id of the event's next comment or event record (they share one sequence).
func (i *Ids) Item() uint64 { return i.items.next(&i.st.ids.comment) }

// Delivery is the id of the event's next delivery.
func (i *Ids) Delivery() uint64 { return i.deliveries.next(&i.st.ids.delivery) }

// Restart begins a new plan of the same event, which reuses the ids drawn so far.
func (i *Ids) Restart() { i.items.used, i.deliveries.used = 0, 0 }

// errNoID is a record written without an id drawn for it.
var errNoID = errors.New("store: record without an id")

// useID records id as used in b, so that the next start draws past it, and keeps the
// process's counter c past it too, should a caller have chosen the id itself.
func useID(b *bolt.Bucket, c *atomic.Uint64, id uint64) error {
	if id == 0 {
		return errNoID
	}
	for {
		drawn := c.Load()
		if id <= drawn || c.CompareAndSwap(drawn, id) {
			break
		}
	}
	if id > b.Sequence() {
		return b.SetSequence(id)
	}
	return nil
}

// drawID draws a fresh id from one of the process's counters, for writes planned in the
// writer itself.
func drawID(c *atomic.Uint64) uint64 { return c.Add(1) }
