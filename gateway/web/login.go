package web

// Sign-in by mail: an agent asks for a link on /login, deskgate mails it through its own
// queue (desk.Service.SignIn), and the link's page spends the token only when its button is
// pressed, because mail scanners open links.

import (
	"context"
	"errors"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/deskgate/deskgate/gateway/metrics"
	"github.com/deskgate/deskgate/gateway/model"
	"github.com/deskgate/deskgate/store"
)

// The sign-in mail limits (issue 20): per address asked for and per client address, an hour.
const (
	signInsPerAddress = 5
	signInsPerClient  = 20
	signInWindow      = time.Hour
)

// Sign-in outcomes, the label of metrics.WebSignIns.
const (
	outcomeSent     = "sent"      // a link was queued
	outcomeNotAgent = "not_agent" // no agent has that address: nothing sent
	outcomeLimited  = "limited"   // over a limit: nothing sent
	outcomeError    = "error"     // the store failed: nothing sent
	outcomeSignedIn = "signed_in" // a link's button started a session
	outcomeExpired  = "expired"   // a link past its 15 minutes (spent all the same)
	outcomeInvalid  = "invalid"   // a link that is unknown or was used already
	outcomeGone     = "gone"      // a good link of someone no longer among the agents
)

func init() {
	for _, o := range []string{outcomeSent, outcomeNotAgent, outcomeLimited, outcomeError, outcomeSignedIn, outcomeExpired, outcomeInvalid, outcomeGone} {
		metrics.WebSignIns.WithLabelValues(o)
	}
	addRoutes(func(s *Server, r *router) {
		r.handle("GET /login", s.loginForm)
		r.handle("POST /login", s.loginAsk)
		r.handle("GET /login/{token}", s.loginLink)
		r.handle("POST /login/{token}", s.loginSpend)
		r.handle("POST /logout", s.logout)
	})
}

// loginData is login.html's data.
type loginData struct {
	Next  string // where to go once signed in, carried in the mailed link
	Sent  bool   // the answer to a POST, the same for every address
	Error string
}

// confirmData is login_confirm.html's data.
type confirmData struct {
	Action string // the form's target: the link itself
	Next   string
}

func (s *Server) loginForm(w http.ResponseWriter, r *http.Request) {
	next := localPath(r.URL.Query().Get("next"))
	if _, ok := s.agent(r); ok {
		http.Redirect(w, r, s.path(next), http.StatusSeeOther)
		return
	}
	s.render(w, r, http.StatusOK, "login.html", "Sign in", loginData{Next: next})
}

// loginAsk answers every address alike, so that the page tells nobody who the agents are.
func (s *Server) loginAsk(w http.ResponseWriter, r *http.Request) {
	email := strings.TrimSpace(r.PostFormValue("email"))
	next := localPath(r.PostFormValue("next"))
	if email == "" {
		s.render(w, r, http.StatusBadRequest, "login.html", "Sign in", loginData{Next: next, Error: "Enter your email address."})
		return
	}
	if outcome := s.sendSignIn(r, email, next); outcome != "" {
		metrics.WebSignIns.WithLabelValues(outcome).Inc()
	}
	s.render(w, r, http.StatusOK, "login.html", "Sign in", loginData{Next: next, Sent: true})
}

func (s *Server) sendSignIn(r *http.Request, email, next string) string {
	cfg := s.cfg()
	agent, ok := cfg.AgentByEmail(email)
	if !ok {
		return outcomeNotAgent
	}
	// Counted by the agent's configured (canonical) address, so that writing it in another
	// form (A-labels, case) does not buy more links.
	if !s.signIns.allow(s.Now(), "address "+model.AddressKey(agent.Email), signInsPerAddress, "client "+s.clientAddress(r), signInsPerClient) {
		s.log.Warn("web: sign-in link not sent: over the hourly limit", "email", email, "client", s.clientAddress(r))
		return outcomeLimited
	}
	link := func(token string) string {
		u := s.URL("/login/" + token)
		if next != "/tickets" {
			u += "?next=" + url.QueryEscape(next)
		}
		return u
	}
	// The page does not wait for the store: a stranger's answer must take as long as an
	// agent's, or its time would tell who the agents are.
	s.sending.Add(1)
	go func() {
		defer s.sending.Done()
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		outcome := outcomeSent
		if _, err := s.svc.SignIn(ctx, email, link); err != nil {
			s.log.Error("web: cannot queue a sign-in link", "email", email, "err", err)
			outcome = outcomeError
		}
		metrics.WebSignIns.WithLabelValues(outcome).Inc()
	}()
	return ""
}

