package desk_test

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"math/rand"
	"mime"
	"mime/quotedprintable"
	"net/http"
	"net/http/httptest"
	"net/mail"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/deskgate/deskgate/config"
	"github.com/deskgate/deskgate/gateway/addr"
	"github.com/deskgate/deskgate/gateway/desk"
	"github.com/deskgate/deskgate/gateway/model"
	"github.com/deskgate/deskgate/gateway/relay"
	"github.com/deskgate/deskgate/gateway/rules"
	"github.com/deskgate/deskgate/gateway/web"
	"github.com/deskgate/deskgate/internal/mailtest"
	"github.com/deskgate/deskgate/internal/storetest"
	"github.com/deskgate/deskgate/store"
)

// Some participants have internationalised addresses (canonical: NFC, U-label domains): one
// with a non-ASCII local part, which only SMTPUTF8 carries, and one with only an IDN domain,
// which a downgrade writes in A-labels. Their addresses must not leak in either form.
var (
	endUsers   = []string{"jane@customer.test", "jöe@bücher.test", "kim@customer.test", "zoë@例え.テスト", "lee@customer.test", "vendor@else.test", "bot@noreply.test"}
	agentsFull = []string{"alice@example.com", "dana@example.com", "carol@example.com", "björn@example.com"}
	agentsLite = []string{"bob@example.com", "erin@example.com", "hana@例え.テスト"}
	// endUserNames are the display names end users' mail clients give them.
	endUserNames = map[string]string{"jöe@bücher.test": "Jöe Müller", "zoë@例え.テスト": "Zoë"}
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
	svc    *desk.Service
	worker *relay.Worker
	outbox string
	seen   map[string]bool
	sent   []string // Message-IDs deskgate sent, for replies to old notifications
	// internal holds the body tokens of comments that are internal now.
	internal map[string]bool
	tokenOf  map[uint64]string
	checked  struct{ files, endUserFiles, downgraded, links, pages int }
	step     int
	// site is the web pages of the desk, in process: the status views are checked after
	// every step as the copies are (H4 on pages, S1).
	site http.Handler
	// links are the status view paths the delivered copies carried, each to its owner.
	links map[string]string
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
		Authentication: config.Authentication{AgentIdentity: "none", DNSResolver: "127.0.0.1:1"},
		Upstream:       config.Upstream{Address: "maildir:" + filepath.Join(dir, "outbox")},
		Listen:         config.Listen{Web: "127.0.0.1:0"},
		Web: config.Web{PublicURL: publicURL, SessionLifetime: time.Hour,
			StatusView: pick(config.StatusViewRequester, config.StatusViewRequesterAndCCs, config.StatusViewOff)},
	}
}

const publicURL = "https://desk.example.com"

func newWorld(t *testing.T, seed int64) *world {
	dir := t.TempDir()
	rng := rand.New(rand.NewSource(seed))
	cfg := randomConfig(rng, dir)
	st := storetest.Open(t, dir)
	logger := slog.New(slog.NewTextHandler(io.Discard, nil))
	svc := desk.New(cfg, st, logger)
	return &world{t: t, rng: rng, svc: svc, worker: relay.New(cfg, st, logger, nil), outbox: filepath.Join(dir, "outbox", "new"),
		seen: map[string]bool{}, internal: map[string]bool{}, tokenOf: map[uint64]string{},
		site: web.New(svc.Config, svc, logger).Handler(), links: map[string]string{}}
}

func (w *world) pickFrom(list []string) string { return list[w.rng.Intn(len(list))] }

func (w *world) anyone() string {
	if w.rng.Intn(2) == 0 {
		return w.pickFrom(endUsers)
	}
	return w.pickFrom(allAgents())
}

func (w *world) ticket() *model.Ticket {
	var t *model.Ticket
	w.svc.Store().View(func(tx *store.Tx) error {
		t, _ = tx.Ticket(1)
		if t != nil {
			tx.Items(t)
		}
		return nil
	})
	return t
}

