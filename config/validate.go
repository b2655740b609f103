package config

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"net/mail"
	"net/netip"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"golang.org/x/net/http/httpguts"

	"github.com/deskgate/deskgate/gateway/addr"
	"github.com/deskgate/deskgate/gateway/model"
)

// addProblem records one problem under a key; validate's checks share it so that every
// section reports in the same words.
type addProblem func(key, format string, args ...any)

// validate checks every section of c, one check per section, and canonicalises the addresses
// it holds. Load sorts the problems by key, so the order of the checks only matters for
// problems under one key, and each check keeps those in the order it always had.
func validate(c *Config) Problems {
	var ps Problems
	add := func(key, format string, args ...any) {
		ps = append(ps, Problem{Key: key, Msg: fmt.Sprintf(format, args...)})
	}
	checkHost(c, add)
	checkStore(c.Store, add)
	checkListen(c, add)
	checkWeb(c, add)
	checkAdmin(c.Admin, add)
	checkTLS(c.TLS, add)
	support := checkSupport(&c.Support, add)
	checkLimits(c.Limits, add)
	checkRetention(c.Retention, add)
	checkAgents(c.Agents, support, add)
	checkPolicy(&c.Policy, add)
	checkNotifications(c.Notifications, add)
	checkAuthentication(c.Authentication, add)
	checkUpstream(c.Upstream, add)
	checkDKIM(c.DKIM, add)
	checkLog(c.Log, add)
	return ps
}

// checkHost checks the two top-level keys: the host name deskgate greets with and the
// directory it keeps its data in.
func checkHost(c *Config, add addProblem) {
	if strings.TrimSpace(c.Hostname) == "" {
		add("hostname", "required")
	} else if strings.ContainsAny(c.Hostname, " \t\r\n@[]<>") {
		add("hostname", "%q is not a host name", c.Hostname)
	}
	if c.DataDir == "" {
		add("data_dir", "required")
	} else if err := checkDataDir(c.DataDir); err != nil {
		add("data_dir", "%v", err)
	}
}

// checkListen checks the mail and admin listeners (checkWeb checks listen.web); an admin
// listener needs a token file.
func checkListen(c *Config, add addProblem) {
	if c.Listen.SMTP == "" && c.Listen.LMTP == "" {
		add("listen", "at least one of listen.smtp and listen.lmtp must be set")
	}
	for key, addr := range map[string]string{"listen.smtp": c.Listen.SMTP, "listen.lmtp": c.Listen.LMTP} {
		if addr != "" {
			if err := checkListenAddr(addr, true); err != nil {
				add(key, "%v", err)
			}
		}
	}
	if c.Listen.Admin != "" {
		if err := checkListenAddr(c.Listen.Admin, false); err != nil {
			add("listen.admin", "%v", err)
		}
		if c.Admin.TokenFile == "" {
			add("admin.token_file", "required when listen.admin is set")
		}
	}
}

// checkAdmin checks that the admin token file, when named, holds a token.
func checkAdmin(a Admin, add addProblem) {
	if a.TokenFile != "" {
		if b, err := os.ReadFile(a.TokenFile); err != nil {
			add("admin.token_file", "%v", fileErr(err))
		} else if strings.TrimSpace(string(b)) == "" {
			add("admin.token_file", "%s is empty", a.TokenFile)
		}
	}
}

// checkTLS checks that the certificate and key come as a pair that loads.
func checkTLS(t TLS, add addProblem) {
	if !t.Enabled() {
		return
	}
	switch {
	case t.CertFile == "":
		add("tls.cert_file", "required when tls.key_file is set")
	case t.KeyFile == "":
		add("tls.key_file", "required when tls.cert_file is set")
	default:
		certOK, keyOK := checkReadable(t.CertFile), checkReadable(t.KeyFile)
		if certOK != nil {
			add("tls.cert_file", "%v", certOK)
		}
		if keyOK != nil {
			add("tls.key_file", "%v", keyOK)
		}
		if certOK == nil && keyOK == nil {
			if _, err := tls.LoadX509KeyPair(t.CertFile, t.KeyFile); err != nil {
				add("tls", "cannot load certificate and key: %v", err)
			}
		}
	}
}

