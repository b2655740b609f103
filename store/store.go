// Package store keeps tickets, comments, Message-IDs, the outbound queue and secrets in ordered
// buckets, which one backend holds: one bbolt file (bolt.go) or PostgreSQL tables that several
// nodes share (postgres.go), behind the backend interface (kv.go). Callers speak tickets and
// comments, whichever backend runs; buckets stay in here.
package store

import (
	"bytes"
	"compress/flate"
	"context"
	"crypto/rand"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
	"sync"
	"time"

	"github.com/deskgate/deskgate/gateway/metrics"
	"github.com/deskgate/deskgate/gateway/model"
)

var (
	bucketMeta     = []byte("meta")
	bucketTickets  = []byte("tickets")
	bucketComments = []byte("comments")
	bucketMsgIDs   = []byte("message_ids")
	bucketEvents   = []byte("events")
	bucketAttach   = []byte("attachments")
	bucketDeliv    = []byte("deliveries")
	bucketDelivMsg = []byte("delivery_messages")
	bucketQueue    = []byte("queue")
	bucketItems    = []byte("ticket_items")
	bucketOrig     = []byte("originals")
	bucketByStatus = []byte("tickets_by_status")

	keySecret = []byte("ticket_secret")
)

// ErrNotFound is returned for a ticket or comment that does not exist.
var ErrNotFound = errors.New("not found")

// Store is the open database with its group-commit writer.
type Store struct {
	be     backend
	secret []byte
	calls  chan *call
	done   chan struct{}
	// migratedFrom is the schema version the database had when it was opened.
	migratedFrom int
	ids          counters

	closeOnce sync.Once
	closeErr  error
}

type call struct {
	fn  func(*Tx) error
	err chan error
	// along marks a write that may wait for the next commit of other writes (UpdateAlong).
	along bool
	// reads is what the call's plan read, checked again in the transaction (Apply).
	reads *ReadSet
}

// maxBatch bounds one group commit so that a flood of writers cannot make one
// transaction (and the latency of its first caller) grow without end.
const maxBatch = 512

// allBuckets are the buckets every store has.
var allBuckets = [][]byte{bucketMeta, bucketTickets, bucketComments, bucketMsgIDs, bucketEvents, bucketAttach, bucketDeliv, bucketDelivMsg, bucketQueue, bucketItems, bucketOrig}

// start makes the buckets and the secret if the store is new, brings the layout to
// SchemaVersion and starts the writer.
func (s *Store) start() error {
	err := updateDurably(s.be, func(tx kvTx) error {
		for _, b := range allBuckets {
			if _, err := tx.CreateBucketIfNotExists(b); err != nil {
				return err
			}
		}
		meta := tx.Bucket(bucketMeta)
		if sec := meta.Get(keySecret); sec != nil {
			s.secret = append([]byte(nil), sec...)
			return nil
		}
		// The secret behind every ticket token is born with the database, so that a
		// copied config never lets anyone forge reply addresses.
		sec := make([]byte, 32)
		if _, err := rand.Read(sec); err != nil {
			return err
		}
		s.secret = sec
		return meta.Put(keySecret, sec)
	})
	if err != nil {
		return err
	}
	if s.migratedFrom, err = migrate(s.be); err != nil {
		return err
	}
	if err := s.be.view(0, func(tx kvTx) error { s.loadCounters(tx); return nil }); err != nil {
		return err
	}
	s.calls, s.done = make(chan *call, maxBatch), make(chan struct{})
	go s.writer()
	return nil
}

// Secret is the HMAC key for ticket tokens.
func (s *Store) Secret() []byte { return s.secret }

// Close stops the writer after the writes already queued and closes the file (or the
// connections). Closing again does nothing.
func (s *Store) Close() error {
	s.closeOnce.Do(func() {
		close(s.calls)
		<-s.done
		s.closeErr = s.be.close()
	})
	return s.closeErr
}

// Update runs fn in a write transaction that may be shared with other callers (group
// commit). It returns once the transaction is durable on disk, or with fn's error, in
// which case nothing fn wrote is kept. fn may be run more than once, so it must not
// have effects outside the transaction.
func (s *Store) Update(ctx context.Context, fn func(*Tx) error) error {
	return s.update(ctx, fn, nil)
}

// UpdateAlong is Update for bookkeeping that need not be durable at once, such as the
// relay's record of what it handed over: while other writes are flowing, fn joins the next
// commit that carries them instead of paying for a commit of its own, waiting alongMax at
// most. With nothing else being written it is committed at once, as Update would.
//
// On a virtual machine's disk about 250 µs of CPU goes with each commit whatever it carries
// (two fdatasyncs and the pages of every bucket touched); during a burst of new tickets a
// third of the commits carried nothing but the relay's records.
func (s *Store) UpdateAlong(ctx context.Context, fn func(*Tx) error) error {
	return s.send(ctx, &call{fn: fn, err: make(chan error, 1), along: true})
}

