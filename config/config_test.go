package config

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// writeConfig writes a valid base config plus extra YAML into a temp dir and returns
// its path; {{dir}} in extra is replaced by that dir.
func writeConfig(t *testing.T, body string) string {
	t.Helper()
	dir := t.TempDir()
	token := filepath.Join(dir, "admin.token")
	if err := os.WriteFile(token, []byte("secret-token\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	body = strings.ReplaceAll(body, "{{dir}}", dir)
	path := filepath.Join(dir, "deskgate.yaml")
	if err := os.WriteFile(path, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

const validBase = `
hostname: mx.example.com
data_dir: {{dir}}/data
listen:
  smtp: "127.0.0.1:2525"
  lmtp: "unix:{{dir}}/lmtp.sock"
  admin: "127.0.0.1:8025"
support:
  name: Example Support
  addresses: [support@example.com]
agents:
  - {email: alice@example.com, name: Alice, role: agent}
upstream:
  address: "maildir:{{dir}}/outbox"
admin:
  token_file: {{dir}}/admin.token
`

func problemsOf(t *testing.T, body string) Problems {
	t.Helper()
	_, err := Load(writeConfig(t, body))
	if err == nil {
		return nil
	}
	ps, ok := err.(Problems)
	if !ok {
		t.Fatalf("Load returned %T %v, want Problems", err, err)
	}
	return ps
}

func hasProblem(ps Problems, key, fragment string) bool {
	for _, p := range ps {
		if p.Key == key && strings.Contains(p.Msg, fragment) {
			return true
		}
	}
	return false
}

func TestValidConfigLoadsWithDefaults(t *testing.T) {
	cfg, err := Load(writeConfig(t, validBase))
	if err != nil {
		t.Fatalf("valid config refused: %v", err)
	}
	if cfg.Limits.MaxMessageBytes != 25<<20 {
		t.Errorf("default max_message_bytes = %d, want 25MiB", cfg.Limits.MaxMessageBytes)
	}
	if cfg.Limits.MaxCCs != 48 || cfg.Policy.CCRemoval != "email" || cfg.Notifications.TicketCreated != "requester" {
		t.Errorf("defaults not applied: %+v %+v", cfg.Limits, cfg.Policy)
	}
	if cfg.Authentication.AgentIdentity != "dmarc" {
		t.Errorf("agent_identity default = %q, want dmarc", cfg.Authentication.AgentIdentity)
	}
	if cfg.Authentication.Timeout != 10*time.Second {
		t.Errorf("authentication.timeout default = %s, want 10s", cfg.Authentication.Timeout)
	}
	if cfg.Authentication.DMARCReject != "refuse" {
		t.Errorf("authentication.dmarc_reject default = %q, want refuse", cfg.Authentication.DMARCReject)
	}
	if a, ok := cfg.AgentByEmail("ALICE@example.com"); !ok || a.Role != RoleAgent {
		t.Errorf("agent lookup failed: %+v %v", a, ok)
	}
}

func TestEveryInterfaceKeyParses(t *testing.T) {
	dir := t.TempDir()
	pass := filepath.Join(dir, "pass")
	os.WriteFile(pass, []byte("pw"), 0o600)
	body := validBase + `
tls: {}
limits:
  max_message_bytes: 10MiB
  max_recipients: 50
  max_ccs: 20
  max_sessions: 10
  max_mails_per_sender_hour: 30
  read_timeout: 30s
  write_timeout: 1m
policy:
  ccs_enabled: false
  followers_enabled: false
  agent_cc_becomes_follower: false
  cc_blocklist: ["*@noreply.example.com", "ceo@example.com"]
  cc_removal: expert_only
  reply_audience: ticket
  cc_attachments: false
notifications: {ticket_created: none, assigned: requester, solved: none}
authentication:
  dns_resolver: "127.0.0.1:5353"
  trusted_authserv_ids: [mx.example.com]
  agent_identity: trusted_relay
  dmarc_reject: accept
log: {level: debug, format: json}
`
	cfg, err := Load(writeConfig(t, body))
	if err != nil {
		t.Fatalf("refused: %v", err)
	}
	if cfg.Limits.MaxMessageBytes != 10<<20 || cfg.Limits.ReadTimeout != 30*time.Second || cfg.Limits.MaxCCs != 20 {
		t.Errorf("limits = %+v", cfg.Limits)
	}
	if cfg.Policy.CCsEnabled || cfg.Policy.CCRemoval != "expert_only" || len(cfg.Policy.CCBlocklist) != 2 {
		t.Errorf("policy = %+v", cfg.Policy)
	}
	if cfg.Notifications.Solved != "none" || cfg.Authentication.AgentIdentity != "trusted_relay" || cfg.Authentication.DMARCReject != "accept" || cfg.Log.Format != "json" {
		t.Errorf("cfg = %+v", cfg)
	}
}

func TestUnknownKeysAreNamedWithTheirPath(t *testing.T) {
	ps := problemsOf(t, validBase+"\nbogus: 1\nlimits:\n  max_cc: 3\n")
	if !hasProblem(ps, "bogus", "unknown key") {
		t.Errorf("top-level unknown key not named: %v", ps)
	}
	if !hasProblem(ps, "limits.max_cc", "unknown key") {
		t.Errorf("nested unknown key not named: %v", ps)
	}
}

// An unknown key beside a wrong value in the same section is still named: the decoder gives
// up on a section at its first wrong value, the key check does not.
func TestUnknownKeysBesideWrongValuesAreNamed(t *testing.T) {
	ps := problemsOf(t, validBase+"\nbogus: 1\nlimits:\n  max_ccs: [1, 2]\n  max_cc: 3\n")
	for _, key := range []string{"bogus", "limits.max_cc"} {
		if !hasProblem(ps, key, "unknown key") {
			t.Errorf("%s not named as unknown beside a wrong value: %v", key, ps)
		}
	}
	if !hasProblem(ps, "limits.max_ccs", "expected a whole number") {
		t.Errorf("the wrong value is not named: %v", ps)
	}
}

func TestWrongTypesAreNamed(t *testing.T) {
	ps := problemsOf(t, validBase+"\nlimits:\n  max_ccs: lots\n  read_timeout: soon\npolicy:\n  ccs_enabled: maybe\n")
	for _, key := range []string{"limits.max_ccs", "limits.read_timeout", "policy.ccs_enabled"} {
		if !hasProblem(ps, key, "") {
			t.Errorf("wrong type of %s not reported: %v", key, ps)
		}
	}
	ps = problemsOf(t, strings.Replace(validBase, `smtp: "127.0.0.1:2525"`, `smtp: [a, b]`, 1))
	if !hasProblem(ps, "listen.smtp", "string") {
		t.Errorf("list for a string not reported: %v", ps)
	}
}

func TestImpossibleValuesAreNamed(t *testing.T) {
	body := validBase + `
limits: {max_message_bytes: 12parsecs, max_recipients: 0, max_sessions: -1}
policy: {cc_removal: sometimes, cc_blocklist: ["*@"]}
notifications: {solved: everyone}
authentication: {agent_identity: trust_me, dmarc_reject: quarantine, timeout: 0s, dns_resolver: "no port", trusted_authserv_ids: ["mx.example.com; dmarc=pass"]}
log: {level: loud}
`
	ps := problemsOf(t, body)
	for key, frag := range map[string]string{
		"limits.max_message_bytes":               "size",
		"limits.max_recipients":                  "at least 1",
		"limits.max_sessions":                    "at least 1",
		"policy.cc_removal":                      "email, expert_only",
		"policy.cc_blocklist[0]":                 "*@domain",
		"notifications.solved":                   "requester",
		"authentication.agent_identity":          "dmarc",
		"authentication.dmarc_reject":            `"quarantine" is not one of refuse, accept`,
		"authentication.timeout":                 "from 1s to 5m",
		"authentication.dns_resolver":            "port",
		"authentication.trusted_authserv_ids[0]": "not an authserv-id",
		"log.level":                              "debug",
	} {
		if !hasProblem(ps, key, frag) {
			t.Errorf("%s (%q) not reported in %v", key, frag, ps)
		}
	}
}

func TestBadAgentsAndSupportAddresses(t *testing.T) {
	body := strings.Replace(validBase, "addresses: [support@example.com]", "addresses: [support+x@example.com, not-an-address]", 1)
	body = strings.Replace(body, "role: agent}", "role: boss}", 1)
	ps := problemsOf(t, body)
	if !hasProblem(ps, "support.addresses[0]", "'+'") || !hasProblem(ps, "support.addresses[1]", "not a bare mail address") {
		t.Errorf("support address problems missing: %v", ps)
	}
	if !hasProblem(ps, "agents[0].role", "boss") {
		t.Errorf("agent role problem missing: %v", ps)
	}
}

func TestMissingFilesAreNamed(t *testing.T) {
	body := strings.Replace(validBase, `address: "maildir:{{dir}}/outbox"`,
		`{address: "smtp.example.net:587", username: u, password_file: /nonexistent/pass}`, 1)
	body = strings.Replace(body, "upstream:\n  {", "upstream: {", 1) + `
tls: {cert_file: /nonexistent/tls.crt, key_file: /nonexistent/tls.key}
dkim: {domain: example.com, selector: s1, private_key_file: /nonexistent/dkim.key}
`
	ps := problemsOf(t, body)
	for _, key := range []string{"tls.cert_file", "tls.key_file", "dkim.private_key_file", "upstream.password_file"} {
		if !hasProblem(ps, key, "/nonexistent/") {
			t.Errorf("missing file of %s not named: %v", key, ps)
		}
	}
	ps = problemsOf(t, strings.Replace(validBase, "{{dir}}/admin.token", "{{dir}}/missing.token", 1))
	if !hasProblem(ps, "admin.token_file", "no such file") {
		t.Errorf("missing token file not named: %v", ps)
	}
}

func TestListenAddressesMustParse(t *testing.T) {
	body := strings.Replace(validBase, `smtp: "127.0.0.1:2525"`, `smtp: "127.0.0.1"`, 1)
	body = strings.Replace(body, `admin: "127.0.0.1:8025"`, `admin: "localhost:99999"`, 1)
	body = strings.Replace(body, `lmtp: "unix:{{dir}}/lmtp.sock"`, `lmtp: "unix:"`, 1)
	ps := problemsOf(t, body)
	for _, key := range []string{"listen.smtp", "listen.admin", "listen.lmtp"} {
		if !hasProblem(ps, key, "") {
			t.Errorf("bad %s not reported: %v", key, ps)
		}
	}
}

func TestEnvOverridesEveryKind(t *testing.T) {
	t.Setenv("DESKGATE_LIMITS_MAX_CCS", "7")
	t.Setenv("DESKGATE_LIMITS_MAX_MESSAGE_BYTES", "1MiB")
	t.Setenv("DESKGATE_POLICY_CCS_ENABLED", "false")
	t.Setenv("DESKGATE_HOSTNAME", "env.example.com")
	t.Setenv("DESKGATE_SUPPORT_ADDRESSES", "help@example.com, billing@example.com")
	t.Setenv("DESKGATE_AGENTS", `[{email: dan@example.com, name: Dan, role: light_agent}]`)
	t.Setenv("DESKGATE_LIMITS_READ_TIMEOUT", "45s")
	cfg, err := Load(writeConfig(t, validBase))
	if err != nil {
		t.Fatalf("refused: %v", err)
	}
	if cfg.Limits.MaxCCs != 7 || cfg.Limits.MaxMessageBytes != 1<<20 || cfg.Policy.CCsEnabled || cfg.Hostname != "env.example.com" {
		t.Errorf("env overrides not applied: %+v %+v %q", cfg.Limits, cfg.Policy, cfg.Hostname)
	}
	if len(cfg.Support.Addresses) != 2 || cfg.Support.Addresses[1] != "billing@example.com" {
		t.Errorf("support.addresses from env = %q", cfg.Support.Addresses)
	}
	if len(cfg.Agents) != 1 || cfg.Agents[0].Role != RoleLightAgent || cfg.Limits.ReadTimeout != 45*time.Second {
		t.Errorf("agents from env = %+v", cfg.Agents)
	}
}

func TestBadEnvOverrideNamesTheKey(t *testing.T) {
	t.Setenv("DESKGATE_LIMITS_MAX_SESSIONS", "many")
	ps := problemsOf(t, validBase)
	if !hasProblem(ps, "limits.max_sessions", "") {
		t.Errorf("bad env value not reported by key: %v", ps)
	}
}

func TestYAMLSyntaxErrorAndMissingFile(t *testing.T) {
	ps := problemsOf(t, "hostname: [unclosed\n")
	if len(ps) != 1 || !strings.Contains(ps[0].Msg, "yaml") {
		t.Errorf("syntax error = %v", ps)
	}
	_, err := Load(filepath.Join(t.TempDir(), "nope.yaml"))
	if err == nil || !strings.Contains(err.Error(), "no such file") {
		t.Errorf("missing config file: %v", err)
	}
}

func TestParseByteSize(t *testing.T) {
	for in, want := range map[string]ByteSize{"1024": 1024, "25MiB": 25 << 20, "512KiB": 512 << 10, "1GB": 1e9, "10k": 10 << 10, "3 MB": 3e6} {
		got, err := ParseByteSize(in)
		if err != nil || got != want {
			t.Errorf("ParseByteSize(%q) = %d, %v; want %d", in, got, err, want)
		}
	}
	for _, in := range []string{"", "MiB", "-5", "twelve", "1.5MiB"} {
		if _, err := ParseByteSize(in); err == nil {
			t.Errorf("ParseByteSize(%q) accepted", in)
		}
	}
}

func TestFractionsAreNotWholeNumbers(t *testing.T) {
	ps := problemsOf(t, validBase+"limits: {max_recipients: 1.5, max_sessions: 2.0}\n")
	if !hasProblem(ps, "limits.max_recipients", "1.5 is not a whole number") {
		t.Errorf("max_recipients 1.5 taken: %v", ps)
	}
	if hasProblem(ps, "limits.max_sessions", "") {
		t.Errorf("2.0 is a whole number: %v", ps)
	}
}

func TestDataDirMustBeCreatableAndWritable(t *testing.T) {
	file := filepath.Join(t.TempDir(), "plain-file")
	os.WriteFile(file, nil, 0o600)
	for _, tc := range []struct{ dir, want string }{
		{"/proc/nope", "cannot be created under /proc"},
		{file, "is not a directory"},
		{file + "/sub", "not a directory"},
	} {
		ps := problemsOf(t, strings.Replace(validBase, "data_dir: {{dir}}/data", "data_dir: "+tc.dir, 1))
		if !hasProblem(ps, "data_dir", tc.want) {
			t.Errorf("data_dir %s: %v, want %q", tc.dir, ps, tc.want)
		}
	}
	// A directory that does not exist yet under a writable one is fine, and is not made.
	dir := t.TempDir()
	if ps := problemsOf(t, strings.Replace(validBase, "data_dir: {{dir}}/data", "data_dir: "+dir+"/a/b", 1)); len(ps) > 0 {
		t.Errorf("creatable data_dir refused: %v", ps)
	}
	if entries, _ := os.ReadDir(dir); len(entries) != 0 {
		t.Errorf("check left %d entries behind", len(entries))
	}
}

func TestEnvironmentProblemsAreNamedAsSuch(t *testing.T) {
	t.Setenv("DESKGATE_LIMITS_BOGUS", "1")
	t.Setenv("DESKGATE_LIMITS_MAX_CCS", "-3")
	ps := problemsOf(t, validBase)
	if !hasProblem(ps, "DESKGATE_LIMITS_BOGUS", "matches no config key") {
		t.Errorf("unknown variable not reported: %v", ps)
	}
	if !hasProblem(ps, "limits.max_ccs", `from the environment: DESKGATE_LIMITS_MAX_CCS="-3"`) {
		t.Errorf("a bad value from the environment is not said to come from there: %v", ps)
	}
}

// docs/configuration.md is the reference users read: every key must be in it.
func TestEveryKeyIsDocumented(t *testing.T) {
	doc, err := os.ReadFile("../docs/configuration.md")
	if err != nil {
		t.Fatal(err)
	}
	for _, k := range Keys() {
		if k == "agents" {
			k = "agents:"
		}
		if !strings.Contains(string(doc), "`"+k+"`") && !strings.Contains(string(doc), k) {
			t.Errorf("docs/configuration.md does not describe %s", k)
		}
	}
}

func TestAnEmptyEnvironmentVariableIsAValue(t *testing.T) {
	t.Setenv("DESKGATE_LISTEN_LMTP", "")
	cfg, err := Load(writeConfig(t, validBase))
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Listen.LMTP != "" {
		t.Errorf("DESKGATE_LISTEN_LMTP= left listen.lmtp at %q", cfg.Listen.LMTP)
	}
}

// Type problems are told in YAML's words, from mapstructure's typed errors, never Go's type
// names.
func TestTypeProblemsSpeakYAML(t *testing.T) {
	ps := problemsOf(t, validBase+"limits: {max_ccs: lots, max_recipients: [1]}\npolicy: {ccs_enabled: maybe}\n")
	for key, want := range map[string]string{
		"limits.max_ccs":        `expected a whole number, got "lots"`,
		"limits.max_recipients": "expected a whole number, got a list",
		"policy.ccs_enabled":    `expected true or false, got "maybe"`,
	} {
		if !hasProblem(ps, key, want) {
			t.Errorf("%s: %v, want %q", key, ps, want)
		}
	}
	for _, p := range ps {
		if strings.Contains(p.Msg, "interface") || strings.Contains(p.Msg, "'int'") {
			t.Errorf("a Go type name: %s", p)
		}
	}
}
