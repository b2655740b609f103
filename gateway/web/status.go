package web

// The request status view (S1, S2): the page a requester (and, under web.status_view:
// requester_and_ccs, each CC) reaches through the link in her copies, with no account. The
// link's token is all the page has to go on, so every way it can fail (no such ticket, a
// person erased, a CC removed, the view turned off, a tampered token) gives the same 404,
// which says nothing of why.

import (
	"errors"
	"fmt"
	"mime"
	"net/http"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/deskgate/deskgate/gateway/addr"
	"github.com/deskgate/deskgate/gateway/compose"
	"github.com/deskgate/deskgate/gateway/model"
	"github.com/deskgate/deskgate/gateway/rules"
	"github.com/deskgate/deskgate/store"
)

func init() {
	addRoutes(func(s *Server, r *router) {
		r.handle("GET /requests/{ref}", s.statusPage)
		r.handle("POST /requests/{ref}", s.statusReply)
		r.handle("POST /requests/{ref}/solve", s.statusSolve)
		r.handle("GET /requests/{ref}/files/{comment}/{n}", s.statusFile)
	})
}

// viewer is the person a status link belongs to, as the running config admits her now.
type viewer struct {
	ref    string // "<id>-<token>", as the page's own links and forms use it
	ticket *model.Ticket
	email  string // as the ticket has it
	as     model.As
	env    rules.Env
}

// statusViewer finds whose view the request's {ref} opens: the token must be the requester's
// or (under requester_and_ccs) a current CC's, and the rules must still give that person a
// view (S1). It reads only the ticket record, so that a bad link costs one read.
func (s *Server) statusViewer(r *http.Request) (viewer, bool) {
	id, token, ok := addr.ParseStatusRef(r.PathValue("ref"))
	if !ok {
		return viewer{}, false
	}
	var t *model.Ticket
	err := s.st.View(func(tx *store.Tx) error {
		var err error
		t, err = tx.Ticket(id)
		return err
	})
	if err != nil {
		if !errors.Is(err, store.ErrNotFound) {
			s.log.Error("web: cannot read a ticket for its status view", "ticket", id, "err", err)
		}
		return viewer{}, false
	}
	env := s.svc.Env()
	candidates := []string{t.Requester.Email}
	if env.StatusView == rules.StatusViewRequesterAndCCs {
		for _, cc := range t.CCs {
			candidates = append(candidates, cc.Email)
		}
	}
	i, ok := s.svc.Book().StatusTokenOwner(id, token, candidates...)
	if !ok {
		return viewer{}, false
	}
	as, ok := rules.StatusViewer(t, candidates[i], env)
	if !ok {
		return viewer{}, false
	}
	return viewer{ref: fmt.Sprintf("%d-%s", id, token), ticket: t, email: candidates[i], as: as, env: env}, true
}

// statusData is status.html's data.
type statusData struct {
	Ref        string
	ID         uint64
	Subject    string
	Status     string // in words
	StatusNote string
	StatusKey  string // new, open, pending, solved: for the badge's style
	Solved     bool
	CanSolve   bool
	AsCC       bool
	Comments   []statusComment
	Reach      []reachPerson
	ReachLine  string // the same in one sentence, beside the reply box
	Notice     string
	Error      string
	Body       string // the reply as typed, shown again when it was refused
}

type statusComment struct {
	Author  string
	Address string // an end user's; never an agent's
	Agent   bool
	Yours   bool
	When    string
	WhenISO string
	Body    string
	Files   []statusFile
	Hidden  int // attachments this viewer is not shown (policy.cc_attachments)
}

type statusFile struct {
	Name    string
	Size    string
	URL     string
	Damaged bool
}

type reachPerson struct {
	Name    string
	Address string // "" for an agent
	Role    string
}

// statusWords says a status as the requester reads it.
func statusWords(st model.Status) (word, note string) {
	switch st {
	case model.StatusNew:
		return "Received", "The request has reached the support team; an agent will answer soon."
	case model.StatusPending:
		return "Waiting for your reply", "The support team needs an answer before it can go on. Reply below."
	case model.StatusSolved:
		return "Solved", "If you still need help, reply below and the request opens again."
	default:
		return "Open", "The support team is working on it."
	}
}

func (s *Server) statusPage(w http.ResponseWriter, r *http.Request) {
	v, ok := s.statusViewer(r)
	if !ok {
		s.errorPage(w, r, http.StatusNotFound, "")
		return
	}
	var notice string
	switch r.URL.Query().Get("done") {
	case "reply":
		notice = "Your reply was sent."
	case "solved":
		notice = "Your request is marked as solved. Thank you."
	}
	s.showStatus(w, r, v, http.StatusOK, statusData{Notice: notice})
}

