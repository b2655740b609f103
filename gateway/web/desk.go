package web

// The desk, for agents: the ticket list and the request detail, and the actions the detail's
// forms post. Every action goes through desk.Service.Act with the signed-in agent as actor,
// as the admin API's do, so that rules decide and the trace names who acted.

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"mime"
	"net/http"
	"net/mail"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/deskgate/deskgate/config"
	"github.com/deskgate/deskgate/gateway/addr"
	"github.com/deskgate/deskgate/gateway/desk"
	"github.com/deskgate/deskgate/gateway/model"
	"github.com/deskgate/deskgate/gateway/rules"
	"github.com/deskgate/deskgate/store"
)

// listPage is how many tickets the list shows at once; mineScan bounds how many it reads to
// fill a page of "assigned to me" (the store has no index by assignee).
const (
	listPage = 50
	mineScan = 2000
)

// flashCookie carries the outcome of an action across its redirect to the next GET.
const flashCookie = "deskgate_flash"

func init() {
	addRoutes(func(s *Server, r *router) {
		r.handle("GET /tickets", s.requireAgent(s.ticketList))
		r.handle("GET /tickets/{id}", s.requireAgent(s.ticketDetail))
		r.handle("GET /tickets/{id}/comments/{cid}/explain", s.requireAgent(s.explainPage))
		r.handle("GET /tickets/{id}/comments/{cid}/raw", s.requireAgent(s.rawComment))
		r.handle("GET /tickets/{id}/comments/{cid}/files/{n}", s.requireAgent(s.attachment))
		r.handle("POST /tickets/{id}/ccs", s.requireAgent(s.personAct(model.OpAddCC, "email", "%s added as CC")))
		r.handle("POST /tickets/{id}/ccs/remove", s.requireAgent(s.personAct(model.OpRemoveCC, "email", "%s is no longer a CC")))
		r.handle("POST /tickets/{id}/followers", s.requireAgent(s.personAct(model.OpAddFollower, "email", "%s now follows this ticket")))
		r.handle("POST /tickets/{id}/followers/remove", s.requireAgent(s.personAct(model.OpRemoveFollower, "email", "%s no longer follows this ticket")))
		r.handle("POST /tickets/{id}/assign", s.requireAgent(s.personAct(model.OpAssign, "assignee", "Assigned to %s")))
		r.handle("POST /tickets/{id}/status", s.requireAgent(s.statusAct))
		r.handle("POST /tickets/{id}/comments", s.requireAgent(s.commentAct))
		r.handle("POST /tickets/{id}/comments/{cid}/private", s.requireAgent(s.visibilityAct(model.OpMakePrivate, "Comment %d is internal now")))
		r.handle("POST /tickets/{id}/comments/{cid}/public", s.requireAgent(s.visibilityAct(model.OpMakePublic, "Comment %d is public now")))
	})
}

// The list.

type listData struct {
	Status   string
	Mine     bool
	Filters  []filterLink
	MineLink filterLink
	Rows     []ticketRow
	Next     string // the next page's address, "" on the last
	Shown    int
}

type filterLink struct {
	Label   string
	URL     string
	Current bool
	// Count is how many tickets the filter holds, ready to show ("1,234"); "" when not known.
	Count string

	status model.Status
}

type ticketRow struct {
	ID        uint64
	URL       string
	Subject   string
	Status    string
	Requester string
	Assignee  string
	Updated   timeView
}

// timeView is a moment as pages show it: readable, and machine-readable in <time>.
type timeView struct {
	Text, ISO string
}

func when(t time.Time) timeView {
	t = t.UTC()
	return timeView{Text: t.Format("2 Jan 2006 15:04 UTC"), ISO: t.Format(time.RFC3339)}
}

