package desk

import (
	"context"
	"errors"
	"fmt"
	"net"
	"slices"
	"strings"

	"github.com/deskgate/deskgate/config"
	"github.com/deskgate/deskgate/gateway/addr"
	"github.com/deskgate/deskgate/gateway/auth"
	"github.com/deskgate/deskgate/gateway/mailparse"
	"github.com/deskgate/deskgate/gateway/metrics"
	"github.com/deskgate/deskgate/gateway/model"
	"github.com/deskgate/deskgate/gateway/rules"
	"github.com/deskgate/deskgate/store"
)

// Envelope is the SMTP envelope of one received mail.
type Envelope struct {
	From       string
	Recipients []string
	Remote     string // the client's "ip:port"; on LMTP, the MTA in front
	Helo       string
	LMTP       bool
}

// Result is what became of one accepted mail.
type Result struct {
	TicketID  uint64
	CommentID uint64
	Duplicate bool
	Outcome   string // "new ticket", "comment", "duplicate", "own mail dropped", "bounce", "bounce address mail ignored"
	From      string
	MessageID string
}

// refusal is a received mail refused, of kind, in the words for the sender.
func refusal(kind rules.RefusalKind, format string, args ...any) *rules.Refusal {
	return &rules.Refusal{Kind: kind, Msg: fmt.Sprintf(format, args...)}
}

// recipient is an envelope recipient and, when it is one of deskgate's, what it is.
type recipient struct {
	address string
	parsed  addr.Parsed
	ours    bool
}

func classifyRecipients(book *addr.Book, list []string) []recipient {
	out := make([]recipient, len(list))
	for i, rc := range list {
		p, ok := book.Classify(rc)
		out[i] = recipient{address: rc, parsed: p, ours: ok}
	}
	return out
}

// Receive parses, threads, decides and stores one mail with its notifications. It
// returns only after all of it is durable, or with a *rules.Refusal that says what
// the sender should do.
//
// It gathers the facts first, none of which needs the store: where the mail came to, what
// it says, who sent it and whether they may (admit). Then, on a snapshot of the store, it
// threads and decides (receipt.decide) and plans the records (planner.change).
func (s *Service) Receive(ctx context.Context, env Envelope, raw []byte) (Result, error) {
	cfg, book, renv := s.cfg.Load(), s.book.Load(), s.env.Load()
	var res Result
	rcpts := classifyRecipients(book, env.Recipients)
	support, bounces := route(rcpts)
	if bounces == len(rcpts) && bounces > 0 {
		return s.bounce(ctx, book, env, rcpts, raw)
	}
	if bounces > 0 {
		s.bounceAlongside(env, rcpts, raw)
	}

	msg, err := parse(raw, cfg.Hostname)
	if err != nil {
		return res, err
	}
	res.MessageID = msg.MessageID
	from, err := author(msg, env)
	if err != nil {
		return res, err
	}
	res.From = from.Email
	// X-Loop carries the support address as deskgate writes it (its ASCII form, Supports);
	// the configured (canonical) form too, as older copies wrote it.
	if rules.OwnLoop(msg.Header, slices.Concat(book.Supports(), cfg.Support.Addresses)) {
		res.Outcome = "own mail dropped"
		s.log.Warn("dropped deskgate's own mail", "rule", "T5", "why", "its loop header", "message_id", msg.MessageID, "from", from.Email)
		return res, nil
	}
	if _, own := book.Classify(from.Email); own {
		return res, refusal(rules.RefuseOwnAddress, "From <%s> is this gateway's own address", from.Email)
	}
	authResult, id, err := s.admit(ctx, cfg, env, raw, from.Email)
	if err != nil {
		return res, err
	}
	r := &receipt{cfg: cfg, book: book, renv: renv, rcpts: rcpts, msg: msg,
		mail: mailFacts(msg, env, from, id, support), src: s.sourceOf(cfg, renv, env, msg, from, authResult, raw)}

	var repeat model.TraceStep
	var done tally
	ids := s.store.NewIds()
	err = s.commit(ctx, func(tx *store.Tx, run *planRun) (writes, error) {
		done = tally{}
		res.TicketID, res.CommentID, res.Duplicate, res.Outcome = 0, 0, false, ""
		var again bool
		if again, repeat = seenBefore(tx, msg.MessageID, &res); again {
			return nil, nil
		}
		d, threadTrace, err := r.decide(tx)
		if err != nil {
			return nil, err
		}
		res.Outcome = "comment"
		if d.NewTicket {
			res.Outcome = "new ticket"
		}
		ch, err := s.planner(tx, run, ids, cfg, book, renv).change(d, r.src, threadTrace)
		if err != nil {
			return nil, err
		}
		done.add(d, r.src.via)
		res.TicketID, res.CommentID = d.Ticket.ID, ch.sourceID
		return writes{ch.write}, nil
	})
	if err != nil {
		s.log.Error("store update failed", "err", err)
		return res, refusal(rules.RefuseStorage, "Temporary local problem storing the message; try again later")
	}
	s.kick()
	done.count()
	if repeat.Rule != "" {
		s.log.Info("seen before", "rule", repeat.Rule, "verdict", repeat.Step, "why", repeat.Detail)
	}
	return res, nil
}

