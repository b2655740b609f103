package store

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/deskgate/deskgate/gateway/rules"
)

// The rules say what of a ticket is an erased person's and what stands in its place
// (rules.Scrub); the store finds the person's address in its records, in every form it may be
// stored in (addressMatcher), reads the records and writes back those that changed.

// scrubOf is the rules' Scrub of email, with the store's matcher.
func scrubOf(email, marker string) rules.Scrub {
	m := matcher(email)
	return rules.Scrub{
		Marker:   marker,
		Same:     m.same,
		Contains: m.contains,
		Replace:  func(s string) string { return m.replace(s, marker) },
	}
}

// ScrubTicket takes email out of ticket id, which the person did not open: wherever the address
// is stored it becomes marker, and whatever that person wrote (their comments' text, subject,
// attachments and original mail) becomes rules.ErasedText. In a read-only transaction it
// changes nothing and only says what it would do. It returns one line per change.
func (t *Tx) ScrubTicket(id uint64, email, marker string) ([]string, error) {
	tk, err := t.Ticket(id)
	if errors.Is(err, ErrNotFound) {
		return nil, nil // deleted meanwhile
	}
	if err != nil {
		return nil, err
	}
	sc := scrubOf(email, marker)
	done := sc.Ticket(tk)
	var report []string
	for _, as := range done.RemovedAs {
		report = append(report, fmt.Sprintf("ticket %d: removed as %s", id, as))
	}
	t.Items(tk)
	// The deliveries that told of the ticket's comments and events carry the address too.
	deliveries := map[uint64]bool{}
	for _, cid := range tk.CommentIDs {
		lines, err := t.scrubComment(cid, sc, deliveries)
		if err != nil {
			return nil, err
		}
		report = append(report, lines...)
	}
	for _, eid := range tk.EventIDs {
		lines, err := t.scrubEvent(eid, sc, deliveries)
		if err != nil {
			return nil, err
		}
		report = append(report, lines...)
	}
	delete(deliveries, 0)
	for did := range deliveries {
		lines, err := t.scrubDelivery(did, id, sc)
		if err != nil {
			return nil, err
		}
		report = append(report, lines...)
	}
	if done.Changed && t.tx.Writable() {
		if err := t.PutTicket(tk); err != nil {
			return nil, err
		}
	}
	return report, nil
}

// scrubComment applies sc to comment cid, its attachments and its original mail, and adds the
// deliveries that told of it to deliveries.
func (t *Tx) scrubComment(cid uint64, sc rules.Scrub, deliveries map[uint64]bool) ([]string, error) {
	write := t.tx.Writable()
	c, err := t.Comment(cid)
	if err != nil {
		return nil, fmt.Errorf("comment %d: %w", cid, err)
	}
	for _, n := range c.Notified {
		deliveries[n.Delivery] = true
	}
	var report []string
	before := encodeComment(c)
	hadAttachments := len(c.Attachments) > 0
	authored := sc.Comment(c)
	if authored {
		if hadAttachments && write {
			if _, err := t.deletePrefix(bucketAttach, itob(cid)); err != nil {
				return nil, err
			}
		}
		report = append(report, fmt.Sprintf("comment %d: author, text, attachments and original erased", cid))
	}
	changed := !bytes.Equal(before, encodeComment(c))
	if changed && !authored {
		report = append(report, fmt.Sprintf("comment %d: address replaced", cid))
	}
	originalChanged, err := t.scrubOriginal(cid, sc, authored, write)
	if err != nil {
		return nil, err
	}
	if originalChanged && !authored {
		report = append(report, fmt.Sprintf("comment %d: address replaced in the original mail", cid))
	}
	if changed && write {
		if err := t.PutComment(c); err != nil {
			return nil, err
		}
	}
	return report, nil
}

// scrubEvent applies sc to event eid, and adds the deliveries that told of it to deliveries.
func (t *Tx) scrubEvent(eid uint64, sc rules.Scrub, deliveries map[uint64]bool) ([]string, error) {
	e, err := t.Event(eid)
	if err != nil {
		return nil, fmt.Errorf("event %d: %w", eid, err)
	}
	for _, n := range e.Notified {
		deliveries[n.Delivery] = true
	}
	before, _ := encodeRecord(e)
	sc.Event(e)
	if after, _ := encodeRecord(e); bytes.Equal(before, after) {
		return nil, nil
	}
	if t.tx.Writable() {
		if err := t.PutEvent(e); err != nil {
			return nil, err
		}
	}
	return []string{fmt.Sprintf("event %d: address replaced", eid)}, nil
}

// scrubDelivery applies sc to delivery id of ticket, and to the message kept for sending it:
// a recipient still waiting is not sent to.
func (t *Tx) scrubDelivery(id, ticket uint64, sc rules.Scrub) ([]string, error) {
	d, err := t.Delivery(id)
	if errors.Is(err, ErrNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	if d.TicketID != ticket {
		return nil, nil
	}
	var out []string
	dropped, changed := sc.Delivery(&d.State, d.Recipients, &d.LastReply)
	for range dropped {
		out = append(out, fmt.Sprintf("delivery %d: recipient dropped from the queue", id))
	}
	msg := t.tx.Bucket(bucketDelivMsg).Get(itob(id))
	var scrubbed []byte
	if msg != nil {
		if s := sc.Replace(string(msg)); s != string(msg) {
			scrubbed, changed = []byte(s), true
		}
	}
	if !changed {
		return out, nil
	}
	if len(out) == 0 {
		out = append(out, fmt.Sprintf("delivery %d: address replaced", id))
	}
	if !t.tx.Writable() {
		return out, nil
	}
	if scrubbed != nil {
		if err := t.tx.Bucket(bucketDelivMsg).Put(itob(id), scrubbed); err != nil {
			return nil, err
		}
	}
	return out, t.PutDelivery(d)
}

// scrubOriginal drops a comment's original mail, or replaces the address in it with the
// marker, and says whether it changed (or would).
func (t *Tx) scrubOriginal(cid uint64, sc rules.Scrub, drop, write bool) (bool, error) {
	raw, ok, err := t.Original(cid)
	if err != nil || !ok {
		return false, err
	}
	if drop {
		if write {
			return true, t.tx.Bucket(bucketOrig).Delete(itob(cid))
		}
		return true, nil
	}
	scrubbed := sc.Replace(string(raw))
	if scrubbed == string(raw) {
		return false, nil
	}
	if write {
		return true, t.PutOriginal(cid, PackOriginal([]byte(scrubbed)))
	}
	return true, nil
}

// encodeRecord is a record as stored, to tell whether scrubbing changed it.
func encodeRecord(v any) ([]byte, error) { return json.Marshal(v) }