func (s *Server) listURL(status string, mine bool, before uint64) string {
	q := url.Values{}
	if status != "" {
		q.Set("status", status)
	}
	if mine {
		q.Set("mine", "1")
	}
	if before != 0 {
		q.Set("before", strconv.FormatUint(before, 10))
	}
	u := s.path("/tickets")
	if len(q) > 0 {
		u += "?" + q.Encode()
	}
	return u
}

func (s *Server) ticketList(w http.ResponseWriter, r *http.Request, a Agent) {
	q := r.URL.Query()
	status := q.Get("status")
	if status != "" && !model.Status(status).Valid() {
		s.errorPage(w, r, http.StatusBadRequest, "There is no such status; pick one of the filters on the ticket list.")
		return
	}
	mine := q.Get("mine") == "1"
	var before uint64
	if v := q.Get("before"); v != "" {
		n, err := strconv.ParseUint(v, 10, 64)
		if err != nil || n == 0 {
			s.errorPage(w, r, http.StatusBadRequest, "")
			return
		}
		before = n
	}
	data := listData{Status: status, Mine: mine}
	for _, f := range []struct{ label, status string }{{"All", ""}, {"New", "new"}, {"Open", "open"}, {"Pending", "pending"}, {"Solved", "solved"}} {
		data.Filters = append(data.Filters, filterLink{Label: f.label, URL: s.listURL(f.status, mine, 0), Current: f.status == status, status: model.Status(f.status)})
	}
	if mine {
		data.MineLink = filterLink{Label: "Show everyone's tickets", URL: s.listURL(status, false, 0)}
	} else {
		data.MineLink = filterLink{Label: "Show only tickets assigned to me", URL: s.listURL(status, true, 0)}
	}
	cfg := s.cfg()
	err := s.st.View(func(tx *store.Tx) error {
		// The store keeps these counters as tickets change, so they cost a few reads at any
		// desk size. They count everyone's tickets: with "assigned to me" (which has no index)
		// they would not match what the filter shows, so they are left out.
		if !mine {
			c := tx.TicketCounts()
			for i := range data.Filters {
				n := c.Total
				if st := data.Filters[i].status; st != "" {
					n = c.ByStatus[st]
				}
				data.Filters[i].Count = thousands(n)
			}
		}
		cursor, scanned := before, 0
		for len(data.Rows) < listPage {
			batch := listPage
			if mine {
				batch = 200
			}
			list, err := tx.ListTickets(model.Status(status), batch, cursor)
			if err != nil {
				return err
			}
			for _, t := range list {
				cursor = t.ID
				scanned++
				if mine && !strings.EqualFold(t.Assignee, a.Email) {
					continue
				}
				data.Rows = append(data.Rows, s.row(cfg, t))
				if len(data.Rows) == listPage {
					break
				}
			}
			if len(list) < batch {
				cursor = 0 // the end: no next page
				break
			}
			if !mine || scanned >= mineScan {
				break
			}
		}
		if cursor > 1 {
			data.Next = s.listURL(status, mine, cursor)
		}
		return nil
	})
	if err != nil {
		s.log.Error("web: cannot list tickets", "err", err)
		s.errorPage(w, r, http.StatusInternalServerError, "")
		return
	}
	data.Shown = len(data.Rows)
	s.render(w, r, http.StatusOK, "tickets.html", "Tickets", data)
}

// thousands writes n with a comma between each group of three digits, as "1,000,000".
func thousands(n int) string {
	if n < 0 {
		return "-" + thousands(-n)
	}
	d := strconv.Itoa(n)
	var b strings.Builder
	for i, c := range d {
		if i > 0 && (len(d)-i)%3 == 0 {
			b.WriteByte(',')
		}
		b.WriteRune(c)
	}
	return b.String()
}

func (s *Server) row(cfg *config.Config, t model.Ticket) ticketRow {
	return ticketRow{ID: t.ID, URL: s.path(fmt.Sprintf("/tickets/%d", t.ID)), Subject: t.Subject, Status: string(t.Status),
		Requester: personText(t.Requester), Assignee: agentName(cfg, t.Assignee), Updated: when(t.UpdatedAt)}
}