// randomRecipients mixes real addresses, deskgate's own, and masked ones (valid or not).
func (w *world) randomRecipients(t *model.Ticket) []string {
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
	} else if name := endUserNames[from]; name != "" {
		fmt.Fprintf(&b, "From: %q <%s>\r\n", name, from)
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
	res, err := w.svc.Receive(context.Background(), desk.Envelope{From: from, Recipients: env}, []byte(b.String()))
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
	w.svc.Store().View(func(tx *store.Tx) error {
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
		who := w.anyone()
		a = rules.Action{Kind: model.OpAddCC, Person: model.Person{Email: who, Name: endUserNames[who]}}
	case 1:
		if len(t.CCs) == 0 {
			return
		}
		a = rules.Action{Kind: model.OpRemoveCC, Person: t.CCs[w.rng.Intn(len(t.CCs))]}
	case 2:
		a = rules.Action{Kind: model.OpAddFollower, Person: model.Person{Email: w.anyone()}}
	case 3:
		if len(t.Followers) == 0 {
			return
		}
		a = rules.Action{Kind: model.OpRemoveFollower, Person: t.Followers[w.rng.Intn(len(t.Followers))]}
	case 4, 5:
		body = w.token()
		a = rules.Action{Kind: model.OpComment, Actor: w.pickFrom(allAgents()), Public: w.rng.Intn(2) == 0}
	case 6:
		if len(t.CommentIDs) == 0 {
			return
		}
		a = rules.Action{Kind: model.OpMakePrivate, CommentID: t.CommentIDs[w.rng.Intn(len(t.CommentIDs))]}
	case 7:
		if w.rng.Intn(2) == 0 {
			a = rules.Action{Kind: model.OpAssign, Person: model.Person{Email: w.pickFrom(allAgents())}}
		} else {
			a = rules.Action{Kind: model.OpStatus, Status: model.Status(w.pickFrom([]string{"pending", "solved", "open"}))}
		}
	}
	id, err := w.svc.Act(context.Background(), t.ID, []rules.Action{a}, body)
	if _, refused := err.(*rules.Refusal); err != nil && !refused {
		w.t.Fatalf("step %d: %s failed: %v", w.step, a.Kind, err)
	}
	if err != nil {
		return
	}
	if a.Kind == model.OpComment {
		w.track(id, body)
	}
	if a.Kind == model.OpMakePrivate {
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
		// The same copy as an upstream without SMTPUTF8 gets it: nothing of an agent's may
		// be in it either, in A-labels or in encoded words.
		down := relay.Downgrade7Bit(raw)
		downHead := string(down[:bytes.Index(down, []byte("\r\n\r\n"))])
		if !addr.IsASCII(downHead) {
			w.t.Fatalf("step %d: the downgraded copy delivered to %s is not seven-bit:\n%s", w.step, rcpt, downHead)
		}
		if !addr.IsASCII(head) {
			w.checked.downgraded++
		}
		decodedHead, err := (&mime.WordDecoder{}).DecodeHeader(downHead)
		if err != nil {
			w.t.Fatalf("step %d: the downgraded copy delivered to %s has encoded words that do not decode: %v\n%s", w.step, rcpt, err, downHead)
		}
		forms := []string{head, strings.ToLower(downHead), strings.ToLower(decodedHead)}
		// H4 and H1: nothing of an agent's own (followers are agents) in any header of a
		// message delivered to anybody else: not her address, not the machine her mail
		// client names in its Message-IDs, not the display name it gives her.
		for _, a := range allAgents() {
			if a == rcpt {
				continue
			}
			ascii, _ := addr.ASCIIForm(a)
			for _, h := range forms {
				if mailtest.HasAddress(h, a) || (ascii != "" && mailtest.HasAddress(h, ascii)) {
					w.t.Fatalf("step %d: %s's address is in a header of the copy delivered to %s:\n%s", w.step, a, rcpt, h)
				}
				if strings.Contains(h, laptopOf(a)) {
					w.t.Fatalf("step %d: a Message-ID of %s's own mail is in a header of the copy delivered to %s:\n%s", w.step, a, rcpt, h)
				}
				if strings.Contains(h, strings.ToLower(privateName(a))) {
					w.t.Fatalf("step %d: the display name of %s's own mail client is in a header of the copy delivered to %s:\n%s", w.step, a, rcpt, h)
				}
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
			if linkPattern.Match(decoded(raw)) {
				w.t.Fatalf("step %d: the agents' copy delivered to %s carries a status view link", w.step, rcpt)
			}
			continue
		}
		w.checked.endUserFiles++
		w.checkLinks(raw, rcpt)
		// N2, X1, T5, V5: no internal text reaches an end user.
		for tok := range w.internal {
			if bytes.Contains(raw, []byte(tok)) {
				w.t.Fatalf("step %d: internal comment %s reached end user %s", w.step, tok, rcpt)
			}
		}
	}
}

// decoded is a delivered message with its quoted-printable undone, where a long link was
// folded.
func decoded(raw []byte) []byte {
	out, _ := io.ReadAll(quotedprintable.NewReader(bytes.NewReader(raw)))
	return out
}

var linkPattern = regexp.MustCompile(regexp.QuoteMeta(publicURL) + `(/requests/([0-9]+)-([a-z2-7]+))`)

// ticketTag finds the ticket a copy tells of in its Subject.
var ticketTag = regexp.MustCompile(`\[#([0-9]+)-`)

// checkLinks checks the status view links of a copy delivered to rcpt (S1): at most one, and
// rcpt's own, which no other address on the desk could open.
func (w *world) checkLinks(raw []byte, rcpt string) {
	links := linkPattern.FindAllSubmatch(decoded(raw), -1)
	if len(links) > 1 {
		w.t.Fatalf("step %d: the copy delivered to %s carries %d status view links", w.step, rcpt, len(links))
	}
	if len(links) == 0 {
		// Every copy to a ticket's requester carries her link while she has a view.
		var t *model.Ticket
		if m := ticketTag.FindSubmatch(raw); m != nil {
			id, _ := strconv.ParseUint(string(m[1]), 10, 64)
			w.svc.Store().View(func(tx *store.Tx) error { t, _ = tx.Ticket(id); return nil })
		}
		if t == nil {
			w.t.Fatalf("step %d: the copy delivered to %s names no ticket", w.step, rcpt)
		}
		if rules.SameAddress(t.Requester.Email, rcpt) && w.svc.Config().Web.StatusView != config.StatusViewOff {
			w.t.Fatalf("step %d: a copy delivered to the requester %s carries no status view link", w.step, rcpt)
		}
		return
	}
	id, _ := strconv.ParseUint(string(links[0][2]), 10, 64)
	token := string(links[0][3])
	book := w.svc.Book()
	if !book.ValidStatusToken(id, rcpt, token) {
		w.t.Fatalf("step %d: the copy delivered to %s carries a link that is not theirs: %s", w.step, rcpt, links[0][1])
	}
	for _, other := range append(append([]string(nil), endUsers...), allAgents()...) {
		if other != rcpt && book.ValidStatusToken(id, other, token) {
			w.t.Fatalf("step %d: the link in the copy delivered to %s opens %s's view", w.step, rcpt, other)
		}
	}
	w.links[string(links[0][1])] = rcpt
	w.checked.links++
}

// checkPages opens every status view link delivered so far, and the requester's and each
// CC's own even if no copy carried it yet: a link opens its page exactly while the rules
// give its owner a view (S1), and no page shows what H4, V5 and N2 keep from end users.
func (w *world) checkPages() {
	t := w.ticket()
	if t == nil {
		return
	}
	env := w.svc.Env()
	book := w.svc.Book()
	owners := map[string]string{}
	for p, who := range w.links {
		owners[p] = who
	}
	owners[book.StatusPath(t.ID, t.Requester.Email)] = t.Requester.Email
	for _, cc := range t.CCs {
		owners[book.StatusPath(t.ID, cc.Email)] = cc.Email
	}
	for p, who := range owners {
		// A mail may have opened another ticket: each link is checked against its own.
		id, _ := strconv.ParseUint(linkPattern.FindStringSubmatch(publicURL + p)[2], 10, 64)
		var t *model.Ticket
		var public []string
		w.svc.Store().View(func(tx *store.Tx) error {
			var err error
			if t, err = tx.Ticket(id); err != nil {
				return err
			}
			tx.Items(t)
			for _, id := range t.CommentIDs {
				if c, err := tx.Comment(id); err == nil && c.Public && w.tokenOf[id] != "" {
					public = append(public, w.tokenOf[id])
				}
			}
			return nil
		})
		rec := httptest.NewRecorder()
		w.site.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, p, nil))
		as, viewer := rules.StatusViewer(t, who, env)
		if !viewer {
			if rec.Code != http.StatusNotFound {
				w.t.Fatalf("step %d: %s has no status view, yet the link answers %d", w.step, who, rec.Code)
			}
			continue
		}
		if rec.Code != http.StatusOK {
			w.t.Fatalf("step %d: %s's status view answers %d", w.step, who, rec.Code)
		}
		w.checked.pages++
		page := rec.Body.String()
		lower := strings.ToLower(page)
		for _, a := range allAgents() {
			if mailtest.HasAddress(lower, a) {
				w.t.Fatalf("step %d: %s's address is on %s's status view:\n%s", w.step, a, who, page)
			}
			if strings.Contains(lower, laptopOf(a)) || strings.Contains(lower, strings.ToLower(privateName(a))) {
				w.t.Fatalf("step %d: the mail client's name or host of %s is on %s's status view:\n%s", w.step, a, who, page)
			}
		}
		if strings.Contains(lower, "support+") {
			w.t.Fatalf("step %d: a masked or reply address is on %s's status view:\n%s", w.step, who, page)
		}
		for tok := range w.internal {
			if strings.Contains(page, tok) {
				w.t.Fatalf("step %d: internal comment %s is on %s's status view", w.step, tok, who)
			}
		}
		for _, tok := range public {
			if !strings.Contains(page, tok) {
				w.t.Fatalf("step %d: public comment %s is missing from %s's status view:\n%s", w.step, tok, who, page)
			}
		}
		if !rules.ViewShowsAttachments(as, env) && strings.Contains(page, "/files/") {
			w.t.Fatalf("step %d: %s's status view offers files under policy.cc_attachments false", w.step, who)
		}
	}
}

