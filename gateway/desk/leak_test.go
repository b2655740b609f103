package desk

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"math/rand"
	"net/mail"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	"github.com/deskgate/deskgate/config"
	"github.com/deskgate/deskgate/gateway/model"
	"github.com/deskgate/deskgate/gateway/relay"
	"github.com/deskgate/deskgate/gateway/rules"
	"github.com/deskgate/deskgate/internal/mailtest"
	"github.com/deskgate/deskgate/internal/storetest"
	"github.com/deskgate/deskgate/store"
)

var (
	endUsers   = []string{"jane@customer.test", "joe@customer.test", "kim@customer.test", "lee@customer.test", "vendor@else.test", "bot@noreply.test"}
	agentsFull = []string{"alice@example.com", "dana@example.com", "carol@example.com"}
	agentsLite = []string{"bob@example.com", "erin@example.com"}
)

func allAgents() []string { return append(append([]string(nil), agentsFull...), agentsLite...) }

func isAgent(email string) bool {
	for _, a := range allAgents() {
		if strings.EqualFold(a, email) {
			return true
		}
	}
	return false
}

// world is one random ticket history under one random policy.
type world struct {
	t      *testing.T
	rng    *rand.Rand
	svc    *Service
	worker *relay.Worker
	outbox string
	seen   map[string]bool
	sent   []string // Message-IDs deskgate sent, for replies to old notifications
	// internal holds the body tokens of comments that are internal now.
	internal map[string]bool
	tokenOf  map[uint64]string
	checked  struct{ files, endUserFiles int }
	step     int
}

func randomConfig(rng *rand.Rand, dir string) *config.Config {
	pick := func(opts ...string) string { return opts[rng.Intn(len(opts))] }
	var agents []config.Agent
	for _, a := range agentsFull {
		agents = append(agents, config.Agent{Email: a, Name: nameOf(a), Role: config.RoleAgent})
	}
	for _, a := range agentsLite {
		agents = append(agents, config.Agent{Email: a, Name: nameOf(a), Role: config.RoleLightAgent})
	}
	return &config.Config{
		Hostname: "mx.test", DataDir: dir,
		Support: config.Support{Name: "Example Support", Addresses: []string{"support@example.com"}},
		Limits:  config.Limits{MaxCCs: 1 + rng.Intn(5), MaxMailsPerSenderHour: 0},
		Agents:  agents,
		Policy: config.Policy{CCsEnabled: rng.Intn(4) > 0, FollowersEnabled: rng.Intn(4) > 0, AgentCCBecomesFollower: rng.Intn(2) == 0,
			CCBlocklist: []string{"*@noreply.test"}, CCRemoval: pick("email", "expert_only"), ReplyAudience: pick("notification", "ticket"),
			CCAttachments: rng.Intn(2) == 0},
		Notifications: config.Notifications{TicketCreated: pick("requester", "requester_and_ccs", "none"),
			Assigned: pick("requester", "requester_and_ccs", "none"), Solved: pick("requester", "requester_and_ccs", "none")},
		Authentication: config.Authentication{AgentIdentity: "none", DNSResolver: closedDNS},
		Upstream:       config.Upstream{Address: "maildir:" + filepath.Join(dir, "outbox")},
	}
}

func newWorld(t *testing.T, seed int64) *world {
	dir := t.TempDir()
	rng := rand.New(rand.NewSource(seed))
	cfg := randomConfig(rng, dir)
	st := storetest.Open(t, dir)
	logger := slog.New(slog.NewTextHandler(io.Discard, nil))
	svc := New(cfg, st, logger)
	return &world{t: t, rng: rng, svc: svc, worker: relay.New(cfg, st, logger, nil), outbox: filepath.Join(dir, "outbox", "new"),
		seen: map[string]bool{}, internal: map[string]bool{}, tokenOf: map[uint64]string{}}
}

func (w *world) pickFrom(list []string) string { return list[w.rng.Intn(len(list))] }

func (w *world) anyone() string {
	if w.rng.Intn(2) == 0 {
		return w.pickFrom(endUsers)
	}
	return w.pickFrom(allAgents())
}

func (w *world) ticket() *store.Ticket {
	var t *store.Ticket
	w.svc.store.View(func(tx *store.Tx) error {
		t, _ = tx.Ticket(1)
		if t != nil {
			tx.Items(t)
		}
		return nil
	})
	return t
}

// randomRecipients mixes real addresses, deskgate's own, and masked ones (valid or not).
func (w *world) randomRecipients(t *store.Ticket) []string {
	var out []string
	for i := w.rng.Intn(4); i > 0; i-- {
		switch w.rng.Intn(4) {
		case 0:
			out = append(out, w.anyone())
		case 1:
			out = append(out, "support@example.com")
		case 2:
			if t != nil {
				out = append(out, w.svc.Book().ReplyAddress("support@example.com", t.ID))
			}
		case 3:
			if t != nil {
				out = append(out, w.svc.Book().MaskedAddress("support@example.com", t.ID, 1+w.rng.Intn(t.NextMask+2)))
			}
		}
	}
	return out
}

