package inbound

import (
	"testing"

	"github.com/deskgate/deskgate/config"
)

// One client address never holds more than half of limits.max_sessions, whatever
// limits.max_sessions_per_ip says, so that six slow clients from one address cannot take all
// six slots (issue 19).
func TestOneAddressHoldsAtMostHalfTheSessions(t *testing.T) {
	limits := config.Limits{MaxSessions: 6, MaxSessionsPerIP: 20}
	l := &sessionLimiter{limits: func() config.Limits { return limits }}
	for i := 0; i < 3; i++ {
		if key, _ := l.acquire("192.0.2.1"); key != "" {
			t.Fatalf("session %d from one address refused by %s; half of 6 is 3", i+1, key)
		}
	}
	key, limit := l.acquire("192.0.2.1")
	if key != "limits.max_sessions_per_ip" || limit != 3 {
		t.Fatalf("4th session from one address: refused by %q at %d, want limits.max_sessions_per_ip at 3", key, limit)
	}
	for i := 0; i < 3; i++ {
		if key, _ := l.acquire("192.0.2.2"); key != "" {
			t.Fatalf("session %d from another address refused by %s", i+1, key)
		}
	}
	if key, limit := l.acquire("192.0.2.3"); key != "limits.max_sessions" || limit != 6 {
		t.Fatalf("7th session: refused by %q at %d, want limits.max_sessions at 6", key, limit)
	}
	// LMTP sessions ("" for no per-address cap) still count toward max_sessions.
	if key, _ := l.acquire(""); key != "limits.max_sessions" {
		t.Fatalf("an LMTP session over max_sessions was let in")
	}
	l.release("192.0.2.1")
	if key, _ := l.acquire("192.0.2.1"); key != "" {
		t.Fatalf("a freed slot was not given again: %s", key)
	}
	if n := l.Active(); n != 6 {
		t.Errorf("%d active, want 6", n)
	}

	// A reload that lowers the limits applies to the next connection.
	limits = config.Limits{MaxSessions: 200, MaxSessionsPerIP: 2}
	if key, limit := l.acquire("192.0.2.2"); key != "limits.max_sessions_per_ip" || limit != 2 {
		t.Errorf("after reload to max_sessions_per_ip 2: refused by %q at %d", key, limit)
	}
}