func (s *Store) update(ctx context.Context, fn func(*Tx) error, reads *ReadSet) error {
	return s.send(ctx, &call{fn: fn, err: make(chan error, 1), reads: reads})
}

func (s *Store) send(ctx context.Context, c *call) error {
	select {
	case s.calls <- c:
	case <-ctx.Done():
		return ctx.Err()
	}
	// Once queued the call will be committed or refused; waiting for that even past
	// ctx keeps the caller from answering before the disk does.
	return <-c.err
}

// Variables, not constants, for tests that must not depend on the machine's speed.
var (
	// alongMax bounds how long a write sent with UpdateAlong waits for company.
	alongMax = 2 * time.Millisecond
	// flowing is how recently another write must have come for one sent along to wait.
	flowing = 10 * time.Millisecond
)

func (s *Store) writer() {
	defer close(s.done)
	var held []*call // writes sent along, waiting for others
	wait := time.NewTimer(time.Hour)
	wait.Stop()
	var waitC <-chan time.Time
	var lastOthers time.Time
	for {
		var c *call
		var ok bool
		select {
		case c, ok = <-s.calls:
		case <-waitC:
			waitC = nil
			s.commit(held)
			held = nil
			continue
		}
		if !ok {
			if len(held) > 0 {
				s.commit(held)
			}
			return
		}
		batch, open := s.take(append(held, c))
		held = nil
		if others(batch) {
			lastOthers = time.Now()
		} else if open && len(batch) < maxBatch && time.Since(lastOthers) < flowing {
			held = batch
			if waitC == nil {
				wait.Reset(alongMax)
				waitC = wait.C
			}
			continue
		}
		if waitC != nil {
			wait.Stop()
			waitC = nil
		}
		s.commit(batch)
		if !open {
			return
		}
	}
}

// others says whether batch holds a write that was not sent along.
func others(batch []*call) bool {
	for _, c := range batch {
		if !c.along {
			return true
		}
	}
	return false
}

// take adds the calls waiting to batch, up to maxBatch; open is false once calls is closed.
func (s *Store) take(batch []*call) ([]*call, bool) {
	for len(batch) < maxBatch {
		select {
		case more, ok := <-s.calls:
			if !ok {
				return batch, false
			}
			batch = append(batch, more)
		default:
			return batch, true
		}
	}
	return batch, true
}

type failedCall struct {
	index int
	err   error
}

func (f *failedCall) Error() string { return f.err.Error() }

func (s *Store) commit(batch []*call) {
	start := time.Now()
	defer func() {
		metrics.StoreCommits.Inc()
		metrics.StoreWrites.Add(float64(len(batch)))
		metrics.StoreCommitBatch.Observe(float64(len(batch)))
		metrics.StoreCommitSeconds.Observe(time.Since(start).Seconds())
	}()
	wait, err := s.be.update(opTimeout, func(ktx kvTx) error {
		// Every record the batch's plans read, and the counters every write changes.
		keys := []bucketKey{{bucketMeta, string(keyTicketCount)}, {bucketMeta, string(keyCommentCount)}, {bucketMeta, string(keyDeliveryCount)}}
		keys = append(keys, statusCountKeys...)
		for _, c := range batch {
			if c.reads != nil {
				for _, r := range c.reads.reads {
					keys = append(keys, bucketKey{r.bucket, r.key})
				}
			}
		}
		ktx.prefetch(keys)
		tx := &Tx{tx: ktx, st: s}
		for i, c := range batch {
			if err := c.fn(tx); err != nil {
				return &failedCall{index: i, err: err}
			}
		}
		return nil
	})
	var failed *failedCall
	switch {
	case err == nil && wait != nil:
		// Committed; the callers hear once it is on disk, while the next batch goes ahead.
		go func() {
			err := wait()
			for _, c := range batch {
				c.err <- err
			}
		}()
	case err == nil:
		for _, c := range batch {
			c.err <- nil
		}
	case errors.As(err, &failed):
		// One caller's failure rolled back everyone's writes: answer it, and commit
		// the others again without it.
		batch[failed.index].err <- failed.err
		rest := append(append([]*call(nil), batch[:failed.index]...), batch[failed.index+1:]...)
		if len(rest) > 0 {
			s.commit(rest)
		}
	default:
		for _, c := range batch {
			c.err <- err
		}
	}
}

// View runs fn in a read-only transaction.
func (s *Store) View(fn func(*Tx) error) error {
	return s.be.view(0, func(ktx kvTx) error { return fn(&Tx{tx: ktx, st: s}) })
}