// clientAddress is who asks: the connection's address, or behind one of web.trusted_proxies
// the address that proxy saw (the last X-Forwarded-For entry, the one it added).
func (s *Server) clientAddress(r *http.Request) string {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		host = r.RemoteAddr
	}
	if fromTrustedProxy(r.RemoteAddr, s.cfg().Web.TrustedProxyNets()) {
		if xff := r.Header.Values("X-Forwarded-For"); len(xff) > 0 {
			parts := strings.Split(xff[len(xff)-1], ",")
			if ip, err := netip.ParseAddr(strings.TrimSpace(parts[len(parts)-1])); err == nil {
				return ip.Unmap().String()
			}
		}
	}
	return host
}

// loginLink is the mailed link opened: a page with one button, which spends nothing.
func (s *Server) loginLink(w http.ResponseWriter, r *http.Request) {
	open := false
	s.st.View(func(tx *store.Tx) error {
		open = tx.SignInOpen(r.PathValue("token"), s.Now())
		return nil
	})
	if !open {
		// Said now, not after the button: a used or expired link offers nothing to press.
		s.render(w, r, http.StatusGone, "login_expired.html", "Sign-in link expired", nil)
		return
	}
	s.render(w, r, http.StatusOK, "login_confirm.html", "Sign in", confirmData{
		Action: s.path("/login/" + r.PathValue("token")), Next: localPath(r.URL.Query().Get("next"))})
}

// loginSpend is the button pressed: the token is spent, whatever comes of it, and a session
// starts for an address that is still among the agents.
func (s *Server) loginSpend(w http.ResponseWriter, r *http.Request) {
	token := r.PathValue("token")
	now := s.Now()
	var email string
	err := s.st.Update(r.Context(), func(tx *store.Tx) error {
		var err error
		email, err = tx.ConsumeSignIn(token, now)
		return err
	})
	switch {
	case errors.Is(err, store.ErrExpired):
		s.linkFailed(w, r, http.StatusGone, outcomeExpired)
		return
	case errors.Is(err, store.ErrNotFound):
		s.linkFailed(w, r, http.StatusBadRequest, outcomeInvalid)
		return
	case err != nil:
		s.log.Error("web: cannot spend a sign-in link", "err", err)
		s.errorPage(w, r, http.StatusInternalServerError, "Signing in failed on our side. Try the link again in a minute.")
		return
	}
	agent, ok := s.cfg().AgentByEmail(email)
	if !ok {
		s.linkFailed(w, r, http.StatusBadRequest, outcomeGone)
		return
	}
	if err := s.startSession(r.Context(), w, agent.Email); err != nil {
		s.log.Error("web: cannot start a session", "err", err)
		s.errorPage(w, r, http.StatusInternalServerError, "Signing in failed on our side. Ask for a new link in a minute.")
		return
	}
	metrics.WebSignIns.WithLabelValues(outcomeSignedIn).Inc()
	s.log.Info("web: signed in", "email", agent.Email)
	http.Redirect(w, r, s.path(localPath(r.URL.Query().Get("next"))), http.StatusSeeOther)
}

func (s *Server) linkFailed(w http.ResponseWriter, r *http.Request, code int, outcome string) {
	metrics.WebSignIns.WithLabelValues(outcome).Inc()
	s.render(w, r, code, "login_expired.html", "Sign-in link expired", nil)
}

func (s *Server) logout(w http.ResponseWriter, r *http.Request) {
	if err := s.endSession(w, r); err != nil {
		s.log.Error("web: cannot end a session", "err", err)
	}
	http.Redirect(w, r, s.path("/login"), http.StatusSeeOther)
}

// signInLimiter counts the sign-in mails sent in the last hour per key, in this process's
// memory: on several nodes each node counts its own.
type signInLimiter struct {
	mu   sync.Mutex
	sent map[string][]time.Time
}

// allow reports whether a mail may go under both keys' limits, and counts it under both
// when it may.
func (l *signInLimiter) allow(now time.Time, key1 string, max1 int, key2 string, max2 int) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.sent == nil {
		l.sent = map[string][]time.Time{}
	}
	cut := now.Add(-signInWindow)
	recent := func(key string) []time.Time {
		kept := l.sent[key][:0]
		for _, t := range l.sent[key] {
			if t.After(cut) {
				kept = append(kept, t)
			}
		}
		if len(kept) == 0 {
			delete(l.sent, key)
			return nil
		}
		l.sent[key] = kept
		return kept
	}
	if len(recent(key1)) >= max1 || len(recent(key2)) >= max2 {
		return false
	}
	if len(l.sent) > 1000 {
		// Keys of clients that never came back: each costs a walk of the map only when
		// there are many, and mails to agents are few (5 an hour per agent at most).
		for key := range l.sent {
			recent(key)
		}
	}
	l.sent[key1] = append(l.sent[key1], now)
	l.sent[key2] = append(l.sent[key2], now)
	return true
}
