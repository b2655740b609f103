package rules

import (
	"strings"

	"github.com/deskgate/deskgate/gateway/model"
)

// Env is everything besides the ticket and the event that a decision depends on: the
// policy, the limits and who the agents are. It is plain data; gateway/desk builds it from the
// config.
type Env struct {
	Policy        model.Policy
	Notifications model.Notifications
	MaxCCs        int
	// Agents maps addresses (by model.AddressKey) to model.RoleAgent or model.RoleLightAgent.
	Agents map[string]model.Role
	// AgentNames maps agent addresses (by model.AddressKey) to their names.
	AgentNames map[string]string
	// DMARCReject is authentication.dmarc_reject: DMARCAccept, or anything else for
	// DMARCRefuse, the default (A1).
	DMARCReject string
	// StatusView is web.status_view when the web pages are on (requester,
	// requester_and_ccs), else "" or off: who has a request status view (S1).
	StatusView string
}

// AgentRole is the configured role of email: model.RoleAgent, model.RoleLightAgent or
// model.RoleEndUser.
// This is what the address is; whether a mail proves it is A1's question (gateway/auth).
func (e Env) AgentRole(email string) model.Role {
	if r, ok := e.Agents[model.AddressKey(email)]; ok {
		return r
	}
	return model.RoleEndUser
}

// IsAgent reports whether email is an agent or a light agent.
func (e Env) IsAgent(email string) bool { return e.AgentRole(email) != model.RoleEndUser }

// Person is email as a participant: an agent goes by the name the desk gives her in agents,
// whatever name a mail or an expert gave, so that no participant list shows the display
// name of an agent's own mail client (H4) and every page and copy names her alike.
func (e Env) Person(email, name string) model.Person {
	if n, ok := e.AgentNames[lower(email)]; ok && e.IsAgent(email) {
		name = n
	}
	return model.Person{Email: email, Name: name}
}

// Blocked reports whether email matches policy.cc_blocklist (C2).
func (e Env) Blocked(email string) bool {
	email = model.AddressKey(email)
	for _, p := range e.Policy.CCBlocklist {
		p = model.AddressKey(p)
		if dom, ok := strings.CutPrefix(p, "*@"); ok {
			if strings.HasSuffix(email, "@"+dom) {
				return true
			}
		} else if p == email {
			return true
		}
	}
	return false
}

// Masked reports whether a copy shows email by its masked address: agents' copies mask
// everybody (H3); end users' copies show end users by their real address (H2) and agents
// by their masked one, so that no agent's own address reaches an end user (H1, H4).
func (e Env) Masked(copyKind model.Copy, email string) bool {
	return copyKind == model.CopyAgent || e.IsAgent(email)
}
