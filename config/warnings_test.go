package config

import (
	"strings"
	"testing"
)

func TestSessionsPerAddress(t *testing.T) {
	for _, tc := range []struct{ max, perIP, want int }{
		{200, 20, 20}, // the defaults: max_sessions_per_ip rules
		{100, 50, 50}, // Postfix's defaults: 50 of 100
		{100, 80, 50},
		{6, 20, 3},
		{7, 20, 3},
		{2, 5, 1},
		{1, 5, 1}, // one session in all: that one address may have it
		{10, 1, 1},
	} {
		l := Limits{MaxSessions: tc.max, MaxSessionsPerIP: tc.perIP}
		if got := l.SessionsPerAddress(); got != tc.want {
			t.Errorf("max_sessions %d, max_sessions_per_ip %d: %d per address, want %d", tc.max, tc.perIP, got, tc.want)
		}
	}
}

// A max_sessions_per_ip above half of max_sessions is valid, but does not do what it says:
// Load accepts it and Warnings names the key and the cap that applies.
func TestPerAddressCapAboveHalfIsAWarning(t *testing.T) {
	cfg, err := Load(writeConfig(t, validBase+"limits: {max_sessions: 6}\n"))
	if err != nil {
		t.Fatalf("max_sessions 6 with the default max_sessions_per_ip refused: %v", err)
	}
	ws := cfg.Warnings()
	if len(ws) != 1 || !strings.HasPrefix(ws[0], "limits.max_sessions_per_ip: ") ||
		!strings.Contains(ws[0], "20") || !strings.Contains(ws[0], "at most 3") {
		t.Errorf("warnings %q, want one naming limits.max_sessions_per_ip, 20 and the cap 3", ws)
	}

	lmtpOnly := strings.Replace(validBase, `smtp: "127.0.0.1:2525"`, `smtp: ""`, 1) + "limits: {max_sessions: 6}\n"
	for _, body := range []string{validBase, validBase + "limits: {max_sessions: 40}\n", validBase + "limits: {max_sessions: 6, max_sessions_per_ip: 3}\n", lmtpOnly} {
		cfg, err := Load(writeConfig(t, body))
		if err != nil {
			t.Fatalf("%q refused: %v", body, err)
		}
		if ws := cfg.Warnings(); len(ws) != 0 {
			t.Errorf("%q: warnings %q, want none", body, ws)
		}
	}
}
