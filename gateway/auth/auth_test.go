package auth

import (
	"strings"
	"testing"

	"github.com/deskgate/deskgate/config"
	"github.com/deskgate/deskgate/gateway/rules"
)

func cfg(mode string) *config.Config {
	return &config.Config{
		Agents:         []config.Agent{{Email: "alice@example.com", Role: "agent"}, {Email: "bob@example.com", Role: "light_agent"}},
		Authentication: config.Authentication{AgentIdentity: mode},
	}
}

func TestA1_AgentIdentity(t *testing.T) {
	if id := Identify(cfg("none"), "ALICE@example.com"); id.Role != rules.RoleAgent || id.Note != "" {
		t.Errorf("none: %+v", id)
	}
	if id := Identify(cfg("none"), "bob@example.com"); id.Role != rules.RoleLightAgent {
		t.Errorf("light agent: %+v", id)
	}
	if id := Identify(cfg("none"), "jane@customer.test"); id.Role != rules.RoleEndUser {
		t.Errorf("end user: %+v", id)
	}
	for _, mode := range []string{"dmarc", "dkim", "trusted_relay"} {
		id := Identify(cfg(mode), "alice@example.com")
		if id.Role != rules.RoleEndUser || !strings.Contains(id.Note, "spoofed agent") {
			t.Errorf("%s: an unverified agent address got %+v", mode, id)
		}
	}
}
