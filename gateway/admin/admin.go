// Package admin serves the HTTP admin API (/api/v1), /healthz and /metrics.
package admin

import (
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"os"
	"path"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/deskgate/deskgate/config"
	"github.com/deskgate/deskgate/gateway/desk"
	"github.com/deskgate/deskgate/gateway/metrics"
	"github.com/deskgate/deskgate/gateway/model"
	"github.com/deskgate/deskgate/store"
)

// Health reports whether the listeners are up, for /healthz.
type Health func() error

// Server is the admin API.
type Server struct {
	store        *store.Store
	log          *slog.Logger
	desk         *desk.Service
	reloadConfig func() (file string, warnings []config.Problem, err error)
	replyAddress func(t *model.Ticket) string
	token        atomic.Pointer[string]
	health       Health
	http         *http.Server
	metrics      http.Handler
	routes       []string
}

// Options is what New makes the API of. Store, Log and Token are needed; without a hook, what
// needs it is missing (a 503 for Reload, no reply address for ReplyAddress).
type Options struct {
	Store *store.Store
	Log   *slog.Logger
	// Token is the bearer token clients must send; SetToken swaps it on reload.
	Token string
	// Health says whether the listeners are up, for /healthz; nil when there are none to ask.
	Health Health
	// Desk carries out expert actions.
	Desk *desk.Service
	// Reload re-reads the daemon's config file as SIGHUP does, for POST /api/v1/reload: the
	// file it read, the config's warnings, and config.Problems when it refused the file.
	Reload func() (file string, warnings []config.Problem, err error)
	// ReplyAddress gives a ticket's reply address, shown so that an operator can write
	// into a ticket by hand.
	ReplyAddress func(t *model.Ticket) string
}

// New makes the API with everything it needs, so that nothing is set on it afterwards.
func New(o Options) *Server {
	s := &Server{store: o.Store, log: o.Log, health: o.Health, desk: o.Desk, reloadConfig: o.Reload, replyAddress: o.ReplyAddress}
	s.SetToken(o.Token)
	// One daemon has one store; a registry that has it already (a second Server in one
	// process) keeps the first.
	metrics.Registry.Register(storeCollector{o.Store})
	s.metrics = promhttp.HandlerFor(metrics.Registry, promhttp.HandlerOpts{ErrorLog: slog.NewLogLogger(o.Log.Handler(), slog.LevelError)})
	return s
}

// SetToken swaps the bearer token (on reload).
func (s *Server) SetToken(token string) { s.token.Store(&token) }

// ReadToken reads a token file as the admin API and the CLI both do.
func ReadToken(path string) (string, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return "", err
	}
	t := strings.TrimSpace(string(b))
	if t == "" {
		return "", fmt.Errorf("%s is empty", path)
	}
	return t, nil
}

// Handler is the whole API, for tests and for Listen.
func (s *Server) Handler() http.Handler {
	s.routes = nil
	mux := http.NewServeMux()
	s.handle(mux, "GET /healthz", s.healthz)
	s.handle(mux, "GET /metrics", s.serveMetrics)
	api := http.NewServeMux()
	s.handle(api, "GET /api/v1/tickets", s.listTickets)
	s.handle(api, "GET /api/v1/tickets/{id}", s.showTicket)
	s.handle(api, "GET /api/v1/comments/{id}/raw", s.rawComment)
	s.routeActions(api)
	s.handle(api, "POST /api/v1/reload", s.reload)
	apiHandler := s.requireToken(jsonMisses(api))
	// Profiles of a live daemon, for the operator who has the token.
	mux.Handle("/debug/pprof/", s.requireToken(http.HandlerFunc(pprof.Index)))
	mux.Handle("/debug/pprof/profile", s.requireToken(http.HandlerFunc(pprof.Profile)))
	// The API is routed before the mux sees it: the mux answers a path that is not clean
	// (/api/v1/tickets/../, /api/v1//queue) or lacks a slash (/api/v1) with a redirect and an
	// HTML body, which a script neither wants nor expects.
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if isAPIPath(r.URL.Path) {
			apiHandler.ServeHTTP(w, r)
			return
		}
		mux.ServeHTTP(w, r)
	})
}