// checkSupport checks the support addresses and puts each in canonical form. It returns the
// set of their keys (model.AddressKey), which checkAgents needs: an agent cannot be a
// support address.
func checkSupport(s *Support, add addProblem) map[string]bool {
	if len(s.Addresses) == 0 {
		add("support.addresses", "at least one support address is required")
	}
	seen := map[string]bool{}
	for i, a := range s.Addresses {
		key := fmt.Sprintf("support.addresses[%d]", i)
		canon, err := canonicalAddress(a)
		if err != nil {
			add(key, "%v", err)
			continue
		}
		s.Addresses[i] = canon
		if strings.Contains(localPart(a), "+") {
			add(key, "%q: a support address cannot contain '+' (deskgate uses LOCAL+... for ticket addresses)", a)
		}
		if !addr.IsASCII(localPart(canon)) {
			add(key, "%q: a support address needs an ASCII local part, because every copy's From and Reply-To and every bounce address are made from it, and any upstream must carry them, with SMTPUTF8 or without (the domain may be internationalised)", a)
		}
		if seen[model.AddressKey(canon)] {
			add(key, "%q is listed twice", a)
		}
		seen[model.AddressKey(canon)] = true
	}
	if strings.ContainsAny(s.Name, "\r\n\"") {
		add("support.name", "must not contain quotes or line breaks")
	}
	return seen
}

// checkLimits checks the bounds of the limits section, and that the bounds agree with each
// other (memory for the largest message, a session longer than one read).
func checkLimits(l Limits, add addProblem) {
	if l.MaxMessageBytes < 1024 {
		add("limits.max_message_bytes", "%d is too small (at least 1KiB)", l.MaxMessageBytes)
	}
	if l.MaxRecipients < 1 {
		add("limits.max_recipients", "must be at least 1, got %d", l.MaxRecipients)
	}
	if l.MaxCCs < 0 {
		add("limits.max_ccs", "must not be negative, got %d", l.MaxCCs)
	}
	if l.MaxSessions < 1 {
		add("limits.max_sessions", "must be at least 1, got %d", l.MaxSessions)
	}
	if l.MaxSessionsPerIP < 1 {
		add("limits.max_sessions_per_ip", "must be at least 1, got %d", l.MaxSessionsPerIP)
	}
	if l.MaxErrors < 1 {
		add("limits.max_errors", "must be at least 1, got %d", l.MaxErrors)
	}
	if l.MaxDataMemory < 2*l.MaxMessageBytes {
		add("limits.max_data_memory", "%d is less than twice limits.max_message_bytes (%d): the largest message could never be taken", l.MaxDataMemory, l.MaxMessageBytes)
	}
	if l.ShutdownGrace < 0 {
		add("limits.shutdown_grace", "must not be negative, got %s", l.ShutdownGrace)
	}
	if l.MinDataRate < 1 {
		add("limits.min_data_rate", "must be at least 1 (bytes per second), got %d", l.MinDataRate)
	}
	if l.SessionTimeout < time.Second {
		add("limits.session_timeout", "must be at least 1s, got %s", l.SessionTimeout)
	} else if l.SessionTimeout < l.ReadTimeout {
		add("limits.session_timeout", "%s is shorter than limits.read_timeout (%s)", l.SessionTimeout, l.ReadTimeout)
	}
	if l.MaxMailsPerSenderHour < 0 {
		add("limits.max_mails_per_sender_hour", "must not be negative (0 turns the guard off), got %d", l.MaxMailsPerSenderHour)
	}
	if l.ReadTimeout <= 0 {
		add("limits.read_timeout", "must be positive, got %s", l.ReadTimeout)
	}
	if l.WriteTimeout <= 0 {
		add("limits.write_timeout", "must be positive, got %s", l.WriteTimeout)
	}
}

