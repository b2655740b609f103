package web

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/deskgate/deskgate/config"
	"github.com/deskgate/deskgate/gateway/metrics"
	"github.com/deskgate/deskgate/store"
)

// Two routes that exist only in the tests: a page for agents, which says who is signed in,
// and a state-changing POST, which counts the times it ran.
var testActions int

func init() {
	addRoutes(func(s *Server, r *router) {
		r.handle("GET /test/whoami", s.requireAgent(func(w http.ResponseWriter, r *http.Request, a Agent) {
			s.render(w, r, http.StatusOK, "error.html", "Who am I", errorData{Code: 200, Message: a.Email + " " + a.Role})
		}))
		r.handle("POST /test/act", s.requireAgent(func(w http.ResponseWriter, r *http.Request, a Agent) {
			testActions++
			w.WriteHeader(http.StatusNoContent)
		}))
	})
}

var securityHeaderValues = map[string]string{
	"Content-Security-Policy": "default-src 'none'; style-src 'self'; img-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
	"X-Content-Type-Options":  "nosniff",
	"Referrer-Policy":         "no-referrer",
	"X-Frame-Options":         "DENY",
}

func crossSitePost(path string) *http.Request {
	r := httptest.NewRequest(http.MethodPost, path, strings.NewReader("email=x@evil.test"))
	r.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	r.Header.Set("Origin", "https://evil.test")
	r.Header.Set("Sec-Fetch-Site", "cross-site")
	return r
}

func TestSecurityHeadersOnEveryAnswer(t *testing.T) {
	ts := newTestSite(t, nil)
	for name, w := range map[string]*httptest.ResponseRecorder{
		"style sheet":        ts.get("/static/style.css"),
		"unknown page":       ts.get("/no/such/page"),
		"unknown static":     ts.get("/static/nothing.js"),
		"signed-out page":    ts.get("/test/whoami"),
		"signed-in page":     ts.get("/test/whoami", ts.session("alice@example.com")),
		"cross-site post":    ts.do(crossSitePost("/test/act")),
		"post to a GET page": ts.postForm("/static/style.css", ""),
	} {
		for h, want := range securityHeaderValues {
			if got := w.Header().Get(h); got != want {
				t.Errorf("%s (%d): %s = %q, want %q", name, w.Code, h, got, want)
			}
		}
		if strings.Contains(w.Header().Get("Content-Security-Policy"), "unsafe") {
			t.Errorf("%s: the policy allows something unsafe", name)
		}
	}
}

func TestUnknownPathIsA404PageInTheLayout(t *testing.T) {
	ts := newTestSite(t, nil)
	w := ts.get("/no/such/page?x=%3Cscript%3E")
	if w.Code != http.StatusNotFound {
		t.Fatalf("status %d, want 404", w.Code)
	}
	body := w.Body.String()
	for _, want := range []string{
		`<html lang="en">`, `<title>Not Found · Example Support</title>`, `href="#main"`, `<main id="main"`,
		`<header`, `<footer`, `<h1>Not Found</h1>`, `href="/static/style.css"`, "no page at this address",
	} {
		if !strings.Contains(body, want) {
			t.Errorf("the 404 page lacks %q:\n%s", want, body)
		}
	}
	if strings.Contains(body, "<script") || strings.Contains(body, "style=") {
		t.Errorf("the 404 page carries a script or an inline style:\n%s", body)
	}
	if ct := w.Header().Get("Content-Type"); ct != "text/html; charset=utf-8" {
		t.Errorf("Content-Type %q", ct)
	}
}

func TestCrossOriginPostIsRefused(t *testing.T) {
	ts := newTestSite(t, nil)
	alice := ts.session("alice@example.com")
	testActions = 0

	r := crossSitePost("/test/act")
	r.AddCookie(alice)
	w := ts.do(r)
	if w.Code != http.StatusForbidden || !strings.Contains(w.Body.String(), "came from another site") {
		t.Errorf("cross-site POST: %d %s", w.Code, w.Body)
	}
	// An older browser sends no Sec-Fetch-Site: its Origin, not this site's, gives it away.
	r = httptest.NewRequest(http.MethodPost, "https://desk.example.com/test/act", nil)
	r.Header.Set("Origin", "https://evil.test")
	r.AddCookie(alice)
	if w := ts.do(r); w.Code != http.StatusForbidden {
		t.Errorf("cross-origin POST without Sec-Fetch-Site: %d", w.Code)
	}
	if testActions != 0 {
		t.Fatalf("a refused request ran the action %d times", testActions)
	}

	if w := ts.postForm("/test/act", "", alice); w.Code != http.StatusNoContent || testActions != 1 {
		t.Errorf("same-origin POST: %d, action ran %d times", w.Code, testActions)
	}
	// Behind a proxy that passes another Host, the public URL's origin is still the site's.
	r = httptest.NewRequest(http.MethodPost, "http://127.0.0.1:8080/test/act", nil)
	r.Header.Set("Origin", "https://desk.example.com")
	r.AddCookie(alice)
	if w := ts.do(r); w.Code != http.StatusNoContent || testActions != 2 {
		t.Errorf("POST from the public URL's origin: %d", w.Code)
	}
}