// isAPIPath reports whether p is under /api/v1 as written or once cleaned
// (/api/../api/v1/tickets), so that neither way round reaches the mux's redirects.
func isAPIPath(p string) bool {
	under := func(p string) bool { return p == "/api/v1" || strings.HasPrefix(p, "/api/v1/") }
	return under(p) || under(path.Clean("/"+p))
}

// Listen serves the API on address until Close.
func (s *Server) Listen(address string) (net.Addr, error) {
	l, err := net.Listen("tcp", address)
	if err != nil {
		return nil, err
	}
	s.http = &http.Server{Handler: s.Handler(), ReadHeaderTimeout: 10 * time.Second}
	go func() {
		if err := s.http.Serve(l); err != nil && !errors.Is(err, http.ErrServerClosed) {
			s.log.Error("admin listener stopped", "err", err)
		}
	}()
	return l.Addr(), nil
}

// Close stops the API.
func (s *Server) Close() error {
	if s.http == nil {
		return nil
	}
	return s.http.Close()
}

// handle registers a route and remembers it for Routes.
func (s *Server) handle(mux *http.ServeMux, pattern string, h http.HandlerFunc) {
	mux.HandleFunc(pattern, h)
	s.routes = append(s.routes, pattern)
}

// Routes lists the "METHOD /path" patterns of the API (after Handler), which
// docs/openapi.yaml describes; the profiling endpoints under /debug/pprof are not among them.
func (s *Server) Routes() []string { return append([]string(nil), s.routes...) }

// jsonMisses answers requests that match no route in JSON like every other API error: 404
// for an unknown path, 405 with Allow for a known path and a wrong method.
//
// A path that is not clean, or ends in a slash, is no endpoint either: 404, where the mux
// would redirect. Every route has a clean path without a trailing slash, and a client that
// sent "/tickets/../" meant something that the cleaned path may not be.
func jsonMisses(api *http.ServeMux) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if p := r.URL.EscapedPath(); p != path.Clean(p) {
			writeError(w, http.StatusNotFound, "no such API endpoint: "+r.Method+" "+p+" (the path is not clean or ends in /; the API does not redirect)")
			return
		}
		h, pattern := api.Handler(r)
		if pattern != "" {
			api.ServeHTTP(w, r)
			return
		}
		// The mux's own answer says which of the two it is, and sets Allow.
		probe := &statusProbe{header: http.Header{}}
		h.ServeHTTP(probe, r)
		if probe.status == http.StatusMethodNotAllowed {
			allow := probe.header.Get("Allow")
			w.Header().Set("Allow", allow)
			writeError(w, http.StatusMethodNotAllowed, fmt.Sprintf("%s is not allowed on %s; allowed: %s", r.Method, r.URL.Path, allow))
			return
		}
		writeError(w, http.StatusNotFound, "no such API endpoint: "+r.Method+" "+r.URL.Path)
	})
}

// statusProbe records a handler's status and headers and drops its body.
type statusProbe struct {
	header http.Header
	status int
}

func (p *statusProbe) Header() http.Header         { return p.header }
func (p *statusProbe) Write(b []byte) (int, error) { return len(b), nil }
func (p *statusProbe) WriteHeader(status int)      { p.status = status }