// route finds the support address a mail came to (the first of deskgate's addresses among
// its recipients that is no bounce address) and counts its bounce addresses.
func route(rcpts []recipient) (support string, bounces int) {
	for _, r := range rcpts {
		switch {
		case r.ours && r.parsed.Kind == addr.Bounce:
			bounces++
		case r.ours && support == "":
			support = r.parsed.Support
		}
	}
	return support, bounces
}

// parse reads a mail, or refuses it in the words for the sender.
func parse(raw []byte, hostname string) (*mailparse.Message, error) {
	msg, err := mailparse.Parse(raw, hostname)
	switch {
	case errors.Is(err, mailparse.ErrHeaderTooLarge):
		return nil, refusal(rules.RefuseTooLarge, "Message header block exceeds %d bytes", mailparse.MaxHeaderBytes)
	case err != nil:
		return nil, refusal(rules.RefuseUnreadable, "Message cannot be parsed: %v", err)
	}
	return msg, nil
}

// author is who wrote a mail: its From, else its envelope sender. A mail with neither is
// refused, as there is nobody to answer.
func author(msg *mailparse.Message, env Envelope) (model.Person, error) {
	switch {
	case msg.From != nil:
		return model.Person{Email: msg.From.Email, Name: msg.From.Name}, nil
	case env.From != "":
		return model.Person{Email: env.From}, nil
	default:
		return model.Person{}, refusal(rules.RefuseNobodyToTell, "Message has no From header and an empty envelope sender; nobody to answer")
	}
}

// admit decides, before anything is stored or queued, whether the sender may be heard: who
// they proved to be (A1), and whether they are over T5's rate. It refuses with the words for
// the sender.
func (s *Service) admit(ctx context.Context, cfg *config.Config, env Envelope, raw []byte, from string) (*auth.Result, rules.Identity, error) {
	authResult, id := s.authenticate(ctx, env, raw, from)
	if id.Refuse {
		// The domain asked for this mail to be refused, and accepting it would answer a
		// forger at the real owner's address.
		return nil, id, refusal(rules.RefuseDMARC, "Rejected by DMARC policy for %s", id.RefusedDomain)
	}
	if id.Defer {
		return nil, id, refusal(rules.RefuseUnverifiedNow, "Cannot verify now that <%s> sent this: %s; try again later", from, id.Step.Detail)
	}
	if limited, step := s.noteSender(from, cfg.Limits.MaxMailsPerSenderHour); limited {
		return nil, id, refusal(rules.RefuseTooMany, "Too many messages from <%s>: %s (%s); try again later", from, step.Detail, step.Rule)
	}
	return authResult, id, nil
}

