package desk

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/emersion/go-smtp"

	"github.com/deskgate/deskgate/gateway/addr"
	"github.com/deskgate/deskgate/gateway/auth"
	"github.com/deskgate/deskgate/gateway/mailparse"
	"github.com/deskgate/deskgate/gateway/rules"
	"github.com/deskgate/deskgate/store"
)

// Envelope is the SMTP envelope of one received mail.
type Envelope struct {
	From       string
	Recipients []string
	Remote     string
	LMTP       bool
}

// Result is what became of one accepted mail.
type Result struct {
	TicketID  uint64
	CommentID uint64
	Duplicate bool
	Outcome   string // "new ticket", "comment", "duplicate", "own mail dropped", "bounce"
	From      string
	MessageID string
}

func smtpErr(code int, enh smtp.EnhancedCode, format string, args ...any) *smtp.SMTPError {
	if len(args) == 0 {
		return &smtp.SMTPError{Code: code, EnhancedCode: enh, Message: format}
	}
	return &smtp.SMTPError{Code: code, EnhancedCode: enh, Message: fmt.Sprintf(format, args...)}
}

// Receive parses, threads, decides and stores one mail with its notifications. It
// returns only after all of it is durable, or with an *smtp.SMTPError that says what
// the sender should do.
func (s *Service) Receive(ctx context.Context, env Envelope, raw []byte) (Result, error) {
	cfg, book := s.cfg.Load(), s.book.Load()
	var res Result
	var bounces, others int
	support := ""
	for _, rc := range env.Recipients {
		p, ok := book.Classify(rc)
		if ok && p.Kind == addr.Bounce {
			bounces++
			continue
		}
		others++
		if ok && support == "" {
			support = p.Support
		}
	}
	if others == 0 && bounces > 0 {
		return s.bounce(ctx, book, env, raw)
	}

	msg, err := mailparse.Parse(raw, cfg.Hostname)
	switch {
	case errors.Is(err, mailparse.ErrHeaderTooLarge):
		return res, smtpErr(552, smtp.EnhancedCode{5, 3, 4}, "Message header block exceeds %d bytes", mailparse.MaxHeaderBytes)
	case err != nil:
		return res, smtpErr(550, smtp.EnhancedCode{5, 6, 0}, "Message cannot be parsed: %v", err)
	}
	res.MessageID = msg.MessageID

	from := store.Person{}
	switch {
	case msg.From != nil:
		from = store.Person{Email: msg.From.Email, Name: msg.From.Name}
	case env.From != "":
		from = store.Person{Email: env.From}
	default:
		return res, smtpErr(550, smtp.EnhancedCode{5, 6, 0}, "Message has no From header and an empty envelope sender; nobody to answer")
	}
	res.From = from.Email
	if rules.OwnLoop(msg.Header, cfg.Support.Addresses) {
		res.Outcome = "own mail dropped"
		s.log.Warn("dropped deskgate's own mail (T5 loop header)", "message_id", msg.MessageID, "from", from.Email)
		return res, nil
	}
	if _, own := book.Classify(from.Email); own {
		return res, smtpErr(550, smtp.EnhancedCode{5, 7, 1}, "From <%s> is this gateway's own address", from.Email)
	}
	if !s.allowSender(from.Email, cfg.Limits.MaxMailsPerSenderHour) {
		return res, smtpErr(451, smtp.EnhancedCode{4, 7, 1}, "Too many messages from <%s> this hour (limits.max_mails_per_sender_hour); try again later", from.Email)
	}
	id := auth.Identify(cfg, from.Email)
	env2 := rules.EnvFrom(cfg)
	automatic := rules.Automatic(msg.Header, env.From)
	replyToDiffers := false
	for _, r := range msg.ReplyTo {
		if !rules.SameAddress(r.Email, from.Email) {
			replyToDiffers = true
		}
	}
	var files [][]byte
	var atts []store.Attachment
	for _, a := range msg.Attachments {
		atts = append(atts, store.Attachment{Name: a.Name, ContentType: a.ContentType, Size: a.Size})
		files = append(files, a.Data)
	}

	err = s.store.Update(ctx, func(tx *store.Tx) error {
		res.TicketID, res.CommentID, res.Duplicate, res.Outcome = 0, 0, false, ""
		if ref, ok := tx.MessageID(msg.MessageID); ok {
			if ref.Sent {
				res.Outcome = "own mail dropped"
				return nil
			}
			if ref.CommentID != 0 {
				res.TicketID, res.CommentID, res.Duplicate, res.Outcome = ref.TicketID, ref.CommentID, true, "duplicate"
				return nil
			}
		}
		facts := gatherThreadFacts(tx, book, env, msg, from.Email)
		ticketID, threadTrace := rules.Thread(facts)
		var ticket *store.Ticket
		if ticketID != 0 {
			t, err := tx.Ticket(ticketID)
			if err != nil && !errors.Is(err, store.ErrNotFound) {
				return err
			}
			ticket = t
		}
		m := rules.Mail{
			MessageID: msg.MessageID, From: from, Role: id.Role, RoleNote: id.Note,
			To: classify(book, ticket, msg.To), Cc: classify(book, ticket, msg.Cc),
			Subject: msg.Subject, ReplyToDiffers: replyToDiffers, Automatic: automatic,
			HasAttachments: len(files) > 0, Support: support,
		}
		if ticket != nil {
			answered, err := findAnswered(tx, ticket.ID, msg)
			if err != nil {
				return err
			}
			m.Answered = answered
		}
		d := rules.DecideMail(ticket, m, env2)
		res.Outcome = "comment"
		if d.NewTicket {
			res.Outcome = "new ticket"
		}
		src := source{author: from, via: "email", messageID: msg.MessageID, inReplyTo: msg.InReplyTo, references: msg.References,
			subject: msg.Subject, to: persons(msg.To), cc: persons(msg.Cc), recipients: env.Recipients, envFrom: env.From,
			body: msg.Text, attachments: atts, files: files}
		cid, err := s.apply(tx, cfg, book, env2, d, src, threadTrace)
		if err != nil {
			return err
		}
		res.TicketID, res.CommentID = d.Ticket.ID, cid
		return nil
	})
	if err != nil {
		s.log.Error("store update failed", "err", err)
		return res, smtpErr(451, smtp.EnhancedCode{4, 3, 0}, "Temporary local problem storing the message; try again later")
	}
	s.kick()
	if res.Outcome == "own mail dropped" {
		s.log.Warn("dropped deskgate's own mail (T5: its Message-ID is one deskgate sent)", "message_id", msg.MessageID)
	}
	return res, nil
}

