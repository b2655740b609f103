package config

import "fmt"

// Warnings lists what a valid config allows that an operator should know of before it faces
// the internet; check-config prints them and serve logs them at start and at each reload.
// They never stop the daemon: each has its place (tests, a laptop).
func (c *Config) Warnings() []Problem {
	var ws []Problem
	if c.Authentication.AgentIdentity == "none" {
		ws = append(ws, Problem{Key: "authentication.agent_identity", Msg: "none: the From of every mail is believed, so anyone can send mail " +
			"as an agent and get an agent's powers (public replies to customers, adding CCs, solving tickets); for tests only, never on a real MX"})
	}
	// The per-address cap is for the SMTP listener only: LMTP comes from the MTA in front.
	if l := c.Limits; c.Listen.SMTP != "" && l.MaxSessionsPerIP > l.SessionsPerAddress() {
		ws = append(ws, Problem{Key: "limits.max_sessions_per_ip", Msg: fmt.Sprintf("%d is more than half of limits.max_sessions (%d); "+
			"one client address gets at most %d sessions", l.MaxSessionsPerIP, l.MaxSessions, l.SessionsPerAddress())})
	}
	return ws
}
