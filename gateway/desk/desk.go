// Package desk carries out what the rules decide: it gathers the facts of an event from
// the store, asks gateway/rules for a Decision, and writes the ticket change, the comment
// and every composed notification in one transaction (the outbox), which is durable
// before the caller answers anybody.
package desk

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/deskgate/deskgate/config"
	"github.com/deskgate/deskgate/gateway/addr"
	"github.com/deskgate/deskgate/gateway/auth"
	"github.com/deskgate/deskgate/gateway/compose"
	"github.com/deskgate/deskgate/gateway/metrics"
	"github.com/deskgate/deskgate/gateway/model"
	"github.com/deskgate/deskgate/gateway/rules"
	"github.com/deskgate/deskgate/store"
)

// Service is the one path every change takes, from mail or from an expert.
type Service struct {
	cfg    atomic.Pointer[config.Config]
	book   atomic.Pointer[addr.Book]
	env    atomic.Pointer[rules.Env] // built once per config, not per message
	auth   atomic.Pointer[auth.Checker]
	store  *store.Store
	log    *slog.Logger
	Now    func() time.Time
	Random io.Reader // nil: crypto/rand
	// Queued is told (without blocking) when new deliveries are committed.
	Queued chan struct{}

	rateMu sync.Mutex
	rate   map[string][]time.Time
}

// New makes a Service.
func New(cfg *config.Config, st *store.Store, logger *slog.Logger) *Service {
	s := &Service{store: st, log: logger, Now: time.Now, Queued: make(chan struct{}, 1), rate: map[string][]time.Time{}}
	s.SetConfig(cfg)
	return s
}

// SetConfig swaps in a reloaded config.
func (s *Service) SetConfig(cfg *config.Config) {
	a := cfg.Authentication
	var resolver auth.Resolver
	if old := s.auth.Load(); old != nil && old.ResolverAddress == a.DNSResolver {
		resolver = old.Resolver // keep the cached answers across a reload
	} else {
		resolver = auth.NewResolver(a.DNSResolver)
	}
	s.auth.Store(&auth.Checker{Resolver: resolver, ResolverAddress: a.DNSResolver, Timeout: a.Timeout,
		TrustedIDs: a.TrustedAuthservIDs, Mode: a.AgentIdentity})
	env := EnvFrom(cfg)
	s.env.Store(&env)
	s.book.Store(addr.NewBook(s.store.Secret(), cfg.Support.Addresses))
	s.cfg.Store(cfg)
}

// Config is the running config.
func (s *Service) Config() *config.Config { return s.cfg.Load() }

// Book is the address book of the running config.
func (s *Service) Book() *addr.Book { return s.book.Load() }

// Store is the store behind the service.
func (s *Service) Store() *store.Store { return s.store }

// Kick wakes the relay worker, after a change to the queue was committed.
func (s *Service) Kick() { s.kick() }

func (s *Service) kick() {
	select {
	case s.Queued <- struct{}{}:
	default:
	}
}

// source is what a comment is made of besides the decision.
type source struct {
	author      store.Person
	via         string
	messageID   string
	inReplyTo   string
	references  []string
	subject     string
	to, cc      []store.Person
	recipients  []string
	envFrom     string
	body        string
	attachments []store.Attachment
	files       [][]byte
	authResults string // the Authentication-Results deskgate found for a mail
	original    []byte // a received mail as it came, packed by store.PackOriginal
	problems    []string
	action      string // for events
	detail      string
}

