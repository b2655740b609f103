package web

import (
	"context"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/deskgate/deskgate/config"
	"github.com/deskgate/deskgate/gateway/desk"
	"github.com/deskgate/deskgate/internal/storetest"
	"github.com/deskgate/deskgate/store"
)

func TestMain(m *testing.M) { storetest.Main(m) }

// testSite is a Server on a fresh store (bbolt, or PostgreSQL under DESKGATE_TEST_STORE),
// whose config a test can swap as a reload does.
type testSite struct {
	t       *testing.T
	cfg     atomic.Pointer[config.Config]
	svc     *desk.Service
	srv     *Server
	handler http.Handler
}

// testConfig has two agents, alice (agent) and bob (light agent), and the pages on
// https://desk.example.com.
func testConfig(dir string) *config.Config {
	return &config.Config{
		Hostname: "mx.test", DataDir: dir,
		Listen:  config.Listen{Web: "127.0.0.1:0"},
		Support: config.Support{Name: "Example Support", Addresses: []string{"support@example.com"}},
		Limits:  config.Limits{MaxCCs: 48},
		Agents: []config.Agent{
			{Email: "alice@example.com", Name: "Alice", Role: config.RoleAgent},
			{Email: "bob@example.com", Name: "Bob", Role: config.RoleLightAgent},
		},
		Policy: config.Policy{CCsEnabled: true, FollowersEnabled: true, AgentCCBecomesFollower: true, CCRemoval: "email",
			ReplyAudience: "notification", CCAttachments: true},
		Notifications:  config.Notifications{TicketCreated: "requester", Assigned: "requester_and_ccs", Solved: "requester_and_ccs"},
		Authentication: config.Authentication{AgentIdentity: "none", DNSResolver: "127.0.0.1:1"},
		Upstream:       config.Upstream{Address: "maildir:" + filepath.Join(dir, "outbox")},
		Web: config.Web{PublicURL: "https://desk.example.com", StatusView: config.StatusViewRequester,
			SessionLifetime: 12 * time.Hour},
	}
}

func newTestSite(t *testing.T, mod func(*config.Config)) *testSite {
	t.Helper()
	dir := t.TempDir()
	cfg := testConfig(dir)
	if mod != nil {
		mod(cfg)
	}
	st := storetest.Open(t, dir)
	logger := slog.New(slog.NewTextHandler(io.Discard, nil))
	ts := &testSite{t: t}
	ts.svc = desk.New(cfg, st, logger)
	ts.cfg.Store(cfg)
	ts.srv = New(ts.cfg.Load, ts.svc, logger)
	ts.handler = ts.srv.Handler()
	return ts
}

// reload swaps in a changed copy of the running config, as SIGHUP does.
func (ts *testSite) reload(mod func(*config.Config)) {
	cfg := *ts.cfg.Load()
	cfg.Agents = append([]config.Agent(nil), cfg.Agents...)
	mod(&cfg)
	ts.svc.SetConfig(&cfg)
	ts.cfg.Store(&cfg)
}

// do sends r through the whole site, as from a browser on the same site unless r says
// otherwise, and returns the recorded answer.
func (ts *testSite) do(r *http.Request) *httptest.ResponseRecorder {
	w := httptest.NewRecorder()
	ts.handler.ServeHTTP(w, r)
	ts.srv.sending.Wait() // what the page set going in the background is done
	return w
}

func (ts *testSite) get(path string, cookies ...*http.Cookie) *httptest.ResponseRecorder {
	r := httptest.NewRequest(http.MethodGet, path, nil)
	for _, c := range cookies {
		r.AddCookie(c)
	}
	return ts.do(r)
}

// postForm posts form to path as the site's own page would (Sec-Fetch-Site: same-origin).
func (ts *testSite) postForm(path, form string, cookies ...*http.Cookie) *httptest.ResponseRecorder {
	r := httptest.NewRequest(http.MethodPost, path, strings.NewReader(form))
	r.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	r.Header.Set("Sec-Fetch-Site", "same-origin")
	r.Header.Set("Origin", "https://desk.example.com")
	for _, c := range cookies {
		r.AddCookie(c)
	}
	return ts.do(r)
}

// session signs email in through the store and returns the cookie a browser would send.
func (ts *testSite) session(email string) *http.Cookie {
	ts.t.Helper()
	w := httptest.NewRecorder()
	if err := ts.srv.startSession(context.Background(), w, email); err != nil {
		ts.t.Fatal(err)
	}
	for _, c := range w.Result().Cookies() {
		if c.Name == CookieName {
			return &http.Cookie{Name: c.Name, Value: c.Value}
		}
	}
	ts.t.Fatal("startSession set no session cookie")
	return nil
}

// putSession stores a session as it is, expired or not, and returns its cookie.
func (ts *testSite) putSession(ws store.WebSession) *http.Cookie {
	ts.t.Helper()
	id, err := store.NewWebToken()
	if err != nil {
		ts.t.Fatal(err)
	}
	if err := ts.svc.Store().Update(context.Background(), func(tx *store.Tx) error { return tx.PutWebSession(id, ws) }); err != nil {
		ts.t.Fatal(err)
	}
	return &http.Cookie{Name: CookieName, Value: id}
}
