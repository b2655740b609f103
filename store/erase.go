package store

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/deskgate/deskgate/gateway/model"
)

// ErasedText stands where an erased person's text was.
const ErasedText = "[erased]"

// ScrubTicket takes email out of ticket id, which the person did not open: wherever the address
// is stored it becomes marker, and whatever that person wrote (their comments' text, subject,
// attachments and original mail) becomes ErasedText. In a read-only transaction it changes
// nothing and only says what it would do. It returns one line per change.
func (t *Tx) ScrubTicket(id uint64, email, marker string) ([]string, error) {
	write := t.tx.Writable()
	tk, err := t.Ticket(id)
	if errors.Is(err, ErrNotFound) {
		return nil, nil // deleted meanwhile
	}
	if err != nil {
		return nil, err
	}
	m := matcher(email)
	same := m.same
	var report []string
	say := func(format string, args ...any) { report = append(report, fmt.Sprintf(format, args...)) }
	scrub := func(s string) string { return m.replace(s, marker) }
	// Each record is compared with itself before and after, so these only change in place.
	people := func(list []model.Person) {
		for i := range list {
			if same(list[i].Email) {
				list[i] = model.Person{Email: marker}
			}
		}
	}
	notified := func(list []model.Notified) {
		for i := range list {
			if same(list[i].Email) {
				list[i].Email, list[i].Reply = marker, scrub(list[i].Reply)
			}
		}
	}
	traced := func(list []model.TraceStep) {
		for i := range list {
			list[i].Detail = scrub(list[i].Detail)
		}
	}

	// The ticket itself.
	ticketChanged := false
	keep := func(list []model.Person, as string) []model.Person {
		out := list[:0]
		for _, p := range list {
			if same(p.Email) {
				say("ticket %d: removed as %s", id, as)
				ticketChanged = true
				continue
			}
			out = append(out, p)
		}
		return out
	}
	tk.CCs = keep(tk.CCs, "CC")
	tk.Followers = keep(tk.Followers, "follower")
	for k := range tk.Masks {
		if same(k) {
			delete(tk.Masks, k)
			ticketChanged = true
		}
	}
	for k := range tk.Welcomed {
		if same(k) {
			delete(tk.Welcomed, k)
			ticketChanged = true
		}
	}
	for i, f := range tk.DeliveryFailures {
		if same(f.Email) || m.contains(f.Reply) {
			tk.DeliveryFailures[i].Email, tk.DeliveryFailures[i].Reply = marker, scrub(f.Reply)
			ticketChanged = true
		}
	}
	if s := scrub(tk.Subject); s != tk.Subject {
		tk.Subject, ticketChanged = s, true
	}

	t.Items(tk)
	deliveries := map[uint64]bool{}
	for _, cid := range tk.CommentIDs {
		c, err := t.Comment(cid)
		if err != nil {
			return nil, fmt.Errorf("comment %d: %w", cid, err)
		}
		for _, n := range c.Notified {
			deliveries[n.Delivery] = true
		}
		before := encodeComment(c)
		dropOriginal := false
		if same(c.Author) {
			c.Author, c.AuthorName, c.Body, c.Subject = marker, "", ErasedText, ErasedText
			if c.EnvelopeFrom != "" {
				c.EnvelopeFrom = marker
			}
			if len(c.Attachments) > 0 && write {
				if _, err := t.deletePrefix(bucketAttach, itob(cid)); err != nil {
					return nil, err
				}
			}
			c.Attachments = nil
			dropOriginal = true
			say("comment %d: author, text, attachments and original erased", cid)
		} else {
			c.Body, c.Subject, c.EnvelopeFrom = scrub(c.Body), scrub(c.Subject), scrub(c.EnvelopeFrom)
		}
		people(c.To)
		people(c.Cc)
		for i, r := range c.Recipients {
			c.Recipients[i] = scrub(r)
		}
		notified(c.Notified)
		traced(c.Trace)
		c.AuthenticationResults = scrub(c.AuthenticationResults)
		after := encodeComment(c)
		changed := !bytes.Equal(before, after)
		if changed && !dropOriginal {
			say("comment %d: address replaced", cid)
		}
		originalChanged, err := t.scrubOriginal(cid, email, marker, dropOriginal, write)
		if err != nil {
			return nil, err
		}
		if originalChanged && !dropOriginal {
			say("comment %d: address replaced in the original mail", cid)
		}
		if changed && write {
			if err := t.PutComment(c); err != nil {
				return nil, err
			}
		}
	}
	for _, eid := range tk.EventIDs {
		e, err := t.Event(eid)
		if err != nil {
			return nil, fmt.Errorf("event %d: %w", eid, err)
		}
		for _, n := range e.Notified {
			deliveries[n.Delivery] = true
		}
		before, _ := encodeRecord(e)
		e.Detail = scrub(e.Detail)
		notified(e.Notified)
		traced(e.Trace)
		if after, _ := encodeRecord(e); !bytes.Equal(before, after) {
			say("event %d: address replaced", eid)
			if write {
				if err := t.PutEvent(e); err != nil {
					return nil, err
				}
			}
		}
	}
	delete(deliveries, 0)
	for did := range deliveries {
		lines, err := t.eraseFromDelivery(did, id, email, marker, write)
		if err != nil {
			return nil, err
		}
		report = append(report, lines...)
	}
	if ticketChanged && write {
		if err := t.PutTicket(tk); err != nil {
			return nil, err
		}
	}
	return report, nil
}

// eraseFromDelivery takes email off a delivery of ticket: a recipient still waiting is not
// sent to, and the address becomes marker in the record and in the message kept for sending.
func (t *Tx) eraseFromDelivery(id, ticket uint64, email, marker string, write bool) ([]string, error) {
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
	m := matcher(email)
	var out []string
	changed := false
	waiting := 0
	for i, r := range d.Recipients {
		if m.same(r.Email) {
			d.Recipients[i].Email, d.Recipients[i].Reply = marker, m.replace(r.Reply, marker)
			if r.State == model.DeliveryQueued {
				d.Recipients[i].State, d.Recipients[i].Reply = model.DeliveryDropped, "erased"
				out = append(out, fmt.Sprintf("delivery %d: recipient dropped from the queue", id))
			}
			changed = true
		}
		if d.Recipients[i].State == model.DeliveryQueued {
			waiting++
		}
	}
	if d.State == model.DeliveryQueued && waiting == 0 && changed {
		d.State = model.DeliveryDropped
	}
	if s := m.replace(d.LastReply, marker); s != d.LastReply {
		d.LastReply, changed = s, true
	}
	msg := t.tx.Bucket(bucketDelivMsg).Get(itob(id))
	var scrubbed []byte
	if msg != nil {
		if s := m.replace(string(msg), marker); s != string(msg) {
			scrubbed, changed = []byte(s), true
		}
	}
	if !changed {
		return out, nil
	}
	if len(out) == 0 {
		out = append(out, fmt.Sprintf("delivery %d: address replaced", id))
	}
	if !write {
		return out, nil
	}
	if scrubbed != nil {
		if err := t.tx.Bucket(bucketDelivMsg).Put(itob(id), scrubbed); err != nil {
			return nil, err
		}
	}
	return out, t.PutDelivery(d)
}

// scrubOriginal drops a comment's original mail, or replaces email in it with marker, and
// says whether it changed (or would).
func (t *Tx) scrubOriginal(cid uint64, email, marker string, drop, write bool) (bool, error) {
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
	scrubbed := matcher(email).replace(string(raw), marker)
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
