// Package web serves deskgate's pages on listen.web: the agents' desk and the requesters'
// status view. Pages are rendered on the server with html/template from templates embedded in
// the binary, need no JavaScript, and every change they make goes through desk.Service as the
// admin API's do.
//
// This file holds what every page shares: the Server, its middleware (security headers,
// cross-origin protection, metrics), the templates and the error pages. session.go knows who
// is signed in. Each page's file registers its routes with addRoutes from an init function,
// so that the files do not depend on each other.
package web

import (
	"bytes"
	"context"
	"crypto/sha256"
	"embed"
	"encoding/hex"
	"errors"
	"fmt"
	"html/template"
	"io/fs"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"path"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/deskgate/deskgate/config"
	"github.com/deskgate/deskgate/gateway/desk"
	"github.com/deskgate/deskgate/gateway/metrics"
	"github.com/deskgate/deskgate/store"
)

//go:embed templates/*.html static/*
var files embed.FS

// ProductName is shown in every page's header when support.name says nothing better.
const ProductName = "deskgate"

// contentSecurityPolicy allows the page's own style sheet and images and nothing else: no
// script at all, no inline style, no form posting elsewhere, no framing.
const contentSecurityPolicy = "default-src 'none'; style-src 'self'; img-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"

// maxFormBytes bounds a request body: the forms carry an address or a reply's text.
const maxFormBytes = 1 << 20

// Server is the web pages of one daemon.
type Server struct {
	cfg func() *config.Config
	svc *desk.Service
	st  *store.Store
	log *slog.Logger
	// Now is the clock of sessions and sign-in links; tests move it.
	Now func() time.Time

	pages  map[string]*template.Template
	static map[string]staticFile
	cop    atomic.Pointer[originCheck]
	http   *http.Server
	// signIns counts the sign-in mails sent, for their hourly limits (login.go).
	signIns signInLimiter
	// sending counts the sign-in mails being queued: POST /login answers before that is
	// done, so that how long it takes tells nobody whether an address is an agent's.
	sending sync.WaitGroup
}

// staticFile is one file under /static/, with an ETag of its content so that browsers
// revalidate cheaply after an upgrade changed it.
type staticFile struct {
	body []byte
	etag string
}

// originCheck is the cross-origin protection for one web.public_url, rebuilt when a reload
// changes it.
type originCheck struct {
	publicURL string
	cop       *http.CrossOriginProtection
}

// New makes the pages. cfg is read at each request, so that a reload applies at once
// (desk.Service.Config is such a function). It panics when the embedded templates do not
// parse: that is a bug of the build, found by every test.
func New(cfg func() *config.Config, svc *desk.Service, logger *slog.Logger) *Server {
	s := &Server{cfg: cfg, svc: svc, st: svc.Store(), log: logger, Now: time.Now}
	if err := s.parse(); err != nil {
		panic(err)
	}
	return s
}

// parse reads the templates and static files once. Each page is its own template set: the
// layout, the partials (files named _*.html) and the page, which defines "main" (and may
// define "head" for extra <head> elements).
func (s *Server) parse() error {
	base, err := template.New("layout.html").Funcs(s.funcs()).ParseFS(files, "templates/layout.html")
	if err != nil {
		return err
	}
	partials, err := fs.Glob(files, "templates/_*.html")
	if err != nil {
		return err
	}
	if len(partials) > 0 {
		if base, err = base.ParseFS(files, partials...); err != nil {
			return err
		}
	}
	names, err := fs.Glob(files, "templates/*.html")
	if err != nil {
		return err
	}
	s.pages = map[string]*template.Template{}
	for _, name := range names {
		file := path.Base(name)
		if file == "layout.html" || strings.HasPrefix(file, "_") {
			continue
		}
		t, err := template.Must(base.Clone()).ParseFS(files, name)
		if err != nil {
			return err
		}
		s.pages[file] = t
	}
	statics, err := fs.Glob(files, "static/*")
	if err != nil {
		return err
	}
	s.static = map[string]staticFile{}
	for _, name := range statics {
		body, err := files.ReadFile(name)
		if err != nil {
			return err
		}
		sum := sha256.Sum256(body)
		s.static[path.Base(name)] = staticFile{body: body, etag: `"` + hex.EncodeToString(sum[:8]) + `"`}
	}
	return nil
}

// funcs are the functions every template may call.
func (s *Server) funcs() template.FuncMap {
	return template.FuncMap{
		// path prefixes a site path with web.public_url's own path, for a desk served under
		// a prefix by its proxy (https://example.com/desk).
		"path": s.path,
	}
}

// path is p under web.public_url's path: "/tickets" is "/desk/tickets" when the pages live at
// https://example.com/desk. Redirects and links use it; routes do not, the proxy having
// stripped the prefix.
func (s *Server) path(p string) string {
	u, err := url.Parse(s.cfg().Web.PublicURL)
	if err != nil || u.Path == "" || u.Path == "/" {
		return p
	}
	return strings.TrimSuffix(u.Path, "/") + p
}