// Backup writes a consistent copy of the database to w: the bbolt file; on PostgreSQL it
// returns ErrBackupElsewhere.
func (s *Store) Backup(w io.Writer) (int64, error) { return s.be.backup(w) }

// ErrBackupElsewhere is Backup on PostgreSQL, whose own tools (pg_dump, base backups) back it up.
var ErrBackupElsewhere = errors.New("the store is on PostgreSQL: back it up with pg_dump or pg_basebackup")

// Tx is one transaction, read-only or writable.
type Tx struct {
	tx kvTx
	st *Store
	// reads, when not nil, collects what a plan read (see Plan).
	reads *ReadSet
}

func itob(v uint64) []byte {
	b := make([]byte, 8)
	binary.BigEndian.PutUint64(b, v)
	return b
}

func (t *Tx) getJSON(bucket, key []byte, v any) (bool, error) {
	return decodeStored(t.get(bucket, key), v)
}

// decodeStored decodes a record the writer reads for its own bookkeeping, outside any plan.
func decodeStored(raw []byte, v any) (bool, error) {
	if raw == nil {
		return false, nil
	}
	return true, json.Unmarshal(raw, v)
}

func putJSON(b kvBucket, key []byte, v any) error {
	raw, err := json.Marshal(v)
	if err != nil {
		return err
	}
	return b.Put(key, raw)
}

// Ticket returns the ticket with id, or ErrNotFound.
func (t *Tx) Ticket(id uint64) (*model.Ticket, error) {
	var tk model.Ticket
	ok, err := t.getJSON(bucketTickets, itob(id), &tk)
	if err != nil {
		return nil, err
	}
	if !ok {
		return nil, ErrNotFound
	}
	return &tk, nil
}

// Comment returns the comment with id, or ErrNotFound.
func (t *Tx) Comment(id uint64) (*model.Comment, error) {
	raw := t.get(bucketComments, itob(id))
	if raw == nil {
		return nil, ErrNotFound
	}
	var c model.Comment
	if err := decodeComment(raw, &c); err != nil {
		return nil, fmt.Errorf("comment %d: %w", id, err)
	}
	return &c, nil
}

const (
	itemComment = 'c'
	itemEvent   = 'e'
)

func itemKey(ticketID uint64, kind byte, id uint64) []byte {
	k := make([]byte, 17)
	binary.BigEndian.PutUint64(k, ticketID)
	k[8] = kind
	binary.BigEndian.PutUint64(k[9:], id)
	return k
}

func (t *Tx) addItem(tk *model.Ticket, kind byte, id uint64) error {
	if kind == itemComment {
		tk.CommentIDs = append(tk.CommentIDs, id)
	} else {
		tk.EventIDs = append(tk.EventIDs, id)
	}
	return t.tx.Bucket(bucketItems).Put(itemKey(tk.ID, kind, id), nil)
}

// Items fills tk.CommentIDs and tk.EventIDs, oldest first.
func (t *Tx) Items(tk *model.Ticket) {
	tk.CommentIDs, tk.EventIDs = nil, nil
	prefix := itob(tk.ID)
	c := t.tx.Bucket(bucketItems).Cursor()
	for k, _ := c.Seek(prefix); k != nil && bytes.HasPrefix(k, prefix); k, _ = c.Next() {
		id := binary.BigEndian.Uint64(k[9:])
		if k[8] == itemComment {
			tk.CommentIDs = append(tk.CommentIDs, id)
		} else {
			tk.EventIDs = append(tk.EventIDs, id)
		}
	}
}

// Comments returns a ticket's comments, oldest first.
func (t *Tx) Comments(tk *model.Ticket) ([]model.Comment, error) {
	t.Items(tk)
	out := make([]model.Comment, 0, len(tk.CommentIDs))
	for _, id := range tk.CommentIDs {
		c, err := t.Comment(id)
		if err != nil {
			return nil, fmt.Errorf("ticket %d comment %d: %w", tk.ID, id, err)
		}
		out = append(out, *c)
	}
	return out, nil
}

// NormalizeMessageID strips the angle brackets and blanks around a Message-ID.
func NormalizeMessageID(id string) string {
	id = strings.TrimSpace(id)
	id = strings.TrimPrefix(id, "<")
	id = strings.TrimSuffix(id, ">")
	return strings.TrimSpace(id)
}

// MessageID says which ticket (and comment) a Message-ID belongs to.
func (t *Tx) MessageID(id string) (MessageRef, bool) {
	id = NormalizeMessageID(id)
	if id == "" {
		return MessageRef{}, false
	}
	var ref MessageRef
	ok, err := t.getJSON(bucketMsgIDs, []byte(id), &ref)
	if err != nil || !ok {
		return MessageRef{}, false
	}
	return ref, true
}