// checkRetention checks how long solved tickets are kept.
func checkRetention(r Retention, add addProblem) {
	if r.DeleteSolvedAfter < 0 {
		add("retention.delete_solved_after", "must not be negative (0 keeps tickets forever), got %s", r.DeleteSolvedAfter)
	}
}

// checkAgents checks each agent and puts its address in canonical form; support holds the
// keys of the support addresses, which no agent may have.
func checkAgents(agents []Agent, support map[string]bool, add addProblem) {
	seen := map[string]bool{}
	for i, a := range agents {
		key := fmt.Sprintf("agents[%d]", i)
		canon, err := canonicalAddress(a.Email)
		if err != nil {
			add(key+".email", "%v", err)
		} else if seen[model.AddressKey(canon)] {
			add(key+".email", "%q is listed twice", a.Email)
		} else if support[model.AddressKey(canon)] {
			add(key+".email", "%q is a support address", a.Email)
		}
		if err == nil {
			agents[i].Email = canon
			seen[model.AddressKey(canon)] = true
		}
		if a.Role != RoleAgent && a.Role != RoleLightAgent {
			add(key+".role", "%q is not a role (agent or light_agent)", a.Role)
		}
		if strings.ContainsAny(a.Name, "\r\n") {
			add(key+".name", "must not contain line breaks")
		}
	}
}

// checkPolicy checks the policy choices and puts each CC blocklist pattern in canonical form.
func checkPolicy(p *Policy, add addProblem) {
	for i, pat := range p.CCBlocklist {
		canon, err := canonicalBlockPattern(pat)
		if err != nil {
			add(fmt.Sprintf("policy.cc_blocklist[%d]", i), "%v", err)
			continue
		}
		p.CCBlocklist[i] = canon
	}
	oneOf(add, "policy.cc_removal", p.CCRemoval, "email", "expert_only")
	oneOf(add, "policy.reply_audience", p.ReplyAudience, "notification", "ticket")
}

// checkNotifications checks who hears of each ticket event.
func checkNotifications(n Notifications, add addProblem) {
	oneOf(add, "notifications.ticket_created", n.TicketCreated, "requester", "requester_and_ccs", "none")
	oneOf(add, "notifications.assigned", n.Assigned, "requester", "requester_and_ccs", "none")
	oneOf(add, "notifications.solved", n.Solved, "requester", "requester_and_ccs", "none")
}

// checkAuthentication checks how an agent's mail is told from a forgery: the method, the
// resolver it asks, and the relays it trusts.
func checkAuthentication(a Authentication, add addProblem) {
	oneOf(add, "authentication.agent_identity", a.AgentIdentity, "dmarc", "dkim", "trusted_relay", "none")
	oneOf(add, "authentication.dmarc_reject", a.DMARCReject, "refuse", "accept")
	if r := a.DNSResolver; r != "" {
		if err := checkHostPort(r); err != nil {
			add("authentication.dns_resolver", "%v", err)
		}
	}
	if t := a.Timeout; t <= 0 || t > 5*time.Minute {
		add("authentication.timeout", "must be from 1s to 5m, got %s", t)
	}
	for i, id := range a.TrustedAuthservIDs {
		if strings.TrimSpace(id) == "" || strings.ContainsAny(id, " \t;()") {
			add(fmt.Sprintf("authentication.trusted_authserv_ids[%d]", i), "%q is not an authserv-id (a host name such as mx.example.com)", id)
		}
	}
	if a.AgentIdentity == "trusted_relay" && len(a.TrustedAuthservIDs) == 0 {
		add("authentication.trusted_authserv_ids", "required when agent_identity is trusted_relay")
	}
}

