package desk

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"path/filepath"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/deskgate/deskgate/config"
	"github.com/deskgate/deskgate/gateway/metrics"
	"github.com/deskgate/deskgate/gateway/rules"
	"github.com/deskgate/deskgate/internal/storetest"
	"github.com/deskgate/deskgate/store"
)

func testService(t *testing.T, mod func(*config.Config)) *Service {
	t.Helper()
	dir := t.TempDir()
	cfg := &config.Config{
		Hostname: "mx.test", DataDir: dir,
		Support: config.Support{Name: "Example Support", Addresses: []string{"support@example.com"}},
		Limits:  config.Limits{MaxCCs: 48},
		Agents:  []config.Agent{{Email: "alice@example.com", Name: "Alice", Role: "agent"}},
		Policy: config.Policy{CCsEnabled: true, FollowersEnabled: true, AgentCCBecomesFollower: true, CCRemoval: "email",
			ReplyAudience: "notification", CCAttachments: true},
		Notifications:  config.Notifications{TicketCreated: "requester", Assigned: "requester_and_ccs", Solved: "requester_and_ccs"},
		Authentication: config.Authentication{AgentIdentity: "none", DNSResolver: closedDNS},
		Upstream:       config.Upstream{Address: "maildir:" + filepath.Join(dir, "outbox")},
	}
	if mod != nil {
		mod(cfg)
	}
	st := storetest.Open(t, dir)
	return New(cfg, st, slog.New(slog.NewTextHandler(io.Discard, nil)))
}

func TestMain(m *testing.M) { storetest.Main(m) }

func msg(from, id string, extra ...string) []byte {
	return []byte(fmt.Sprintf("From: %s\r\nTo: support@example.com\r\nSubject: s\r\nMessage-ID: <%s>\r\n%s\r\nbody\r\n", from, id, strings.Join(extra, "")))
}

func counts(s *Service) (tickets, comments int) {
	s.store.View(func(tx *store.Tx) error {
		tickets, comments = tx.Counts()
		return nil
	})
	return
}

func TestT3_DuplicateStoredAndNotifiedOnce(t *testing.T) {
	s := testService(t, nil)
	for i := 0; i < 3; i++ {
		res, err := s.Receive(context.Background(), Envelope{From: "jane@customer.test", Recipients: []string{"support@example.com"}}, msg("jane@customer.test", "dup@x"))
		if err != nil || (i > 0 && !res.Duplicate) {
			t.Fatalf("delivery %d: %+v %v", i, res, err)
		}
	}
	_, comments := counts(s)
	var queued int
	s.store.View(func(tx *store.Tx) error {
		queued = len(tx.QueuedDeliveries(100))
		return nil
	})
	if comments != 1 || queued != 1 {
		t.Fatalf("%d comments and %d deliveries, want 1 and 1 (the acknowledgement)", comments, queued)
	}
}

func TestT5_OwnMailIsDropped(t *testing.T) {
	s := testService(t, nil)
	s.Receive(context.Background(), Envelope{From: "jane@customer.test", Recipients: []string{"support@example.com"}}, msg("jane@customer.test", "a@x"))
	var sentID string
	s.store.View(func(tx *store.Tx) error {
		d, _ := tx.Delivery(1)
		sentID = d.MessageID
		return nil
	})
	_, err := s.Receive(context.Background(), Envelope{From: "x@y", Recipients: []string{"support@example.com"}}, msg("Example Support <support@example.com>", "c@x"))
	var ref *rules.Refusal
	if !errors.As(err, &ref) || ref.Kind != rules.RefuseOwnAddress {
		t.Fatalf("mail From our own support address: %v, want 550", err)
	}
	res, err := s.Receive(context.Background(), Envelope{From: "robot@x", Recipients: []string{"support@example.com"}}, msg("robot@x", sentID))
	if err != nil || res.Outcome != "own mail dropped" {
		t.Fatalf("own Message-ID back: %+v %v", res, err)
	}
	res, err = s.Receive(context.Background(), Envelope{From: "robot@x", Recipients: []string{"support@example.com"}}, msg("robot@x", "b@x", "X-Loop: support@example.com\r\n"))
	if err != nil || res.Outcome != "own mail dropped" {
		t.Fatalf("own loop header: %+v %v", res, err)
	}
	if tickets, comments := counts(s); tickets != 1 || comments != 1 {
		t.Fatalf("own mail stored: %d tickets, %d comments", tickets, comments)
	}
}

