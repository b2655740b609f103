package web

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/deskgate/deskgate/config"
	"github.com/deskgate/deskgate/gateway/metrics"
	"github.com/deskgate/deskgate/gateway/model"
	"github.com/deskgate/deskgate/store"
)

var linkPattern = regexp.MustCompile(`https://desk\.example\.com/login/[A-Za-z0-9_-]{43}(\?next=[^\s]*)?`)

// signInMails are the sign-in deliveries queued so far: recipient and the link in the text.
func (ts *testSite) signInMails() (to []string, links []string) {
	ts.t.Helper()
	ts.svc.Store().View(func(tx *store.Tx) error {
		for _, id := range tx.QueuedDeliveries(1000) {
			d, err := tx.Delivery(id)
			if err != nil || d.Kind != model.KindSignIn {
				continue
			}
			to = append(to, d.Recipients[0].Email)
			msg := strings.ReplaceAll(string(tx.DeliveryMessage(id)), "=\r\n", "")
			links = append(links, strings.ReplaceAll(linkPattern.FindString(msg), "=3D", "="))
		}
		return nil
	})
	return to, links
}

func askLink(ts *testSite, email string) *httptest.ResponseRecorder {
	return ts.postForm("/login", "email="+email)
}

const sameAnswer = "If that address belongs to an agent, a sign-in link is on its way."

func TestSignInByMailedLink(t *testing.T) {
	ts := newTestSite(t, nil)
	sent := testutil.ToFloat64(metrics.WebSignIns.WithLabelValues("sent"))
	signedIn := testutil.ToFloat64(metrics.WebSignIns.WithLabelValues("signed_in"))

	w := ts.get("/login")
	if w.Code != 200 || !strings.Contains(w.Body.String(), `<label for="email">Your email address</label>`) || !strings.Contains(w.Body.String(), "Email me a sign-in link") {
		t.Fatalf("GET /login: %d\n%s", w.Code, w.Body)
	}
	w = askLink(ts, "alice@example.com")
	if w.Code != 200 || !strings.Contains(w.Body.String(), sameAnswer) {
		t.Fatalf("POST /login: %d\n%s", w.Code, w.Body)
	}
	to, links := ts.signInMails()
	if len(to) != 1 || to[0] != "alice@example.com" || links[0] == "" {
		t.Fatalf("sign-in mails: %q %q", to, links)
	}
	if testutil.ToFloat64(metrics.WebSignIns.WithLabelValues("sent")) != sent+1 {
		t.Error("the sent sign-in is not counted")
	}
	path := strings.TrimPrefix(links[0], "https://desk.example.com")

	// A mail scanner opening the link spends nothing.
	for i := 0; i < 2; i++ {
		w = ts.get(path)
		body := w.Body.String()
		if w.Code != 200 || !strings.Contains(body, `<button type="submit" class="button">Sign in</button>`) || !strings.Contains(body, `action="`+path+`"`) {
			t.Fatalf("GET the link: %d\n%s", w.Code, body)
		}
		if len(w.Result().Cookies()) != 0 {
			t.Fatal("opening the link set a cookie")
		}
	}
	w = ts.postForm(path, "")
	if w.Code != http.StatusSeeOther || w.Header().Get("Location") != "/tickets" {
		t.Fatalf("POST the link: %d %q", w.Code, w.Header().Get("Location"))
	}
	var cookie *http.Cookie
	for _, c := range w.Result().Cookies() {
		if c.Name == CookieName && c.Value != "" {
			cookie = c
		}
	}
	if cookie == nil || !cookie.HttpOnly || !cookie.Secure || cookie.SameSite != http.SameSiteLaxMode {
		t.Fatalf("session cookie: %+v", cookie)
	}
	if w := ts.get("/tickets", cookie); w.Code != 200 || !strings.Contains(w.Body.String(), "Signed in as <strong>Alice</strong>") {
		t.Fatalf("the session does not sign alice in: %d\n%s", w.Code, w.Body)
	}
	if testutil.ToFloat64(metrics.WebSignIns.WithLabelValues("signed_in")) != signedIn+1 {
		t.Error("the sign-in is not counted")
	}

	// The same link a second time signs nobody in.
	w = ts.postForm(path, "")
	if w.Code != http.StatusBadRequest || !strings.Contains(w.Body.String(), "This sign-in link has expired or was used; ask for a new one") ||
		!strings.Contains(w.Body.String(), `href="/login"`) || len(w.Result().Cookies()) != 0 {
		t.Fatalf("the used link: %d %v\n%s", w.Code, w.Result().Cookies(), w.Body)
	}
	// A made-up one neither.
	if w := ts.postForm("/login/AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA", ""); w.Code != http.StatusBadRequest || len(w.Result().Cookies()) != 0 {
		t.Fatalf("a made-up link: %d", w.Code)
	}
	// Opened again, a used or made-up link says at once that it is dead, with no button.
	for _, p := range []string{path, "/login/AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"} {
		w := ts.get(p)
		if body := w.Body.String(); w.Code != http.StatusGone || strings.Contains(body, ">Sign in</button>") ||
			!strings.Contains(body, "This sign-in link has expired or was used; ask for a new one") {
			t.Errorf("GET %s after use: %d\n%s", p, w.Code, body)
		}
	}

	// Sign-out ends the session in the store, not only in the browser.
	w = ts.postForm("/logout", "", cookie)
	if w.Code != http.StatusSeeOther || w.Header().Get("Location") != "/login" {
		t.Fatalf("logout: %d %q", w.Code, w.Header().Get("Location"))
	}
	if w := ts.get("/tickets", cookie); w.Code != http.StatusSeeOther {
		t.Fatalf("the ended session still works: %d", w.Code)
	}
}

