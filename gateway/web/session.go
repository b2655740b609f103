package web

import (
	"context"
	"errors"
	"net/http"
	"net/netip"
	"net/url"
	"strings"
	"time"

	"github.com/deskgate/deskgate/config"
	"github.com/deskgate/deskgate/store"
)

// CookieName is the session cookie; the name is part of the interface (docs/web.md).
const CookieName = "deskgate_session"

// Agent is the signed-in agent of a request, as the running config knows them: a session or
// a trusted header names an address, and only the config's agents make it an Agent.
type Agent struct {
	Email string // as configured
	Name  string
	Role  string // config.RoleAgent or config.RoleLightAgent
	// session is the id (cookie value) of the session that signed the request in; "" when
	// the trusted header did.
	session string
}

// SignedInByProxy reports whether the trusted header signed the request in: signing out is
// then the proxy's to do, and the desk offers no button that would do nothing.
func (a Agent) SignedInByProxy() bool { return a.session == "" }

// Light reports whether the agent is a light agent: internal notes only, no CCs (V4, C1).
func (a Agent) Light() bool { return a.Role == config.RoleLightAgent }

type agentKey struct{}

// agentFrom is the agent requireAgent put into a request's context.
func agentFrom(ctx context.Context) (Agent, bool) {
	a, ok := ctx.Value(agentKey{}).(Agent)
	return a, ok
}

// agent says who signed r in: the trusted header when it comes from a trusted proxy, else the
// session cookie. A session whose address is no longer among the agents (a reload took it
// away) is ended here, at its first request after.
func (s *Server) agent(r *http.Request) (Agent, bool) {
	cfg := s.cfg()
	if a, ok := s.fromTrustedHeader(r, cfg); ok {
		return a, true
	}
	c, err := r.Cookie(CookieName)
	if err != nil || c.Value == "" {
		return Agent{}, false
	}
	var ws store.WebSession
	err = s.st.View(func(tx *store.Tx) error {
		ws, err = tx.WebSession(c.Value, s.Now())
		return err
	})
	if err != nil {
		if !errors.Is(err, store.ErrNotFound) {
			s.log.Error("web: cannot read the session", "err", err)
		}
		return Agent{}, false
	}
	conf, ok := cfg.AgentByEmail(ws.Email)
	if !ok {
		if err := s.st.Update(r.Context(), func(tx *store.Tx) error { return tx.DeleteWebSession(c.Value) }); err != nil {
			s.log.Error("web: cannot end the session of a former agent", "err", err)
		}
		s.log.Info("web: session ended: no longer an agent", "email", ws.Email)
		return Agent{}, false
	}
	return Agent{Email: conf.Email, Name: conf.Name, Role: conf.Role, session: c.Value}, true
}

// fromTrustedHeader believes web.trusted_header only when the connection comes from one of
// web.trusted_proxies (the proxy itself, not whatever X-Forwarded-For claims), and only for an
// address in agents.
func (s *Server) fromTrustedHeader(r *http.Request, cfg *config.Config) (Agent, bool) {
	name := cfg.Web.TrustedHeader
	if name == "" {
		return Agent{}, false
	}
	email := strings.TrimSpace(r.Header.Get(name))
	if email == "" || !fromTrustedProxy(r.RemoteAddr, cfg.Web.TrustedProxyNets()) {
		return Agent{}, false
	}
	conf, ok := cfg.AgentByEmail(email)
	if !ok {
		return Agent{}, false
	}
	return Agent{Email: conf.Email, Name: conf.Name, Role: conf.Role}, true
}

func fromTrustedProxy(remote string, nets []netip.Prefix) bool {
	ap, err := netip.ParseAddrPort(remote)
	if err != nil {
		return false
	}
	ip := ap.Addr().Unmap()
	for _, n := range nets {
		if n.Contains(ip) {
			return true
		}
	}
	return false
}

// requireAgent passes signed-in agents on to h, with the Agent in the request's context (the
// layout then shows who is signed in and the sign-out button). Anyone else is sent to /login:
// from a GET with the page to come back to in ?next=.
func (s *Server) requireAgent(h func(http.ResponseWriter, *http.Request, Agent)) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		a, ok := s.agent(r)
		if !ok {
			if _, err := r.Cookie(CookieName); err == nil {
				s.clearSessionCookie(w)
			}
			target := s.path("/login")
			if r.Method == http.MethodGet || r.Method == http.MethodHead {
				target += "?next=" + url.QueryEscape(r.URL.RequestURI())
			}
			http.Redirect(w, r, target, http.StatusSeeOther)
			return
		}
		h(w, r.WithContext(context.WithValue(r.Context(), agentKey{}, a)), a)
	}
}

// startSession signs email in: a new session in the store, for web.session_lifetime, and its
// cookie. The caller has made sure email is an agent (and spent the sign-in token).
func (s *Server) startSession(ctx context.Context, w http.ResponseWriter, email string) error {
	id, err := store.NewWebToken()
	if err != nil {
		return err
	}
	now := s.Now()
	ws := store.WebSession{Email: email, Created: now, Expires: now.Add(s.cfg().Web.SessionLifetime)}
	if err := s.st.Update(ctx, func(tx *store.Tx) error { return tx.PutWebSession(id, ws) }); err != nil {
		return err
	}
	s.setSessionCookie(w, id, ws.Expires)
	return nil
}

// endSession signs the request's session out: deleted from the store, its cookie cleared. A
// request signed in by the trusted header has no session to end.
func (s *Server) endSession(w http.ResponseWriter, r *http.Request) error {
	s.clearSessionCookie(w)
	c, err := r.Cookie(CookieName)
	if err != nil || c.Value == "" {
		return nil
	}
	return s.st.Update(r.Context(), func(tx *store.Tx) error { return tx.DeleteWebSession(c.Value) })
}

func (s *Server) setSessionCookie(w http.ResponseWriter, id string, expires time.Time) {
	http.SetCookie(w, &http.Cookie{
		Name:     CookieName,
		Value:    id,
		Path:     "/",
		Expires:  expires,
		MaxAge:   int(expires.Sub(s.Now()).Seconds()),
		HttpOnly: true,
		Secure:   s.cfg().Web.Secure(),
		SameSite: http.SameSiteLaxMode,
	})
}

func (s *Server) clearSessionCookie(w http.ResponseWriter) {
	http.SetCookie(w, &http.Cookie{
		Name:     CookieName,
		Value:    "",
		Path:     "/",
		MaxAge:   -1,
		HttpOnly: true,
		Secure:   s.cfg().Web.Secure(),
		SameSite: http.SameSiteLaxMode,
	})
}

// localPath returns next when it is a path on this site ("/tickets/4?x=1"), for a redirect
// after sign-in (through s.path, as every redirect); anything else ("//evil.test", "https://evil.test", "/\\evil.test") gives
// "/tickets", so that a crafted link cannot send a freshly signed-in agent elsewhere.
func localPath(next string) string {
	const home = "/tickets"
	if !strings.HasPrefix(next, "/") || strings.HasPrefix(next, "//") || strings.ContainsAny(next, "\\\r\n\t") {
		return home
	}
	u, err := url.Parse(next)
	if err != nil || u.Scheme != "" || u.Host != "" {
		return home
	}
	return next
}