func TestSessionCookieSignsIn(t *testing.T) {
	ts := newTestSite(t, nil)
	w := ts.get("/test/whoami", ts.session("ALICE@example.com"))
	if w.Code != http.StatusOK {
		t.Fatalf("signed in: %d %s", w.Code, w.Header().Get("Location"))
	}
	body := w.Body.String()
	if !strings.Contains(body, "alice@example.com agent") {
		t.Errorf("the page does not name the agent as configured:\n%s", body)
	}
	if !strings.Contains(body, "Signed in as <strong>Alice</strong>") || !strings.Contains(body, `action="/logout"`) {
		t.Errorf("the header shows no signed-in agent and no sign-out:\n%s", body)
	}
	w = ts.get("/test/whoami", ts.session("bob@example.com"))
	if !strings.Contains(w.Body.String(), "bob@example.com light_agent") || !strings.Contains(w.Body.String(), "(light agent)") {
		t.Errorf("a light agent is not one on the page:\n%s", w.Body)
	}
}

func TestNoValidSessionGoesToLogin(t *testing.T) {
	ts := newTestSite(t, nil)
	now := time.Now()
	for name, c := range map[string]*http.Cookie{
		"no cookie":      nil,
		"unknown":        {Name: CookieName, Value: "c29tZXRoaW5nIHRoYXQgd2FzIG5ldmVyIGEgc2Vzc2lvbg"},
		"empty":          {Name: CookieName, Value: ""},
		"expired":        ts.putSession(store.WebSession{Email: "alice@example.com", Created: now.Add(-13 * time.Hour), Expires: now.Add(-time.Hour)}),
		"not an agent":   ts.putSession(store.WebSession{Email: "mallory@example.com", Created: now, Expires: now.Add(time.Hour)}),
		"another cookie": {Name: "session", Value: "x"},
	} {
		var cookies []*http.Cookie
		if c != nil {
			cookies = append(cookies, c)
		}
		w := ts.get("/test/whoami?a=1", cookies...)
		if w.Code != http.StatusSeeOther || w.Header().Get("Location") != "/login?next=%2Ftest%2Fwhoami%3Fa%3D1" {
			t.Errorf("%s: %d to %q, want 303 to /login with next", name, w.Code, w.Header().Get("Location"))
		}
		if strings.Contains(w.Body.String(), "alice@example.com") {
			t.Errorf("%s: the answer names the agent", name)
		}
	}
	// A POST without a session goes to /login and runs nothing.
	testActions = 0
	if w := ts.postForm("/test/act", ""); w.Code != http.StatusSeeOther || w.Header().Get("Location") != "/login" || testActions != 0 {
		t.Errorf("POST without a session: %d to %q, ran %d", w.Code, w.Header().Get("Location"), testActions)
	}
}

func TestSessionOfAFormerAgentEnds(t *testing.T) {
	ts := newTestSite(t, nil)
	alice := ts.session("alice@example.com")
	if w := ts.get("/test/whoami", alice); w.Code != http.StatusOK {
		t.Fatalf("before the reload: %d", w.Code)
	}
	ts.reload(func(c *config.Config) { c.Agents = c.Agents[1:] })
	w := ts.get("/test/whoami", alice)
	if w.Code != http.StatusSeeOther {
		t.Fatalf("after alice left agents: %d, want a redirect to /login", w.Code)
	}
	if c := cookieOf(w, CookieName); c == nil || c.MaxAge >= 0 {
		t.Errorf("the ended session's cookie is not cleared: %+v", c)
	}
	// Ended, not suspended: made an agent again, she signs in anew.
	ts.reload(func(c *config.Config) {
		c.Agents = append(c.Agents, config.Agent{Email: "alice@example.com", Role: config.RoleAgent})
	})
	if w := ts.get("/test/whoami", alice); w.Code != http.StatusSeeOther {
		t.Errorf("the old session came back with the agent: %d", w.Code)
	}
}

