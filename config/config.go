// Package config loads deskgate's one YAML file into a typed, validated Config.
// It is the only package that imports viper: everything else sees an immutable *Config.
package config

import (
	"net/netip"
	"strings"
	"time"

	"github.com/deskgate/deskgate/gateway/addr"
)

// Config is the whole of deskgate.yaml after defaults, env overrides and validation.
type Config struct {
	Hostname       string         `mapstructure:"hostname"`
	DataDir        string         `mapstructure:"data_dir"`
	Listen         Listen         `mapstructure:"listen"`
	TLS            TLS            `mapstructure:"tls"`
	Support        Support        `mapstructure:"support"`
	Limits         Limits         `mapstructure:"limits"`
	Agents         []Agent        `mapstructure:"agents"`
	Policy         Policy         `mapstructure:"policy"`
	Notifications  Notifications  `mapstructure:"notifications"`
	Authentication Authentication `mapstructure:"authentication"`
	Store          Store          `mapstructure:"store"`
	Retention      Retention      `mapstructure:"retention"`
	Upstream       Upstream       `mapstructure:"upstream"`
	DKIM           DKIM           `mapstructure:"dkim"`
	Admin          Admin          `mapstructure:"admin"`
	Web            Web            `mapstructure:"web"`
	Log            Log            `mapstructure:"log"`

	// Path is the file this config was read from; not a key.
	Path string `mapstructure:"-"`
}

// Store says where tickets and the outbound queue live: "" is bbolt in data_dir (one host);
// a postgres:// URL is a PostgreSQL database that several deskgate nodes share.
type Store struct {
	URL string `mapstructure:"url"`
	// PasswordFile holds the PostgreSQL password; the URL never does, since it lives in the YAML.
	PasswordFile string `mapstructure:"password_file"`
}

// Retention says how long the desk keeps what it no longer needs.
type Retention struct {
	// DeleteSolvedAfter deletes a solved ticket this long after its last change; 0 keeps
	// tickets forever.
	DeleteSolvedAfter time.Duration `mapstructure:"delete_solved_after"`
}

type Listen struct {
	SMTP  string `mapstructure:"smtp"`
	LMTP  string `mapstructure:"lmtp"`
	Admin string `mapstructure:"admin"`
	// Web serves the agents' desk and the requesters' status view, in plain HTTP behind a
	// TLS proxy; "" disables it.
	Web string `mapstructure:"web"`
}

type TLS struct {
	CertFile string `mapstructure:"cert_file"`
	KeyFile  string `mapstructure:"key_file"`
}

// Enabled reports whether STARTTLS is configured on the SMTP listener.
func (t TLS) Enabled() bool { return t.CertFile != "" || t.KeyFile != "" }

type Support struct {
	Name      string   `mapstructure:"name"`
	Addresses []string `mapstructure:"addresses"`
}

type Limits struct {
	MaxMessageBytes  ByteSize `mapstructure:"max_message_bytes"`
	MaxRecipients    int      `mapstructure:"max_recipients"`
	MaxCCs           int      `mapstructure:"max_ccs"`
	MaxSessions      int      `mapstructure:"max_sessions"`
	MaxSessionsPerIP int      `mapstructure:"max_sessions_per_ip"`
	// MaxErrors is how many refused commands (recipients included) a session may collect
	// before it is closed, as Postfix's smtpd_hard_error_limit.
	MaxErrors int `mapstructure:"max_errors"`
	// MaxDataMemory bounds the message data all sessions hold at once.
	MaxDataMemory         ByteSize      `mapstructure:"max_data_memory"`
	ShutdownGrace         time.Duration `mapstructure:"shutdown_grace"`
	MaxMailsPerSenderHour int           `mapstructure:"max_mails_per_sender_hour"`
	// ReadTimeout is the time a client has for one whole command line, and the base of
	// the time it has for the message data.
	ReadTimeout time.Duration `mapstructure:"read_timeout"`
	// MinDataRate (bytes per second) extends the DATA deadline by what arrived so far.
	MinDataRate ByteSize `mapstructure:"min_data_rate"`
	// SessionTimeout bounds a whole SMTP or LMTP session, however busy.
	SessionTimeout time.Duration `mapstructure:"session_timeout"`
	WriteTimeout   time.Duration `mapstructure:"write_timeout"`
}

// Agent roles.
const (
	RoleAgent      = "agent"
	RoleLightAgent = "light_agent"
)

type Agent struct {
	Email string `mapstructure:"email"`
	Name  string `mapstructure:"name"`
	Role  string `mapstructure:"role"`
}

type Policy struct {
	CCsEnabled             bool     `mapstructure:"ccs_enabled"`
	FollowersEnabled       bool     `mapstructure:"followers_enabled"`
	AgentCCBecomesFollower bool     `mapstructure:"agent_cc_becomes_follower"`
	CCBlocklist            []string `mapstructure:"cc_blocklist"`
	CCRemoval              string   `mapstructure:"cc_removal"`
	ReplyAudience          string   `mapstructure:"reply_audience"`
	CCAttachments          bool     `mapstructure:"cc_attachments"`
}

