package desk

import (
	"context"
	"errors"
	"slices"
	"sync"
	"time"

	"github.com/deskgate/deskgate/config"
	"github.com/deskgate/deskgate/gateway/addr"
	"github.com/deskgate/deskgate/gateway/compose"
	"github.com/deskgate/deskgate/gateway/metrics"
	"github.com/deskgate/deskgate/gateway/model"
	"github.com/deskgate/deskgate/gateway/rules"
	"github.com/deskgate/deskgate/store"
)

// An event (a mail, an expert's actions, a bounce, a queue command) is decided and its
// notifications composed on a snapshot of the store, on the caller's goroutine. What comes out
// is a list of writes, and only those run on the store's one writer goroutine. If a record the
// plan read has changed by the time the writer gets to it (another mail to the same ticket, in
// the same group commit), the event is planned again on the writer, against the new state, so
// the outcome is always the one a serial order would give.

// write is one record change of a plan.
type write func(*store.Tx) error

// writes is everything one event changes, in order.
type writes []write

func (ws writes) run(tx *store.Tx) error {
	for _, w := range ws {
		if err := w(tx); err != nil {
			return err
		}
	}
	return nil
}

// planRun is one attempt at planning an event: where it runs and which ticket it changes.
type planRun struct {
	onSnapshot bool
	ticket     uint64
}

// errContended stops a plan on a snapshot whose ticket other events are changing right now:
// it would only be planned again on the writer, so it is planned there at once.
var errContended = errors.New("ticket contended")

// commit plans an event on a snapshot and has the writer write the plan. plan may run twice
// (the second time on the writer, when the first plan no longer holds), so it starts afresh
// each time and has no effect outside what it returns.
func (s *Service) commit(ctx context.Context, plan func(*store.Tx, *planRun) (writes, error)) error {
	onWriter := func(tx *store.Tx) error {
		again, err := plan(tx, &planRun{})
		if err != nil {
			return err
		}
		return again.run(tx)
	}
	var planned writes
	first := &planRun{onSnapshot: true}
	rs, err := s.store.Plan(func(tx *store.Tx) error {
		var err error
		planned, err = plan(tx, first)
		return err
	})
	if errors.Is(err, errContended) {
		metrics.WriterPlans.WithLabelValues("contended").Inc()
		return s.store.Update(ctx, onWriter)
	}
	if err != nil {
		return err
	}
	held, err := s.store.Apply(ctx, rs, planned.run, onWriter)
	if err == nil && !held {
		metrics.WriterPlans.WithLabelValues("conflict").Inc()
		s.contended.mark(first.ticket, s.Now())
	}
	return err
}

// contention remembers the tickets whose plans recently failed to hold. Replies pouring into
// one ticket from many sessions at once would otherwise each be composed twice, once on a
// snapshot that is stale by the time the writer gets to it.
type contention struct {
	mu    sync.Mutex
	until map[uint64]time.Time
}

// contendedFor is how long a ticket counts as contended after a plan of it failed to hold.
const contendedFor = 2 * time.Second

func (c *contention) mark(ticket uint64, now time.Time) {
	if ticket == 0 {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.until == nil {
		c.until = map[uint64]time.Time{}
	}
	if len(c.until) >= 4096 {
		for id, t := range c.until {
			if now.After(t) {
				delete(c.until, id)
			}
		}
		if len(c.until) >= 4096 {
			return
		}
	}
	c.until[ticket] = now.Add(contendedFor)
}

func (c *contention) has(ticket uint64, now time.Time) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	t, ok := c.until[ticket]
	return ok && now.Before(t)
}

// planner turns decisions into records and composed notifications for one event.
type planner struct {
	s    *Service
	run  *planRun
	tx   *store.Tx
	ids  *store.Ids
	cfg  *config.Config
	book *addr.Book
	env  *rules.Env
	now  time.Time
	// planned are the comments this event made or changed so far, newest state, so that
	// a later action of the same event sees them as if they were stored.
	planned map[uint64]*model.Comment
	// history is the public conversation each source's notifications carry (C4), read once
	// though the end users' copy and the agents' copy both carry it.
	history map[uint64][]model.Comment
}

