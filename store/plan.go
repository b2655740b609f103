package store

import (
	"context"
	"errors"
	"hash/maphash"
	"sync/atomic"
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
	err := s.be.view(opTimeout, func(tx kvTx) error { return fn(&Tx{tx: tx, st: s, reads: rs}) })
	return rs, err
}

// Apply writes a plan made by Plan: in the write transaction it runs write when nothing the
// plan read has changed since, and replan otherwise (the event decided again, now on the
// writer, against what another write changed). It returns once the transaction is durable,
// with whether the plan held.
func (s *Store) Apply(ctx context.Context, rs *ReadSet, write, replan func(*Tx) error) (held bool, err error) {
	var heldNow bool
	err = s.update(ctx, func(tx *Tx) error {
		heldNow = tx.Unchanged(rs)
		if heldNow {
			return write(tx)
		}
		return replan(tx)
	}, rs)
	return heldNow && err == nil, err
}

// Ids are handed out before the write transaction, so that a plan made on a snapshot can name
// the ticket, comment and deliveries it will create (a ticket's reply address and a
// delivery's bounce address are made from them). With bbolt one process holds the file, so
// its counters are the truth: a write stores the highest id it used as the bucket's sequence,
// and the next start begins past it. With PostgreSQL the ids come from the database's
// sequences, unique across every node. An id drawn and never written is skipped.
type counters struct {
	ticket, comment, delivery idCounter
}

func (s *Store) loadCounters(tx kvTx) {
	s.ids.ticket = s.be.counter(tx, bucketTickets)
	s.ids.comment = s.be.counter(tx, bucketComments)
	s.ids.delivery = s.be.counter(tx, bucketDeliv)
}

// idCounter draws ids for one bucket.
type idCounter interface {
	// draw returns a fresh id, or 0 when none could be had (the write then fails).
	draw() uint64
	// use records that id was written to b.
	use(b kvBucket, id uint64) error
}

// processCounter is an idCounter held by the one process that owns the database.
type processCounter struct{ n atomic.Uint64 }

func (c *processCounter) draw() uint64 { return c.n.Add(1) }

// use keeps the counter past id, should a caller have chosen the id itself, and stores it as
// the bucket's sequence so that the next start draws past it.
func (c *processCounter) use(b kvBucket, id uint64) error {
	if id == 0 {
		return errNoID
	}
	for {
		drawn := c.n.Load()
		if id <= drawn || c.n.CompareAndSwap(drawn, id) {
			break
		}
	}
	if id > b.Sequence() {
		return b.SetSequence(id)
	}
	return nil
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

func (d *drawn) next(c idCounter) uint64 {
	if d.used == len(d.ids) {
		d.ids = append(d.ids, c.draw())
	}
	d.used++
	return d.ids[d.used-1]
}

// NewIds starts drawing ids for one event.
func (s *Store) NewIds() *Ids { return &Ids{st: s} }

// Ticket is the new ticket's id.
func (i *Ids) Ticket() uint64 {
	if i.ticket == 0 {
		// A new ticket nearly always has a comment and sends an acknowledgement: where each id
		// costs a round trip, theirs are drawn with the ticket's. One that goes unused is
		// skipped, as any id drawn and not written.
		if ids := i.drawTogether(len(i.items.ids) == 0, bucketTickets, bucketComments, bucketDeliv); ids != nil {
			i.ticket = ids[0]
			i.items.ids = append(i.items.ids, ids[1])
			i.deliveries.ids = append(i.deliveries.ids, ids[2])
		} else {
			i.ticket = i.st.ids.ticket.draw()
		}
	}
	return i.ticket
}

// drawTogether draws one id from each bucket's counter in one round trip, when the backend
// draws from the database and when first says this is the event's first draw; nil otherwise.
func (i *Ids) drawTogether(first bool, buckets ...[]byte) []uint64 {
	if !first || len(i.deliveries.ids) > 0 {
		return nil
	}
	return i.st.be.drawTogether(buckets...)
}

// Item is the id of the event's next comment or event record (they share one sequence).
func (i *Ids) Item() uint64 {
	// A reply's comment is nearly always followed by a notification: both ids in one go.
	if i.items.used == len(i.items.ids) && i.ticket == 0 {
		if ids := i.drawTogether(len(i.items.ids) == 0, bucketComments, bucketDeliv); ids != nil {
			i.items.ids = append(i.items.ids, ids[0])
			i.deliveries.ids = append(i.deliveries.ids, ids[1])
		}
	}
	return i.items.next(i.st.ids.comment)
}

// Delivery is the id of the event's next delivery.
func (i *Ids) Delivery() uint64 { return i.deliveries.next(i.st.ids.delivery) }

// Restart begins a new plan of the same event, which reuses the ids drawn so far.
func (i *Ids) Restart() { i.items.used, i.deliveries.used = 0, 0 }

// errNoID is a record written without an id drawn for it.
var errNoID = errors.New("store: record without an id")

// useID records id as used in b.
func useID(b kvBucket, c idCounter, id uint64) error { return c.use(b, id) }

// drawID draws a fresh id, for writes planned in the writer itself.
func drawID(c idCounter) uint64 { return c.draw() }
