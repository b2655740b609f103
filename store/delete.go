package store

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"strings"
	"time"
)

// Deleted is what deleting a ticket removed.
type Deleted struct {
	Ticket      uint64
	Comments    int
	Events      int
	Deliveries  int // queued ones among them were taken off the queue
	MessageIDs  int
	Attachments int
}

// DeleteTicket removes ticket id with its comments, events, originals, attachments, the
// Message-ID entries that point at it and its deliveries (queued or not). ErrNotFound when it
// does not exist.
func (t *Tx) DeleteTicket(id uint64) (Deleted, error) {
	out := Deleted{Ticket: id}
	tk, err := t.Ticket(id)
	if err != nil {
		return out, err
	}
	t.Items(tk)
	msgIDs := map[string]bool{NormalizeMessageID(tk.RootMessageID): true}
	deliveries := map[uint64]bool{}
	for _, cid := range tk.CommentIDs {
		c, err := t.Comment(cid)
		if errors.Is(err, ErrNotFound) {
			continue
		}
		if err != nil {
			return out, fmt.Errorf("comment %d: %w", cid, err)
		}
		for _, m := range append([]string{c.MessageID, c.InReplyTo}, c.References...) {
			msgIDs[NormalizeMessageID(m)] = true
		}
		for _, n := range c.Notified {
			deliveries[n.Delivery] = true
		}
		n, err := t.deletePrefix(bucketAttach, itob(cid))
		if err != nil {
			return out, err
		}
		out.Attachments += n
		for _, b := range [][]byte{bucketOrig, bucketComments} {
			if err := t.tx.Bucket(b).Delete(itob(cid)); err != nil {
				return out, err
			}
		}
		out.Comments++
	}
	for _, eid := range tk.EventIDs {
		var e Event
		if ok, err := decodeStored(t.tx.Bucket(bucketEvents).Get(itob(eid)), &e); err != nil {
			return out, fmt.Errorf("event %d: %w", eid, err)
		} else if ok {
			for _, n := range e.Notified {
				deliveries[n.Delivery] = true
			}
		}
		if err := t.tx.Bucket(bucketEvents).Delete(itob(eid)); err != nil {
			return out, err
		}
		out.Events++
	}
	delete(deliveries, 0)
	for did := range deliveries {
		raw := t.tx.Bucket(bucketDeliv).Get(itob(did))
		if raw == nil {
			continue
		}
		var d Delivery
		if err := decodeDelivery(raw, &d); err != nil {
			return out, fmt.Errorf("delivery %d: %w", did, err)
		}
		if d.TicketID != id {
			continue
		}
		msgIDs[NormalizeMessageID(d.MessageID)] = true
		if err := t.tx.Bucket(bucketQueue).Delete(queueKey(d.NextTry, did)); err != nil {
			return out, err
		}
		for _, b := range [][]byte{bucketDelivMsg, bucketDeliv} {
			if err := t.tx.Bucket(b).Delete(itob(did)); err != nil {
				return out, err
			}
		}
		out.Deliveries++
	}
	idx := t.tx.Bucket(bucketMsgIDs)
	for m := range msgIDs {
		if m == "" {
			continue
		}
		var ref MessageRef
		if ok, err := decodeStored(idx.Get([]byte(m)), &ref); err != nil || !ok || ref.TicketID != id {
			continue // another ticket's, or gone; an unreadable entry is left as it is
		}
		if err := idx.Delete([]byte(m)); err != nil {
			return out, err
		}
		out.MessageIDs++
	}
	if _, err := t.deletePrefix(bucketItems, itob(id)); err != nil {
		return out, err
	}
	if err := t.tx.Bucket(bucketByStatus).Delete(statusKey(string(tk.Status), id)); err != nil {
		return out, err
	}
	if err := t.count(statusCountKey(string(tk.Status)), -1); err != nil {
		return out, err
	}
	if err := t.tx.Bucket(bucketTickets).Delete(itob(id)); err != nil {
		return out, err
	}
	if err := t.count(keyTicketCount, -1); err != nil {
		return out, err
	}
	if err := t.count(keyDeliveryCount, -int64(out.Deliveries)); err != nil {
		return out, err
	}
	return out, t.count(keyCommentCount, -int64(out.Comments))
}

// deletePrefix deletes every key of bucket that starts with prefix.
func (t *Tx) deletePrefix(bucket, prefix []byte) (int, error) {
	b := t.tx.Bucket(bucket)
	var keys [][]byte
	c := b.Cursor()
	for k, _ := c.Seek(prefix); k != nil && bytes.HasPrefix(k, prefix); k, _ = c.Next() {
		keys = append(keys, append([]byte(nil), k...))
	}
	for _, k := range keys {
		if err := b.Delete(k); err != nil {
			return 0, err
		}
	}
	return len(keys), nil
}

// SolvedBefore lists up to limit solved tickets last changed before cutoff, oldest id first,
// starting after id `after`. It reads the time from each record without decoding it.
func (t *Tx) SolvedBefore(cutoff time.Time, after uint64, limit int) (ids []uint64, last uint64) {
	prefix := statusKey(string(StatusSolved), 0)[:len(StatusSolved)+1]
	c := t.tx.Bucket(bucketByStatus).Cursor()
	tickets := t.tx.Bucket(bucketTickets)
	for k, _ := c.Seek(statusKey(string(StatusSolved), after+1)); k != nil && bytes.HasPrefix(k, prefix); k, _ = c.Next() {
		id := binary.BigEndian.Uint64(k[len(prefix):])
		last = id
		if at, ok := storedTime(tickets.Get(itob(id)), `"updated_at":"`); ok && at.Before(cutoff) {
			ids = append(ids, id)
			if len(ids) == limit {
				break
			}
		}
	}
	return ids, last
}

