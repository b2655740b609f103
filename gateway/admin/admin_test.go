package admin

import (
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/deskgate/deskgate/config"
	"github.com/deskgate/deskgate/store"
)

// testServer is the handler of an API on a fresh store, with reload as its reload hook (nil for none).
func testServer(t *testing.T, reload func() (string, []config.Problem, error)) http.Handler {
	t.Helper()
	st, err := store.Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	return New(Options{Store: st, Log: slog.New(slog.NewTextHandler(io.Discard, nil)), Token: "s3cret", Reload: reload}).Handler()
}

// call makes one request with the Authorization header as given ("" for none).
func call(h http.Handler, method, target, authorization string) *httptest.ResponseRecorder {
	req := httptest.NewRequest(method, target, nil)
	if authorization != "" {
		req.Header.Set("Authorization", authorization)
	}
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	return rec
}

// jsonError is the answer's {"error": ...}, or a test failure when the answer is not that.
func jsonError(t *testing.T, what string, rec *httptest.ResponseRecorder) string {
	t.Helper()
	if ct := rec.Header().Get("Content-Type"); ct != "application/json" {
		t.Errorf("%s: Content-Type %q, want application/json; body %q", what, ct, rec.Body.String())
	}
	var e struct {
		Error string `json:"error"`
	}
	if err := json.Unmarshal(rec.Body.Bytes(), &e); err != nil || e.Error == "" {
		t.Errorf("%s: body %q is not {\"error\": ...}", what, rec.Body.String())
	}
	return e.Error
}

// The scheme name of Authorization is case-insensitive (RFC 9110 11.1), and one or more
// spaces part it from the token; anything else is still 401.
func TestBearerSchemeInAnyCase(t *testing.T) {
	h := testServer(t, nil)
	for _, auth := range []string{"Bearer s3cret", "bearer s3cret", "BEARER s3cret", "bEaReR s3cret", "Bearer   s3cret", "bearer  s3cret "} {
		if rec := call(h, "GET", "/api/v1/tickets", auth); rec.Code != http.StatusOK {
			t.Errorf("Authorization %q: %d %s, want 200", auth, rec.Code, rec.Body.String())
		}
	}
	for _, auth := range []string{"", "Bearer", "bearer ", "Bearers3cret", "Basic s3cret", "Bearer S3CRET", "Bearer wrong", "Bearer s3cret extra", "Bearer\ts3cret", "Token s3cret"} {
		rec := call(h, "GET", "/api/v1/tickets", auth)
		if rec.Code != http.StatusUnauthorized {
			t.Errorf("Authorization %q: %d, want 401", auth, rec.Code)
			continue
		}
		jsonError(t, "401 for "+auth, rec)
		if rec.Header().Get("WWW-Authenticate") == "" {
			t.Errorf("Authorization %q: 401 without WWW-Authenticate", auth)
		}
	}
}

// Every path under /api/v1 answers JSON, never a redirect: ServeMux would send a 301 or 307
// with an HTML body to the cleaned path or to the path with a slash added.
func TestAPIPathsNeverRedirect(t *testing.T) {
	h := testServer(t, nil)
	for _, target := range []string{
		"/api/v1/tickets/../", "/api/v1/tickets/..", "/api/v1/tickets/", "/api/v1/tickets/./1",
		"/api/v1//tickets", "/api/v1/tickets/1/", "/api/v1", "/api/v1/", "/api/v1/../healthz",
		"/api/v1/tickets/../?status=open", "/api//v1/tickets", "/./api/v1/tickets", "/api/../api/v1/tickets",
	} {
		for _, auth := range []string{"Bearer s3cret", ""} {
			rec := call(h, "GET", target, auth)
			what := "GET " + target
			if auth == "" {
				what += " without a token"
			}
			if rec.Code/100 == 3 || rec.Header().Get("Location") != "" {
				t.Errorf("%s: %d Location %q: a redirect", what, rec.Code, rec.Header().Get("Location"))
				continue
			}
			want := http.StatusNotFound
			if auth == "" {
				want = http.StatusUnauthorized
			}
			if rec.Code != want {
				t.Errorf("%s: %d %s, want %d", what, rec.Code, rec.Body.String(), want)
			}
			jsonError(t, what, rec)
		}
	}
}

// A known path with a wrong method is 405 in JSON, with Allow.
func TestWrongMethodIsJSONWithAllow(t *testing.T) {
	h := testServer(t, nil)
	for _, c := range []struct{ method, target, allow string }{
		{"PUT", "/api/v1/tickets", "GET, HEAD"},
		{"POST", "/api/v1/queue", "GET, HEAD"},
		{"GET", "/api/v1/reload", "POST"},
		{"GET", "/api/v1/erase", "POST"},
	} {
		rec := call(h, c.method, c.target, "Bearer s3cret")
		if rec.Code != http.StatusMethodNotAllowed || rec.Header().Get("Allow") != c.allow {
			t.Errorf("%s %s: %d Allow %q, want 405 Allow %q", c.method, c.target, rec.Code, rec.Header().Get("Allow"), c.allow)
		}
		jsonError(t, c.method+" "+c.target, rec)
	}
}

