package desk

import (
	"bytes"
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/emersion/go-message"
	"github.com/emersion/go-message/mail"

	"github.com/deskgate/deskgate/gateway/compose"
	"github.com/deskgate/deskgate/gateway/model"
	"github.com/deskgate/deskgate/store"
)

// SignIn mails the agent or light agent email a link that signs her in to the web pages:
// a fresh token (store.NewWebToken, kept hashed for store.SignInLifetime) in the link that
// link(token) makes, queued on deskgate's own outbound queue so that it is DKIM-signed and
// relayed like every mail deskgate sends. It reports false, and does nothing, when email is
// no agent in the running config.
//
// The delivery belongs to no ticket (TicketID 0) and its one recipient is not Visible: a
// failure to deliver it is no end user's and flags no ticket (T6), so neither the relay nor
// a bounce ever reads ticket 0.
func (s *Service) SignIn(ctx context.Context, email string, link func(token string) string) (bool, error) {
	cfg, book := s.cfg.Load(), s.book.Load()
	agent, ok := cfg.AgentByEmail(strings.TrimSpace(email))
	if !ok {
		return false, nil
	}
	token, err := store.NewWebToken()
	if err != nil {
		return false, err
	}
	now := s.Now().UTC()
	support := book.Supports()[0]
	id := s.store.NewIds().Delivery()
	msgID := compose.NewMessageID(s.Random, now, cfg.Hostname)
	msg, err := signInMessage(cfg.Support.Name, support, agent.Name, agent.Email, msgID, link(token), now)
	if err != nil {
		return false, err
	}
	d := &store.Delivery{ID: id, Kind: model.KindSignIn, Copy: model.CopyAgent, MessageID: msgID,
		From: book.BounceAddress(support, id), State: model.DeliveryQueued, NextTry: now, CreatedAt: now,
		Recipients: []model.DeliveryRecipient{{Email: agent.Email, As: model.AsAgent, State: model.DeliveryQueued}}}
	err = s.store.Update(ctx, func(tx *store.Tx) error {
		if err := tx.PutSignIn(token, agent.Email, now.Add(store.SignInLifetime)); err != nil {
			return err
		}
		return tx.QueueDelivery(d, msg)
	})
	if err != nil {
		return false, err
	}
	s.kick()
	s.log.Info("sign-in link queued", "email", agent.Email, "delivery", id)
	return true, nil
}

// signInMessage is the sign-in mail: from the desk (H1: no agent's own address), automatic,
// with the link alone in its text so that no mail client has to guess where it ends.
func signInMessage(supportName, support, name, email, msgID, link string, now time.Time) ([]byte, error) {
	var h mail.Header
	h.SetDate(now)
	h.SetAddressList("From", []*mail.Address{{Name: supportName, Address: support}})
	h.SetAddressList("To", []*mail.Address{{Name: name, Address: email}})
	h.SetSubject("Sign in to " + supportName)
	h.SetMessageID(msgID)
	h.Set("Auto-Submitted", "auto-generated")
	// deskgate recognises its own mail coming back (T5) by it, as for every copy it sends.
	h.Set("X-Loop", support)
	h.Set("MIME-Version", "1.0")
	h.SetContentType("text/plain", map[string]string{"charset": "utf-8"})
	h.Set("Content-Transfer-Encoding", "quoted-printable")
	var buf bytes.Buffer
	w, err := message.CreateWriter(&buf, h.Header)
	if err != nil {
		return nil, err
	}
	greeting := "Hello,"
	if name != "" {
		greeting = "Hello " + name + ","
	}
	fmt.Fprintf(w, "%s\n\nsomeone, probably you, asked to sign in to %s's help desk as %s.\n"+
		"Open this link within %d minutes and press the \"Sign in\" button:\n\n%s\n\n"+
		"The link works once. If you did not ask for it, ignore this mail: nobody is signed in\n"+
		"until that button is pressed.\n",
		greeting, supportName, email, int(store.SignInLifetime.Minutes()), link)
	if err := w.Close(); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}