// CreateTicket stores a new ticket and gives it the next id.
func (t *Tx) CreateTicket(tk *model.Ticket) error {
	b := t.tx.Bucket(bucketTickets)
	if tk.ID == 0 {
		tk.ID = drawID(t.st.ids.ticket)
	}
	id := tk.ID
	if err := useID(b, t.st.ids.ticket, id); err != nil {
		return err
	}
	if err := t.count(keyTicketCount, 1); err != nil {
		return err
	}
	if err := t.tx.Bucket(bucketByStatus).Put(statusKey(string(tk.Status), id), nil); err != nil {
		return err
	}
	if err := t.count(statusCountKey(string(tk.Status)), 1); err != nil {
		return err
	}
	return putJSON(b, itob(id), tk)
}

// PutTicket stores a changed ticket.
func (t *Tx) PutTicket(tk *model.Ticket) error {
	if tk.ID == 0 {
		return errors.New("store: ticket without id")
	}
	b := t.tx.Bucket(bucketTickets)
	oldStatus := storedStatus(b.Get(itob(tk.ID)))
	if oldStatus != string(tk.Status) {
		idx := t.tx.Bucket(bucketByStatus)
		if oldStatus != "" {
			if err := idx.Delete(statusKey(oldStatus, tk.ID)); err != nil {
				return err
			}
			if err := t.count(statusCountKey(oldStatus), -1); err != nil {
				return err
			}
		}
		if err := idx.Put(statusKey(string(tk.Status), tk.ID), nil); err != nil {
			return err
		}
		if err := t.count(statusCountKey(string(tk.Status)), 1); err != nil {
			return err
		}
	}
	return putJSON(b, itob(tk.ID), tk)
}

// AddComment stores c with the next comment id, appends it to tk (which the caller then
// puts) and indexes its Message-ID and the ones it references.
func (t *Tx) AddComment(tk *model.Ticket, c *model.Comment) error {
	b := t.tx.Bucket(bucketComments)
	if c.ID == 0 {
		c.ID = drawID(t.st.ids.comment)
	}
	id := c.ID
	if err := useID(b, t.st.ids.comment, id); err != nil {
		return err
	}
	c.TicketID = tk.ID
	if err := b.Put(itob(id), encodeComment(c)); err != nil {
		return err
	}
	if err := t.count(keyCommentCount, 1); err != nil {
		return err
	}
	if err := t.addItem(tk, itemComment, id); err != nil {
		return err
	}
	if c.MessageID != "" {
		if err := t.setMessageID(c.MessageID, MessageRef{TicketID: tk.ID, CommentID: id}, true); err != nil {
			return err
		}
	}
	for _, ref := range append([]string{c.InReplyTo}, c.References...) {
		if err := t.setMessageID(ref, MessageRef{TicketID: tk.ID}, false); err != nil {
			return err
		}
	}
	return nil
}

// IndexSentMessageID records the Message-ID of a message deskgate sends.
func (t *Tx) IndexSentMessageID(id string, ref MessageRef) error {
	ref.Sent = true
	return putJSON(t.tx.Bucket(bucketMsgIDs), []byte(NormalizeMessageID(id)), ref)
}

// setMessageID indexes id. A reference never moves an id already known to another
// ticket (first seen wins); the message itself overrides a bare reference.
func (t *Tx) setMessageID(id string, ref MessageRef, own bool) error {
	id = NormalizeMessageID(id)
	if id == "" || len(id) > 998 {
		return nil
	}
	b := t.tx.Bucket(bucketMsgIDs)
	var old MessageRef
	ok, err := decodeStored(b.Get([]byte(id)), &old)
	if err != nil {
		return err
	}
	if ok && (!own || old.CommentID != 0 || old.Sent || old.TicketID != ref.TicketID) {
		return nil
	}
	return putJSON(b, []byte(id), ref)
}

// PutComment stores a changed comment.
func (t *Tx) PutComment(c *model.Comment) error {
	if c.ID == 0 {
		return errors.New("store: comment without id")
	}
	return t.tx.Bucket(bucketComments).Put(itob(c.ID), encodeComment(c))
}

