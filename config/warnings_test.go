package config

import (
	"strings"
	"testing"
)

// agent_identity none is valid (tests, a laptop) but lets anyone write as an agent: a config
// that has it loads, and warns, naming the key and what it allows.
func TestWarningsAgentIdentityNone(t *testing.T) {
	cfg, err := Load(writeConfig(t, validBase+"authentication: {agent_identity: none}\n"))
	if err != nil {
		t.Fatalf("agent_identity none is valid: %v", err)
	}
	ws := cfg.Warnings()
	if len(ws) != 1 || ws[0].Key != "authentication.agent_identity" {
		t.Fatalf("warnings %v, want one for authentication.agent_identity", ws)
	}
	for _, fragment := range []string{"none", "anyone", "agent", "tests only"} {
		if !strings.Contains(ws[0].Msg, fragment) {
			t.Errorf("warning %q does not say %q", ws[0].Msg, fragment)
		}
	}

	for _, mode := range []string{"dmarc", "dkim"} {
		cfg, err := Load(writeConfig(t, validBase+"authentication: {agent_identity: "+mode+"}\n"))
		if err != nil {
			t.Fatal(err)
		}
		if ws := cfg.Warnings(); len(ws) != 0 {
			t.Errorf("agent_identity %s: warnings %v, want none", mode, ws)
		}
	}
}