// checkUpstream checks where outgoing mail goes (a relay or a Maildir), the relay's
// credentials and TLS, and the queue's timings.
func checkUpstream(up Upstream, add addProblem) {
	switch {
	case up.Address == "":
		add("upstream.address", `required: "host:port" of the relay, or "maildir:DIR"`)
	case strings.HasPrefix(up.Address, MaildirPrefix):
		if strings.TrimPrefix(up.Address, MaildirPrefix) == "" {
			add("upstream.address", "maildir: needs a directory")
		}
	default:
		if err := checkHostPort(up.Address); err != nil {
			add("upstream.address", "%v", err)
		}
	}
	oneOf(add, "upstream.tls", up.TLS, "starttls", "implicit", "none")
	if up.PasswordFile != "" {
		if err := checkReadable(up.PasswordFile); err != nil {
			add("upstream.password_file", "%v", err)
		}
	}
	if up.CAFile != "" {
		if b, err := os.ReadFile(up.CAFile); err != nil {
			add("upstream.ca_file", "%v", fileErr(err))
		} else if !x509.NewCertPool().AppendCertsFromPEM(b) {
			add("upstream.ca_file", "%s holds no PEM certificate", up.CAFile)
		}
	}
	if up.MaxConnections < 1 || up.MaxConnections > 100 {
		add("upstream.max_connections", "must be from 1 to 100, got %d", up.MaxConnections)
	}
	if up.RetryMin <= 0 {
		add("upstream.retry_min", "must be positive, got %s", up.RetryMin)
	}
	if up.RetryMax < up.RetryMin {
		add("upstream.retry_max", "must be at least upstream.retry_min (%s), got %s", up.RetryMin, up.RetryMax)
	}
	if up.MaxQueueLifetime < up.RetryMin {
		add("upstream.max_queue_lifetime", "must be at least upstream.retry_min (%s), got %s", up.RetryMin, up.MaxQueueLifetime)
	}
	if up.Timeout <= 0 {
		add("upstream.timeout", "must be positive, got %s", up.Timeout)
	}
	if up.Username != "" && up.PasswordFile == "" {
		add("upstream.password_file", "required when upstream.username is set")
	}
}

// checkDKIM checks that a signing key, when any DKIM key is set, comes with its domain and
// selector and parses.
func checkDKIM(d DKIM, add addProblem) {
	if !d.Enabled() {
		return
	}
	if d.Domain == "" {
		add("dkim.domain", "required when dkim is set")
	}
	if d.Selector == "" {
		add("dkim.selector", "required when dkim is set")
	}
	if d.PrivateKeyFile == "" {
		add("dkim.private_key_file", "required when dkim is set")
	} else if err := checkPrivateKey(d.PrivateKeyFile); err != nil {
		add("dkim.private_key_file", "%v", err)
	}
}

// checkLog checks the log's level and format.
func checkLog(l Log, add addProblem) {
	oneOf(add, "log.level", l.Level, "debug", "info", "warn", "error")
	oneOf(add, "log.format", l.Format, "text", "json")
}

func oneOf(add addProblem, key, val string, allowed ...string) {
	for _, a := range allowed {
		if val == a {
			return
		}
	}
	add(key, "%q is not one of %s", val, strings.Join(allowed, ", "))
}

// checkListenAddr accepts "host:port", ":port" and, where unixOK, "unix:/path".
func checkListenAddr(addr string, unixOK bool) error {
	if path, ok := strings.CutPrefix(addr, "unix:"); ok {
		if !unixOK {
			return fmt.Errorf("%q: a unix socket is not supported here", addr)
		}
		if path == "" {
			return fmt.Errorf("%q: unix: needs a socket path", addr)
		}
		return nil
	}
	return checkHostPort(addr)
}

func checkHostPort(addr string) error {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return fmt.Errorf("%q is not host:port: %v", addr, strings.TrimPrefix(err.Error(), "address "+addr+": "))
	}
	n, err := strconv.Atoi(port)
	if err != nil || n < 0 || n > 65535 {
		return fmt.Errorf("%q: port %q is not a number from 0 to 65535", addr, port)
	}
	if strings.ContainsAny(host, " /") {
		return fmt.Errorf("%q: %q is not a host", addr, host)
	}
	return nil
}

func checkBareAddress(a string) error {
	if a == "" {
		return fmt.Errorf("empty address")
	}
	parsed, err := mail.ParseAddress(a)
	if err != nil || parsed.Address != a || parsed.Name != "" || !strings.Contains(a, "@") {
		return fmt.Errorf("%q is not a bare mail address (local@domain)", a)
	}
	return nil
}