// mailFacts is what the rules are told of a mail, less what depends on the ticket it threads
// to (receipt.decide adds that).
func mailFacts(msg *mailparse.Message, env Envelope, from model.Person, id rules.Identity, support string) rules.Mail {
	replyToDiffers := false
	for _, r := range msg.ReplyTo {
		if !rules.SameAddress(r.Email, from.Email) {
			replyToDiffers = true
		}
	}
	return rules.Mail{
		MessageID: msg.MessageID, From: from, Role: id.Role, Identified: id.Step,
		Subject: msg.Subject, ReplyToDiffers: replyToDiffers, Automatic: rules.Automatic(msg.Header, env.From),
		HasAttachments: len(msg.Attachments) > 0, Support: support, Problems: msg.Problems, Unreadable: msg.Unreadable(),
		NotRead: msg.NamesNotRead, ReadLimit: mailparse.MaxAddresses,
	}
}

// sourceOf is what is stored of a mail: its text (or, when it could not be decoded, a note
// that says so), its attachments, the original as it came, and what authentication found.
func (s *Service) sourceOf(cfg *config.Config, renv *rules.Env, env Envelope, msg *mailparse.Message, from model.Person, authResult *auth.Result, raw []byte) source {
	var files [][]byte
	var atts []model.Attachment
	for _, a := range msg.Attachments {
		atts = append(atts, model.Attachment{Name: a.Name, ContentType: a.ContentType, Size: a.Size, Problem: a.Problem})
		files = append(files, a.Data)
	}
	body := msg.Text
	if msg.Unreadable() {
		body = "[deskgate could not decode this message: " + strings.Join(msg.Problems, "; ") + ". The original is kept with this comment.]"
	}
	if len(msg.Problems) > 0 {
		metrics.UndecodableMessages.Inc()
		s.log.Warn("message not fully decoded", "rule", "M1", "message_id", msg.MessageID, "from", from.Email, "problems", strings.Join(msg.Problems, "; "))
	}
	return source{author: renv.Person(from.Email, from.Name), via: "email", messageID: msg.MessageID, inReplyTo: msg.InReplyTo, references: msg.References,
		subject: msg.Subject, to: persons(msg.To), cc: persons(msg.Cc), recipients: env.Recipients, envFrom: env.From,
		body: body, attachments: atts, files: files, authResults: authResult.Header(cfg.Hostname),
		original: store.PackOriginal(raw), problems: msg.Problems}
}

// seenBefore asks the rules whether the store knows a mail's Message-ID: as deskgate's own
// copy come back (T5), or as a mail already taken (T3). When it does, res says what became of the
// mail, and nothing more is to be done.
func seenBefore(tx *store.Tx, messageID string, res *Result) (bool, model.TraceStep) {
	var seen rules.Seen
	if ref, ok := tx.MessageID(messageID); ok {
		seen = rules.Seen{Known: true, SentByUs: ref.Sent, TicketID: ref.TicketID, CommentID: ref.CommentID}
	}
	verdict, step := rules.Repeat(seen, messageID)
	switch verdict {
	case rules.OwnMail:
		res.Outcome = "own mail dropped"
		return true, step
	case rules.Duplicate:
		res.TicketID, res.CommentID, res.Duplicate, res.Outcome = seen.TicketID, seen.CommentID, true, "duplicate"
		return true, step
	}
	return false, step
}

// receipt is one admitted mail with the facts gathered about it that need no store, and the
// config it is decided by.
type receipt struct {
	cfg   *config.Config
	book  *addr.Book
	renv  *rules.Env
	rcpts []recipient
	msg   *mailparse.Message
	mail  rules.Mail // less To, Cc and Answered, which depend on the ticket
	src   source
}