func (w *world) token() string { return fmt.Sprintf("BODY-%d-%d-END", w.step, w.rng.Intn(1e6)) }

func (w *world) sendMail(first bool) {
	t := w.ticket()
	from := w.anyone()
	if first {
		from = w.pickFrom(endUsers[:4])
	}
	to := w.randomRecipients(t)
	cc := w.randomRecipients(t)
	env := []string{"support@example.com"}
	if t != nil && w.rng.Intn(3) > 0 {
		env = []string{w.svc.Book().ReplyAddress("support@example.com", t.ID)}
	}
	tok := w.token()
	var b strings.Builder
	// An agent's own mail client names her machine in its Message-ID and may give her a
	// display name of its own: neither may reach anybody else (H4, H1).
	msgID := fmt.Sprintf("m%d.%d@sender.test", w.step, w.rng.Int63())
	if isAgent(from) {
		fmt.Fprintf(&b, "From: %q <%s>\r\n", privateName(from), from)
		msgID = fmt.Sprintf("%d.secret@%s", w.rng.Int63(), laptopOf(from))
	} else {
		fmt.Fprintf(&b, "From: %s\r\n", from)
	}
	if len(to) > 0 {
		fmt.Fprintf(&b, "To: %s\r\n", strings.Join(to, ", "))
	} else {
		b.WriteString("To: support@example.com\r\n")
	}
	if len(cc) > 0 {
		fmt.Fprintf(&b, "Cc: %s\r\n", strings.Join(cc, ", "))
	}
	fmt.Fprintf(&b, "Subject: step %d\r\nMessage-ID: <%s>\r\n", w.step, msgID)
	if len(w.sent) > 0 && w.rng.Intn(2) == 0 {
		fmt.Fprintf(&b, "In-Reply-To: <%s>\r\n", w.sent[w.rng.Intn(len(w.sent))])
	}
	if w.rng.Intn(8) == 0 {
		fmt.Fprintf(&b, "Reply-To: %s\r\n", w.anyone())
	}
	if w.rng.Intn(8) == 0 {
		b.WriteString("Auto-Submitted: auto-replied\r\n")
	}
	if w.rng.Intn(5) == 0 {
		b.WriteString("MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=XX\r\n\r\n--XX\r\nContent-Type: text/plain\r\n\r\n" + tok +
			"\r\n--XX\r\nContent-Type: application/pdf; name=f.pdf\r\nContent-Disposition: attachment; filename=f.pdf\r\n\r\nPDFDATA\r\n--XX--\r\n")
	} else {
		b.WriteString("\r\n" + tok + "\r\n")
	}
	res, err := w.svc.Receive(context.Background(), Envelope{From: from, Recipients: env}, []byte(b.String()))
	if err != nil {
		w.t.Fatalf("step %d: mail refused: %v", w.step, err)
	}
	w.track(res.CommentID, tok)
}

func (w *world) track(id uint64, tok string) {
	if id == 0 {
		return
	}
	w.tokenOf[id] = tok
	w.svc.store.View(func(tx *store.Tx) error {
		if c, err := tx.Comment(id); err == nil && !c.Public {
			w.internal[tok] = true
		}
		return nil
	})
}

func (w *world) expertAction() {
	t := w.ticket()
	var a rules.Action
	body := ""
	switch w.rng.Intn(8) {
	case 0:
		a = rules.Action{Kind: rules.ActAddCC, Person: store.Person{Email: w.anyone()}}
	case 1:
		if len(t.CCs) == 0 {
			return
		}
		a = rules.Action{Kind: rules.ActRemoveCC, Person: t.CCs[w.rng.Intn(len(t.CCs))]}
	case 2:
		a = rules.Action{Kind: rules.ActAddFollower, Person: store.Person{Email: w.anyone()}}
	case 3:
		if len(t.Followers) == 0 {
			return
		}
		a = rules.Action{Kind: rules.ActRemoveFollower, Person: t.Followers[w.rng.Intn(len(t.Followers))]}
	case 4, 5:
		body = w.token()
		a = rules.Action{Kind: rules.ActComment, Actor: w.pickFrom(allAgents()), Public: w.rng.Intn(2) == 0}
	case 6:
		if len(t.CommentIDs) == 0 {
			return
		}
		a = rules.Action{Kind: rules.ActMakePrivate, CommentID: t.CommentIDs[w.rng.Intn(len(t.CommentIDs))]}
	case 7:
		if w.rng.Intn(2) == 0 {
			a = rules.Action{Kind: rules.ActAssign, Person: store.Person{Email: w.pickFrom(allAgents())}}
		} else {
			a = rules.Action{Kind: rules.ActStatus, Status: model.Status(w.pickFrom([]string{"pending", "solved", "open"}))}
		}
	}
	id, err := w.svc.Act(context.Background(), t.ID, []rules.Action{a}, body)
	if _, refused := err.(*rules.Refusal); err != nil && !refused {
		w.t.Fatalf("step %d: %s failed: %v", w.step, a.Kind, err)
	}
	if err != nil {
		return
	}
	if a.Kind == rules.ActComment {
		w.track(id, body)
	}
	if a.Kind == rules.ActMakePrivate {
		if tok, ok := w.tokenOf[a.CommentID]; ok {
			w.internal[tok] = true
		}
	}
}

