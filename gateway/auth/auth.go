// Package auth decides who a mail's sender is (RULES.md A1). It is the one place that
// grants an agent's powers to mail, so that making identity stricter changes one file.
package auth

import (
	"fmt"

	"github.com/deskgate/deskgate/config"
	"github.com/deskgate/deskgate/gateway/rules"
)

// Identity is the sender's role and, when the From claims more than was proven, why not.
type Identity struct {
	Role string
	Note string
}

// Identify returns the role the From address earns under authentication.agent_identity.
// Only "none" (trust the From of an agent address, for tests and trusted set-ups) grants
// agent roles so far; the verifying modes treat every agent address as unproven, which
// errs on the safe side: such mail is an end user's.
func Identify(cfg *config.Config, from string) Identity {
	agent, ok := cfg.AgentByEmail(from)
	if !ok {
		return Identity{Role: rules.RoleEndUser}
	}
	role := rules.RoleAgent
	if agent.Role == config.RoleLightAgent {
		role = rules.RoleLightAgent
	}
	if cfg.Authentication.AgentIdentity == "none" {
		return Identity{Role: role}
	}
	return Identity{
		Role: rules.RoleEndUser,
		Note: fmt.Sprintf("spoofed agent: %s is an agent address, but the mail is not authenticated as authentication.agent_identity=%s requires",
			from, cfg.Authentication.AgentIdentity),
	}
}
