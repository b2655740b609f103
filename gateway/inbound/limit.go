package inbound

import (
	"sync"

	"github.com/deskgate/deskgate/config"
)

// sessionLimiter caps concurrent SMTP and LMTP sessions together (limits.max_sessions) and
// the sessions of one client address on the SMTP listener (limits.max_sessions_per_ip, and
// never more than half of max_sessions). A connection over a cap is told 421 and closed at
// once, as Postfix's smtpd does when it runs out of processes or when anvil says a client has
// too many connections, so that the client retries later instead of hanging, and so that one
// address cannot take every slot.
type sessionLimiter struct {
	mu     sync.Mutex
	active int
	perIP  map[string]int
	limits func() config.Limits // of the running config, so that a reload applies at once
}

// acquire takes a slot for a session from ip ("" for clients that the per-address cap does
// not apply to). It says which limit refused it and the cap that applied, or "" when the
// session may go ahead.
func (l *sessionLimiter) acquire(ip string) (refusedBy string, limit int) {
	l.mu.Lock()
	defer l.mu.Unlock()
	lim := l.limits()
	if l.active >= lim.MaxSessions {
		return "limits.max_sessions", lim.MaxSessions
	}
	if ip != "" {
		if perIP := lim.SessionsPerAddress(); l.perIP[ip] >= perIP {
			return "limits.max_sessions_per_ip", perIP
		}
		if l.perIP == nil {
			l.perIP = make(map[string]int)
		}
		l.perIP[ip]++
	}
	l.active++
	return "", 0
}

func (l *sessionLimiter) release(ip string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.active--
	if ip != "" {
		// Entries go when their last session ends, so the map holds only addresses that are
		// connected now and cannot grow with the number of clients ever seen.
		if l.perIP[ip] <= 1 {
			delete(l.perIP, ip)
		} else {
			l.perIP[ip]--
		}
	}
}

// Active is the number of sessions open now.
func (l *sessionLimiter) Active() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.active
}
