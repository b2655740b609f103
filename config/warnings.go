package config

import "fmt"

// Warnings lists settings that are valid but do not do what they seem to, each as
// "key: what happens instead". check-config prints them and serve logs them at start and at
// each reload; none of them stops the daemon.
func (c *Config) Warnings() []string {
	var ws []string
	warn := func(key, format string, args ...any) {
		ws = append(ws, key+": "+fmt.Sprintf(format, args...))
	}
	// The per-address cap is for the SMTP listener only: LMTP comes from the MTA in front.
	if l := c.Limits; c.Listen.SMTP != "" && l.MaxSessionsPerIP > l.SessionsPerAddress() {
		warn("limits.max_sessions_per_ip", "%d is more than half of limits.max_sessions (%d); one client address gets at most %d sessions",
			l.MaxSessionsPerIP, l.MaxSessions, l.SessionsPerAddress())
	}
	return ws
}

// SessionsPerAddress is the most SMTP sessions that one client address may hold:
// max_sessions_per_ip, but never more than half of max_sessions (at least one), as Postfix
// lets one client have 50 of its 100 processes, so that one address cannot take every slot.
func (l Limits) SessionsPerAddress() int {
	return min(l.MaxSessionsPerIP, max(1, l.MaxSessions/2))
}