// personText is how a page names a participant: "Name <address>", or the address.
func personText(p model.Person) string {
	if p.Name == "" {
		return p.Email
	}
	return p.Name + " <" + p.Email + ">"
}

// agentName is an agent by her configured name; anybody else by address.
func agentName(cfg *config.Config, email string) string {
	if email == "" {
		return ""
	}
	if a, ok := cfg.AgentByEmail(email); ok && a.Name != "" {
		return a.Name
	}
	return email
}

// The request detail.

type detailData struct {
	ID        uint64
	URL       string // the detail page's own path, the base of its forms
	Subject   string
	Status    string
	Requester personView
	Assignee  string
	CCs       []personView
	Followers []personView
	Items     []itemView
	Failures  []failureView
	Flash     flash
	Light     bool
	// StatusButtons are the status changes this ticket's status allows.
	StatusButtons []statusButton
	// Assignable are the agents the ticket may be assigned to (R1: not light agents);
	// Followable those who may follow it.
	Assignable []agentOption
	Followable []agentOption
}

type personView struct {
	Email string
	Name  string
	Text  string
}

type agentOption struct {
	Email, Label string
	Selected     bool
}

type statusButton struct {
	Status, Label string
}

type failureView struct {
	Who, As, Reply string
	At             timeView
	Delivery       uint64
	SourceID       uint64
}

// itemView is one entry of the conversation: a comment, or an event (an action that made no
// comment), told apart by Event.
type itemView struct {
	ID             uint64
	Event          bool
	Author         string
	ByAgent        bool
	Public         bool
	ThirdParty     bool
	AddAsCC        bool // a third party (X1) who is not a participant yet
	ReplyToDiffers bool
	Automatic      string
	Via            string
	Subject        string
	Body           string
	Action         string // an event's words
	When           timeView
	Attachments    []attachmentView
	Problems       []string
	Audience       []audienceView
	Explain        string
	Raw            string // "" when the comment did not come by mail
	Formatted      string // the sanitised view of the mail's HTML part; "" with Raw
	// AuthorEmail is the third party's address, for "add as CC".
	AuthorEmail string
}

type attachmentView struct {
	Name, Size, Problem, URL string
}

type audienceView struct {
	Who     string
	As      string
	Visible bool
	Status  string
	Reply   string
}

func (s *Server) ticketDetail(w http.ResponseWriter, r *http.Request, a Agent) {
	id, ok := s.ticketID(w, r)
	if !ok {
		return
	}
	data, err := s.loadDetail(id, a)
	if errors.Is(err, store.ErrNotFound) {
		s.errorPage(w, r, http.StatusNotFound, fmt.Sprintf("There is no ticket %d. It may have been deleted.", id))
		return
	}
	if err != nil {
		s.log.Error("web: cannot read a ticket", "ticket", id, "err", err)
		s.errorPage(w, r, http.StatusInternalServerError, "")
		return
	}
	data.Flash = s.takeFlash(w, r)
	s.render(w, r, http.StatusOK, "ticket.html", fmt.Sprintf("#%d %s", id, data.Subject), data)
}

func (s *Server) ticketID(w http.ResponseWriter, r *http.Request) (uint64, bool) {
	id, err := strconv.ParseUint(r.PathValue("id"), 10, 64)
	if err != nil || id == 0 {
		s.errorPage(w, r, http.StatusNotFound, "")
		return 0, false
	}
	return id, true
}

