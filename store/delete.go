package store

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"golang.org/x/net/idna"
	"golang.org/x/text/unicode/norm"

	"github.com/deskgate/deskgate/gateway/addr"
	"github.com/deskgate/deskgate/gateway/model"
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
	tk, err := t.Ticket(id)
	if err != nil {
		return Deleted{Ticket: id}, err
	}
	t.Items(tk)
	d := &deletion{
		out:        Deleted{Ticket: id},
		msgIDs:     map[string]bool{NormalizeMessageID(tk.RootMessageID): true},
		deliveries: map[uint64]bool{},
	}
	for _, step := range []func(*model.Ticket, *deletion) error{
		t.deleteComments, t.deleteEvents, t.deleteDeliveries, t.deleteMessageIDs, t.deleteTicketRecord,
	} {
		if err := step(tk, d); err != nil {
			return d.out, err
		}
	}
	return d.out, nil
}

// deletion is one DeleteTicket under way: what it removed so far (out.Ticket is the ticket's
// id), and what the removed records pointed at, for the steps after: the Message-IDs that lead
// to the ticket and the deliveries that told of it.
type deletion struct {
	out        Deleted
	msgIDs     map[string]bool
	deliveries map[uint64]bool
}

// deleteComments removes the ticket's comments with their attachments and originals.
func (t *Tx) deleteComments(tk *model.Ticket, d *deletion) error {
	for _, cid := range tk.CommentIDs {
		c, err := t.Comment(cid)
		if errors.Is(err, ErrNotFound) {
			continue
		}
		if err != nil {
			return fmt.Errorf("comment %d: %w", cid, err)
		}
		for _, m := range append([]string{c.MessageID, c.InReplyTo}, c.References...) {
			d.msgIDs[NormalizeMessageID(m)] = true
		}
		for _, n := range c.Notified {
			d.deliveries[n.Delivery] = true
		}
		n, err := t.deletePrefix(bucketAttach, itob(cid))
		if err != nil {
			return err
		}
		d.out.Attachments += n
		for _, b := range [][]byte{bucketOrig, bucketComments} {
			if err := t.tx.Bucket(b).Delete(itob(cid)); err != nil {
				return err
			}
		}
		d.out.Comments++
	}
	return nil
}

// deleteEvents removes the ticket's events.
func (t *Tx) deleteEvents(tk *model.Ticket, d *deletion) error {
	for _, eid := range tk.EventIDs {
		var e model.Event
		if ok, err := decodeStored(t.tx.Bucket(bucketEvents).Get(itob(eid)), &e); err != nil {
			return fmt.Errorf("event %d: %w", eid, err)
		} else if ok {
			for _, n := range e.Notified {
				d.deliveries[n.Delivery] = true
			}
		}
		if err := t.tx.Bucket(bucketEvents).Delete(itob(eid)); err != nil {
			return err
		}
		d.out.Events++
	}
	return nil
}

// deleteDeliveries removes the deliveries that told of the ticket's comments and events, with
// their messages and their places in the queue.
func (t *Tx) deleteDeliveries(_ *model.Ticket, d *deletion) error {
	delete(d.deliveries, 0)
	for did := range d.deliveries {
		raw := t.tx.Bucket(bucketDeliv).Get(itob(did))
		if raw == nil {
			continue
		}
		var dl Delivery
		if err := decodeDelivery(raw, &dl); err != nil {
			return fmt.Errorf("delivery %d: %w", did, err)
		}
		if dl.TicketID != d.out.Ticket {
			continue
		}
		d.msgIDs[NormalizeMessageID(dl.MessageID)] = true
		if err := t.tx.Bucket(bucketQueue).Delete(queueKey(dl.NextTry, did)); err != nil {
			return err
		}
		for _, b := range [][]byte{bucketDelivMsg, bucketDeliv} {
			if err := t.tx.Bucket(b).Delete(itob(did)); err != nil {
				return err
			}
		}
		d.out.Deliveries++
	}
	return nil
}

// deleteMessageIDs removes the Message-ID index's entries that lead to the ticket.
func (t *Tx) deleteMessageIDs(_ *model.Ticket, d *deletion) error {
	idx := t.tx.Bucket(bucketMsgIDs)
	for m := range d.msgIDs {
		if m == "" {
			continue
		}
		var ref MessageRef
		if ok, err := decodeStored(idx.Get([]byte(m)), &ref); err != nil || !ok || ref.TicketID != d.out.Ticket {
			continue // another ticket's, or gone; an unreadable entry is left as it is
		}
		if err := idx.Delete([]byte(m)); err != nil {
			return err
		}
		d.out.MessageIDs++
	}
	return nil
}