func (s *Service) planner(tx *store.Tx, run *planRun, ids *store.Ids, cfg *config.Config, book *addr.Book, env *rules.Env) *planner {
	ids.Restart()
	return &planner{s: s, run: run, tx: tx, ids: ids, cfg: cfg, book: book, env: env, now: s.Now().UTC(), planned: map[uint64]*model.Comment{},
		history: map[uint64][]model.Comment{}}
}

// comment is comment id as this event sees it.
func (p *planner) comment(id uint64) (*model.Comment, error) {
	if c, ok := p.planned[id]; ok {
		return c, nil
	}
	return p.tx.Comment(id)
}

// plannedChange is one decision made into records: the write and the id of what its
// notifications tell of (the new comment, or the event that records an action).
type plannedChange struct {
	sourceID uint64
	write    write
}

// change makes the records of decision d and composes its notifications: it settles the
// ticket (claim), makes the record of the source (record), composes what is sent (notify),
// and returns the write that puts it all.
func (p *planner) change(d rules.Decision, src source, pre []model.TraceStep) (*plannedChange, error) {
	t, err := p.claim(d, src)
	if err != nil {
		return nil, err
	}
	trace := append(append([]model.TraceStep(nil), pre...), d.Trace...)
	rec, err := p.record(d, t, src, trace)
	if err != nil {
		return nil, err
	}
	outbox, err := p.notify(d, t, rec, src)
	if err != nil {
		return nil, err
	}
	// A later action of the same event starts from this ticket; what the writer puts is
	// this state, taken now.
	return &plannedChange{sourceID: rec.sourceID, write: rec.put(*t, d.NewTicket, src, outbox)}, nil
}

// claim is the ticket decision d changes, given its id and root when it is new, and stamped
// with this event's time. A plan on a snapshot of a ticket other events are changing stops
// there (errContended).
func (p *planner) claim(d rules.Decision, src source) (*model.Ticket, error) {
	now := p.now
	t := d.Ticket
	if d.NewTicket {
		t.ID = p.ids.Ticket()
		t.CreatedAt = now
		// Only an end user's first mail is kept to thread on (H4), decided now, while the
		// desk knows who its author is: an agent who leaves agents later is still no end
		// user whose Message-ID customers may see.
		if p.env.MayReferenceMailOf(t.Requester.Email) {
			t.RootMessageID = store.NormalizeMessageID(src.messageID)
		}
	}
	p.run.ticket = t.ID
	if !d.NewTicket && p.run.onSnapshot && p.s.contended.has(t.ID, now) {
		return nil, errContended
	}
	t.UpdatedAt = now
	return t, nil
}

// sourceRecord is what one decision stores of its source, which its notifications tell of:
// a new comment, or an event (with, when the decision restates a comment, that comment
// changed).
type sourceRecord struct {
	comment  *model.Comment
	restated *model.Comment
	event    *model.Event
	sourceID uint64
}