func (s *Server) loadDetail(id uint64, a Agent) (detailData, error) {
	cfg := s.cfg()
	var d detailData
	err := s.st.View(func(tx *store.Tx) error {
		t, err := tx.Ticket(id)
		if err != nil {
			return err
		}
		comments, err := tx.Comments(t) // fills t.EventIDs too
		if err != nil {
			return err
		}
		base := s.path(fmt.Sprintf("/tickets/%d", id))
		d = detailData{ID: t.ID, URL: base, Subject: t.Subject, Status: string(t.Status), Light: a.Light(),
			Requester: s.personView(cfg, t.Requester), Assignee: agentName(cfg, t.Assignee)}
		for _, p := range t.CCs {
			d.CCs = append(d.CCs, s.personView(cfg, p))
		}
		for _, p := range t.Followers {
			d.Followers = append(d.Followers, s.personView(cfg, p))
		}
		for _, f := range t.DeliveryFailures {
			d.Failures = append(d.Failures, failureView{Who: f.Email, As: string(f.As), Reply: f.Reply, At: when(f.At), Delivery: f.Delivery, SourceID: f.SourceID})
		}
		for _, c := range comments {
			v := s.commentView(cfg, tx, base, c)
			// X1's two ways out are offered only while they are open.
			v.AddAsCC = v.ThirdParty && !rules.IsParticipant(t, c.Author)
			d.Items = append(d.Items, v)
		}
		for _, eid := range t.EventIDs {
			e, err := tx.Event(eid)
			if err != nil {
				continue
			}
			d.Items = append(d.Items, s.eventView(cfg, tx, base, *e))
		}
		// Comments and events draw their ids from one sequence: id order is time order.
		slices.SortFunc(d.Items, func(x, y itemView) int { return cmpUint(x.ID, y.ID) })
		d.StatusButtons = statusButtons(t.Status)
		// Whom the menus offer is what the rules would allow (R1, R3, F1, C2): asked of them,
		// not worked out again here.
		env := s.svc.Env()
		allows := func(kind model.Operation, email string) bool {
			_, refusal := rules.DecideAction(t, rules.Action{Kind: kind, Person: model.Person{Email: email}}, env)
			return refusal == nil
		}
		for _, ag := range cfg.Agents {
			label := ag.Name
			if label == "" {
				label = ag.Email
			}
			if assignee := strings.EqualFold(ag.Email, t.Assignee); assignee || allows(model.OpAssign, ag.Email) {
				d.Assignable = append(d.Assignable, agentOption{Email: ag.Email, Label: label, Selected: assignee})
			}
			if allows(model.OpAddFollower, ag.Email) {
				d.Followable = append(d.Followable, agentOption{Email: ag.Email, Label: label})
			}
		}
		return nil
	})
	return d, err
}

func cmpUint(a, b uint64) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

func (s *Server) personView(cfg *config.Config, p model.Person) personView {
	if ag, ok := cfg.AgentByEmail(p.Email); ok && ag.Name != "" {
		p.Name = ag.Name
	}
	return personView{Email: p.Email, Name: p.Name, Text: personText(p)}
}

func statusButtons(st model.Status) []statusButton {
	switch st {
	case model.StatusNew, model.StatusOpen:
		return []statusButton{{"pending", "Mark pending"}, {"solved", "Mark solved"}}
	case model.StatusPending:
		return []statusButton{{"open", "Reopen"}, {"solved", "Mark solved"}}
	default:
		return []statusButton{{"open", "Reopen"}}
	}
}

func (s *Server) commentView(cfg *config.Config, tx *store.Tx, base string, c model.Comment) itemView {
	author := c.AuthorName
	byAgent := false
	if ag, ok := cfg.AgentByEmail(c.Author); ok {
		author, byAgent = ag.Name, true
		if author == "" {
			author = ag.Email
		}
	} else if author == "" {
		author = c.Author
	} else {
		author += " <" + c.Author + ">"
	}
	v := itemView{ID: c.ID, Author: author, ByAgent: byAgent, Public: c.Public, ThirdParty: c.ThirdParty, ReplyToDiffers: c.ReplyToDiffers,
		Automatic: c.Automatic, Via: c.Via, Subject: c.Subject, Body: c.Body, When: when(c.CreatedAt), Problems: c.Problems,
		Explain: fmt.Sprintf("%s/comments/%d/explain", base, c.ID), AuthorEmail: c.Author}
	if c.Via == "email" {
		v.Raw = fmt.Sprintf("%s/comments/%d/raw", base, c.ID)
		v.Formatted = fmt.Sprintf("%s/comments/%d/formatted", base, c.ID)
	}
	for i, at := range c.Attachments {
		v.Attachments = append(v.Attachments, attachmentView{Name: at.Name, Size: size(at.Size), Problem: at.Problem,
			URL: fmt.Sprintf("%s/comments/%d/files/%d", base, c.ID, i)})
	}
	v.Audience = audience(cfg, tx.WithStatus(c.Notified))
	return v
}