func TestSignOutEndsTheSession(t *testing.T) {
	ts := newTestSite(t, nil)
	alice := ts.session("alice@example.com")
	r := httptest.NewRequest(http.MethodPost, "/logout", nil)
	r.AddCookie(alice)
	w := httptest.NewRecorder()
	if err := ts.srv.endSession(w, r); err != nil {
		t.Fatal(err)
	}
	if c := cookieOf(w, CookieName); c == nil || c.MaxAge >= 0 || c.Value != "" {
		t.Errorf("sign-out does not clear the cookie: %+v", c)
	}
	if w := ts.get("/test/whoami", alice); w.Code != http.StatusSeeOther {
		t.Errorf("the session outlived sign-out: %d", w.Code)
	}
}

func TestSessionCookieAttributes(t *testing.T) {
	for _, tc := range []struct {
		url    string
		secure bool
	}{{"https://desk.example.com", true}, {"http://localhost:8080", false}} {
		ts := newTestSite(t, func(c *config.Config) { c.Web.PublicURL = tc.url; c.Web.SessionLifetime = 2 * time.Hour })
		w := httptest.NewRecorder()
		if err := ts.srv.startSession(t.Context(), w, "alice@example.com"); err != nil {
			t.Fatal(err)
		}
		c := cookieOf(w, CookieName)
		if c == nil {
			t.Fatal("no cookie")
		}
		if !c.HttpOnly || c.SameSite != http.SameSiteLaxMode || c.Path != "/" || c.Secure != tc.secure {
			t.Errorf("%s: cookie %+v: want HttpOnly, SameSite=Lax, Path=/, Secure %v", tc.url, c, tc.secure)
		}
		if c.MaxAge < 7190 || c.MaxAge > 7200 || len(c.Value) != 43 {
			t.Errorf("%s: cookie lives %ds with a %d-character id; want web.session_lifetime (2h), 256 bits", tc.url, c.MaxAge, len(c.Value))
		}
	}
}

func TestTrustedHeader(t *testing.T) {
	ts := newTestSite(t, func(c *config.Config) {
		c.Web.TrustedHeader = "X-Forwarded-Email"
		c.Web.TrustedProxies = []string{"192.0.2.0/24", "::1"}
	})
	ask := func(remote, email string) *httptest.ResponseRecorder {
		r := httptest.NewRequest(http.MethodGet, "/test/whoami", nil)
		r.RemoteAddr = remote
		r.Header.Set("X-Forwarded-Email", email)
		return ts.do(r)
	}
	for _, tc := range []struct {
		remote, email string
		want          int
	}{
		{"192.0.2.7:41000", "alice@example.com", http.StatusOK},
		{"192.0.2.7:41000", "Bob@Example.com", http.StatusOK},
		{"[::1]:41000", "alice@example.com", http.StatusOK},
		{"[::ffff:192.0.2.7]:41000", "alice@example.com", http.StatusOK},
		{"203.0.113.9:41000", "alice@example.com", http.StatusSeeOther},   // not a trusted proxy
		{"192.0.2.7:41000", "mallory@example.com", http.StatusSeeOther},   // not an agent
		{"192.0.2.7:41000", "", http.StatusSeeOther},                      // the proxy signed nobody in
		{"not an address", "alice@example.com", http.StatusSeeOther},      // unreadable peer
		{"[2001:db8::1]:41000", "alice@example.com", http.StatusSeeOther}, // outside the list
	} {
		if w := ask(tc.remote, tc.email); w.Code != tc.want {
			t.Errorf("from %s as %q: %d, want %d", tc.remote, tc.email, w.Code, tc.want)
		}
	}
	// Signed in by the proxy, she is offered no sign-out that the proxy would undo at once.
	r := httptest.NewRequest(http.MethodGet, "/tickets", nil)
	r.RemoteAddr = "192.0.2.7:41000"
	r.Header.Set("X-Forwarded-Email", "alice@example.com")
	if page := ts.do(r).Body.String(); !strings.Contains(page, "Signed in as") || strings.Contains(page, "Sign out") {
		t.Errorf("a page signed in by the trusted header offers to sign out (or names nobody)")
	}
	if page := ts.get("/tickets", ts.session("alice@example.com")).Body.String(); !strings.Contains(page, "Sign out") {
		t.Errorf("a page signed in by a session offers no sign-out")
	}
	// Without web.trusted_header the header is nobody, whoever sends it.
	ts.reload(func(c *config.Config) { c.Web.TrustedHeader = "" })
	if w := ask("192.0.2.7:41000", "alice@example.com"); w.Code != http.StatusSeeOther {
		t.Errorf("the header believed with web.trusted_header off: %d", w.Code)
	}
}