// rawComment is GET /api/v1/comments/{id}/raw: the message a comment was made from, as it
// came in, under the Authentication-Results field deskgate found for it, as an MTA would have
// put it on top.
func (s *Server) rawComment(w http.ResponseWriter, r *http.Request) {
	id, err := strconv.ParseUint(r.PathValue("id"), 10, 64)
	if err != nil || id == 0 {
		writeError(w, http.StatusBadRequest, fmt.Sprintf("id: %q is not a comment id", r.PathValue("id")))
		return
	}
	var raw []byte
	var c *model.Comment
	status, msg := 0, ""
	err = s.store.View(func(tx *store.Tx) error {
		var err error
		c, err = tx.Comment(id)
		if errors.Is(err, store.ErrNotFound) {
			status, msg = http.StatusNotFound, fmt.Sprintf("comment %d does not exist", id)
			return nil
		}
		if err != nil {
			return err
		}
		var ok bool
		raw, ok, err = tx.Original(id)
		if err == nil && !ok {
			status, msg = http.StatusNotFound, fmt.Sprintf("comment %d has no original message: it came by %s", id, c.Via)
		}
		return err
	})
	switch {
	case err != nil:
		writeError(w, http.StatusInternalServerError, err.Error())
		return
	case status != 0:
		writeError(w, status, msg)
		return
	}
	w.Header().Set("Content-Type", "message/rfc822")
	w.Header().Set("Content-Length", strconv.Itoa(len(raw)+len(authHeader(c))))
	w.Write([]byte(authHeader(c)))
	w.Write(raw)
}

func authHeader(c *model.Comment) string {
	if c.AuthenticationResults == "" {
		return ""
	}
	return "Authentication-Results: " + c.AuthenticationResults + "\r\n"
}

func (s *Server) requireToken(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got, ok := bearerToken(r.Header.Get("Authorization"))
		want := *s.token.Load()
		if !ok || subtle.ConstantTimeCompare([]byte(got), []byte(want)) != 1 {
			w.Header().Set("WWW-Authenticate", `Bearer realm="deskgate"`)
			writeError(w, http.StatusUnauthorized, "missing or wrong bearer token (admin.token_file)")
			return
		}
		next.ServeHTTP(w, r)
	})
}

// bearerToken reads credentials of the Bearer scheme: RFC 9110 11.4 writes them as
// auth-scheme 1*SP token68, and 11.1 makes the scheme name case-insensitive, so "bearer" and
// several spaces are as good as "Bearer " (curl users and some libraries send both).
func bearerToken(header string) (string, bool) {
	scheme, rest, ok := strings.Cut(header, " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") {
		return "", false
	}
	token := strings.TrimRight(strings.TrimLeft(rest, " "), " \t")
	return token, token != ""
}

func (s *Server) healthz(w http.ResponseWriter, _ *http.Request) {
	if err := s.store.Ping(); err != nil {
		http.Error(w, "store: "+err.Error(), http.StatusServiceUnavailable)
		return
	}
	if s.health != nil {
		if err := s.health(); err != nil {
			http.Error(w, err.Error(), http.StatusServiceUnavailable)
			return
		}
	}
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	fmt.Fprintln(w, "ok")
}

func (s *Server) serveMetrics(w http.ResponseWriter, r *http.Request) {
	s.metrics.ServeHTTP(w, r)
}

// storeCollector reads what the database holds at each scrape, in one read transaction.
type storeCollector struct{ st *store.Store }

var (
	descTickets  = prometheus.NewDesc("deskgate_tickets", "Tickets stored.", nil, nil)
	descComments = prometheus.NewDesc("deskgate_comments", "Comments stored.", nil, nil)
	descQueued   = prometheus.NewDesc("deskgate_queue_queued", "Deliveries waiting on the outbound queue.", nil, nil)
	descDeliv    = prometheus.NewDesc("deskgate_deliveries", "Deliveries ever queued and still recorded.", nil, nil)
	descOldest   = prometheus.NewDesc("deskgate_queue_oldest_age_seconds", "Age of the oldest delivery still queued; 0 when the queue is empty.", nil, nil)
)

func (c storeCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descTickets, descComments, descQueued, descDeliv, descOldest} {
		ch <- d
	}
}