type Notifications struct {
	TicketCreated string `mapstructure:"ticket_created"`
	Assigned      string `mapstructure:"assigned"`
	Solved        string `mapstructure:"solved"`
}

type Authentication struct {
	DNSResolver        string   `mapstructure:"dns_resolver"`
	TrustedAuthservIDs []string `mapstructure:"trusted_authserv_ids"`
	AgentIdentity      string   `mapstructure:"agent_identity"`
	// Timeout bounds the DNS lookups and verification of one message.
	Timeout time.Duration `mapstructure:"timeout"`
	// DMARCReject is refuse or accept: what becomes of mail that fails DMARC when its
	// From domain publishes p=reject, under agent_identity: dmarc.
	DMARCReject string `mapstructure:"dmarc_reject"`
}

type Upstream struct {
	Address      string `mapstructure:"address"`
	TLS          string `mapstructure:"tls"`
	Username     string `mapstructure:"username"`
	PasswordFile string `mapstructure:"password_file"`
	// CAFile is a PEM bundle to trust for the upstream's certificate besides the
	// system's (a private relay's own CA).
	CAFile string `mapstructure:"ca_file"`
	// MaxConnections bounds the connections used in parallel.
	MaxConnections int `mapstructure:"max_connections"`
	// RetryMin is the first retry's delay; each next one doubles, up to RetryMax.
	RetryMin time.Duration `mapstructure:"retry_min"`
	RetryMax time.Duration `mapstructure:"retry_max"`
	// MaxQueueLifetime is how long a delivery is retried before it fails (Postfix's
	// maximal_queue_lifetime).
	MaxQueueLifetime time.Duration `mapstructure:"max_queue_lifetime"`
	// Timeout bounds each SMTP command, and twice it the message data.
	Timeout time.Duration `mapstructure:"timeout"`
}

// MaildirPrefix marks an upstream address that delivers into a local Maildir.
const MaildirPrefix = "maildir:"

type DKIM struct {
	Domain         string `mapstructure:"domain"`
	Selector       string `mapstructure:"selector"`
	PrivateKeyFile string `mapstructure:"private_key_file"`
}

// Enabled reports whether outgoing mail is to be signed.
func (d DKIM) Enabled() bool { return d.Domain != "" || d.Selector != "" || d.PrivateKeyFile != "" }

type Admin struct {
	TokenFile string `mapstructure:"token_file"`
}

// Status view settings (web.status_view).
const (
	StatusViewRequester       = "requester"
	StatusViewRequesterAndCCs = "requester_and_ccs"
	StatusViewOff             = "off"
)

// Web configures the pages on listen.web.
type Web struct {
	// PublicURL is where browsers reach listen.web (through the TLS proxy): links in mail are
	// built on it. Validation trims its trailing slash.
	PublicURL string `mapstructure:"public_url"`
	// StatusView is who gets a link to the request status view.
	StatusView      string        `mapstructure:"status_view"`
	SessionLifetime time.Duration `mapstructure:"session_lifetime"`
	// TrustedHeader names a header (X-Forwarded-Email) that an authenticating proxy sets to
	// the signed-in address; believed only from TrustedProxies. "" turns it off.
	TrustedHeader  string   `mapstructure:"trusted_header"`
	TrustedProxies []string `mapstructure:"trusted_proxies"`
}

// TrustedProxyNets parses web.trusted_proxies; validation has made sure every entry parses,
// so the ones that do not (none, in a loaded config) are left out.
func (w Web) TrustedProxyNets() []netip.Prefix {
	var out []netip.Prefix
	for _, s := range w.TrustedProxies {
		if p, err := parseCIDR(s); err == nil {
			out = append(out, p)
		}
	}
	return out
}

// Secure reports whether web.public_url is https, so that cookies are to carry Secure.
func (w Web) Secure() bool { return strings.HasPrefix(strings.ToLower(w.PublicURL), "https:") }

type Log struct {
	Level  string `mapstructure:"level"`
	Format string `mapstructure:"format"`
}

// AgentByEmail returns the configured agent with that address, in any form of it (case,
// A-labels, NFD): the agents' addresses are canonical since Load.
func (c *Config) AgentByEmail(email string) (Agent, bool) {
	for _, a := range c.Agents {
		if equalFoldASCII(a.Email, email) {
			return a, true
		}
	}
	if canon, err := addr.Canonical(email); err == nil {
		for _, a := range c.Agents {
			if strings.EqualFold(a.Email, canon) {
				return a, true
			}
		}
	}
	return Agent{}, false
}

func equalFoldASCII(a, b string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := 0; i < len(a); i++ {
		x, y := a[i], b[i]
		if 'A' <= x && x <= 'Z' {
			x += 'a' - 'A'
		}
		if 'A' <= y && y <= 'Z' {
			y += 'a' - 'A'
		}
		if x != y {
			return false
		}
	}
	return true
}