// showStatus renders v's page with code; d brings the notice, the error and the typed reply.
func (s *Server) showStatus(w http.ResponseWriter, r *http.Request, v viewer, code int, d statusData) {
	t := v.ticket
	var comments []model.Comment
	err := s.st.View(func(tx *store.Tx) error {
		var err error
		comments, err = tx.Comments(t)
		return err
	})
	if err != nil {
		s.log.Error("web: cannot read a ticket's comments for its status view", "ticket", t.ID, "err", err)
		s.errorPage(w, r, http.StatusInternalServerError, "The request could not be read. Try again in a moment.")
		return
	}
	d.Ref, d.ID, d.Subject = v.ref, t.ID, t.Subject
	if strings.TrimSpace(d.Subject) == "" {
		d.Subject = "(no subject)"
	}
	d.Status, d.StatusNote = statusWords(t.Status)
	d.StatusKey = string(t.Status)
	d.Solved = t.Status == model.StatusSolved
	d.AsCC = v.as == model.AsCC
	d.CanSolve = v.as == model.AsRequester && !d.Solved
	files := rules.ViewShowsAttachments(v.as, v.env)
	for _, c := range comments {
		// Internal notes, and whatever was made internal later (V5), never reach the view.
		if !c.Public {
			continue
		}
		sc := statusComment{Body: s.hideDeskAddresses(strings.TrimRight(c.Body, "\r\n\t ")), When: c.CreatedAt.UTC().Format("2 Jan 2006, 15:04 UTC"),
			WhenISO: c.CreatedAt.UTC().Format(time.RFC3339), Yours: rules.SameAddress(c.Author, v.email)}
		if !rules.StatusViewShowsAddress(t, c.Author, v.env) {
			// An agent goes by her configured name only: never her address, nor the name her
			// own mail client gave her (H1, H4).
			sc.Agent = true
			sc.Author = deskName(v.env, c.Author, c.AuthorName)
		} else {
			sc.Author, sc.Address = c.AuthorName, c.Author
			if sc.Author == "" {
				sc.Author, sc.Address = c.Author, ""
			}
		}
		for i, a := range c.Attachments {
			if !files {
				sc.Hidden++
				continue
			}
			f := statusFile{Name: a.Name, Size: byteSize(a.Size), Damaged: a.Problem != ""}
			if f.Name == "" {
				f.Name = fmt.Sprintf("attachment %d", i+1)
			}
			if !f.Damaged {
				f.URL = s.path(fmt.Sprintf("/requests/%s/files/%d/%d", v.ref, c.ID, i))
			}
			sc.Files = append(sc.Files, f)
		}
		d.Comments = append(d.Comments, sc)
	}
	d.Reach = reach(t, v)
	d.ReachLine = reachLine(d.Reach)
	s.render(w, r, code, "status.html", fmt.Sprintf("Request #%d", t.ID), d)
}

// reach is who a reply from v's view reaches besides the support team (N1): the requester and
// the CCs but v, end users by their address (as H2 shows them in every copy), agents by their
// configured name only. Followers and the assignee are the support team, named by nobody.
func reach(t *model.Ticket, v viewer) []reachPerson {
	// Who a reply reaches is the rules' answer for a reply from this view (S2, N1), asked of
	// them: the requester and CCs it would notify, the requester first.
	d := rules.DecideWebReply(t, v.email, false, v.env)
	var out []reachPerson
	for _, n := range d.Notifications {
		for _, r := range n.Recipients {
			role := map[model.As]string{model.AsRequester: "requester", model.AsCC: "CC"}[r.As]
			if role == "" {
				continue // followers and the assignee: the support team
			}
			p := reachPerson{Name: r.Name, Address: r.Email, Role: role}
			if !rules.StatusViewShowsAddress(t, r.Email, v.env) {
				p = reachPerson{Name: deskName(v.env, r.Email, r.Name), Role: role + ", support team"}
			}
			if r.As == model.AsRequester {
				out = append([]reachPerson{p}, out...)
			} else {
				out = append(out, p)
			}
		}
	}
	return out
}

// reachLine says in words who gets a reply: "Joe Miller, jane@x.test and the support team".
func reachLine(people []reachPerson) string {
	names := make([]string, 0, len(people)+1)
	for _, p := range people {
		if p.Name != "" {
			names = append(names, p.Name)
		} else {
			names = append(names, p.Address)
		}
	}
	names = append(names, "the support team")
	if len(names) == 1 {
		return "Your reply goes to the support team."
	}
	return "Your reply goes to " + strings.Join(names[:len(names)-1], ", ") + " and " + names[len(names)-1] + "."
}

func byteSize(n int64) string {
	switch {
	case n >= 1<<20:
		return fmt.Sprintf("%.1f MB", float64(n)/(1<<20))
	case n >= 1<<10:
		return fmt.Sprintf("%d KB", (n+1<<9)>>10)
	}
	return fmt.Sprintf("%d bytes", n)
}

// statusReply posts a reply from the view (S2): a public comment by the viewer, stored via
// web, and back to the page with a notice (POST, redirect, GET: a reload sends nothing twice).
func (s *Server) statusReply(w http.ResponseWriter, r *http.Request) {
	v, ok := s.statusViewer(r)
	if !ok {
		s.errorPage(w, r, http.StatusNotFound, "")
		return
	}
	body := strings.ReplaceAll(r.PostFormValue("body"), "\r\n", "\n")
	if strings.TrimSpace(body) == "" {
		s.showStatus(w, r, v, http.StatusUnprocessableEntity, statusData{Error: "Write your reply in the box before sending it."})
		return
	}
	if _, err := s.svc.WebReply(r.Context(), v.ticket.ID, v.email, body); err != nil {
		s.statusRefused(w, r, v, err, body)
		return
	}
	http.Redirect(w, r, s.path("/requests/"+v.ref+"?done=reply"), http.StatusSeeOther)
}