func (c storeCollector) Collect(ch chan<- prometheus.Metric) {
	var tickets, comments, queued, deliveries int
	var oldest time.Time
	c.st.View(func(tx *store.Tx) error {
		tickets, comments = tx.Counts()
		queued, deliveries = tx.QueueCounts()
		oldest, _ = tx.OldestQueued()
		return nil
	})
	age := 0.0
	if !oldest.IsZero() {
		age = time.Since(oldest).Seconds()
	}
	for _, m := range []struct {
		d *prometheus.Desc
		v float64
	}{{descTickets, float64(tickets)}, {descComments, float64(comments)}, {descQueued, float64(queued)}, {descDeliv, float64(deliveries)}, {descOldest, age}} {
		ch <- prometheus.MustNewConstMetric(m.d, prometheus.GaugeValue, m.v)
	}
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	// Compact: indenting a ticket of 200 comments took 45 % of the time to answer for it. The
	// CLI's --json indents for people.
	json.NewEncoder(w).Encode(v)
}

func writeError(w http.ResponseWriter, status int, msg string) {
	writeJSON(w, status, map[string]string{"error": msg})
}

// TicketSummary is one row of GET /api/v1/tickets.
type TicketSummary struct {
	ID        uint64    `json:"id"`
	Subject   string    `json:"subject"`
	Status    string    `json:"status"`
	Requester Person    `json:"requester"`
	Assignee  string    `json:"assignee"`
	UpdatedAt time.Time `json:"updated_at"`
}

// TicketView is GET /api/v1/tickets/{id}.
type TicketView struct {
	ID           uint64        `json:"id"`
	Subject      string        `json:"subject"`
	Status       string        `json:"status"`
	Requester    Person        `json:"requester"`
	Assignee     string        `json:"assignee"`
	ReplyAddress string        `json:"reply_address,omitempty"`
	CCs          []Person      `json:"ccs"`
	Followers    []Person      `json:"followers"`
	CreatedAt    time.Time     `json:"created_at"`
	UpdatedAt    time.Time     `json:"updated_at"`
	Comments     []CommentView `json:"comments"`
	// DeliveryFailures is mail that did not reach an end user (bounces, 5xx, expiry).
	DeliveryFailures []DeliveryFailure `json:"delivery_failures"`
	// Events are the expert actions that are no comments (assignment, status, CCs).
	Events []Event `json:"events"`
	// Last is the comment or event an action just made, in an action's answer.
	Last uint64 `json:"last_id,omitempty"`
}

// CommentView is one comment in TicketView.
type CommentView struct {
	ID             uint64       `json:"id"`
	Author         string       `json:"author"`
	AuthorName     string       `json:"author_name,omitempty"`
	Public         bool         `json:"public"`
	ThirdParty     bool         `json:"third_party"`
	Via            string       `json:"via"`
	MessageID      string       `json:"message_id"`
	CreatedAt      time.Time    `json:"created_at"`
	Subject        string       `json:"subject,omitempty"`
	Body           string       `json:"body"`
	Attachments    []Attachment `json:"attachments"`
	Notified       []Notified   `json:"notified"`
	ReplyToDiffers bool         `json:"reply_to_differs,omitempty"`
	Automatic      string       `json:"automatic,omitempty"`
	// AuthenticationResults and Sender say who a received mail proved to be (A1).
	AuthenticationResults string     `json:"authentication_results,omitempty"`
	Sender                *TraceStep `json:"sender,omitempty"`
	// Problems is what could not be decoded of a received mail (M1).
	Problems []string `json:"problems,omitempty"`
}