func (s *Server) eventView(cfg *config.Config, tx *store.Tx, base string, e model.Event) itemView {
	who := agentName(cfg, e.Actor)
	if who == "" {
		who = rules.ExpertName(e.Actor)
	}
	return itemView{ID: e.ID, Event: true, Author: who, Action: eventWords(cfg, e), When: when(e.CreatedAt),
		Explain: fmt.Sprintf("%s/comments/%d/explain", base, e.ID), Audience: audience(cfg, tx.WithStatus(e.Notified))}
}

// eventWords says what an event did, in a sentence's rest after its actor's name.
func eventWords(cfg *config.Config, e model.Event) string {
	switch model.Operation(e.Action) {
	case model.OpAddCC:
		return "added " + e.Detail + " as CC"
	case model.OpRemoveCC:
		return "removed the CC " + e.Detail
	case model.OpAddFollower:
		return "added the follower " + agentName(cfg, e.Detail)
	case model.OpRemoveFollower:
		return "removed the follower " + agentName(cfg, e.Detail)
	case model.OpAssign:
		return "assigned the ticket to " + agentName(cfg, e.Detail)
	case model.OpStatus:
		return "set the status to " + e.Detail
	case model.OpMakePrivate, model.OpMakePublic:
		return e.Detail
	}
	return strings.TrimSpace(e.Action + " " + e.Detail)
}

func audience(cfg *config.Config, ns []model.Notified) []audienceView {
	out := make([]audienceView, 0, len(ns))
	for _, n := range ns {
		who := n.Email
		if ag, ok := cfg.AgentByEmail(n.Email); ok && ag.Name != "" {
			who = ag.Name + " <" + n.Email + ">"
		}
		st := n.Status
		if st == "" {
			st = "queued"
		}
		out = append(out, audienceView{Who: who, As: string(n.As), Visible: n.Visible, Status: st, Reply: n.Reply})
	}
	return out
}

func size(n int64) string {
	switch {
	case n >= 1<<20:
		return fmt.Sprintf("%.1f MB", float64(n)/(1<<20))
	case n >= 1<<10:
		return fmt.Sprintf("%.0f KB", float64(n)/(1<<10))
	}
	return fmt.Sprintf("%d bytes", n)
}

// The comment's explain trace, original and files.

type explainData struct {
	TicketID uint64
	Back     string
	ID       uint64
	Kind     string
	By       string
	Trace    []model.TraceStep
	Audience []audienceView
}

// itemOf reads comment or event cid of ticket id: ok is false (and the page answered) when
// there is none on that ticket.
func (s *Server) itemOf(w http.ResponseWriter, r *http.Request) (id uint64, c *model.Comment, e *model.Event, ok bool) {
	id, ok = s.ticketID(w, r)
	if !ok {
		return 0, nil, nil, false
	}
	cid, err := strconv.ParseUint(r.PathValue("cid"), 10, 64)
	if err == nil {
		err = s.st.View(func(tx *store.Tx) error {
			var err error
			if c, err = tx.Comment(cid); err == nil {
				return nil
			}
			e, err = tx.Event(cid)
			return err
		})
	}
	if err != nil || (c != nil && c.TicketID != id) || (c == nil && (e == nil || e.TicketID != id)) {
		if err != nil && !errors.Is(err, store.ErrNotFound) && !errors.Is(err, strconv.ErrSyntax) && !errors.Is(err, strconv.ErrRange) {
			s.log.Error("web: cannot read a comment", "err", err)
		}
		s.errorPage(w, r, http.StatusNotFound, fmt.Sprintf("Ticket %d has no comment %s.", id, r.PathValue("cid")))
		return 0, nil, nil, false
	}
	return id, c, e, true
}