// POST /api/v1/reload answers once the reload is done: 200 with the file and its warnings, or
// 422 with every problem by key when the file was refused.
func TestReloadAnswers(t *testing.T) {
	h := testServer(t, nil)
	if rec := call(h, "POST", "/api/v1/reload", ""); rec.Code != http.StatusUnauthorized {
		t.Errorf("reload without a token: %d, want 401", rec.Code)
	}

	// A daemon that cannot reload (no hook) says so, in JSON.
	rec := call(h, "POST", "/api/v1/reload", "Bearer s3cret")
	if rec.Code != http.StatusServiceUnavailable {
		t.Errorf("reload without a hook: %d, want 503", rec.Code)
	}
	jsonError(t, "reload without a hook", rec)

	// The daemon's hook, which each case below replaces.
	var hook func() (string, []config.Problem, error)
	h = testServer(t, func() (string, []config.Problem, error) { return hook() })
	calls := 0
	hook = func() (string, []config.Problem, error) {
		calls++
		return "/etc/deskgate/deskgate.yaml", []config.Problem{{Key: "authentication.agent_identity", Msg: "none: anyone can write as an agent"}}, nil
	}
	rec = call(h, "POST", "/api/v1/reload", "Bearer s3cret")
	var ok Reloaded
	if rec.Code != http.StatusOK || json.Unmarshal(rec.Body.Bytes(), &ok) != nil {
		t.Fatalf("reload: %d %s, want 200 JSON", rec.Code, rec.Body.String())
	}
	if calls != 1 || ok.Config != "/etc/deskgate/deskgate.yaml" || len(ok.Warnings) != 1 || ok.Warnings[0].Key != "authentication.agent_identity" || !strings.Contains(ok.Warnings[0].Message, "anyone") {
		t.Errorf("reload answer %+v after %d calls", ok, calls)
	}

	hook = func() (string, []config.Problem, error) {
		return "/etc/deskgate/deskgate.yaml", nil, config.Problems{{Key: "limits.max_ccs", Msg: "must be at least 1"}, {Msg: "line 3: did not find expected key"}}
	}
	rec = call(h, "POST", "/api/v1/reload", "Bearer s3cret")
	if rec.Code != http.StatusUnprocessableEntity {
		t.Fatalf("refused reload: %d %s, want 422", rec.Code, rec.Body.String())
	}
	msg := jsonError(t, "refused reload", rec)
	var refused ReloadRefused
	json.Unmarshal(rec.Body.Bytes(), &refused)
	if !strings.Contains(msg, "running config") || len(refused.Problems) != 2 || refused.Problems[0].Key != "limits.max_ccs" ||
		refused.Problems[0].Message != "must be at least 1" || refused.Problems[1].Key != "" || !strings.Contains(refused.Problems[1].Message, "line 3") {
		t.Errorf("refused reload answer %s", rec.Body.String())
	}

	// Something other than the file's problems (it should not happen) is still a refusal
	// with one problem, not a bare 500.
	hook = func() (string, []config.Problem, error) {
		return "/x.yaml", nil, errors.New("reload in progress elsewhere")
	}
	rec = call(h, "POST", "/api/v1/reload", "Bearer s3cret")
	json.Unmarshal(rec.Body.Bytes(), &refused)
	if rec.Code != http.StatusUnprocessableEntity || len(refused.Problems) != 1 || !strings.Contains(refused.Problems[0].Message, "in progress") {
		t.Errorf("reload that failed otherwise: %d %s", rec.Code, rec.Body.String())
	}
}

// Profiles show what the daemon holds and does: only the token's holder gets them.
func TestProfilesNeedTheToken(t *testing.T) {
	h := testServer(t, nil)
	for _, target := range []string{"/debug/pprof/", "/debug/pprof/heap", "/debug/pprof/goroutine?debug=2", "/debug/pprof/allocs", "/debug/pprof/profile?seconds=1"} {
		for _, auth := range []string{"", "Bearer wrong"} {
			if rec := call(h, "GET", target, auth); rec.Code != http.StatusUnauthorized {
				t.Errorf("%s with Authorization %q: %d, want 401", target, auth, rec.Code)
			}
		}
	}
	for _, target := range []string{"/debug/pprof/", "/debug/pprof/heap", "/debug/pprof/goroutine?debug=2"} {
		if rec := call(h, "GET", target, "Bearer s3cret"); rec.Code != http.StatusOK || rec.Body.Len() == 0 {
			t.Errorf("%s with the token: %d, %d bytes, want 200 and a profile", target, rec.Code, rec.Body.Len())
		}
	}
}