// ListTickets returns up to limit tickets, newest first, with id < before when before > 0,
// and only those in status when status is set.
func (t *Tx) ListTickets(status model.Status, limit int, before uint64) ([]model.Ticket, error) {
	if status != "" {
		return t.listByStatus(status, limit, before)
	}
	c := t.tx.Bucket(bucketTickets).Cursor()
	var k, v []byte
	if before > 0 {
		k, v = c.Seek(itob(before))
		if k == nil {
			k, v = c.Last()
		}
		for k != nil && bytes.Compare(k, itob(before)) >= 0 {
			k, v = c.Prev()
		}
	} else {
		k, v = c.Last()
	}
	out := []model.Ticket{}
	for ; k != nil && len(out) < limit; k, v = c.Prev() {
		var tk model.Ticket
		if err := json.Unmarshal(v, &tk); err != nil {
			return nil, err
		}
		out = append(out, tk)
	}
	return out, nil
}

// storedStatus reads the status out of a stored ticket's JSON without decoding the rest: this
// runs on the writer for every ticket change. The first `"status":"` is the field's, because
// the fields before it are numbers and escaped strings, in which a bare quote cannot appear.
func storedStatus(record []byte) string {
	const field = `"status":"`
	i := bytes.Index(record, []byte(field))
	if i < 0 {
		return ""
	}
	rest := record[i+len(field):]
	j := bytes.IndexByte(rest, '"')
	if j < 0 {
		return ""
	}
	return string(rest[:j])
}

// listByStatus walks the status index from the newest ticket below before: only the tickets
// listed are read.
func (t *Tx) listByStatus(status model.Status, limit int, before uint64) ([]model.Ticket, error) {
	prefix := statusKey(string(status), 0)
	prefix = prefix[:len(prefix)-8]
	start := before
	if start == 0 {
		start = ^uint64(0)
	}
	c := t.tx.Bucket(bucketByStatus).Cursor()
	k, _ := c.Seek(statusKey(string(status), start))
	if k == nil {
		k, _ = c.Last()
	}
	// Back over what is past the page: later statuses, and ids not below before.
	for k != nil && (!bytes.HasPrefix(k, prefix) && bytes.Compare(k, prefix) > 0 ||
		bytes.HasPrefix(k, prefix) && binary.BigEndian.Uint64(k[len(prefix):]) >= start) {
		k, _ = c.Prev()
	}
	out := []model.Ticket{}
	for ; k != nil && bytes.HasPrefix(k, prefix) && len(out) < limit; k, _ = c.Prev() {
		tk, err := t.Ticket(binary.BigEndian.Uint64(k[len(prefix):]))
		if err != nil {
			return nil, err
		}
		out = append(out, *tk)
	}
	return out, nil
}

var (
	keyCommentCount = []byte("comment_count")
	keyTicketCount  = []byte("ticket_count")
	// keyDeliveryCount counts delivery records: ids are drawn by the process and deleted
	// tickets take their deliveries along, so the sequence does not count them.
	keyDeliveryCount = []byte("delivery_count")
)

// statusCountKey is the meta key counting the tickets in one status. The counters change
// exactly where the status index does (CreateTicket, PutTicket, DeleteTicket), so they always
// agree with it, and a page can show them without walking it.
func statusCountKey(status string) []byte { return []byte("status_count:" + status) }

// ticketStatuses are the statuses TicketCounts reports.
var ticketStatuses = []model.Status{model.StatusNew, model.StatusOpen, model.StatusPending, model.StatusSolved}

// statusCountKeys are the counters of the four statuses, read together.
var statusCountKeys = func() []bucketKey {
	var out []bucketKey
	for _, st := range ticketStatuses {
		out = append(out, bucketKey{bucketMeta, string(statusCountKey(string(st)))})
	}
	return out
}()

// TicketCounts is how many tickets are stored, in all and in each status.
type TicketCounts struct {
	Total int
	// ByStatus has an entry for each of the four statuses, zero included.
	ByStatus map[model.Status]int
}

// TicketCounts reads the counters kept as tickets are added, change status and are deleted:
// a handful of keys, whatever the size of the desk.
func (t *Tx) TicketCounts() TicketCounts {
	t.tx.prefetch(append([]bucketKey{{bucketMeta, string(keyTicketCount)}}, statusCountKeys...))
	out := TicketCounts{Total: int(t.counter(keyTicketCount)), ByStatus: map[model.Status]int{}}
	for _, st := range ticketStatuses {
		out.ByStatus[st] = int(t.counter(statusCountKey(string(st))))
	}
	return out
}

// Counts returns how many tickets and comments are stored, without walking the tree:
// both are counted as they are added.
func (t *Tx) Counts() (tickets, comments int) {
	return int(t.counter(keyTicketCount)), int(t.counter(keyCommentCount))
}

func (t *Tx) counter(key []byte) uint64 {
	if n := t.tx.Bucket(bucketMeta).Get(key); len(n) == 8 {
		return binary.BigEndian.Uint64(n)
	}
	return 0
}

// count adds delta to one of the counters kept in the meta bucket.
func (t *Tx) count(key []byte, delta int64) error {
	return t.tx.Bucket(bucketMeta).Put(key, itob(uint64(int64(t.counter(key))+delta)))
}