func (s *Server) listTickets(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	status := model.Status(q.Get("status"))
	if status != "" && !status.Valid() {
		writeError(w, http.StatusBadRequest, fmt.Sprintf("status: %q is not one of new, open, pending, solved", status))
		return
	}
	limit := 100
	if v := q.Get("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > 1000 {
			writeError(w, http.StatusBadRequest, fmt.Sprintf("limit: %q is not a number from 1 to 1000", v))
			return
		}
		limit = n
	}
	var before uint64
	if v := q.Get("before"); v != "" {
		n, err := strconv.ParseUint(v, 10, 64)
		if err != nil || n == 0 {
			writeError(w, http.StatusBadRequest, fmt.Sprintf("before: %q is not a ticket id", v))
			return
		}
		before = n
	}
	var out []TicketSummary
	err := s.store.View(func(tx *store.Tx) error {
		list, err := tx.ListTickets(status, limit, before)
		for _, t := range list {
			out = append(out, TicketSummary{ID: t.ID, Subject: t.Subject, Status: string(t.Status), Requester: personView(t.Requester), Assignee: t.Assignee, UpdatedAt: t.UpdatedAt})
		}
		return err
	})
	if err != nil {
		writeError(w, http.StatusInternalServerError, err.Error())
		return
	}
	if out == nil {
		out = []TicketSummary{}
	}
	writeJSON(w, http.StatusOK, out)
}

func (s *Server) showTicket(w http.ResponseWriter, r *http.Request) {
	id, err := strconv.ParseUint(r.PathValue("id"), 10, 64)
	if err != nil || id == 0 {
		writeError(w, http.StatusBadRequest, fmt.Sprintf("id: %q is not a ticket id", r.PathValue("id")))
		return
	}
	view, err := s.loadTicket(id)
	if errors.Is(err, store.ErrNotFound) {
		writeError(w, http.StatusNotFound, fmt.Sprintf("ticket %d does not exist", id))
		return
	}
	if err != nil {
		writeError(w, http.StatusInternalServerError, err.Error())
		return
	}
	writeJSON(w, http.StatusOK, view)
}

// loadTicket reads a ticket as the API shows it: comments with the delivery status of
// everyone they reached, events, and the reply address.
func (s *Server) loadTicket(id uint64) (TicketView, error) {
	var view TicketView
	err := s.store.View(func(tx *store.Tx) error {
		t, err := tx.Ticket(id)
		if err != nil {
			return err
		}
		comments, err := tx.Comments(t)
		if err != nil {
			return err
		}
		for i := range comments {
			comments[i].Notified = tx.WithStatus(comments[i].Notified)
		}
		view = ticketView(t, comments)
		view.Events = events(tx, t)
		if s.replyAddress != nil {
			view.ReplyAddress = s.replyAddress(t)
		}
		return nil
	})
	return view, err
}

func ticketView(t *model.Ticket, comments []model.Comment) TicketView {
	v := TicketView{ID: t.ID, Subject: t.Subject, Status: string(t.Status), Requester: personView(t.Requester), Assignee: t.Assignee,
		CCs: peopleView(t.CCs), Followers: peopleView(t.Followers), CreatedAt: t.CreatedAt, UpdatedAt: t.UpdatedAt, Comments: []CommentView{},
		DeliveryFailures: failuresView(t.DeliveryFailures)}
	for _, c := range comments {
		cv := CommentView{ID: c.ID, Author: c.Author, AuthorName: c.AuthorName, Public: c.Public, ThirdParty: c.ThirdParty,
			Via: c.Via, MessageID: "<" + c.MessageID + ">", CreatedAt: c.CreatedAt, Subject: c.Subject, Body: c.Body,
			Attachments: attachmentsView(c.Attachments), Notified: notifiedView(c.Notified), ReplyToDiffers: c.ReplyToDiffers, Automatic: c.Automatic,
			AuthenticationResults: c.AuthenticationResults, Problems: c.Problems}
		for i := range c.Trace {
			if c.Trace[i].Rule == "A1" {
				step := traceView(c.Trace[i : i+1])[0]
				cv.Sender = &step
				break
			}
		}
		v.Comments = append(v.Comments, cv)
	}
	return v
}

func events(tx *store.Tx, t *model.Ticket) []Event {
	out := []Event{}
	for _, id := range t.EventIDs {
		if e, err := tx.Event(id); err == nil {
			e.Notified = tx.WithStatus(e.Notified)
			out = append(out, eventView(*e)) // the trace is explain's
		}
	}
	return out
}