// decide threads the mail (T2) on what the store knows, completes the rules' view of it with
// what depends on its ticket, and asks the rules what becomes of it. The trace it returns is
// threading's, which the decision's own trace follows.
func (r *receipt) decide(tx *store.Tx) (rules.Decision, []model.TraceStep, error) {
	tickets := ticketCache{tx: tx, m: map[uint64]*model.Ticket{}}
	refs := resolveChain(tx, replyChain(r.msg))
	ticketID, threadTrace := rules.Thread(threadFacts(&tickets, r.book, r.rcpts, refs, r.msg, r.mail.From.Email))
	ticket := tickets.get(ticketID)
	if tickets.err != nil {
		return rules.Decision{}, nil, tickets.err
	}
	m := r.mail
	m.To, m.Cc = classify(r.book, ticket, r.msg.To), classify(r.book, ticket, r.msg.Cc)
	if ticket != nil {
		m.Answered = answered(tx, ticket.ID, refs)
	}
	return rules.DecideMail(ticket, m, *r.renv), threadTrace, nil
}

// authenticate checks who sent the mail and asks the rules what role that earns (A1).
func (s *Service) authenticate(ctx context.Context, env Envelope, raw []byte, from string) (*auth.Result, rules.Identity) {
	checker := s.auth.Load()
	in := auth.Input{Raw: raw, Author: from, Helo: env.Helo, MailFrom: env.From, LMTP: env.LMTP}
	if !env.LMTP {
		if host, _, err := net.SplitHostPort(env.Remote); err == nil {
			in.ClientIP = net.ParseIP(host)
		}
	}
	r := checker.Check(ctx, in)
	renv := s.env.Load()
	facts := r.Facts()
	id := rules.Identify(*renv, from, facts)
	metrics.SenderAuth.WithLabelValues(checker.Mode, r.ModeResult(facts)).Inc()
	if id.Refuse {
		metrics.DMARCRefused.Inc()
	}
	if renv.IsAgent(from) {
		outcome := "proven"
		switch {
		case id.Refuse:
			outcome = "refused"
		case id.Unverified:
			outcome = "unverified" // agent_identity none: believed, not proven
		case id.Defer:
			outcome = "deferred"
		case id.Role == model.RoleEndUser:
			outcome = "spoofed"
		}
		metrics.AgentClaims.WithLabelValues(checker.Mode, outcome).Inc()
		s.log.Info("agent address claimed", "from", from, "rule", "A1", "outcome", outcome, "why", id.Step.Detail)
	} else if id.Refuse {
		s.log.Info("refused by the From domain's DMARC policy", "from", from, "rule", "A1", "why", id.Step.Detail)
	}
	return r, id
}

// noteSender counts accepted mail per sender over the last hour and asks the rules
// whether this one is over T5's limit; an accepted one is counted.
func (s *Service) noteSender(sender string, perHour int) (bool, model.TraceStep) {
	if perHour <= 0 {
		return false, model.TraceStep{}
	}
	var limited bool
	var step model.TraceStep
	// Should the count not be had (the database unreachable), the write that follows fails
	// too and the client tries again later.
	err := s.store.NoteSender(model.AddressKey(sender), s.Now(), func(hits int) bool {
		limited, step = rules.SenderLimited(hits, perHour)
		return !limited
	})
	if err != nil {
		s.log.Warn("cannot count the sender's mails", "err", err)
	}
	return limited, step
}

// ticketCache reads each ticket once per mail: threading, tags and the decision all ask.
type ticketCache struct {
	tx  *store.Tx
	m   map[uint64]*model.Ticket
	err error
}

// get returns ticket id, or nil when it does not exist (id 0 included).
func (c *ticketCache) get(id uint64) *model.Ticket {
	if id == 0 {
		return nil
	}
	if t, ok := c.m[id]; ok {
		return t
	}
	t, err := c.tx.Ticket(id)
	if err != nil && !errors.Is(err, store.ErrNotFound) && c.err == nil {
		c.err = err
	}
	c.m[id] = t
	return t
}