// NotifiedOf returns whom comment or event id was sent to, or false when there is no such
// record.
func (t *Tx) NotifiedOf(id uint64) ([]model.Notified, bool, error) {
	c, err := t.Comment(id)
	if err == nil {
		return c.Notified, true, nil
	}
	if !errors.Is(err, ErrNotFound) {
		return nil, true, err
	}
	var rec struct {
		Notified []model.Notified `json:"notified"`
	}
	ok, err := t.getJSON(bucketEvents, itob(id), &rec)
	return rec.Notified, ok, err
}

// AddEvent stores an event with the next id and appends it to tk.
func (t *Tx) AddEvent(tk *model.Ticket, e *model.Event) error {
	if e.ID == 0 {
		e.ID = drawID(t.st.ids.comment)
	}
	id := e.ID
	if err := useID(t.tx.Bucket(bucketComments), t.st.ids.comment, id); err != nil {
		return err
	}
	e.TicketID = tk.ID
	if err := t.addItem(tk, itemEvent, id); err != nil {
		return err
	}
	return putJSON(t.tx.Bucket(bucketEvents), itob(id), e)
}

// PutEvent stores a changed event.
func (t *Tx) PutEvent(e *model.Event) error {
	return putJSON(t.tx.Bucket(bucketEvents), itob(e.ID), e)
}

// Event returns the event with id, or ErrNotFound.
func (t *Tx) Event(id uint64) (*model.Event, error) {
	var e model.Event
	ok, err := t.getJSON(bucketEvents, itob(id), &e)
	if err != nil {
		return nil, err
	}
	if !ok {
		return nil, ErrNotFound
	}
	return &e, nil
}

func attachKey(commentID uint64, i int) []byte {
	k := make([]byte, 12)
	binary.BigEndian.PutUint64(k, commentID)
	binary.BigEndian.PutUint32(k[8:], uint32(i))
	return k
}

// PutAttachmentData stores the bytes of a comment's i-th attachment.
func (t *Tx) PutAttachmentData(commentID uint64, i int, data []byte) error {
	return t.tx.Bucket(bucketAttach).Put(attachKey(commentID, i), data)
}

// AttachmentData returns a copy of the bytes of a comment's i-th attachment.
func (t *Tx) AttachmentData(commentID uint64, i int) []byte {
	v := t.tx.Bucket(bucketAttach).Get(attachKey(commentID, i))
	return append([]byte(nil), v...)
}

// The first byte of a stored original says how the rest is kept; it leaves room for other
// forms.
const (
	originalDeflate = 1
	originalPlain   = 2
)

// plainBelow is the size under which an original is kept as it came. Deflating a mail of a
// kilobyte or two saves a few hundred bytes, a fraction of a page, for about 20 µs of CPU on
// the path to every 250 (issue 23's profile: more than the rules and threading together);
// most of what deflate saves is in larger mails, which carry HTML parts and attachments.
const plainBelow = 2048

// deflaters are reused: a new flate writer allocates about a megabyte of tables, which cost
// a third of a millisecond per message before they were pooled.
var deflaters = sync.Pool{New: func() any {
	w, _ := flate.NewWriter(nil, flate.BestSpeed)
	return w
}}

// PackOriginal readies a received message for PutOriginal: deflated, unless it is small. It
// is CPU work, so callers do it before they enter the write transaction.
func PackOriginal(raw []byte) []byte {
	if len(raw) < plainBelow {
		packed := make([]byte, 1+len(raw))
		packed[0] = originalPlain
		copy(packed[1:], raw)
		return packed
	}
	return deflateOriginal(raw)
}

// deflateOriginal is an original packed deflated, the form of every original before small ones
// were kept plain.
func deflateOriginal(raw []byte) []byte {
	var b bytes.Buffer
	b.Grow(len(raw)/2 + 64)
	b.WriteByte(originalDeflate)
	w := deflaters.Get().(*flate.Writer)
	w.Reset(&b)
	w.Write(raw)
	w.Close()
	deflaters.Put(w)
	return b.Bytes()
}

// PutOriginal keeps a comment's original message, packed by PackOriginal.
func (t *Tx) PutOriginal(commentID uint64, packed []byte) error {
	return t.tx.Bucket(bucketOrig).Put(itob(commentID), packed)
}

