package rules

import "strings"

// Automatic says why a mail is automatic (T5), or "" when a person wrote it: such mail is
// stored as an internal note and sends nothing to end users, so that two robots can
// never loop through deskgate.
func Automatic(header map[string]string, envelopeFrom string) string {
	if why := automaticHeader(header); why != "" {
		return why
	}
	if envelopeFrom == "" {
		return "empty envelope sender"
	}
	return ""
}

// automaticHeader says which header field marks a mail automatic (RFC 3834 and the
// older conventions), or "".
func automaticHeader(header map[string]string) string {
	if v := strings.ToLower(strings.TrimSpace(header["Auto-Submitted"])); v != "" && v != "no" {
		return "Auto-Submitted: " + v
	}
	switch strings.ToLower(strings.TrimSpace(header["Precedence"])) {
	case "bulk", "junk", "list":
		return "Precedence: " + strings.ToLower(strings.TrimSpace(header["Precedence"]))
	}
	if header["X-Autoreply"] != "" {
		return "X-Autoreply"
	}
	if header["X-Auto-Response-Suppress"] != "" {
		return "X-Auto-Response-Suppress"
	}
	return ""
}

// OwnLoop reports whether a mail carries deskgate's own loop header (T5): such mail is
// dropped, never stored.
func OwnLoop(header map[string]string, supportAddresses []string) bool {
	v := strings.ToLower(header["X-Loop"])
	if v == "" {
		return false
	}
	for _, a := range supportAddresses {
		if strings.Contains(v, strings.ToLower(a)) {
			return true
		}
	}
	return false
}