// canonicalAddress is a bare address of the config in the one form deskgate compares
// (addr.Canonical), so that mail from any spelling of it (case, A-labels, NFD) matches.
func canonicalAddress(a string) (string, error) {
	if err := checkBareAddress(a); err != nil {
		return "", err
	}
	canon, err := addr.Canonical(a)
	if err != nil {
		return "", err
	}
	return canon, nil
}

// canonicalBlockPattern is a policy.cc_blocklist entry, an address or *@domain, in
// canonical form.
func canonicalBlockPattern(p string) (string, error) {
	if rest, ok := strings.CutPrefix(p, "*@"); ok {
		if rest == "" || strings.ContainsAny(rest, "@* ") {
			return "", fmt.Errorf("%q: a pattern is *@domain", p)
		}
		d, err := addr.CanonicalDomain(rest)
		if err != nil {
			return "", fmt.Errorf("%q: %v", p, err)
		}
		return "*@" + d, nil
	}
	if err := checkBareAddress(p); err != nil {
		return "", fmt.Errorf("%q is neither an address nor *@domain", p)
	}
	canon, err := addr.Canonical(p)
	if err != nil {
		return "", err
	}
	return canon, nil
}

func localPart(a string) string {
	if i := strings.LastIndexByte(a, '@'); i >= 0 {
		return a[:i]
	}
	return a
}

func fileErr(err error) error {
	if pe, ok := err.(*os.PathError); ok {
		return fmt.Errorf("%s: %v", pe.Path, pe.Err)
	}
	return err
}

func checkReadable(path string) error {
	f, err := os.Open(path)
	if err != nil {
		return fileErr(err)
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return fileErr(err)
	}
	if st.IsDir() {
		return fmt.Errorf("%s is a directory", path)
	}
	return nil
}

func checkPrivateKey(path string) error {
	b, err := os.ReadFile(path)
	if err != nil {
		return fileErr(err)
	}
	block, _ := pem.Decode(b)
	if block == nil {
		return fmt.Errorf("%s holds no PEM block", path)
	}
	if _, err := x509.ParsePKCS8PrivateKey(block.Bytes); err == nil {
		return nil
	}
	if _, err := x509.ParsePKCS1PrivateKey(block.Bytes); err == nil {
		return nil
	}
	return fmt.Errorf("%s holds no RSA or Ed25519 private key (PKCS#1 or PKCS#8)", path)
}

// checkDataDir finds out whether deskgate can keep its database in dir: by creating and
// removing a file there, or a directory in its nearest existing parent when dir does not
// exist yet. Permission bits alone would not tell: root passes them where the file system
// itself refuses (/proc, read-only mounts).
func checkDataDir(dir string) error {
	st, err := os.Stat(dir)
	switch {
	case err == nil && !st.IsDir():
		return fmt.Errorf("%s is not a directory", dir)
	case err == nil:
		f, err := os.CreateTemp(dir, ".deskgate-check-*")
		if err != nil {
			return fmt.Errorf("%s is not writable: %v", dir, unwrapPath(err))
		}
		f.Close()
		return os.Remove(f.Name())
	case !errors.Is(err, fs.ErrNotExist):
		return fmt.Errorf("%s: %v", dir, unwrapPath(err))
	}
	parent := filepath.Dir(filepath.Clean(dir))
	for {
		st, err := os.Stat(parent)
		if err == nil {
			if !st.IsDir() {
				return fmt.Errorf("cannot be created: %s is not a directory", parent)
			}
			break
		}
		if next := filepath.Dir(parent); next != parent {
			parent = next
			continue
		}
		return fmt.Errorf("cannot be created: %v", unwrapPath(err))
	}
	probe, err := os.MkdirTemp(parent, ".deskgate-check-*")
	if err != nil {
		return fmt.Errorf("cannot be created under %s: %v", parent, unwrapPath(err))
	}
	return os.Remove(probe)
}

func unwrapPath(err error) error {
	var pe *fs.PathError
	if errors.As(err, &pe) {
		return pe.Err
	}
	return err
}