// Original returns the message a comment was made from, as it was received; false when the
// comment did not come by mail (or came before originals were kept).
func (t *Tx) Original(commentID uint64) ([]byte, bool, error) {
	v := t.tx.Bucket(bucketOrig).Get(itob(commentID))
	if v == nil {
		return nil, false, nil
	}
	if len(v) > 0 && v[0] == originalPlain {
		return append([]byte(nil), v[1:]...), true, nil
	}
	if len(v) == 0 || v[0] != originalDeflate {
		return nil, true, fmt.Errorf("original of comment %d: unknown format", commentID)
	}
	raw, err := io.ReadAll(flate.NewReader(bytes.NewReader(v[1:])))
	if err != nil {
		return nil, true, fmt.Errorf("original of comment %d: %w", commentID, err)
	}
	return raw, true, nil
}

// queueKey orders the outbound queue by when a delivery is due, then by id, so that
// finding what is due is a range scan however many deliveries wait for later.
func queueKey(next time.Time, id uint64) []byte {
	k := make([]byte, 16)
	var n uint64
	if next.After(time.Unix(0, 0)) {
		n = uint64(next.UnixNano())
	}
	binary.BigEndian.PutUint64(k, n)
	binary.BigEndian.PutUint64(k[8:], id)
	return k
}

// QueueDelivery stores a delivery and its message and puts it on the outbound queue.
func (t *Tx) QueueDelivery(d *Delivery, message []byte) error {
	if err := useID(t.tx.Bucket(bucketDeliv), t.st.ids.delivery, d.ID); err != nil {
		return err
	}
	if err := t.count(keyDeliveryCount, 1); err != nil {
		return err
	}
	d.Size = len(message)
	if err := t.tx.Bucket(bucketDeliv).Put(itob(d.ID), encodeDelivery(d)); err != nil {
		return err
	}
	if err := t.tx.Bucket(bucketDelivMsg).Put(itob(d.ID), message); err != nil {
		return err
	}
	return t.tx.Bucket(bucketQueue).Put(queueKey(d.NextTry, d.ID), nil)
}

// PrefetchDeliveries reads the records of ids (and their messages, withMessages) ahead of
// Delivery and DeliveryMessage asking for them one by one: on PostgreSQL in one round trip
// instead of one each; on bbolt it does nothing.
func (t *Tx) PrefetchDeliveries(ids []uint64, withMessages bool) {
	keys := make([]bucketKey, 0, 2*len(ids))
	for _, id := range ids {
		keys = append(keys, bucketKey{bucketDeliv, string(itob(id))})
		if withMessages {
			keys = append(keys, bucketKey{bucketDelivMsg, string(itob(id))})
		}
	}
	t.tx.prefetch(keys)
}

// Delivery returns the delivery with id, or ErrNotFound.
func (t *Tx) Delivery(id uint64) (*Delivery, error) {
	raw := t.get(bucketDeliv, itob(id))
	if raw == nil {
		return nil, ErrNotFound
	}
	var d Delivery
	if err := decodeDelivery(raw, &d); err != nil {
		return nil, fmt.Errorf("delivery %d: %w", id, err)
	}
	d.loadedNext, d.loaded = d.NextTry, true
	return &d, nil
}

// DeliveryMessage returns a copy of the message bytes of delivery id.
func (t *Tx) DeliveryMessage(id uint64) []byte {
	return append([]byte(nil), t.tx.Bucket(bucketDelivMsg).Get(itob(id))...)
}

// PutDelivery stores a changed delivery and moves it on the queue to its next try, or
// off the queue once it is no longer queued.
func (t *Tx) PutDelivery(d *Delivery) error {
	b := t.tx.Bucket(bucketDeliv)
	if !d.loaded {
		if raw := b.Get(itob(d.ID)); raw != nil {
			var old Delivery
			if err := decodeDelivery(raw, &old); err != nil {
				return fmt.Errorf("delivery %d: %w", d.ID, err)
			}
			d.loadedNext, d.loaded = old.NextTry, true
		}
	}
	if d.loaded {
		if err := t.tx.Bucket(bucketQueue).Delete(queueKey(d.loadedNext, d.ID)); err != nil {
			return err
		}
	}
	if err := b.Put(itob(d.ID), encodeDelivery(d)); err != nil {
		return err
	}
	d.loadedNext, d.loaded = d.NextTry, true
	if d.State == model.DeliverySent || d.State == model.DeliveryDropped {
		// Nothing will send it again: keep the record, not the bytes, or the
		// database would grow by every message ever sent. Failed and partial
		// deliveries keep theirs for `queue retry`.
		if err := t.tx.Bucket(bucketDelivMsg).Delete(itob(d.ID)); err != nil {
			return err
		}
	}
	if d.State != model.DeliveryQueued {
		return nil
	}
	return t.tx.Bucket(bucketQueue).Put(queueKey(d.NextTry, d.ID), nil)
}

