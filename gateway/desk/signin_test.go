package desk

import (
	"bytes"
	"context"
	"io"
	"net/mail"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/deskgate/deskgate/config"
	"github.com/deskgate/deskgate/gateway/model"
	"github.com/deskgate/deskgate/gateway/rules"
	"github.com/deskgate/deskgate/store"
)

// A sign-in mail is an ordinary delivery of the outbound queue, of no ticket: from the desk,
// to the agent, automatic, with the link; its token signs the agent in once.
func TestSignInQueuesALinkForAgentsOnly(t *testing.T) {
	s := testService(t, nil)
	ctx := context.Background()
	var token string
	link := func(tok string) string { token = tok; return "https://desk.example.com/login/" + tok }

	if sent, err := s.SignIn(ctx, "stranger@example.org", link); sent || err != nil || token != "" {
		t.Fatalf("a stranger got a link: %v %v %q", sent, err, token)
	}
	if sent, err := s.SignIn(ctx, "Alice@Example.com", link); !sent || err != nil {
		t.Fatalf("alice got no link: %v %v", sent, err)
	}

	var d *store.Delivery
	var raw []byte
	s.store.View(func(tx *store.Tx) error {
		ids := tx.QueuedDeliveries(10)
		if len(ids) != 1 {
			t.Fatalf("%d deliveries queued, want 1", len(ids))
		}
		d, _ = tx.Delivery(ids[0])
		raw = tx.DeliveryMessage(ids[0])
		return nil
	})
	if d.TicketID != 0 || d.Kind != model.KindSignIn || len(d.Recipients) != 1 || d.Recipients[0].Email != "alice@example.com" ||
		d.Recipients[0].Visible || !strings.HasPrefix(d.From, "support+bounce-") {
		t.Fatalf("delivery %+v", d)
	}
	m, err := mail.ReadMessage(bytes.NewReader(raw))
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(m.Body)
	for h, want := range map[string]string{
		"From": `"Example Support" <support@example.com>`, "To": `"Alice" <alice@example.com>`,
		"Subject": "Sign in to Example Support", "Auto-Submitted": "auto-generated",
	} {
		if got := m.Header.Get(h); got != want {
			t.Errorf("%s: %q, want %q", h, got, want)
		}
	}
	if m.Header.Get("Message-ID") != "<"+d.MessageID+">" {
		t.Errorf("Message-ID %q, delivery's %q", m.Header.Get("Message-ID"), d.MessageID)
	}
	if flat := strings.ReplaceAll(string(body), "=\r\n", ""); !strings.Contains(flat, "https://desk.example.com/login/"+token) {
		t.Errorf("the body lacks the link:\n%s", body)
	}

	var who string
	err = s.store.Update(ctx, func(tx *store.Tx) error {
		who, err = tx.ConsumeSignIn(token, time.Now())
		return err
	})
	if err != nil || who != "alice@example.com" {
		t.Fatalf("the token signs in %q (%v)", who, err)
	}
}

// Every failure path of a delivery works on one of no ticket: a permanent failure, a retry,
// a drop. None of them looks for ticket 0.
func TestSignInDeliveryFailsWithoutATicket(t *testing.T) {
	s := testService(t, nil)
	ctx := context.Background()
	if _, err := s.SignIn(ctx, "alice@example.com", func(tok string) string { return "https://x/login/" + tok }); err != nil {
		t.Fatal(err)
	}
	var id uint64
	s.store.View(func(tx *store.Tx) error { id = tx.QueuedDeliveries(1)[0]; return nil })

	// As the relay records a 5xx.
	err := s.store.Update(ctx, func(tx *store.Tx) error {
		d, err := tx.Delivery(id)
		if err != nil {
			return err
		}
		settled := rules.Settle(d.ID, d.SourceID, d.Recipients, map[string]rules.Outcome{"alice@example.com": {State: model.DeliveryFailed, Reply: "550 no"}}, time.Now())
		if len(settled.Failures) != 0 {
			t.Errorf("a sign-in failure is flagged on a ticket: %+v", settled.Failures)
		}
		if err := tx.Settle(d, settled.Recipients, settled.State, settled.Failures); err != nil {
			return err
		}
		return tx.PutDelivery(d)
	})
	if err != nil {
		t.Fatalf("recording the failure: %v", err)
	}
	if n, err := s.RetryDelivery(ctx, "all"); err != nil {
		t.Fatalf("retry all: %d %v", n, err)
	}
	if n, err := s.RetryDelivery(ctx, strconv.FormatUint(id, 10)); err != nil || n != 1 {
		t.Fatalf("retry %d: %d %v", id, n, err)
	}
	if err := s.DropDelivery(ctx, id); err != nil {
		t.Fatalf("drop: %v", err)
	}
	s.store.View(func(tx *store.Tx) error {
		d, _ := tx.Delivery(id)
		if d.State != model.DeliveryDropped {
			t.Errorf("state %s, want dropped", d.State)
		}
		return nil
	})
}

// Erasing someone who was an agent ends her web sessions and spends her sign-in links.
func TestEraseEndsWebSessions(t *testing.T) {
	s := testService(t, func(c *config.Config) {
		c.Agents = append(c.Agents, config.Agent{Email: "former@example.com", Name: "Former", Role: config.RoleAgent})
	})
	ctx := context.Background()
	var token string
	if _, err := s.SignIn(ctx, "former@example.com", func(tok string) string { token = tok; return tok }); err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	s.store.Update(ctx, func(tx *store.Tx) error {
		return tx.PutWebSession("session-1", store.WebSession{Email: "former@example.com", Created: now, Expires: now.Add(time.Hour)})
	})
	cfg := *s.Config()
	cfg.Agents = cfg.Agents[:1]
	s.SetConfig(&cfg)

	e, err := s.Erase(ctx, "former@example.com", false)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(strings.Join(e.Actions, "\n"), "2 sessions and sign-in links ended") {
		t.Errorf("actions: %q", e.Actions)
	}
	s.store.Update(ctx, func(tx *store.Tx) error {
		if _, err := tx.WebSession("session-1", now); err == nil {
			t.Error("the session outlived the erasure")
		}
		if _, err := tx.ConsumeSignIn(token, now); err == nil {
			t.Error("the sign-in link outlived the erasure")
		}
		return nil
	})
}