// webAction is a reply or a solve from a status view, by the requester, a CC, or someone the
// view does not admit (who must be refused).
func (w *world) webAction() {
	t := w.ticket()
	who := w.anyone()
	switch n := w.rng.Intn(3); {
	case n == 0:
		who = t.Requester.Email
	case n == 1 && len(t.CCs) > 0:
		who = t.CCs[w.rng.Intn(len(t.CCs))].Email
	}
	as, viewer := rules.StatusViewer(t, who, w.svc.Env())
	if w.rng.Intn(4) == 0 {
		_, err := w.svc.WebSolve(context.Background(), t.ID, who)
		if _, refused := err.(*rules.Refusal); (err != nil && !refused) || (err == nil) != (as == model.AsRequester) {
			w.t.Fatalf("step %d: %s's solve from the view (%q): %v", w.step, who, as, err)
		}
		return
	}
	tok := w.token()
	id, err := w.svc.WebReply(context.Background(), t.ID, who, tok)
	if _, refused := err.(*rules.Refusal); (err != nil && !refused) || viewer != (err == nil) {
		w.t.Fatalf("step %d: %s (a viewer: %v) replied from the view: %v", w.step, who, viewer, err)
	}
	w.track(id, tok)
}

// TestH4_LeakProperty runs bounded random histories under random policies and checks,
// after every step, every message deskgate delivered.
func TestH4_LeakProperty(t *testing.T) {
	histories, steps := 80, 40
	if testing.Short() {
		histories = 10
	}
	var files, endUserFiles, downgraded, links, pages int
	for seed := int64(1); seed <= int64(histories); seed++ {
		w := newWorld(t, seed)
		w.sendMail(true)
		w.check()
		w.checkPages()
		for w.step = 1; w.step <= steps; w.step++ {
			switch w.rng.Intn(5) {
			case 0, 1:
				w.sendMail(false)
			case 2, 3:
				w.expertAction()
			default:
				w.webAction()
			}
			w.check()
			w.checkPages()
		}
		files += w.checked.files
		links += w.checked.links
		pages += w.checked.pages
		endUserFiles += w.checked.endUserFiles
		downgraded += w.checked.downgraded
	}
	if files < histories*5 || endUserFiles < histories || downgraded < histories || links < histories || pages < histories*steps/4 {
		t.Fatalf("the property was checked on too little: %d messages, %d to end users, %d with UTF-8 headers downgraded, %d links, %d pages",
			files, endUserFiles, downgraded, links, pages)
	}
	t.Logf("%d histories × %d steps: %d delivered messages checked, %d of them to end users, %d with UTF-8 headers also checked downgraded, %d status view links; %d status view pages checked",
		histories, steps, files, endUserFiles, downgraded, links, pages)
}

// privateName is the display name an agent's own mail client gives her, which is not her
// configured name.
func privateName(email string) string { return nameOf(email) + " Homeoffice-Secret" }

// laptopOf is the host an agent's own mail client names in its Message-IDs.
func laptopOf(email string) string {
	return strings.Split(email, "@")[0] + "-laptop.private.test"
}

// nameOf makes "Alice" of alice@example.com and "Björn" of björn@example.com.
func nameOf(email string) string {
	local := []rune(strings.Split(email, "@")[0])
	return strings.ToUpper(string(local[:1])) + string(local[1:])
}