func TestStyleSheet(t *testing.T) {
	ts := newTestSite(t, nil)
	w := ts.get("/static/style.css")
	if w.Code != http.StatusOK || !strings.HasPrefix(w.Header().Get("Content-Type"), "text/css") {
		t.Fatalf("style sheet: %d %q", w.Code, w.Header().Get("Content-Type"))
	}
	if !strings.Contains(w.Body.String(), ":focus-visible") {
		t.Error("the style sheet has no visible focus")
	}
	etag := w.Header().Get("ETag")
	r := httptest.NewRequest(http.MethodGet, "/static/style.css", nil)
	r.Header.Set("If-None-Match", etag)
	if w := ts.do(r); etag == "" || w.Code != http.StatusNotModified {
		t.Errorf("revalidation with ETag %q: %d", etag, w.Code)
	}
}

func TestRequestsAreCountedByRoute(t *testing.T) {
	ts := newTestSite(t, nil)
	count := func(page, code string) float64 {
		return testutil.ToFloat64(metrics.WebRequests.WithLabelValues(page, code))
	}
	css, unrouted, refused := count("GET /static/{file}", "200"), count("unrouted", "404"), count("cross-origin", "403")
	ts.get("/static/style.css")
	for i := range 3 {
		ts.get(fmt.Sprintf("/random/%d", i))
	}
	ts.do(crossSitePost("/test/act"))
	if got := count("GET /static/{file}", "200") - css; got != 1 {
		t.Errorf("style sheet counted %v times", got)
	}
	if got := count("unrouted", "404") - unrouted; got != 3 {
		t.Errorf("unknown paths counted %v times under one label", got)
	}
	if got := count("cross-origin", "403") - refused; got != 1 {
		t.Errorf("refused cross-origin requests counted %v times", got)
	}
}

func TestLocalPath(t *testing.T) {
	for in, want := range map[string]string{
		"/tickets/4?x=1":      "/tickets/4?x=1",
		"/":                   "/",
		"":                    "/tickets",
		"//evil.test/x":       "/tickets",
		"https://evil.test/":  "/tickets",
		"/\\evil.test":        "/tickets",
		"javascript:alert(1)": "/tickets",
		"tickets":             "/tickets",
		"/x\r\nSet-Cookie: a": "/tickets",
	} {
		if got := localPath(in); got != want {
			t.Errorf("localPath(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestPathsUnderAPrefix(t *testing.T) {
	ts := newTestSite(t, func(c *config.Config) { c.Web.PublicURL = "https://example.com/desk" })
	w := ts.get("/nothing")
	if !strings.Contains(w.Body.String(), `href="/desk/static/style.css"`) {
		t.Errorf("the layout links the style sheet outside the prefix:\n%s", w.Body)
	}
	if w := ts.get("/test/whoami"); w.Header().Get("Location") != "/desk/login?next=%2Ftest%2Fwhoami" {
		t.Errorf("redirect to %q", w.Header().Get("Location"))
	}
	if got := ts.srv.URL("/requests/1-x"); got != "https://example.com/desk/requests/1-x" {
		t.Errorf("URL = %q", got)
	}
}

func TestTrustedProxyMatching(t *testing.T) {
	nets := []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8")}
	if !fromTrustedProxy("10.1.2.3:80", nets) || fromTrustedProxy("11.0.0.1:80", nets) || fromTrustedProxy("10.1.2.3", nets) {
		t.Error("fromTrustedProxy")
	}
}

func cookieOf(w *httptest.ResponseRecorder, name string) *http.Cookie {
	for _, c := range w.Result().Cookies() {
		if c.Name == name {
			return c
		}
	}
	return nil
}

// A page asked for with a method it does not take answers 405 with Allow, in the layout; a
// path that is no page answers 404.
func TestWrongMethodIs405(t *testing.T) {
	ts := newTestSite(t, nil)
	for path, allow := range map[string]string{"/logout": "POST", "/tickets": "GET", "/login": "GET, POST"} {
		r := httptest.NewRequest(http.MethodPut, path, nil)
		r.Header.Set("Sec-Fetch-Site", "same-origin")
		w := ts.do(r)
		if w.Code != http.StatusMethodNotAllowed || w.Header().Get("Allow") != allow || w.Header().Get("Content-Security-Policy") == "" {
			t.Errorf("PUT %s: %d, Allow %q, want 405 with Allow %q", path, w.Code, w.Header().Get("Allow"), allow)
		}
	}
	if w := ts.get("/logout"); w.Code != http.StatusMethodNotAllowed || w.Header().Get("Allow") != "POST" {
		t.Errorf("GET /logout: %d, Allow %q", w.Code, w.Header().Get("Allow"))
	}
	if w := ts.get("/no/such/page"); w.Code != http.StatusNotFound || w.Header().Get("Allow") != "" {
		t.Errorf("GET /no/such/page: %d", w.Code)
	}
}