func (s *Server) explainPage(w http.ResponseWriter, r *http.Request, a Agent) {
	id, c, e, ok := s.itemOf(w, r)
	if !ok {
		return
	}
	cfg := s.cfg()
	d := explainData{TicketID: id, Back: s.path(fmt.Sprintf("/tickets/%d", id))}
	var notified []model.Notified
	if c != nil {
		d.ID, d.Kind, d.By, d.Trace, notified = c.ID, "Comment", agentName(cfg, c.Author), c.Trace, c.Notified
	} else {
		d.ID, d.Kind, d.By, d.Trace, notified = e.ID, "Event", agentName(cfg, e.Actor), e.Trace, e.Notified
		if d.By == "" {
			d.By = rules.ExpertName(e.Actor)
		}
	}
	s.st.View(func(tx *store.Tx) error {
		d.Audience = audience(cfg, tx.WithStatus(notified))
		return nil
	})
	s.render(w, r, http.StatusOK, "explain.html", fmt.Sprintf("Why: %s %d", strings.ToLower(d.Kind), d.ID), d)
}

// rawComment serves the mail a comment was made from as a download of plain text: never as
// a page, so that nothing in it can run or be taken for the desk's own.
func (s *Server) rawComment(w http.ResponseWriter, r *http.Request, a Agent) {
	id, c, _, ok := s.itemOf(w, r)
	if !ok {
		return
	}
	var raw []byte
	var found bool
	var err error
	if c != nil {
		err = s.st.View(func(tx *store.Tx) error {
			raw, found, err = tx.Original(c.ID)
			return err
		})
	}
	if err != nil {
		s.log.Error("web: cannot read an original", "err", err)
		s.errorPage(w, r, http.StatusInternalServerError, "")
		return
	}
	if !found {
		s.errorPage(w, r, http.StatusNotFound, fmt.Sprintf("This comment of ticket %d did not come by mail, so there is no original message.", id))
		return
	}
	head := ""
	if c.AuthenticationResults != "" {
		head = "Authentication-Results: " + c.AuthenticationResults + "\r\n"
	}
	h := w.Header()
	h.Set("Content-Type", "text/plain; charset=utf-8")
	h.Set("Content-Disposition", mime.FormatMediaType("attachment", map[string]string{"filename": fmt.Sprintf("ticket-%d-comment-%d.eml", id, c.ID)}))
	h.Set("Content-Length", strconv.Itoa(len(head)+len(raw)))
	w.Write([]byte(head))
	w.Write(raw)
}

// attachment serves a file as bytes to save: its declared type is the sender's word and is
// never used to render it.
func (s *Server) attachment(w http.ResponseWriter, r *http.Request, a Agent) {
	_, c, _, ok := s.itemOf(w, r)
	if !ok {
		return
	}
	n, err := strconv.Atoi(r.PathValue("n"))
	if c == nil || err != nil || n < 0 || n >= len(c.Attachments) {
		// c is nil for an event: it has no files.
		s.errorPage(w, r, http.StatusNotFound, "This comment has no such attachment.")
		return
	}
	var data []byte
	s.st.View(func(tx *store.Tx) error {
		data = tx.AttachmentData(c.ID, n)
		return nil
	})
	name := strings.Map(func(r rune) rune {
		if r < 0x20 || r == 0x7f || r == '/' || r == '\\' {
			return '_'
		}
		return r
	}, c.Attachments[n].Name)
	if name == "" {
		name = fmt.Sprintf("attachment-%d", n+1)
	}
	h := w.Header()
	h.Set("Content-Type", "application/octet-stream")
	h.Set("Content-Disposition", mime.FormatMediaType("attachment", map[string]string{"filename": name}))
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Content-Length", strconv.Itoa(len(data)))
	w.Write(data)
}

