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

	contended contention
}

// New makes a Service.
func New(cfg *config.Config, st *store.Store, logger *slog.Logger) *Service {
	s := &Service{store: st, log: logger, Now: time.Now, Queued: make(chan struct{}, 1)}
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

// Env is what the rules decide by under the running config.
func (s *Service) Env() rules.Env { return *s.env.Load() }

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
	author      model.Person
	via         string
	messageID   string
	inReplyTo   string
	references  []string
	subject     string
	to, cc      []model.Person
	recipients  []string
	envFrom     string
	body        string
	attachments []model.Attachment
	files       [][]byte
	authResults string // the Authentication-Results deskgate found for a mail
	original    []byte // a received mail as it came, packed by store.PackOriginal
	problems    []string
	action      string // for events
	detail      string
}

// ErrNotFound is a ticket or comment that does not exist.
var ErrNotFound = errors.New("not found")

// Act carries out expert actions on one ticket, in order, in one transaction. It
// returns the id of the last comment or event made.
func (s *Service) Act(ctx context.Context, ticketID uint64, actions []rules.Action, body string) (uint64, error) {
	return s.changeTicket(ctx, ticketID, func(p *planner, t *model.Ticket, done *tally) (writes, uint64, error) {
		var out writes
		var lastID uint64
		for _, a := range actions {
			if a.Kind == model.OpMakePrivate || a.Kind == model.OpMakePublic {
				c, err := p.comment(a.CommentID)
				if err != nil || c.TicketID != t.ID {
					return nil, 0, &rules.Refusal{Kind: rules.RefuseNotFound, Rule: "V5", Msg: "no such comment on this ticket"}
				}
				a.CommentPublic = c.Public
			}
			_, a.PersonIsOwn = p.book.Classify(a.Person.Email)
			d, refusal := rules.DecideAction(t, a, *p.env)
			if refusal != nil {
				return nil, 0, refusal
			}
			via := a.Via
			if via == "" {
				via = "api"
			}
			src := source{author: model.Person{Email: a.Actor, Name: p.env.AgentNames[model.AddressKey(a.Actor)]}, via: via, action: string(a.Kind), detail: detailOf(a, d)}
			if a.Kind == model.OpComment {
				src.body = body
				src.messageID = compose.NewMessageID(s.Random, s.Now(), p.cfg.Hostname)
			}
			ch, err := p.change(d, src, nil)
			if err != nil {
				return nil, 0, err
			}
			out = append(out, ch.write)
			lastID = ch.sourceID
			done.add(d, src.via)
			t = d.Ticket // as planned: the next action starts from there
		}
		return out, lastID, nil
	})
}

// changeTicket runs plan on ticket ticketID in one write, through the snapshot, plan and
// apply path that every change takes (planned again when the ticket changed meanwhile), and
// returns the id plan reports of the last comment or event made. The worker is woken and the
// metrics counted only once the write has committed.
func (s *Service) changeTicket(ctx context.Context, ticketID uint64,
	plan func(p *planner, t *model.Ticket, done *tally) (writes, uint64, error)) (uint64, error) {
	cfg, book, env := s.cfg.Load(), s.book.Load(), s.env.Load()
	var id uint64
	var done tally
	ids := s.store.NewIds()
	err := s.commit(ctx, func(tx *store.Tx, run *planRun) (writes, error) {
		done = tally{}
		p := s.planner(tx, run, ids, cfg, book, env)
		t, err := tx.Ticket(ticketID)
		if errors.Is(err, store.ErrNotFound) {
			return nil, &rules.Refusal{Kind: rules.RefuseNotFound, Msg: "ticket does not exist"}
		}
		if err != nil {
			return nil, err
		}
		w, last, err := plan(p, t, &done)
		id = last
		return w, err
	})
	if err == nil {
		// Only now is the delivery committed and visible to the worker.
		s.kick()
		done.count()
	}
	return id, err
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
		DMARCReject:   cfg.Authentication.DMARCReject,
		Agents:        map[string]model.Role{}, AgentNames: map[string]string{},
	}
	// Without the pages nobody has a view to be sent a link to (S1).
	if cfg.Listen.Web != "" && cfg.Web.PublicURL != "" {
		e.StatusView = cfg.Web.StatusView
	}
	for _, a := range cfg.Agents {
		role := model.RoleAgent
		if a.Role == config.RoleLightAgent {
			role = model.RoleLightAgent
		}
		e.Agents[model.AddressKey(a.Email)] = role
		e.AgentNames[model.AddressKey(a.Email)] = a.Name
	}
	return e
}

func detailOf(a rules.Action, d rules.Decision) string {
	switch a.Kind {
	case model.OpAddCC:
		for _, c := range d.Changes {
			if c.Op == rules.OpAddFollower {
				// What the expert asked for is not what happened (C3): the record says both.
				return a.Person.Email + " (an agent: made a hidden follower, C3)"
			}
		}
	case model.OpStatus:
		return string(a.Status)
	case model.OpMakePrivate:
		return "comment made internal"
	case model.OpMakePublic:
		return "comment made public"
	}
	return a.Person.Email
}