// URL is the absolute address of site path p, built on web.public_url: for links in mail.
func (s *Server) URL(p string) string { return s.cfg().Web.PublicURL + p }

// router registers routes, each wrapped so that its requests are counted under its pattern.
type router struct {
	s   *Server
	mux *http.ServeMux
}

// methodsFor lists the methods under which some route other than the catch-all takes req's
// path.
func (rt *router) methodsFor(req *http.Request) []string {
	var allow []string
	for _, m := range []string{http.MethodGet, http.MethodPost} {
		probe := req.Clone(req.Context())
		probe.Method = m
		if _, pattern := rt.mux.Handler(probe); pattern != "" && pattern != "/" {
			allow = append(allow, m)
		}
	}
	return allow
}

// handle registers h for pattern (ServeMux syntax: "GET /tickets/{id}").
func (rt *router) handle(pattern string, h http.HandlerFunc) { rt.mux.Handle(pattern, h) }

// routeSets are the pages' route registrations: each page's file adds its own from an init
// function (addRoutes(func(s *Server, r *router) { r.handle(...) })).
var routeSets []func(*Server, *router)

func addRoutes(f func(*Server, *router)) { routeSets = append(routeSets, f) }

func init() {
	addRoutes(func(s *Server, r *router) {
		r.handle("GET /static/{file}", s.serveStatic)
		// Whatever no route takes: a 405 with Allow when the path is a page's under another
		// method (the catch-all hides the mux's own), else a 404, both in the layout.
		r.handle("/", func(w http.ResponseWriter, req *http.Request) {
			if allow := r.methodsFor(req); len(allow) > 0 {
				w.Header().Set("Allow", strings.Join(allow, ", "))
				s.errorPage(w, req, http.StatusMethodNotAllowed, "This page does not take that kind of request.")
				return
			}
			s.errorPage(w, req, http.StatusNotFound, "")
		})
	})
}

// Handler is the whole site: the routes behind the cross-origin protection, the security
// headers on every answer, the metrics around it all.
func (s *Server) Handler() http.Handler {
	mux := http.NewServeMux()
	rt := &router{s: s, mux: mux}
	for _, add := range routeSets {
		add(s, rt)
	}
	protected := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if err := s.originCheck().Check(r); err != nil {
			r.Pattern = "cross-origin" // the metrics' page: no route was reached
			s.errorPage(w, r, http.StatusForbidden, "This request came from another site, so it was refused. Go back to the page and submit the form again.")
			return
		}
		if r.Method == http.MethodPost {
			// Read the form here, so that a body over the bound is told as such, not taken
			// by a handler for an empty form.
			if err := r.ParseForm(); err != nil {
				var tooLarge *http.MaxBytesError
				if errors.As(err, &tooLarge) {
					s.errorPage(w, r, http.StatusRequestEntityTooLarge, "That was too much to send at once (1 MiB at most), so nothing was saved. Go back and send less.")
				} else {
					s.errorPage(w, r, http.StatusBadRequest, "The form could not be read, so nothing was saved. Go back and send it again.")
				}
				return
			}
		}
		mux.ServeHTTP(w, r)
	})
	return s.instrument(securityHeaders(protected))
}

// originCheck is the cross-origin protection for the running web.public_url: beside the
// browser's Sec-Fetch-Site and the Host header, an Origin equal to the public URL's is the
// desk's own (a proxy may pass on another Host).
func (s *Server) originCheck() *http.CrossOriginProtection {
	pub := s.cfg().Web.PublicURL
	if oc := s.cop.Load(); oc != nil && oc.publicURL == pub {
		return oc.cop
	}
	cop := http.NewCrossOriginProtection()
	if u, err := url.Parse(pub); err == nil && u.Scheme != "" && u.Host != "" {
		if err := cop.AddTrustedOrigin(u.Scheme + "://" + u.Host); err != nil {
			s.log.Warn("web.public_url is no origin to trust", "url", pub, "err", err)
		}
	}
	s.cop.Store(&originCheck{publicURL: pub, cop: cop})
	return cop
}

// securityHeaders sets, on every answer (errors and static files too), the headers that keep
// the pages from being framed, sniffed, or made to run anything but their own style sheet,
// and bounds the request body.
func securityHeaders(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		h.Set("Content-Security-Policy", contentSecurityPolicy)
		h.Set("X-Content-Type-Options", "nosniff")
		h.Set("Referrer-Policy", "no-referrer")
		h.Set("X-Frame-Options", "DENY")
		h.Set("Cross-Origin-Opener-Policy", "same-origin")
		// Pages show tickets and carry sessions: no cache between the browser and the desk
		// may keep them. /static/ says otherwise for itself.
		h.Set("Cache-Control", "no-store")
		if r.Body != nil {
			r.Body = http.MaxBytesReader(w, r.Body, maxFormBytes)
		}
		next.ServeHTTP(w, r)
	})
}