// storedTime finds a top-level RFC 3339 time field in a JSON record by its bytes. Ticket
// records put their nested objects (requester, CCs) before updated_at and none of them has a
// field of that name, so the first match is the ticket's own.
func storedTime(record []byte, field string) (time.Time, bool) {
	i := bytes.Index(record, []byte(field))
	if i < 0 {
		return time.Time{}, false
	}
	rest := record[i+len(field):]
	j := bytes.IndexByte(rest, '"')
	if j < 0 {
		return time.Time{}, false
	}
	at, err := time.Parse(time.RFC3339Nano, string(rest[:j]))
	return at, err == nil
}

// Mentioning lists, on a snapshot, the tickets whose record or any of whose comments, events
// or deliveries contains email (in any case). It reads every record's bytes and decodes none,
// so that a desk of millions of comments is searched in one pass over the file.
func (t *Tx) Mentioning(email string) ([]uint64, error) {
	needle := []byte(strings.ToLower(email))
	found := map[uint64]bool{}
	scan := func(bucket []byte, owner func(k, v []byte) uint64) error {
		return t.tx.Bucket(bucket).ForEach(func(k, v []byte) error {
			if containsFold(v, needle) {
				if id := owner(k, v); id != 0 {
					found[id] = true
				}
			}
			return nil
		})
	}
	byKey := func(k, _ []byte) uint64 { return binary.BigEndian.Uint64(k) }
	byTicketField := func(_, v []byte) uint64 {
		var rec struct {
			TicketID uint64 `json:"ticket_id"`
		}
		if _, err := decodeStored(v, &rec); err != nil {
			return 0
		}
		return rec.TicketID
	}
	byComment := func(_, v []byte) uint64 {
		var c Comment
		if err := decodeComment(v, &c); err != nil {
			return 0
		}
		return c.TicketID
	}
	if err := scan(bucketTickets, byKey); err != nil {
		return nil, err
	}
	if err := scan(bucketComments, byComment); err != nil {
		return nil, err
	}
	byDelivery := func(_, v []byte) uint64 {
		var d Delivery
		if err := decodeDelivery(v, &d); err != nil {
			return 0
		}
		return d.TicketID
	}
	if err := scan(bucketDeliv, byDelivery); err != nil {
		return nil, err
	}
	if err := scan(bucketEvents, byTicketField); err != nil {
		return nil, err
	}
	out := make([]uint64, 0, len(found))
	for id := range found {
		out = append(out, id)
	}
	return out, nil
}

// containsFold reports whether haystack contains needle (lower case ASCII) in any case,
// without copying haystack.
func containsFold(haystack, needle []byte) bool {
	if len(needle) == 0 {
		return true
	}
	first := needle[0]
	upper := first
	if 'a' <= first && first <= 'z' {
		upper = first - 'a' + 'A'
	}
	for i := 0; i+len(needle) <= len(haystack); i++ {
		c := haystack[i]
		if c != first && c != upper {
			continue
		}
		if bytes.EqualFold(haystack[i:i+len(needle)], needle) {
			return true
		}
	}
	return false
}

// An address inside a longer one is not that address: erasing ann@customer.test must leave
// joann@customer.test and ann@customer.test.example alone. A match counts only where the
// character before cannot belong to a local part and the one after cannot continue the domain.

func atext(c byte) bool {
	return 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || strings.IndexByte("!#$%&'*+-/=?^_`{|}~.", c) >= 0
}

func domainChar(c byte) bool {
	return 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '-'
}

// addressAt reports whether s[i:i+n] is a whole address, not part of a longer one.
func addressAt(s string, i, n int) bool {
	if i > 0 && atext(s[i-1]) {
		return false
	}
	end := i + n
	if end < len(s) {
		if domainChar(s[end]) {
			return false
		}
		// A dot ends a sentence, or carries the domain on.
		if s[end] == '.' && end+1 < len(s) && domainChar(s[end+1]) {
			return false
		}
	}
	return true
}

// indexAddress finds email (in any case) as a whole address in s from position from, or -1.
func indexAddress(s, email string, from int) int {
	for i := from; i+len(email) <= len(s); i++ {
		if strings.EqualFold(s[i:i+len(email)], email) && addressAt(s, i, len(email)) {
			return i
		}
	}
	return -1
}

// containsAddress reports whether email stands in s as a whole address, in any case.
func containsAddress(s, email string) bool { return email != "" && indexAddress(s, email, 0) >= 0 }

// replaceAddress replaces email, wherever it stands in s as a whole address, with marker.
func replaceAddress(s, email, marker string) string {
	if email == "" {
		return s
	}
	var b strings.Builder
	last := 0
	for i := indexAddress(s, email, 0); i >= 0; i = indexAddress(s, email, last) {
		b.WriteString(s[last:i])
		b.WriteString(marker)
		last = i + len(email)
	}
	if last == 0 {
		return s
	}
	b.WriteString(s[last:])
	return b.String()
}