// checkStore checks the store's keys by their form; `deskgate check-config` then tries the
// connection itself.
func checkStore(st Store, add addProblem) {
	if st.URL != "" {
		u, err := url.Parse(st.URL)
		switch {
		case err != nil:
			add("store.url", "not a URL: %v", err)
		case u.Scheme != "postgres" && u.Scheme != "postgresql":
			add("store.url", "must be empty (bbolt in data_dir) or a postgres:// URL, got scheme %q", u.Scheme)
		case u.User != nil && hasPassword(u.User):
			add("store.url", "holds a password: put it in a file named by store.password_file (or in PGPASSWORD), not in the YAML")
		}
	}
	if st.PasswordFile != "" {
		if st.URL == "" {
			add("store.password_file", "set, but store.url is empty (bbolt needs no password)")
		} else if err := checkReadable(st.PasswordFile); err != nil {
			add("store.password_file", "%v", err)
		}
	}
}

func hasPassword(u *url.Userinfo) bool {
	_, ok := u.Password()
	return ok
}

// checkWeb checks listen.web and the web keys. It trims web.public_url's trailing slash, so
// that links are built on it by plain concatenation.
func checkWeb(c *Config, add addProblem) {
	if c.Listen.Web != "" {
		if err := checkListenAddr(c.Listen.Web, false); err != nil {
			add("listen.web", "%v", err)
		}
	}
	c.Web.PublicURL = strings.TrimRight(strings.TrimSpace(c.Web.PublicURL), "/")
	if c.Web.PublicURL == "" {
		if c.Listen.Web != "" {
			add("web.public_url", "required when listen.web is set: the address browsers use, such as https://support.example.com")
		}
	} else if err := checkPublicURL(c.Web.PublicURL); err != nil {
		add("web.public_url", "%v", err)
	}
	oneOf(add, "web.status_view", c.Web.StatusView, StatusViewRequester, StatusViewRequesterAndCCs, StatusViewOff)
	if c.Web.SessionLifetime <= 0 {
		add("web.session_lifetime", "must be positive, got %s", c.Web.SessionLifetime)
	}
	if h := c.Web.TrustedHeader; h != "" {
		if !httpguts.ValidHeaderFieldName(h) {
			add("web.trusted_header", "%q is not a header name", h)
		}
		if len(c.Web.TrustedProxies) == 0 {
			add("web.trusted_proxies", "required when web.trusted_header is set: the addresses of the authenticating proxy")
		}
	}
	for i, p := range c.Web.TrustedProxies {
		if _, err := parseCIDR(p); err != nil {
			add(fmt.Sprintf("web.trusted_proxies[%d]", i), "%q is neither a CIDR (10.0.0.0/8) nor an address", p)
		}
	}
}

func checkPublicURL(s string) error {
	u, err := url.Parse(s)
	switch {
	case err != nil:
		return fmt.Errorf("%q is not a URL: %v", s, err)
	case u.Scheme != "http" && u.Scheme != "https":
		return fmt.Errorf("%q: must be an absolute http:// or https:// URL", s)
	case u.Host == "" || u.Hostname() == "":
		return fmt.Errorf("%q has no host", s)
	case u.User != nil:
		return fmt.Errorf("%q: must not carry a user or password", s)
	case u.RawQuery != "" || u.ForceQuery || u.Fragment != "" || strings.Contains(s, "#"):
		return fmt.Errorf("%q: must not have a query or a fragment", s)
	}
	return nil
}

// parseCIDR takes a prefix (10.0.0.0/8, fd00::/8) or one address, which stands for itself.
func parseCIDR(s string) (netip.Prefix, error) {
	s = strings.TrimSpace(s)
	if strings.Contains(s, "/") {
		p, err := netip.ParsePrefix(s)
		if err != nil {
			return netip.Prefix{}, err
		}
		return p.Masked(), nil
	}
	a, err := netip.ParseAddr(s)
	if err != nil {
		return netip.Prefix{}, err
	}
	return netip.PrefixFrom(a.Unmap(), a.Unmap().BitLen()), nil
}