func TestT5_SenderRateLimitIsTemporary(t *testing.T) {
	s := testService(t, func(c *config.Config) { c.Limits.MaxMailsPerSenderHour = 3 })
	var last error
	for i := 0; i < 4; i++ {
		_, last = s.Receive(context.Background(), Envelope{From: "robot@x", Recipients: []string{"support@example.com"}}, msg("robot@x", fmt.Sprintf("r%d@x", i)))
	}
	var ref *rules.Refusal
	if !errors.As(last, &ref) || ref.Kind != rules.RefuseTooMany || !ref.Kind.Temporary() {
		t.Fatalf("fourth mail in an hour: %v, want 451", last)
	}
	if _, err := s.Receive(context.Background(), Envelope{From: "jane@x", Recipients: []string{"support@example.com"}}, msg("jane@x", "j@x")); err != nil {
		t.Fatalf("another sender was limited too: %v", err)
	}
}

// Two nodes on one PostgreSQL database count a sender's mails together.
func TestT5_SenderRateLimitCountsAcrossNodes(t *testing.T) {
	nodes := twoNodes(t, func(c *config.Config) { c.Limits.MaxMailsPerSenderHour = 3 })
	var last error
	for i := 0; i < 4; i++ {
		_, last = nodes[i%2].Receive(context.Background(), Envelope{From: "robot@x", Recipients: []string{"support@example.com"}}, msg("robot@x", fmt.Sprintf("r%d@x", i)))
		if i < 3 && last != nil {
			t.Fatalf("mail %d: %v", i, last)
		}
	}
	var ref *rules.Refusal
	if !errors.As(last, &ref) || ref.Kind != rules.RefuseTooMany {
		t.Fatalf("the fourth mail in an hour, two through each node: %v, want 451", last)
	}
}

func TestT6_BounceNeverBecomesAComment(t *testing.T) {
	s := testService(t, nil)
	bounce := s.Book().BounceAddress("support@example.com", 1)
	res, err := s.Receive(context.Background(), Envelope{From: "", Recipients: []string{bounce}}, msg("MAILER-DAEMON@x", "dsn@x"))
	// Plain mail from a mailer daemon is no DSN: accepted, and it changes nothing.
	if err != nil || res.Outcome != outcomeBounceIgnored {
		t.Fatalf("bounce: %+v %v", res, err)
	}
	if tickets, comments := counts(s); tickets != 0 || comments != 0 {
		t.Fatalf("a bounce became %d tickets, %d comments", tickets, comments)
	}
}

// Mail to a bounce address and the support address at once is mail to the support
// address: it is counted as mail to a bounce address and changes no delivery.
func TestT6_BounceAddressBesideSupportIsCounted(t *testing.T) {
	s := testService(t, nil)
	other := metrics.BounceAddressMail.WithLabelValues("other")
	before := testutil.ToFloat64(other)
	bounce := s.Book().BounceAddress("support@example.com", 1)
	res, err := s.Receive(context.Background(), Envelope{From: "jane@customer.test", Recipients: []string{"support@example.com", bounce}},
		msg("jane@customer.test", "both@x", "Cc: "+bounce+"\r\n"))
	if err != nil || res.Outcome != "new ticket" {
		t.Fatalf("mail to both: %+v %v", res, err)
	}
	if got := testutil.ToFloat64(other) - before; got != 1 {
		t.Errorf("counted %v times as other mail to a bounce address, want 1", got)
	}
}

// closedDNS is a loopback port nothing listens on: lookups fail at once, and no test
// sends a packet past this machine.
const closedDNS = "127.0.0.1:1"