// classify marks deskgate's own addresses and maps valid masked addresses of ticket back
// to the participant they stand for.
func classify(book *addr.Book, ticket *model.Ticket, list []mailparse.Address) []rules.Addr {
	out := make([]rules.Addr, 0, len(list))
	for _, a := range list {
		ra := rules.Addr{Email: a.Email, Name: a.Name}
		if p, ok := book.Classify(a.Email); ok {
			ra.Own = true
			if p.Kind == addr.Masked && ticket != nil && p.ID == ticket.ID && book.ValidTicketToken(p.ID, p.Token) {
				for email, n := range ticket.Masks {
					if n == p.Participant {
						ra.MaskedOf = email
					}
				}
			}
		}
		out = append(out, ra)
	}
	return out
}

// replyChain lists the Message-IDs a mail answers: In-Reply-To first, then References
// from the newest to the oldest.
func replyChain(msg *mailparse.Message) []string {
	chain := []string{msg.InReplyTo}
	for i := len(msg.References) - 1; i >= 0; i-- {
		chain = append(chain, msg.References[i])
	}
	return chain
}

// knownRef is a Message-ID of the reply chain that the store knows.
type knownRef struct {
	id  string
	ref store.MessageRef
}

// resolveChain looks the reply chain up once, for threading and for the notification
// answered alike.
func resolveChain(tx *store.Tx, chain []string) []knownRef {
	var out []knownRef
	for _, id := range chain {
		if ref, ok := tx.MessageID(id); ok {
			out = append(out, knownRef{id: store.NormalizeMessageID(id), ref: ref})
		}
	}
	return out
}

// answered finds the notification a mail replies to and who of the CCs had it.
func answered(tx *store.Tx, ticketID uint64, refs []knownRef) *rules.Answered {
	for _, k := range refs {
		if !k.ref.Sent || k.ref.TicketID != ticketID {
			continue
		}
		notified, ok, err := tx.NotifiedOf(k.ref.SourceID)
		if !ok || err != nil {
			continue
		}
		a := &rules.Answered{SourceID: k.ref.SourceID}
		for _, n := range notified {
			if n.As == model.AsCC {
				a.CCs = append(a.CCs, n.Email)
			}
		}
		return a
	}
	return nil
}

// threadFacts gathers everything T2 may thread by; rules.Thread chooses.
func threadFacts(tickets *ticketCache, book *addr.Book, rcpts []recipient, refs []knownRef, msg *mailparse.Message, sender string) rules.ThreadFacts {
	var f rules.ThreadFacts
	for _, r := range rcpts {
		p := r.parsed
		if !r.ours || (p.Kind != addr.Ticket && p.Kind != addr.Masked) {
			continue
		}
		valid := book.ValidTicketToken(p.ID, p.Token) && tickets.get(p.ID) != nil
		f.Recipients = append(f.Recipients, rules.ThreadRecipient{Address: r.address, TicketID: p.ID, Masked: p.Kind == addr.Masked, TokenValid: valid})
	}
	for _, k := range refs {
		f.References = append(f.References, rules.Reference{MessageID: k.id, TicketID: k.ref.TicketID})
	}
	addTags := func(text string, inSubject bool) {
		for _, t := range addr.FindTags(text) {
			tag := rules.Tag{TicketID: t.ID, Token: t.Token, InSubject: inSubject}
			tk := tickets.get(t.ID)
			if tk == nil {
				// A tag for a ticket that does not exist threads nowhere, like a bad token.
				tag.TicketID = 0
				if tag.Token != "" {
					f.Tags = append(f.Tags, tag)
				}
				continue
			}
			if t.Token != "" {
				tag.TokenValid = book.ValidTicketToken(t.ID, t.Token)
			} else {
				tag.SenderIsParticipant = rules.IsParticipant(tk, sender)
			}
			f.Tags = append(f.Tags, tag)
		}
	}
	addTags(msg.Subject, true)
	addTags(firstChars(msg.Text, 64<<10), false)
	return f
}

func firstChars(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n]
}

func persons(list []mailparse.Address) []model.Person {
	out := make([]model.Person, 0, len(list))
	for _, a := range list {
		out = append(out, model.Person{Email: a.Email, Name: a.Name})
	}
	return out
}