// allowSender counts accepted mail per sender over the last hour (T5's loop guard).
func (s *Service) allowSender(sender string, perHour int) bool {
	if perHour <= 0 {
		return true
	}
	key := strings.ToLower(sender)
	now := s.Now()
	s.rateMu.Lock()
	defer s.rateMu.Unlock()
	times := s.rate[key]
	kept := times[:0]
	for _, t := range times {
		if now.Sub(t) < time.Hour {
			kept = append(kept, t)
		}
	}
	if len(kept) >= perHour {
		s.rate[key] = kept
		return false
	}
	s.rate[key] = append(kept, now)
	if len(s.rate) > 100000 {
		// Bound the memory a flood of distinct senders can take.
		for k, v := range s.rate {
			if len(v) == 0 || now.Sub(v[len(v)-1]) >= time.Hour {
				delete(s.rate, k)
			}
		}
	}
	return true
}

// classify marks deskgate's own addresses and maps valid masked addresses of ticket back
// to the participant they stand for.
func classify(book *addr.Book, ticket *store.Ticket, list []mailparse.Address) []rules.Addr {
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

// findAnswered finds the notification a mail replies to and who of the CCs had it.
func findAnswered(tx *store.Tx, ticketID uint64, msg *mailparse.Message) (*rules.Answered, error) {
	refs := []string{msg.InReplyTo}
	for i := len(msg.References) - 1; i >= 0; i-- {
		refs = append(refs, msg.References[i])
	}
	for _, r := range refs {
		ref, ok := tx.MessageID(r)
		if !ok || !ref.Sent || ref.TicketID != ticketID {
			continue
		}
		var notified []store.Notified
		if c, err := tx.Comment(ref.SourceID); err == nil {
			notified = c.Notified
		} else if e, err := tx.Event(ref.SourceID); err == nil {
			notified = e.Notified
		} else {
			continue
		}
		a := &rules.Answered{SourceID: ref.SourceID}
		for _, n := range notified {
			if n.As == rules.AsCC {
				a.CCs = append(a.CCs, n.Email)
			}
		}
		return a, nil
	}
	return nil, nil
}

// gatherThreadFacts looks up everything T2 may thread by; rules.Thread chooses.
func gatherThreadFacts(tx *store.Tx, book *addr.Book, env Envelope, msg *mailparse.Message, sender string) rules.ThreadFacts {
	var f rules.ThreadFacts
	for _, rc := range env.Recipients {
		p, ok := book.Classify(rc)
		if !ok || (p.Kind != addr.Ticket && p.Kind != addr.Masked) {
			continue
		}
		valid := book.ValidTicketToken(p.ID, p.Token)
		if valid {
			if _, err := tx.Ticket(p.ID); err != nil {
				valid = false
			}
		}
		f.Recipients = append(f.Recipients, rules.ThreadRecipient{Address: rc, TicketID: p.ID, Masked: p.Kind == addr.Masked, TokenValid: valid})
	}
	// In-Reply-To names the message answered; References from newest to oldest.
	refs := []string{msg.InReplyTo}
	for i := len(msg.References) - 1; i >= 0; i-- {
		refs = append(refs, msg.References[i])
	}
	for _, r := range refs {
		if ref, ok := tx.MessageID(r); ok {
			f.References = append(f.References, rules.Reference{MessageID: store.NormalizeMessageID(r), TicketID: ref.TicketID})
		}
	}
	addTags := func(text string, inSubject bool) {
		for _, t := range addr.FindTags(text) {
			tag := rules.Tag{TicketID: t.ID, Token: t.Token, InSubject: inSubject}
			tk, err := tx.Ticket(t.ID)
			if err != nil {
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

func persons(list []mailparse.Address) []store.Person {
	out := make([]store.Person, 0, len(list))
	for _, a := range list {
		out = append(out, store.Person{Email: a.Email, Name: a.Name})
	}
	return out
}