// record makes the record of d's source on ticket t, with trace as its trace.
func (p *planner) record(d rules.Decision, t *model.Ticket, src source, trace []model.TraceStep) (*sourceRecord, error) {
	now := p.now
	if d.Comment != nil {
		comment := &model.Comment{ID: p.ids.Item(), TicketID: t.ID,
			Author: src.author.Email, AuthorName: src.author.Name, Public: d.Comment.Public,
			ThirdParty: d.Comment.ThirdParty, ReplyToDiffers: d.Comment.ReplyToDiffers, Automatic: d.Comment.Automatic,
			Via: src.via, MessageID: store.NormalizeMessageID(src.messageID), InReplyTo: src.inReplyTo,
			References: src.references, Subject: src.subject, To: src.to, Cc: src.cc, Recipients: src.recipients,
			EnvelopeFrom: src.envFrom, CreatedAt: now, Body: src.body, Attachments: src.attachments,
			Trace: trace, AuthenticationResults: src.authResults, Problems: src.problems,
		}
		return &sourceRecord{comment: comment, sourceID: comment.ID}, nil
	}
	rec := &sourceRecord{}
	if r := d.Restate; r != nil {
		// The comment's own trace says what became of it later.
		c, err := p.comment(r.CommentID)
		if err != nil {
			return nil, err
		}
		changed := *c
		changed.Public = r.Public
		changed.Trace = append(append([]model.TraceStep(nil), c.Trace...), d.Trace...)
		rec.restated = &changed
		p.planned[changed.ID] = rec.restated
	}
	rec.event = &model.Event{ID: p.ids.Item(), TicketID: t.ID, Action: src.action, Actor: src.author.Email, Detail: src.detail, CreatedAt: now, Trace: trace}
	rec.sourceID = rec.event.ID
	return rec, nil
}

// outgoing is one composed notification and the delivery that carries it.
type outgoing struct {
	delivery *store.Delivery
	message  []byte
}

// notify composes d's notifications and notes on the source's record who had them.
func (p *planner) notify(d rules.Decision, t *model.Ticket, rec *sourceRecord, src source) ([]outgoing, error) {
	var outbox []outgoing
	notified := []model.Notified{}
	for _, n := range d.Notifications {
		del, msg, err := p.compose(t, n, rec.comment, src, rec.sourceID)
		if err != nil {
			return nil, err
		}
		outbox = append(outbox, outgoing{del, msg})
		for _, r := range del.Recipients {
			notified = append(notified, model.Notified{Email: r.Email, As: r.As, Visible: r.Visible, Delivery: del.ID})
		}
	}
	if rec.comment != nil {
		rec.comment.Notified = notified
		p.planned[rec.comment.ID] = rec.comment
	} else {
		rec.event.Notified = notified
	}
	return outbox, nil
}

// put is the write that puts ticket final (created first when newTicket), the source's
// record with what src carries of a mail (its original, its attachments' data), and the
// queued deliveries of outbox.
func (rec *sourceRecord) put(final model.Ticket, newTicket bool, src source, outbox []outgoing) write {
	comment, restated, event, sourceID := rec.comment, rec.restated, rec.event, rec.sourceID
	original, files := src.original, src.files
	return func(tx *store.Tx) error {
		tk := final
		if newTicket {
			if err := tx.CreateTicket(&tk); err != nil {
				return err
			}
		}
		if comment != nil {
			if err := tx.AddComment(&tk, comment); err != nil {
				return err
			}
			if original != nil {
				if err := tx.PutOriginal(comment.ID, original); err != nil {
					return err
				}
			}
			for i, data := range files {
				if err := tx.PutAttachmentData(comment.ID, i, data); err != nil {
					return err
				}
			}
		}
		if restated != nil {
			if err := tx.PutComment(restated); err != nil {
				return err
			}
		}
		if event != nil {
			if err := tx.AddEvent(&tk, event); err != nil {
				return err
			}
		}
		for _, o := range outbox {
			if err := tx.QueueDelivery(o.delivery, o.message); err != nil {
				return err
			}
			if err := tx.IndexSentMessageID(o.delivery.MessageID, store.MessageRef{TicketID: tk.ID, SourceID: sourceID, Delivery: o.delivery.ID}); err != nil {
				return err
			}
		}
		return tx.PutTicket(&tk)
	}
}