// The actions.

// flash is the outcome of an action, shown once on the page it redirects to.
type flash struct {
	Error bool   `json:"e,omitempty"`
	Text  string `json:"t"`
}

// maxFlashText keeps the cookie under the 4 KB that browsers keep: a refusal that quotes a
// long address is cut, not dropped with the cookie.
const maxFlashText = 600

// flashMAC signs a flash, so that what the page shows as the desk's word is the desk's: a
// cookie can be set by any service of the same host or a sibling domain.
func (s *Server) flashMAC(payload string) string {
	m := hmac.New(sha256.New, s.st.Secret())
	m.Write([]byte("web-flash\x00" + payload))
	return base64.RawURLEncoding.EncodeToString(m.Sum(nil))
}

func (s *Server) setFlash(w http.ResponseWriter, f flash) {
	if len(f.Text) > maxFlashText {
		cut := maxFlashText
		for cut > 0 && !utf8.RuneStart(f.Text[cut]) {
			cut--
		}
		f.Text = f.Text[:cut] + "…"
	}
	b, _ := json.Marshal(f)
	payload := base64.RawURLEncoding.EncodeToString(b)
	http.SetCookie(w, &http.Cookie{Name: flashCookie, Value: payload + "." + s.flashMAC(payload), Path: "/", MaxAge: 60,
		HttpOnly: true, Secure: s.cfg().Web.Secure(), SameSite: http.SameSiteLaxMode})
}

func (s *Server) takeFlash(w http.ResponseWriter, r *http.Request) flash {
	c, err := r.Cookie(flashCookie)
	if err != nil {
		return flash{}
	}
	http.SetCookie(w, &http.Cookie{Name: flashCookie, Value: "", Path: "/", MaxAge: -1, HttpOnly: true, Secure: s.cfg().Web.Secure(), SameSite: http.SameSiteLaxMode})
	payload, mac, ok := strings.Cut(c.Value, ".")
	if !ok || !hmac.Equal([]byte(mac), []byte(s.flashMAC(payload))) {
		return flash{}
	}
	var f flash
	b, err := base64.RawURLEncoding.DecodeString(payload)
	if err != nil || json.Unmarshal(b, &f) != nil {
		return flash{}
	}
	return f
}

// act carries out actions on ticket id as agent a and goes back to the ticket, with done or
// the rules' refusal to show there.
func (s *Server) act(w http.ResponseWriter, r *http.Request, a Agent, id uint64, actions []rules.Action, body, done string) {
	for i := range actions {
		actions[i].Actor, actions[i].Via = a.Email, "web"
	}
	_, err := s.svc.Act(r.Context(), id, actions, body)
	var ref *rules.Refusal
	switch {
	case err == nil:
		s.setFlash(w, flash{Text: done})
	case errors.As(err, &ref):
		s.setFlash(w, flash{Error: true, Text: ref.Error()})
	case errors.Is(err, desk.ErrNotFound), errors.Is(err, store.ErrNotFound):
		s.errorPage(w, r, http.StatusNotFound, fmt.Sprintf("There is no ticket %d.", id))
		return
	default:
		s.log.Error("web: action failed", "ticket", id, "err", err)
		s.setFlash(w, flash{Error: true, Text: "That did not work on our side; try again in a minute."})
	}
	http.Redirect(w, r, s.path(fmt.Sprintf("/tickets/%d", id)), http.StatusSeeOther)
}