// instrument counts each request under the pattern of the route that took it, which the mux
// writes into the request.
func (s *Server) instrument(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		sw := &statusWriter{ResponseWriter: w}
		next.ServeHTTP(sw, r)
		page := r.Pattern
		if page == "" || page == "/" {
			page = "unrouted"
		}
		if sw.code == 0 {
			sw.code = http.StatusOK
		}
		metrics.WebRequests.WithLabelValues(page, strconv.Itoa(sw.code)).Inc()
		metrics.WebRequestSeconds.WithLabelValues(page).Observe(time.Since(start).Seconds())
	})
}

type statusWriter struct {
	http.ResponseWriter
	code int
}

func (w *statusWriter) WriteHeader(code int) {
	if w.code == 0 {
		w.code = code
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *statusWriter) Write(b []byte) (int, error) {
	if w.code == 0 {
		w.code = http.StatusOK
	}
	return w.ResponseWriter.Write(b)
}

// Unwrap lets http.ResponseController reach the connection (flushes, deadlines).
func (w *statusWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

func (s *Server) serveStatic(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("file")
	f, ok := s.static[name]
	if !ok {
		s.errorPage(w, r, http.StatusNotFound, "")
		return
	}
	w.Header().Set("Cache-Control", "no-cache")
	w.Header().Set("ETag", f.etag)
	// ServeContent types the file by its extension (text/css) and answers If-None-Match.
	http.ServeContent(w, r, name, time.Time{}, bytes.NewReader(f.body))
}

// Page is what the layout is given: the page's title, the desk's name, the signed-in agent
// (nil on pages for requesters and the signed-out) and the page's own data.
type Page struct {
	Title   string
	Product string
	Agent   *Agent
	Data    any
}

// render answers with the page template name (a file in templates/) in the layout, with
// status code. The page is rendered whole before anything is sent, so that a template error
// gives a clean 500 rather than half a page.
func (s *Server) render(w http.ResponseWriter, r *http.Request, code int, name, title string, data any) {
	t, ok := s.pages[name]
	if !ok {
		s.log.Error("web: no such page template", "template", name)
		http.Error(w, "internal error", http.StatusInternalServerError)
		return
	}
	p := Page{Title: title, Product: s.product(), Data: data}
	if a, ok := agentFrom(r.Context()); ok {
		p.Agent = &a
	}
	var buf bytes.Buffer
	if err := t.ExecuteTemplate(&buf, "layout.html", p); err != nil {
		s.log.Error("web: rendering failed", "template", name, "err", err)
		http.Error(w, "internal error", http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.WriteHeader(code)
	w.Write(buf.Bytes())
}

func (s *Server) product() string {
	if n := s.cfg().Support.Name; n != "" {
		return n
	}
	return ProductName
}

// errorData is error.html's data.
type errorData struct {
	Code    int
	Message string
}

// errorPage answers code with a page in the layout. msg says what went wrong in the
// reader's words; "" uses a sentence for the code.
func (s *Server) errorPage(w http.ResponseWriter, r *http.Request, code int, msg string) {
	if msg == "" {
		switch code {
		case http.StatusNotFound:
			msg = "There is no page at this address. If you followed a link, it may have expired or been mistyped."
		case http.StatusForbidden:
			msg = "You may not do this."
		case http.StatusBadRequest:
			msg = "The request could not be understood. Go back and try again."
		default:
			msg = http.StatusText(code)
		}
	}
	s.render(w, r, code, "error.html", http.StatusText(code), errorData{Code: code, Message: msg})
}

// Listen serves the pages on address until Close or Shutdown. The timeouts keep a slow or
// idle client from holding a connection for long: the pages are small, and attachments are
// bounded by limits.max_message_bytes.
func (s *Server) Listen(address string) (net.Addr, error) {
	l, err := net.Listen("tcp", address)
	if err != nil {
		return nil, err
	}
	s.http = &http.Server{
		Handler:           s.Handler(),
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       30 * time.Second,
		WriteTimeout:      5 * time.Minute,
		IdleTimeout:       2 * time.Minute,
		MaxHeaderBytes:    64 << 10,
		ErrorLog:          slog.NewLogLogger(s.log.Handler(), slog.LevelDebug),
	}
	go func() {
		if err := s.http.Serve(l); err != nil && !errors.Is(err, http.ErrServerClosed) {
			s.log.Error("web listener stopped", "err", err)
		}
	}()
	return l.Addr(), nil
}

// Shutdown stops taking connections and waits for the requests under way, until ctx ends.
func (s *Server) Shutdown(ctx context.Context) error {
	defer s.sending.Wait()
	if s.http == nil {
		return nil
	}
	if err := s.http.Shutdown(ctx); err != nil {
		s.http.Close()
		return fmt.Errorf("web: %w", err)
	}
	return nil
}