// compose writes one notification and the delivery that will carry it.
func (p *planner) compose(t *model.Ticket, n rules.Notification, comment *model.Comment, src source, sourceID uint64) (*store.Delivery, []byte, error) {
	id := p.ids.Delivery()
	env := p.env
	support := compose.Support(p.book, t)
	in := compose.Input{
		Hostname: p.cfg.Hostname, SupportName: p.cfg.Support.Name, Book: p.book, Env: *env, Ticket: t,
		Kind: n.Kind, Copy: n.Copy, Automatic: n.Automatic,
		MessageID: compose.NewMessageID(p.s.Random, p.now, p.cfg.Hostname), Date: p.now,
	}
	if n.Kind == model.KindComment && comment != nil {
		in.AuthorName = compose.AuthorName(*env, comment.Author, comment.AuthorName)
		in.Body = comment.Body
		in.Internal = !comment.Public
		in.ThirdParty = comment.ThirdParty
		if n.Attachments {
			for i, a := range comment.Attachments {
				var data []byte
				if i < len(src.files) {
					data = src.files[i]
				}
				in.Files = append(in.Files, compose.File{Name: a.Name, ContentType: a.ContentType, Data: data, Damaged: a.Problem != ""})
			}
		}
	} else if src.author.Email != "" && env.IsAgent(src.author.Email) {
		in.AuthorName = compose.AuthorName(*env, src.author.Email, src.author.Name)
	}
	if n.History {
		hist, err := p.publicHistory(t, sourceID)
		if err != nil {
			return nil, nil, err
		}
		in.History = hist
	}
	if n.StatusViewFor != "" {
		in.StatusURL = p.cfg.Web.PublicURL + p.book.StatusPath(t.ID, n.StatusViewFor)
	}
	in.InReplyTo, in.References = p.threadHeaders(t, comment, support)
	msg, err := compose.Message(in)
	if err != nil {
		return nil, nil, err
	}
	del := &store.Delivery{ID: id, TicketID: t.ID, SourceID: sourceID, Kind: n.Kind, Copy: n.Copy, MessageID: in.MessageID,
		From: p.book.BounceAddress(support, id), State: model.DeliveryQueued, NextTry: p.now, CreatedAt: p.now}
	for _, r := range n.Recipients {
		del.Recipients = append(del.Recipients, model.DeliveryRecipient{Email: r.Email, As: r.As, Visible: r.Visible, State: model.DeliveryQueued})
	}
	return del, msg, nil
}

// threadHeaders names the mail a copy threads on (H4 is the rules' to apply): the ticket's
// first mail, as kept only when an end user wrote it, and the received mail it tells of.
func (p *planner) threadHeaders(t *model.Ticket, comment *model.Comment, support string) (inReplyTo string, references []string) {
	root := rules.MailToThreadOn{MessageID: t.RootMessageID, Author: t.Requester.Email}
	var answered rules.MailToThreadOn
	if comment != nil && comment.Via == "email" {
		answered = rules.MailToThreadOn{MessageID: comment.MessageID, Author: comment.Author}
	}
	return p.env.ThreadHeaders(root, answered, p.book.ThreadAnchor(support, t.ID))
}

// publicHistory is the public conversation before comment `except`, oldest first (C4),
// including what this event planned before it.
func (p *planner) publicHistory(t *model.Ticket, except uint64) ([]model.Comment, error) {
	if h, ok := p.history[except]; ok {
		return h, nil
	}
	var out []model.Comment
	probe := model.Ticket{ID: t.ID}
	p.tx.Items(&probe) // in id order, which is their order in time
	ids := probe.CommentIDs
	stored := map[uint64]bool{}
	for _, id := range ids {
		stored[id] = true
	}
	for id := range p.planned {
		if !stored[id] {
			ids = append(ids, id)
		}
	}
	slices.Sort(ids[len(probe.CommentIDs):])
	for _, id := range ids {
		if id == except {
			continue
		}
		c, err := p.comment(id)
		if err != nil {
			return nil, err
		}
		if c.Public && c.TicketID == t.ID {
			out = append(out, *c)
		}
	}
	p.history[except] = out
	return out, nil
}