// errNotAnAddress is a field that holds no bare address at all.
var errNotAnAddress = errors.New("not an email address")

// bareAddress reads an address field: a bare address, as the admin API takes it, in its
// canonical form (addr.Canonical), so that every spelling of one person is that person.
func bareAddress(v string) (string, error) {
	p, err := mail.ParseAddress(strings.TrimSpace(v))
	if err != nil || p.Name != "" || !strings.Contains(p.Address, "@") {
		return "", errNotAnAddress
	}
	return addr.Canonical(p.Address)
}

// personAct is an action on the person named by the form's field.
func (s *Server) personAct(kind model.Operation, field, done string) func(http.ResponseWriter, *http.Request, Agent) {
	return func(w http.ResponseWriter, r *http.Request, a Agent) {
		id, ok := s.ticketID(w, r)
		if !ok {
			return
		}
		raw := r.PostFormValue(field)
		email, err := bareAddress(raw)
		if err != nil {
			shown := raw
			if len(shown) > 80 {
				shown = strings.ToValidUTF8(shown[:80], "") + "…"
			}
			msg := fmt.Sprintf("%q is not an email address.", shown)
			if !errors.Is(err, errNotAnAddress) {
				msg = fmt.Sprintf("%q is not a valid email address: %s.", shown, strings.TrimPrefix(err.Error(), addr.ErrInvalidAddress.Error()+": "))
			}
			if strings.TrimSpace(raw) == "" {
				msg = "Choose or enter an address first."
			}
			s.setFlash(w, flash{Error: true, Text: msg})
			http.Redirect(w, r, s.path(fmt.Sprintf("/tickets/%d", id)), http.StatusSeeOther)
			return
		}
		who := agentName(s.cfg(), email)
		if kind == model.OpAddCC && s.cfg().Policy.AgentCCBecomesFollower {
			if _, isAgent := s.cfg().AgentByEmail(email); isAgent {
				done = "%s is an agent: added as a hidden follower, not a CC (C3)"
			}
		}
		s.act(w, r, a, id, []rules.Action{{Kind: kind, Person: model.Person{Email: email}}}, "", fmt.Sprintf(done, who))
	}
}

func (s *Server) statusAct(w http.ResponseWriter, r *http.Request, a Agent) {
	id, ok := s.ticketID(w, r)
	if !ok {
		return
	}
	st := r.PostFormValue("status")
	s.act(w, r, a, id, []rules.Action{{Kind: model.OpStatus, Status: model.Status(st)}}, "", "Status set to "+st)
}

func (s *Server) commentAct(w http.ResponseWriter, r *http.Request, a Agent) {
	id, ok := s.ticketID(w, r)
	if !ok {
		return
	}
	body := strings.ReplaceAll(r.PostFormValue("body"), "\r\n", "\n")
	if strings.TrimSpace(body) == "" {
		s.setFlash(w, flash{Error: true, Text: "The reply is empty: write something first."})
		http.Redirect(w, r, s.path(fmt.Sprintf("/tickets/%d", id)), http.StatusSeeOther)
		return
	}
	public := r.PostFormValue("visibility") == "public"
	done := "Internal note added"
	if public {
		done = "Public reply sent"
	}
	s.act(w, r, a, id, []rules.Action{{Kind: model.OpComment, Public: public}}, body, done)
}

func (s *Server) visibilityAct(kind model.Operation, done string) func(http.ResponseWriter, *http.Request, Agent) {
	return func(w http.ResponseWriter, r *http.Request, a Agent) {
		id, ok := s.ticketID(w, r)
		if !ok {
			return
		}
		cid, err := strconv.ParseUint(r.PathValue("cid"), 10, 64)
		if err != nil || cid == 0 {
			s.errorPage(w, r, http.StatusNotFound, "")
			return
		}
		s.act(w, r, a, id, []rules.Action{{Kind: kind, CommentID: cid}}, "", fmt.Sprintf(done, cid))
	}
}
