package config

import (
	"strings"
	"testing"
)

// Support addresses, agents and blocklist entries are kept in the one form deskgate compares,
// whichever form the operator wrote.
func TestAddressesAreCanonicalAtLoad(t *testing.T) {
	body := strings.Replace(validBase, "addresses: [support@example.com]", "addresses: [Help@XN--BCHER-KVA.TEST, support@Example.COM]", 1)
	body = strings.Replace(body, "{email: alice@example.com,", "{email: ALÏCE@BÜCHER.test,", 1)
	body += "policy:\n  cc_blocklist: [CEO@Example.COM, \"*@XN--BCHER-KVA.test\", \"*@Bücher.Example\"]\n"
	cfg, err := Load(writeConfig(t, body))
	if err != nil {
		t.Fatalf("config refused: %v", err)
	}
	if got := strings.Join(cfg.Support.Addresses, ","); got != "Help@bücher.test,support@example.com" {
		t.Errorf("support.addresses = %q", got)
	}
	if got := cfg.Agents[0].Email; got != "ALÏCE@bücher.test" {
		t.Errorf("agents[0].email = %q", got)
	}
	if _, ok := cfg.AgentByEmail("alïce@xn--bcher-kva.test"); !ok {
		t.Errorf("AgentByEmail does not find the agent by another form of the address")
	}
	if got := strings.Join(cfg.Policy.CCBlocklist, ","); got != "CEO@example.com,*@bücher.test,*@bücher.example" {
		t.Errorf("policy.cc_blocklist = %q", got)
	}
}

func TestInvalidAddressesAreNamed(t *testing.T) {
	body := strings.Replace(validBase, "addresses: [support@example.com]", "addresses: [hïlfe@example.com, help@xn--zz.test, help@bücher.test, HELP@xn--bcher-kva.test]", 1)
	body = strings.Replace(body, "{email: alice@example.com,", "{email: alice@exa!mple.com,", 1)
	body += "policy:\n  cc_blocklist: [\"ceo@xn--zz.test\", \"*@-bad.test\"]\n"
	ps := problemsOf(t, body)
	for _, want := range []struct{ key, fragment string }{
		{"support.addresses[0]", `"hïlfe@example.com": a support address needs an ASCII local part`},
		{"support.addresses[0]", "upstream"},
		{"support.addresses[1]", `the domain of "help@xn--zz.test" is not a valid domain name`},
		{"support.addresses[3]", "is listed twice"},
		{"agents[0].email", `the domain of "alice@exa!mple.com" is not a valid domain name`},
		{"policy.cc_blocklist[0]", `"ceo@xn--zz.test"`},
		{"policy.cc_blocklist[1]", `"*@-bad.test"`},
	} {
		if !hasProblem(ps, want.key, want.fragment) {
			t.Errorf("no problem %s: …%s…; got %v", want.key, want.fragment, ps)
		}
	}
	if hasProblem(ps, "support.addresses[2]", "") {
		t.Errorf("a valid IDN support address was refused: %v", ps)
	}
}
