package config

import (
	"strings"
	"testing"
)

func TestMaxErrors(t *testing.T) {
	cfg, err := Load(writeConfig(t, validBase))
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Limits.MaxErrors != 20 {
		t.Errorf("limits.max_errors default %d, want 20 (Postfix's smtpd_hard_error_limit)", cfg.Limits.MaxErrors)
	}
	cfg, err = Load(writeConfig(t, validBase+"limits: {max_errors: 5}\n"))
	if err != nil || cfg.Limits.MaxErrors != 5 {
		t.Errorf("max_errors: 5 gave %v, %v", cfg.Limits.MaxErrors, err)
	}
	for _, v := range []string{"0", "-1"} {
		if ps := problemsOf(t, validBase+"limits: {max_errors: "+v+"}\n"); !hasProblem(ps, "limits.max_errors", "at least 1") {
			t.Errorf("max_errors: %s: problems %v, want limits.max_errors: ... at least 1", v, ps)
		}
	}
}

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
	ws := sessionWarnings(cfg)
	if len(ws) != 1 || !strings.Contains(ws[0].Msg, "20") || !strings.Contains(ws[0].Msg, "at most 3") {
		t.Errorf("warnings %v, want one for limits.max_sessions_per_ip naming 20 and the cap 3", ws)
	}

	lmtpOnly := strings.Replace(validBase, `smtp: "127.0.0.1:2525"`, `smtp: ""`, 1) + "limits: {max_sessions: 6}\n"
	for _, body := range []string{validBase, validBase + "limits: {max_sessions: 40}\n", validBase + "limits: {max_sessions: 6, max_sessions_per_ip: 3}\n", lmtpOnly} {
		cfg, err := Load(writeConfig(t, body))
		if err != nil {
			t.Fatalf("%q refused: %v", body, err)
		}
		if ws := sessionWarnings(cfg); len(ws) != 0 {
			t.Errorf("%q: warnings %q, want none", body, ws)
		}
	}
}

// sessionWarnings are the warnings about limits.max_sessions_per_ip, apart from others.
func sessionWarnings(cfg *Config) []Problem {
	var out []Problem
	for _, w := range cfg.Warnings() {
		if w.Key == "limits.max_sessions_per_ip" {
			out = append(out, w)
		}
	}
	return out
}