func TestSignInLinkExpiresAndCarriesNext(t *testing.T) {
	ts := newTestSite(t, nil)
	ts.postForm("/login", "email=bob@example.com&next=%2Ftickets%2F7")
	_, links := ts.signInMails()
	if len(links) != 1 || !strings.HasSuffix(links[0], "?next=%2Ftickets%2F7") {
		t.Fatalf("links %q", links)
	}
	path := strings.TrimPrefix(links[0], "https://desk.example.com")
	if w := ts.get(path); !strings.Contains(w.Body.String(), `action="/login/`) || !strings.Contains(w.Body.String(), `?next=%2ftickets%2f7"`) {
		t.Fatalf("the button's form does not carry next:\n%s", w.Body)
	}
	w := ts.postForm(path, "")
	if w.Code != http.StatusSeeOther || w.Header().Get("Location") != "/tickets/7" {
		t.Fatalf("next: %d %q", w.Code, w.Header().Get("Location"))
	}

	ts.postForm("/login", "email=bob@example.com&next=https%3A%2F%2Fevil.test%2F")
	_, links = ts.signInMails()
	if len(links) != 2 || strings.Contains(links[1], "evil") {
		t.Fatalf("a foreign next went into the link: %q", links)
	}
	ts.srv.Now = func() time.Time { return time.Now().Add(16 * time.Minute) }
	// Another sign-in meanwhile sweeps what expired long ago, not this link: it still says
	// "expired" (410), not "unknown".
	askLink(ts, "alice@example.com")
	if w := ts.get(strings.TrimPrefix(links[1], "https://desk.example.com")); w.Code != http.StatusGone {
		t.Fatalf("GET an expired link: %d", w.Code)
	}
	w = ts.postForm(strings.TrimPrefix(links[1], "https://desk.example.com"), "")
	if w.Code != http.StatusGone || !strings.Contains(w.Body.String(), "has expired or was used") || len(w.Result().Cookies()) != 0 {
		t.Fatalf("an expired link: %d\n%s", w.Code, w.Body)
	}
}

