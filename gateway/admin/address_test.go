package admin

import (
	"context"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"

	"github.com/deskgate/deskgate/config"
	"github.com/deskgate/deskgate/gateway/desk"
	"github.com/deskgate/deskgate/store"
)

// withDesk is testServer with a desk service and one ticket, opened by jane.
func withDesk(t *testing.T) http.Handler {
	t.Helper()
	dir := t.TempDir()
	st, err := store.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	cfg := &config.Config{
		Hostname: "mx.test", DataDir: dir,
		Support:        config.Support{Name: "Support", Addresses: []string{"support@example.com"}},
		Limits:         config.Limits{MaxCCs: 48},
		Agents:         []config.Agent{{Email: "alice@example.com", Name: "Alice", Role: "agent"}},
		Policy:         config.Policy{CCsEnabled: true, FollowersEnabled: true, CCRemoval: "email", ReplyAudience: "notification"},
		Notifications:  config.Notifications{TicketCreated: "none", Assigned: "none", Solved: "none"},
		Authentication: config.Authentication{AgentIdentity: "none", DNSResolver: "127.0.0.1:1"},
		Upstream:       config.Upstream{Address: "maildir:" + filepath.Join(dir, "outbox")},
	}
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	d := desk.New(cfg, st, quiet)
	if _, err := d.Receive(context.Background(), desk.Envelope{From: "jane@customer.test", Recipients: []string{"support@example.com"}},
		[]byte("From: jane@customer.test\r\nTo: support@example.com\r\nSubject: s\r\nMessage-ID: <1@customer.test>\r\n\r\nhi\r\n")); err != nil {
		t.Fatal(err)
	}
	return New(Options{Store: st, Log: quiet, Token: "s3cret", Desk: d}).Handler()
}

func send(h http.Handler, method, target, body string) *httptest.ResponseRecorder {
	req := httptest.NewRequest(method, target, strings.NewReader(body))
	req.Header.Set("Authorization", "Bearer s3cret")
	req.Header.Set("Content-Type", "application/json")
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	return rec
}

// An address that is an address but not a valid one is 422 with the reason; one that is no
// address at all stays 400.
func TestInvalidAddressesAre422(t *testing.T) {
	h := withDesk(t)
	for _, tc := range []struct {
		method, target, body string
		code                 int
		reason               string
	}{
		{"POST", "/api/v1/tickets/1/ccs", `{"email": "bob@xn--zz.test"}`, 422, `email: invalid mail address: the domain of "bob@xn--zz.test" is not a valid domain name`},
		{"POST", "/api/v1/tickets/1/ccs", `{"email": "bob@exa!mple.test"}`, 422, "is not a valid domain name"},
		{"POST", "/api/v1/tickets/1/ccs", `{"email": "bob\u0001@example.test"}`, 422, "has a control character (U+0001)"},
		{"POST", "/api/v1/tickets/1/ccs", `{"email": "Bob <bob@example.test>"}`, 400, "is not a mail address"},
		{"POST", "/api/v1/tickets/1/followers", `{"email": "alice@xn--zz.test"}`, 422, "is not a valid domain name"},
		{"DELETE", "/api/v1/tickets/1/ccs/bob@xn--zz.test", "", 422, "is not a valid domain name"},
		{"PATCH", "/api/v1/tickets/1", `{"assignee": "alice@xn--zz.test"}`, 422, "assignee: invalid mail address"},
		{"POST", "/api/v1/tickets/1/comments", `{"author": "alice@xn--zz.test", "body": "x", "public": true}`, 422, "author: invalid mail address"},
		{"POST", "/api/v1/erase", `{"address": "jöe@xn--zz.test"}`, 422, "address: invalid mail address"},
	} {
		rec := send(h, tc.method, tc.target, tc.body)
		if rec.Code != tc.code || !strings.Contains(jsonError(t, tc.target, rec), tc.reason) {
			t.Errorf("%s %s %s: %d %s, want %d …%s…", tc.method, tc.target, tc.body, rec.Code, rec.Body.String(), tc.code, tc.reason)
		}
	}
}

// An address given in A-labels or another case is stored, and shown, in its canonical form.
func TestAddressesAreTakenCanonical(t *testing.T) {
	h := withDesk(t)
	rec := send(h, "POST", "/api/v1/tickets/1/ccs", `{"email": "jöe@XN--BCHER-KVA.TEST", "name": "Jöe"}`)
	if rec.Code != http.StatusCreated || !strings.Contains(rec.Body.String(), `"email":"jöe@bücher.test"`) {
		t.Fatalf("add CC: %d %s, want 201 with jöe@bücher.test", rec.Code, rec.Body.String())
	}
	// Removing by another form of the address removes that CC.
	rec = send(h, "DELETE", "/api/v1/tickets/1/ccs/J%C3%B6e@b%C3%BCcher.test", "")
	if rec.Code != http.StatusOK || !strings.Contains(rec.Body.String(), `"ccs":[]`) {
		t.Errorf("remove CC by another form: %d %s", rec.Code, rec.Body.String())
	}
}