// apply writes a decision in tx and returns the id of what the notifications tell of:
// the new comment, or the event that records an action.
func (s *Service) apply(tx *store.Tx, cfg *config.Config, book *addr.Book, env *rules.Env, d rules.Decision, src source, pre []store.TraceStep) (uint64, error) {
	now := s.Now().UTC()
	t := d.Ticket
	if d.NewTicket {
		t.CreatedAt = now
		t.RootMessageID = store.NormalizeMessageID(src.messageID)
		if err := tx.CreateTicket(t); err != nil {
			return 0, err
		}
	}
	t.UpdatedAt = now
	trace := append(append([]store.TraceStep(nil), pre...), d.Trace...)

	var comment *store.Comment
	var event *store.Event
	var sourceID uint64
	if d.Comment != nil {
		comment = &store.Comment{
			Author: src.author.Email, AuthorName: src.author.Name, Public: d.Comment.Public,
			ThirdParty: d.Comment.ThirdParty, ReplyToDiffers: d.Comment.ReplyToDiffers, Automatic: d.Comment.Automatic,
			Via: src.via, MessageID: store.NormalizeMessageID(src.messageID), InReplyTo: src.inReplyTo,
			References: src.references, Subject: src.subject, To: src.to, Cc: src.cc, Recipients: src.recipients,
			EnvelopeFrom: src.envFrom, CreatedAt: now, Body: src.body, Attachments: src.attachments,
			Notified: []store.Notified{}, Trace: trace, AuthenticationResults: src.authResults, Problems: src.problems,
		}
		if err := tx.AddComment(t, comment); err != nil {
			return 0, err
		}
		if src.original != nil {
			if err := tx.PutOriginal(comment.ID, src.original); err != nil {
				return 0, err
			}
		}
		for i, data := range src.files {
			if err := tx.PutAttachmentData(comment.ID, i, data); err != nil {
				return 0, err
			}
		}
		sourceID = comment.ID
	} else {
		if r := d.Restate; r != nil {
			// The comment's own trace says what became of it later.
			c, err := tx.Comment(r.CommentID)
			if err != nil {
				return 0, err
			}
			c.Public = r.Public
			c.Trace = append(c.Trace, d.Trace...)
			if err := tx.PutComment(c); err != nil {
				return 0, err
			}
		}
		event = &store.Event{Action: src.action, Actor: src.author.Email, Detail: src.detail, CreatedAt: now, Trace: trace}
		if err := tx.AddEvent(t, event); err != nil {
			return 0, err
		}
		sourceID = event.ID
	}

	notified := []store.Notified{}
	for _, n := range d.Notifications {
		rec, err := s.queue(tx, cfg, book, env, t, n, comment, src, sourceID, now)
		if err != nil {
			return 0, err
		}
		notified = append(notified, rec...)
	}
	if comment != nil {
		comment.Notified = notified
		if err := tx.PutComment(comment); err != nil {
			return 0, err
		}
	} else {
		event.Notified = notified
		if err := tx.PutEvent(event); err != nil {
			return 0, err
		}
	}
	return sourceID, tx.PutTicket(t)
}

// queue composes one notification and puts it on the outbound queue.
func (s *Service) queue(tx *store.Tx, cfg *config.Config, book *addr.Book, env *rules.Env, t *store.Ticket, n rules.Notification,
	comment *store.Comment, src source, sourceID uint64, now time.Time) ([]store.Notified, error) {
	id, err := tx.NextDeliveryID()
	if err != nil {
		return nil, err
	}
	support := compose.Support(book, t)
	in := compose.Input{
		Hostname: cfg.Hostname, SupportName: cfg.Support.Name, Book: book, Env: *env, Ticket: t,
		Kind: n.Kind, Copy: n.Copy, Automatic: n.Automatic,
		MessageID: compose.NewMessageID(s.Random, cfg.Hostname), Date: now,
	}
	if n.Kind == rules.KindComment && comment != nil {
		in.AuthorName = compose.AuthorName(*env, comment.Author, comment.AuthorName)
		in.Body = comment.Body
		in.Internal = !comment.Public
		in.ThirdParty = comment.ThirdParty
		if n.Attachments {
			for i, a := range comment.Attachments {
				in.Files = append(in.Files, compose.File{Name: a.Name, ContentType: a.ContentType, Data: tx.AttachmentData(comment.ID, i)})
			}
		}
	} else if src.author.Email != "" && env.IsAgent(src.author.Email) {
		in.AuthorName = src.author.Name
	}
	if n.History {
		hist, err := publicHistory(tx, t, sourceID)
		if err != nil {
			return nil, err
		}
		in.History = hist
	}
	// One thread in mail clients: everything references the ticket's first message, and
	// a notification of a received mail answers that mail.
	if t.RootMessageID != "" {
		in.References, in.InReplyTo = []string{t.RootMessageID}, t.RootMessageID
	}
	if comment != nil && comment.Via == "email" && comment.MessageID != "" && comment.MessageID != t.RootMessageID {
		in.References = append(in.References, comment.MessageID)
		in.InReplyTo = comment.MessageID
	}
	msg, err := compose.Message(in)
	if err != nil {
		return nil, err
	}
	del := &store.Delivery{ID: id, TicketID: t.ID, SourceID: sourceID, Kind: n.Kind, Copy: n.Copy, MessageID: in.MessageID,
		From: book.BounceAddress(support, id), State: store.DeliveryQueued, NextTry: now, CreatedAt: now}
	var notified []store.Notified
	for _, r := range n.Recipients {
		del.Recipients = append(del.Recipients, store.DeliveryRecipient{Email: r.Email, As: r.As, Visible: r.Visible, State: store.DeliveryQueued})
		notified = append(notified, store.Notified{Email: r.Email, As: r.As, Visible: r.Visible, Delivery: id})
	}
	if err := tx.QueueDelivery(del, msg); err != nil {
		return nil, err
	}
	if err := tx.IndexSentMessageID(in.MessageID, store.MessageRef{TicketID: t.ID, SourceID: sourceID, Delivery: id}); err != nil {
		return nil, err
	}
	return notified, nil
}