// deleteTicketRecord removes the ticket's own record, its item list and status entry, and
// takes it and what went with it off the counters.
func (t *Tx) deleteTicketRecord(tk *model.Ticket, d *deletion) error {
	if _, err := t.deletePrefix(bucketItems, itob(d.out.Ticket)); err != nil {
		return err
	}
	if err := t.tx.Bucket(bucketByStatus).Delete(statusKey(string(tk.Status), d.out.Ticket)); err != nil {
		return err
	}
	if err := t.count(statusCountKey(string(tk.Status)), -1); err != nil {
		return err
	}
	if err := t.tx.Bucket(bucketTickets).Delete(itob(d.out.Ticket)); err != nil {
		return err
	}
	if err := t.count(keyTicketCount, -1); err != nil {
		return err
	}
	if err := t.count(keyDeliveryCount, -int64(d.out.Deliveries)); err != nil {
		return err
	}
	return t.count(keyCommentCount, -int64(d.out.Comments))
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
	prefix := statusKey(string(model.StatusSolved), 0)[:len(model.StatusSolved)+1]
	c := t.tx.Bucket(bucketByStatus).Cursor()
	tickets := t.tx.Bucket(bucketTickets)
	for k, _ := c.Seek(statusKey(string(model.StatusSolved), after+1)); k != nil && bytes.HasPrefix(k, prefix); k, _ = c.Next() {
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
// or deliveries contains email (in any case, and in any of the forms addressForms gives). It
// reads every record's bytes and decodes none, so that a desk of millions of comments is
// searched in one pass over the file.
func (t *Tx) Mentioning(email string) ([]uint64, error) {
	forms := addressForms(email)
	found := map[uint64]bool{}
	scan := func(bucket []byte, owner func(k, v []byte) uint64) error {
		return t.tx.Bucket(bucket).ForEach(func(k, v []byte) error {
			for _, f := range forms {
				if containsFold(v, f) {
					if id := owner(k, v); id != 0 {
						found[id] = true
					}
					break
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
		var c model.Comment
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

// addressForms are the spellings in which email may stand in stored text, apart from case:
// as given, its canonical form (domain in U-labels, NFC), its domain in A-labels, and
// decomposed (NFD), as mail clients and older records wrote it. Stored participants are
// canonical; text (bodies, subjects, originals) is what people wrote.
func addressForms(email string) []string {
	email = strings.TrimSpace(email)
	forms := []string{email}
	add := func(f string) {
		for _, g := range forms {
			if strings.EqualFold(f, g) {
				return
			}
		}
		forms = append(forms, f)
	}
	canon, err := addr.Canonical(email)
	if err != nil {
		return forms
	}
	add(canon)
	at := strings.LastIndexByte(canon, '@')
	local, domain := canon[:at], canon[at+1:]
	domains := []string{domain, norm.NFD.String(domain)}
	if a, err := idna.Lookup.ToASCII(domain); err == nil {
		domains = append(domains, a)
	}
	for _, l := range []string{local, norm.NFD.String(local)} {
		for _, d := range domains {
			add(l + "@" + d)
		}
	}
	return forms
}

// containsFold reports whether haystack contains needle in any case, without copying
// haystack when needle is ASCII, the common case.
func containsFold(haystack []byte, needle string) bool {
	if needle == "" {
		return true
	}
	if !addr.IsASCII(needle) {
		// Case can change a character's length and its first byte (ẞ and ß, Р and р): the
		// search walks runes.
		return indexFold(string(haystack), needle, 0) >= 0
	}
	lower := []byte(strings.ToLower(needle))
	first := lower[0]
	upper := first
	if 'a' <= first && first <= 'z' {
		upper = first - 'a' + 'A'
	}
	for i := 0; i+len(lower) <= len(haystack); i++ {
		c := haystack[i]
		if c != first && c != upper {
			continue
		}
		if bytes.EqualFold(haystack[i:i+len(lower)], lower) {
			return true
		}
	}
	return false
}

// foldPrefix reports whether s begins with needle in any case (Unicode simple folding, as
// strings.EqualFold), and how many bytes of s that is.
func foldPrefix(s, needle string) (int, bool) {
	i := 0
	for _, nr := range needle {
		if i >= len(s) {
			return 0, false
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if r != nr && !sameFold(r, nr) {
			return 0, false
		}
		i += size
	}
	return i, true
}

// sameFold reports whether a and b are one letter in different case.
func sameFold(a, b rune) bool {
	for r := unicode.SimpleFold(a); r != a; r = unicode.SimpleFold(r) {
		if r == b {
			return true
		}
	}
	return false
}

// indexFold is the first position from from at which s has needle in any case, or -1.
func indexFold(s, needle string, from int) int {
	for i := from; i < len(s); i++ {
		if !utf8.RuneStart(s[i]) {
			continue
		}
		if _, ok := foldPrefix(s[i:], needle); ok {
			return i
		}
	}
	return -1
}

// An address inside a longer one is not that address: erasing ann@customer.test must leave
// joann@customer.test and ann@customer.test.example alone. A match counts only where the
// character before cannot belong to a local part and the one after cannot continue the domain.
// Letters, digits and marks of any script belong to both (RFC 6531 allows them in local parts,
// IDNA in domains).

func atext(r rune) bool {
	if r >= utf8.RuneSelf {
		return wordRune(r)
	}
	c := byte(r)
	return 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || strings.IndexByte("!#$%&'*+-/=?^_`{|}~.", c) >= 0
}

func domainChar(r rune) bool {
	if r >= utf8.RuneSelf {
		return wordRune(r)
	}
	c := byte(r)
	return 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '-'
}

func wordRune(r rune) bool { return unicode.IsLetter(r) || unicode.IsDigit(r) || unicode.IsMark(r) }

// addressAt reports whether s[i:end] is a whole address, not part of a longer one.
func addressAt(s string, i, end int) bool {
	if i > 0 {
		if r, _ := utf8.DecodeLastRuneInString(s[:i]); atext(r) {
			return false
		}
	}
	if end < len(s) {
		r, size := utf8.DecodeRuneInString(s[end:])
		if domainChar(r) {
			return false
		}
		// A dot ends a sentence, or carries the domain on.
		if r == '.' && end+size < len(s) {
			if next, _ := utf8.DecodeRuneInString(s[end+size:]); domainChar(next) {
				return false
			}
		}
	}
	return true
}

// indexAddress finds email (in any case) as a whole address in s from position from: where it
// starts and ends, or -1. The length can differ from email's, as case can change it.
func indexAddress(s, email string, from int) (int, int) {
	for i := from; i < len(s); i++ {
		if !utf8.RuneStart(s[i]) {
			continue
		}
		if n, ok := foldPrefix(s[i:], email); ok && addressAt(s, i, i+n) {
			return i, i + n
		}
	}
	return -1, -1
}

// addressMatcher finds one person's address, in every form addressForms gives, in text.
type addressMatcher []string

func matcher(email string) addressMatcher {
	if strings.TrimSpace(email) == "" {
		return nil
	}
	return addressForms(email)
}

// same reports whether a stored address is this one.
func (m addressMatcher) same(a string) bool {
	a = strings.TrimSpace(a)
	for _, f := range m {
		if strings.EqualFold(a, f) {
			return true
		}
	}
	return false
}

// contains reports whether the address stands in s as a whole address, in any case and form.
func (m addressMatcher) contains(s string) bool {
	for _, f := range m {
		if i, _ := indexAddress(s, f, 0); i >= 0 {
			return true
		}
	}
	return false
}

// replace replaces the address, wherever it stands in s as a whole address in any case and
// form, with marker.
func (m addressMatcher) replace(s, marker string) string {
	for _, f := range m {
		s = replaceOne(s, f, marker)
	}
	return s
}

func replaceOne(s, email, marker string) string {
	var b strings.Builder
	last := 0
	for i, end := indexAddress(s, email, 0); i >= 0; i, end = indexAddress(s, email, last) {
		b.WriteString(s[last:i])
		b.WriteString(marker)
		last = end
	}
	if last == 0 {
		return s
	}
	b.WriteString(s[last:])
	return b.String()
}

// containsAddress reports whether email stands in s as a whole address, in any case and form.
func containsAddress(s, email string) bool { return matcher(email).contains(s) }

// replaceAddress replaces email, wherever it stands in s as a whole address, with marker.
func replaceAddress(s, email, marker string) string { return matcher(email).replace(s, marker) }
