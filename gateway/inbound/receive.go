package inbound

import (
	"context"
	"errors"
	"fmt"

	"github.com/emersion/go-smtp"

	"github.com/deskgate/deskgate/config"
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
	Outcome   string // "new ticket", "comment", "duplicate", "bounce"
	From      string
	MessageID string
}

func smtpErr(code int, enh smtp.EnhancedCode, format string, args ...any) *smtp.SMTPError {
	return &smtp.SMTPError{Code: code, EnhancedCode: enh, Message: fmt.Sprintf(format, args...)}
}

// Receive parses, threads, decides and stores one mail. It returns only after the change
// is durable, or with an *smtp.SMTPError that says what the sender should do.
func (s *Server) Receive(ctx context.Context, cfg *config.Config, book *addr.Book, env Envelope, raw []byte) (Result, error) {
	var res Result
	var bounces, others int
	for _, rc := range env.Recipients {
		if p, ok := book.Classify(rc); ok && p.Kind == addr.Bounce {
			bounces++
		} else {
			others++
		}
	}
	if others == 0 && bounces > 0 {
		// T6: a bounce never becomes a comment. Tracking the failed delivery is the
		// outbound queue's job; until it exists there is nothing to mark.
		res.Outcome = "bounce"
		return res, nil
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
	if msg.From != nil {
		from = store.Person{Email: msg.From.Email, Name: msg.From.Name}
	} else if env.From != "" {
		from = store.Person{Email: env.From}
	} else {
		return res, smtpErr(550, smtp.EnhancedCode{5, 6, 0}, "Message has no From header and an empty envelope sender; nobody to answer")
	}
	res.From = from.Email
	if _, own := book.Classify(from.Email); own {
		return res, smtpErr(550, smtp.EnhancedCode{5, 7, 1}, "From <%s> is this gateway's own address", from.Email)
	}
	id := auth.Identify(cfg, from.Email)

	mail := rules.Mail{
		MessageID: msg.MessageID,
		From:      from,
		Role:      id.Role,
		RoleNote:  id.Note,
		To:        persons(msg.To),
		Cc:        persons(msg.Cc),
		Subject:   msg.Subject,
	}
	now := s.now().UTC()

	err = s.store.Update(ctx, func(tx *store.Tx) error {
		res.TicketID, res.CommentID, res.Duplicate, res.Outcome = 0, 0, false, ""
		var existing *rules.Existing
		if ref, ok := tx.MessageID(msg.MessageID); ok && ref.CommentID != 0 {
			existing = &rules.Existing{TicketID: ref.TicketID, CommentID: ref.CommentID}
		}
		var ticket *store.Ticket
		var threadTrace []store.TraceStep
		if existing == nil {
			facts := gatherThreadFacts(tx, book, env, msg, from.Email)
			var ticketID uint64
			ticketID, threadTrace = rules.Thread(facts)
			if ticketID != 0 {
				t, err := tx.Ticket(ticketID)
				if err != nil && !errors.Is(err, store.ErrNotFound) {
					return err
				}
				ticket = t
			}
		}
		d := rules.ReceiveMail(ticket, mail, existing, threadTrace)
		if d.Duplicate != nil {
			res.TicketID, res.CommentID, res.Duplicate, res.Outcome = d.Duplicate.TicketID, d.Duplicate.CommentID, true, "duplicate"
			return nil
		}
		if d.NewTicket != nil {
			ticket = d.NewTicket
			ticket.CreatedAt = now
			if err := tx.CreateTicket(ticket); err != nil {
				return err
			}
			res.Outcome = "new ticket"
		} else {
			res.Outcome = "comment"
		}
		if d.Status != "" {
			ticket.Status = d.Status
		}
		ticket.UpdatedAt = now
		c := &store.Comment{
			Author:       from.Email,
			AuthorName:   from.Name,
			Public:       d.Public,
			ThirdParty:   d.ThirdParty,
			Via:          "email",
			MessageID:    msg.MessageID,
			InReplyTo:    msg.InReplyTo,
			References:   msg.References,
			Subject:      msg.Subject,
			To:           mail.To,
			Cc:           mail.Cc,
			Recipients:   env.Recipients,
			EnvelopeFrom: env.From,
			CreatedAt:    now,
			Body:         msg.Text,
			Attachments:  attachments(msg.Attachments),
			Notified:     []store.Notified{},
			Trace:        d.Trace,
		}
		if err := tx.AddComment(ticket, c); err != nil {
			return err
		}
		res.TicketID, res.CommentID = ticket.ID, c.ID
		return tx.PutTicket(ticket)
	})
	if err != nil {
		s.log.Error("store update failed", "err", err)
		return res, smtpErr(451, smtp.EnhancedCode{4, 3, 0}, "Temporary local problem storing the message; try again later")
	}
	return res, nil
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
		f.Recipients = append(f.Recipients, rules.Recipient{Address: rc, TicketID: p.ID, Masked: p.Kind == addr.Masked, TokenValid: valid})
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

func attachments(list []mailparse.Attachment) []store.Attachment {
	out := make([]store.Attachment, 0, len(list))
	for _, a := range list {
		out = append(out, store.Attachment{Name: a.Name, ContentType: a.ContentType, Size: a.Size})
	}
	return out
}