// Whoever asks, the page answers alike; only agents get mail.
func TestSignInSameAnswerForEveryAddress(t *testing.T) {
	ts := newTestSite(t, nil)
	notAgent := testutil.ToFloat64(metrics.WebSignIns.WithLabelValues("not_agent"))
	agent := askLink(ts, "alice@example.com")
	for _, email := range []string{"stranger@example.org", "support@example.com", "not-an-address"} {
		w := askLink(ts, email)
		if w.Code != agent.Code || w.Body.String() != agent.Body.String() {
			t.Errorf("%s got another answer than an agent: %d\n%s", email, w.Code, w.Body)
		}
	}
	if to, _ := ts.signInMails(); len(to) != 1 {
		t.Fatalf("sign-in mails to %q, want alice's only", to)
	}
	if testutil.ToFloat64(metrics.WebSignIns.WithLabelValues("not_agent")) != notAgent+3 {
		t.Error("not_agent is not counted")
	}
	// A light agent is an agent here.
	askLink(ts, "Bob@Example.com")
	if to, _ := ts.signInMails(); len(to) != 2 || to[1] != "bob@example.com" {
		t.Fatalf("sign-in mails to %q", to)
	}
}

func TestSignInRateLimits(t *testing.T) {
	ts := newTestSite(t, func(c *config.Config) {
		for i := 1; i <= 5; i++ {
			c.Agents = append(c.Agents, config.Agent{Email: fmt.Sprintf("agent%d@example.com", i), Name: fmt.Sprintf("Agent %d", i), Role: config.RoleAgent})
		}
	})
	limited := testutil.ToFloat64(metrics.WebSignIns.WithLabelValues("limited"))
	for i := 0; i < 7; i++ {
		if w := askLink(ts, "agent1@example.com"); w.Code != 200 || !strings.Contains(w.Body.String(), sameAnswer) {
			t.Fatalf("ask %d: %d", i, w.Code)
		}
	}
	if to, _ := ts.signInMails(); len(to) != 5 {
		t.Fatalf("%d mails to one address in an hour, want 5", len(to))
	}
	if got := testutil.ToFloat64(metrics.WebSignIns.WithLabelValues("limited")); got != limited+2 {
		t.Errorf("limited counted %v times, want 2", got-limited)
	}
	// From one client: 20 an hour, whatever the addresses.
	for i := 2; i <= 5; i++ {
		for j := 0; j < 5; j++ {
			askLink(ts, fmt.Sprintf("agent%d@example.com", i))
		}
	}
	if to, _ := ts.signInMails(); len(to) != 20 {
		t.Fatalf("%d mails to one client in an hour, want 20", len(to))
	}
	r := httptest.NewRequest(http.MethodPost, "/login", strings.NewReader("email=alice@example.com"))
	r.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	r.Header.Set("Sec-Fetch-Site", "same-origin")
	ts.do(r)
	if to, _ := ts.signInMails(); len(to) != 20 {
		t.Fatalf("the 21st mail from one client went out")
	}
	r = httptest.NewRequest(http.MethodPost, "/login", strings.NewReader("email=alice@example.com"))
	r.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	r.Header.Set("Sec-Fetch-Site", "same-origin")
	r.RemoteAddr = "198.51.100.7:4000"
	ts.do(r)
	if to, _ := ts.signInMails(); len(to) != 21 {
		t.Fatalf("another client was limited too")
	}
	// An hour later the address may ask again.
	ts.srv.Now = func() time.Time { return time.Now().Add(61 * time.Minute) }
	askLink(ts, "agent1@example.com")
	if to, _ := ts.signInMails(); len(to) != 22 {
		t.Fatalf("the limit outlived its hour")
	}
}

// A session of someone who left agents is refused at the link too: the token is spent and
// nobody is signed in.
func TestSignInLinkOfAFormerAgent(t *testing.T) {
	ts := newTestSite(t, nil)
	askLink(ts, "bob@example.com")
	_, links := ts.signInMails()
	ts.reload(func(c *config.Config) { c.Agents = c.Agents[:1] })
	w := ts.postForm(strings.TrimPrefix(links[0], "https://desk.example.com"), "")
	if w.Code != http.StatusBadRequest || len(w.Result().Cookies()) != 0 {
		t.Fatalf("a former agent's link: %d", w.Code)
	}
	if w := ts.postForm(strings.TrimPrefix(links[0], "https://desk.example.com"), ""); w.Code != http.StatusBadRequest {
		t.Fatalf("the spent link of a former agent: %d", w.Code)
	}
}