// DueDeliveries lists the queued deliveries due at now, the longest waiting first.
func (t *Tx) DueDeliveries(now time.Time, limit int) []uint64 {
	var ids []uint64
	end := uint64(now.UnixNano())
	c := t.tx.Bucket(bucketQueue).Cursor()
	for k, _ := c.First(); k != nil && len(ids) < limit; k, _ = c.Next() {
		if binary.BigEndian.Uint64(k) > end {
			break
		}
		ids = append(ids, binary.BigEndian.Uint64(k[8:]))
	}
	return ids
}

// QueuedDeliveries lists every queued delivery, due or not, in the order they fall due.
func (t *Tx) QueuedDeliveries(limit int) []uint64 {
	var ids []uint64
	c := t.tx.Bucket(bucketQueue).Cursor()
	for k, _ := c.First(); k != nil && len(ids) < limit; k, _ = c.Next() {
		ids = append(ids, binary.BigEndian.Uint64(k[8:]))
	}
	return ids
}

// Deliveries lists deliveries newest first, at most limit.
func (t *Tx) Deliveries(limit int) ([]Delivery, error) {
	return t.DeliveriesPage(0, "", limit)
}

// DeliveriesPage lists deliveries with ids below before (0: from the newest) in state ("":
// any), newest first, at most limit.
func (t *Tx) DeliveriesPage(before uint64, state model.DeliveryState, limit int) ([]Delivery, error) {
	var out []Delivery
	c := t.tx.Bucket(bucketDeliv).Cursor()
	var k, v []byte
	switch {
	case before == 0:
		k, v = c.Last()
	default:
		// The first key at or after before, then one back; none at or after: the last.
		if at, _ := c.Seek(itob(before)); at == nil {
			k, v = c.Last()
		} else {
			k, v = c.Prev()
		}
	}
	for ; k != nil && len(out) < limit; k, v = c.Prev() {
		if len(k) != 8 || (before > 0 && binary.BigEndian.Uint64(k) >= before) {
			continue
		}
		var d Delivery
		if err := decodeDelivery(v, &d); err != nil {
			return nil, fmt.Errorf("delivery %d: %w", binary.BigEndian.Uint64(k), err)
		}
		if state != "" && d.State != state {
			continue
		}
		out = append(out, d)
	}
	return out, nil
}

// OldestQueued is the creation time of the oldest delivery on the queue; false when the
// queue is empty. Ids grow with time, so the smallest id queued is the oldest.
func (t *Tx) OldestQueued() (time.Time, bool) {
	var min uint64
	c := t.tx.Bucket(bucketQueue).Cursor()
	for k, _ := c.First(); k != nil; k, _ = c.Next() {
		if id := binary.BigEndian.Uint64(k[8:]); min == 0 || id < min {
			min = id
		}
	}
	if min == 0 {
		return time.Time{}, false
	}
	d, err := t.Delivery(min)
	if err != nil {
		return time.Time{}, false
	}
	return d.CreatedAt, true
}

// QueueCounts returns how many deliveries are queued and how many are recorded.
func (t *Tx) QueueCounts() (queued, total int) {
	c := t.tx.Bucket(bucketQueue).Cursor()
	for k, _ := c.First(); k != nil; k, _ = c.Next() {
		queued++
	}
	return queued, int(t.counter(keyDeliveryCount))
}

// Settle puts what the rules decided of a delivery's recipients (rules.Settle) into d, to be
// saved by PutDelivery, and stores the failures to flag on its ticket. The `notified`
// entries of comments are not rewritten: WithStatus reads their status from the deliveries
// when asked, which keeps the relay's bookkeeping off the comments.
func (t *Tx) Settle(d *Delivery, recipients []model.DeliveryRecipient, state model.DeliveryState, failures []model.DeliveryFailure) error {
	d.Recipients, d.State = recipients, state
	if len(failures) == 0 {
		return nil
	}
	tk, err := t.Ticket(d.TicketID)
	if err != nil {
		return err
	}
	tk.DeliveryFailures = append(tk.DeliveryFailures, failures...)
	return t.PutTicket(tk)
}

// WithStatus fills each entry's Status and Reply from its delivery.
func (t *Tx) WithStatus(list []model.Notified) []model.Notified {
	cache := map[uint64]*Delivery{}
	out := make([]model.Notified, len(list))
	for i, n := range list {
		out[i] = n
		if n.Delivery == 0 {
			continue
		}
		d, ok := cache[n.Delivery]
		if !ok {
			d, _ = t.Delivery(n.Delivery)
			cache[n.Delivery] = d
		}
		if d == nil {
			continue
		}
		for _, r := range d.Recipients {
			if strings.EqualFold(r.Email, n.Email) {
				out[i].Status, out[i].Reply = string(r.State), r.Reply
			}
		}
	}
	return out
}