// statusSolve is the requester's "Mark as solved" (S2, N5).
func (s *Server) statusSolve(w http.ResponseWriter, r *http.Request) {
	v, ok := s.statusViewer(r)
	if !ok {
		s.errorPage(w, r, http.StatusNotFound, "")
		return
	}
	if _, err := s.svc.WebSolve(r.Context(), v.ticket.ID, v.email); err != nil {
		s.statusRefused(w, r, v, err, "")
		return
	}
	http.Redirect(w, r, s.path("/requests/"+v.ref+"?done=solved"), http.StatusSeeOther)
}

// statusRefused answers an action the desk did not carry out: as a missing page when the view
// no longer admits the person (the ticket changed since the page was loaded), else on the page.
func (s *Server) statusRefused(w http.ResponseWriter, r *http.Request, v viewer, err error, body string) {
	var refusal *rules.Refusal
	switch {
	case errors.As(err, &refusal) && refusal.Kind == rules.RefuseNotFound:
		s.errorPage(w, r, http.StatusNotFound, "")
	case errors.As(err, &refusal) && refusal.Kind == rules.RefuseNotAllowed:
		s.errorPage(w, r, http.StatusForbidden, "")
	case errors.As(err, &refusal):
		s.showStatus(w, r, v, http.StatusUnprocessableEntity, statusData{Error: "Your reply could not be sent. Check it and try again.", Body: body})
	default:
		s.log.Error("web: a change from a status view failed", "ticket", v.ticket.ID, "err", err)
		s.errorPage(w, r, http.StatusServiceUnavailable, "Your reply could not be saved just now. Go back and try again in a moment.")
	}
}

// statusFile serves one attachment of a public comment to a viewer who may see it (S1, N6):
// always as a download of opaque bytes, whatever type its sender declared, so that no file
// from a mail is ever rendered on the desk's own origin.
func (s *Server) statusFile(w http.ResponseWriter, r *http.Request) {
	v, ok := s.statusViewer(r)
	if !ok || !rules.ViewShowsAttachments(v.as, v.env) {
		s.errorPage(w, r, http.StatusNotFound, "")
		return
	}
	cid, err1 := strconv.ParseUint(r.PathValue("comment"), 10, 64)
	n, err2 := strconv.Atoi(r.PathValue("n"))
	if err1 != nil || err2 != nil || n < 0 {
		s.errorPage(w, r, http.StatusNotFound, "")
		return
	}
	var c *model.Comment
	var data []byte
	found := false
	err := s.st.View(func(tx *store.Tx) error {
		var err error
		if c, err = tx.Comment(cid); err != nil {
			return err
		}
		if c.TicketID == v.ticket.ID && c.Public && n < len(c.Attachments) && c.Attachments[n].Problem == "" {
			data, found = tx.AttachmentData(cid, n), true
		}
		return nil
	})
	if err != nil || !found {
		s.errorPage(w, r, http.StatusNotFound, "")
		return
	}
	name := c.Attachments[n].Name
	if name == "" {
		name = fmt.Sprintf("attachment-%d", n+1)
	}
	disp := mime.FormatMediaType("attachment", map[string]string{"filename": name})
	if disp == "" {
		disp = "attachment"
	}
	h := w.Header()
	h.Set("Content-Type", "application/octet-stream")
	h.Set("Content-Disposition", disp)
	h.Set("Content-Length", strconv.Itoa(len(data)))
	// Opened in a tab after all, the file is a sandboxed document that runs nothing.
	h.Set("Content-Security-Policy", "default-src 'none'; sandbox")
	w.Write(data)
}

// mailAddress finds what looks like an address in a comment's text.
var mailAddress = regexp.MustCompile(`[A-Za-z0-9._%+=-]+@[A-Za-z0-9.-]+`)

// hideDeskAddresses takes masked addresses out of text shown on the status view (S1): an
// agent who answers by mail quotes the headers of her own copy, which name participants by
// them. They lead back to the desk only, but the view promises to show none.
func (s *Server) hideDeskAddresses(text string) string {
	book := s.svc.Book()
	return mailAddress.ReplaceAllStringFunc(text, func(a string) string {
		if p, ok := book.Classify(a); ok && p.Kind == addr.Masked {
			return "[address hidden]"
		}
		return a
	})
}

// deskName names one of the desk's people on the status view without her address: her
// configured name, else the name stored with what she wrote, else "Support team" (for one
// who has left agents since and was stored without a name).
func deskName(env rules.Env, email, stored string) string {
	if n := compose.AuthorName(env, email, stored); n != "" && !strings.Contains(n, "@") {
		return n
	}
	return "Support team"
}