// check delivers what is queued and checks every new file against the properties.
func (w *world) check() {
	w.worker.RunOnce(context.Background())
	entries, _ := os.ReadDir(w.outbox)
	sort.Slice(entries, func(i, j int) bool { return entries[i].Name() < entries[j].Name() })
	for _, e := range entries {
		if w.seen[e.Name()] {
			continue
		}
		w.seen[e.Name()] = true
		raw, err := os.ReadFile(filepath.Join(w.outbox, e.Name()))
		if err != nil {
			w.t.Fatal(err)
		}
		m, err := mail.ReadMessage(bytes.NewReader(raw))
		if err != nil {
			w.t.Fatalf("step %d: unparseable message %s: %v", w.step, e.Name(), err)
		}
		rcpt := strings.ToLower(m.Header.Get("Delivered-To"))
		w.sent = append(w.sent, strings.Trim(m.Header.Get("Message-Id"), "<>"))
		head := strings.ToLower(string(raw[:bytes.Index(raw, []byte("\r\n\r\n"))]))
		w.checked.files++
		// H4 and H1: nothing of an agent's own (followers are agents) in any header of a
		// message delivered to anybody else: not her address, not the machine her mail
		// client names in its Message-IDs, not the display name it gives her.
		for _, a := range allAgents() {
			if a == rcpt {
				continue
			}
			if mailtest.HasAddress(head, a) {
				w.t.Fatalf("step %d: %s's address is in a header of the copy delivered to %s:\n%s", w.step, a, rcpt, head)
			}
			if strings.Contains(head, laptopOf(a)) {
				w.t.Fatalf("step %d: a Message-ID of %s's own mail is in a header of the copy delivered to %s:\n%s", w.step, a, rcpt, head)
			}
			if strings.Contains(head, strings.ToLower(privateName(a))) {
				w.t.Fatalf("step %d: the display name of %s's own mail client is in a header of the copy delivered to %s:\n%s", w.step, a, rcpt, head)
			}
		}
		if isAgent(rcpt) {
			// H3: an agent's copy names end users by masked addresses only, so that her
			// Reply-all reaches deskgate and never a customer straight from her own address.
			for _, field := range []string{"From", "To", "Cc", "Reply-To"} {
				list, _ := m.Header.AddressList(field)
				for _, a := range list {
					if !strings.HasSuffix(strings.ToLower(a.Address), "@example.com") {
						w.t.Fatalf("step %d: %s's real address is in %s of the agents' copy delivered to %s:\n%s", w.step, a.Address, field, rcpt, head)
					}
				}
			}
			continue
		}
		w.checked.endUserFiles++
		// N2, X1, T5, V5: no internal text reaches an end user.
		for tok := range w.internal {
			if bytes.Contains(raw, []byte(tok)) {
				w.t.Fatalf("step %d: internal comment %s reached end user %s", w.step, tok, rcpt)
			}
		}
	}
}

// TestH4_LeakProperty runs bounded random histories under random policies and checks,
// after every step, every message deskgate delivered.
func TestH4_LeakProperty(t *testing.T) {
	histories, steps := 80, 40
	if testing.Short() {
		histories = 10
	}
	var files, endUserFiles int
	for seed := int64(1); seed <= int64(histories); seed++ {
		w := newWorld(t, seed)
		w.sendMail(true)
		w.check()
		for w.step = 1; w.step <= steps; w.step++ {
			if w.rng.Intn(2) == 0 {
				w.sendMail(false)
			} else {
				w.expertAction()
			}
			w.check()
		}
		files += w.checked.files
		endUserFiles += w.checked.endUserFiles
	}
	if files < histories*5 || endUserFiles < histories {
		t.Fatalf("the property was checked on too little mail: %d messages, %d to end users", files, endUserFiles)
	}
	t.Logf("%d histories × %d steps: %d delivered messages checked, %d of them to end users", histories, steps, files, endUserFiles)
}

// privateName is the display name an agent's own mail client gives her, which is not her
// configured name.
func privateName(email string) string { return nameOf(email) + " Homeoffice-Secret" }

// laptopOf is the host an agent's own mail client names in its Message-IDs.
func laptopOf(email string) string {
	return strings.Split(email, "@")[0] + "-laptop.private.test"
}

// nameOf makes "Alice" of alice@example.com.
func nameOf(email string) string {
	local := strings.Split(email, "@")[0]
	return strings.ToUpper(local[:1]) + local[1:]
}