// publicHistory is the public conversation before comment `except`, oldest first (C4).
func publicHistory(tx *store.Tx, t *store.Ticket, except uint64) ([]store.Comment, error) {
	var out []store.Comment
	tx.Items(t)
	for _, id := range t.CommentIDs {
		if id == except {
			continue
		}
		c, err := tx.Comment(id)
		if err != nil {
			return nil, err
		}
		if c.Public {
			out = append(out, *c)
		}
	}
	return out, nil // Items lists comments in id order, which is their order in time
}

// ErrNotFound is a ticket or comment that does not exist.
var ErrNotFound = errors.New("not found")

// Act carries out expert actions on one ticket, in order, in one transaction. It
// returns the id of the last comment or event made.
func (s *Service) Act(ctx context.Context, ticketID uint64, actions []rules.Action, body string) (uint64, error) {
	cfg, book, env := s.cfg.Load(), s.book.Load(), s.env.Load()
	var lastID uint64
	var done tally
	err := s.store.Update(ctx, func(tx *store.Tx) error {
		done = tally{}
		lastID = 0
		t, err := tx.Ticket(ticketID)
		if errors.Is(err, store.ErrNotFound) {
			return &rules.Refusal{Kind: rules.RefuseNotFound, Msg: "ticket does not exist"}
		}
		if err != nil {
			return err
		}
		for _, a := range actions {
			if a.Kind == rules.ActMakePrivate || a.Kind == rules.ActMakePublic {
				c, err := tx.Comment(a.CommentID)
				if err != nil || c.TicketID != t.ID {
					return &rules.Refusal{Kind: rules.RefuseNotFound, Rule: "V5", Msg: "no such comment on this ticket"}
				}
				a.CommentPublic = c.Public
			}
			_, a.PersonIsOwn = book.Classify(a.Person.Email)
			d, refusal := rules.DecideAction(t, a, *env)
			if refusal != nil {
				return refusal
			}
			src := source{author: store.Person{Email: a.Actor, Name: env.AgentNames[strings.ToLower(a.Actor)]}, via: "api", action: string(a.Kind), detail: detailOf(a)}
			if a.Kind == rules.ActComment {
				src.body = body
				src.messageID = compose.NewMessageID(s.Random, cfg.Hostname)
			}
			lastID, err = s.apply(tx, cfg, book, env, d, src, nil)
			if err != nil {
				return err
			}
			done.add(d, src.via)
			t = d.Ticket // as apply stored it: the next action starts from there
		}
		return nil
	})
	if err == nil {
		// Only now is the delivery committed and visible to the worker.
		s.kick()
		done.count()
	}
	return lastID, err
}

// tally is what one write did, for the metrics. It is counted only once the write has
// committed: the store may run a write's function again when another one of its batch fails,
// so the function starts its tally afresh each time.
type tally struct {
	tickets       int
	comments      [][2]string // via, visibility
	notifications []model.NotificationKind
}

func (t *tally) add(d rules.Decision, via string) {
	if d.NewTicket {
		t.tickets++
	}
	if d.Comment != nil {
		vis := "internal"
		if d.Comment.Public {
			vis = "public"
		}
		t.comments = append(t.comments, [2]string{via, vis})
	}
	for _, n := range d.Notifications {
		t.notifications = append(t.notifications, n.Kind)
	}
}

func (t *tally) count() {
	metrics.TicketsCreated.Add(float64(t.tickets))
	for _, c := range t.comments {
		metrics.CommentsCreated.WithLabelValues(c[0], c[1]).Inc()
	}
	for _, k := range t.notifications {
		metrics.Notifications.WithLabelValues(string(k)).Inc()
	}
}

// EnvFrom turns the config into the plain values the rules engine decides by.
func EnvFrom(cfg *config.Config) rules.Env {
	p, n := cfg.Policy, cfg.Notifications
	e := rules.Env{
		Policy: model.Policy{CCsEnabled: p.CCsEnabled, FollowersEnabled: p.FollowersEnabled,
			AgentCCBecomesFollower: p.AgentCCBecomesFollower, CCBlocklist: p.CCBlocklist, CCRemoval: p.CCRemoval,
			ReplyAudience: p.ReplyAudience, CCAttachments: p.CCAttachments},
		Notifications: model.Notifications{TicketCreated: n.TicketCreated, Assigned: n.Assigned, Solved: n.Solved},
		MaxCCs:        cfg.Limits.MaxCCs,
		Agents:        map[string]model.Role{}, AgentNames: map[string]string{},
	}
	for _, a := range cfg.Agents {
		role := rules.RoleAgent
		if a.Role == config.RoleLightAgent {
			role = rules.RoleLightAgent
		}
		e.Agents[strings.ToLower(a.Email)] = role
		e.AgentNames[strings.ToLower(a.Email)] = a.Name
	}
	return e
}

func detailOf(a rules.Action) string {
	switch a.Kind {
	case rules.ActStatus:
		return string(a.Status)
	case rules.ActMakePrivate:
		return "comment made internal"
	case rules.ActMakePublic:
		return "comment made public"
	}
	return a.Person.Email
}
