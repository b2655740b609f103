package config

// SessionsPerAddress is the most SMTP sessions that one client address may hold:
// max_sessions_per_ip, but never more than half of max_sessions (at least one), as Postfix
// lets one client have 50 of its 100 processes, so that one address cannot take every slot.
func (l Limits) SessionsPerAddress() int {
	return min(l.MaxSessionsPerIP, max(1, l.MaxSessions/2))
}
