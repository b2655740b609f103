package auth

import (
	"context"
	"errors"
	"net"
	"strings"
	"sync"
	"time"

	"github.com/miekg/dns"
)

// Resolver is the DNS that sender authentication asks. Its method set is the one
// blitiri.com.ar/go/spf uses, and its errors are *net.DNSError as that package and
// go-msgauth expect: IsNotFound for NXDOMAIN or no answer, Temporary for the rest.
type Resolver interface {
	LookupTXT(ctx context.Context, name string) ([]string, error)
	LookupMX(ctx context.Context, name string) ([]*net.MX, error)
	LookupIPAddr(ctx context.Context, host string) ([]net.IPAddr, error)
	LookupAddr(ctx context.Context, addr string) ([]string, error)
}

// Cache bounds, so that a flood of distinct sender domains cannot grow memory without
// end. TTLs are capped too: a record with a week-long TTL must not pin a key that its
// owner has since rotated.
const (
	maxCacheEntries = 20000
	maxCacheTTL     = time.Hour
	negativeTTL     = 5 * time.Minute // when the answer carries no SOA to say otherwise
	perQueryTimeout = 3 * time.Second
)

// DNSResolver asks one or more DNS servers directly (UDP, TCP when truncated) and keeps
// the answers for their TTL. deskgate uses it whether the servers come from
// authentication.dns_resolver or from /etc/resolv.conf, so both behave alike.
type DNSResolver struct {
	servers []string
	udp     *dns.Client
	tcp     *dns.Client
	now     func() time.Time

	mu    sync.Mutex
	cache map[cacheKey]cacheEntry
}

type cacheKey struct {
	qtype uint16
	name  string
}

type cacheEntry struct {
	rrs      []dns.RR
	notFound bool
	expires  time.Time
}

// NewResolver makes a resolver for server ("host:port"), or for the nameservers of
// /etc/resolv.conf when server is "".
func NewResolver(server string) *DNSResolver {
	var servers []string
	if server != "" {
		servers = []string{server}
	} else if cc, err := dns.ClientConfigFromFile("/etc/resolv.conf"); err == nil {
		for _, s := range cc.Servers {
			servers = append(servers, net.JoinHostPort(s, cc.Port))
		}
	}
	if len(servers) == 0 {
		servers = []string{"127.0.0.1:53"}
	}
	return &DNSResolver{
		servers: servers,
		udp:     &dns.Client{Net: "udp", Timeout: perQueryTimeout, UDPSize: 4096},
		tcp:     &dns.Client{Net: "tcp", Timeout: perQueryTimeout},
		now:     time.Now,
		cache:   map[cacheKey]cacheEntry{},
	}
}

// Servers are the DNS servers asked, in order.
func (r *DNSResolver) Servers() []string { return append([]string(nil), r.servers...) }

func dnsError(name, msg string, notFound, temporary, timeout bool) *net.DNSError {
	return &net.DNSError{Err: msg, Name: name, IsNotFound: notFound, IsTemporary: temporary, IsTimeout: timeout}
}

// query returns the answer records of type qtype for name, following the CNAMEs that
// the server put into the same answer.
func (r *DNSResolver) query(ctx context.Context, name string, qtype uint16) ([]dns.RR, error) {
	fqdn := dns.Fqdn(strings.ToLower(strings.TrimSpace(name)))
	if _, ok := dns.IsDomainName(fqdn); !ok || len(fqdn) > 254 {
		return nil, dnsError(name, "not a domain name", true, false, false)
	}
	key := cacheKey{qtype, fqdn}
	now := r.now()
	r.mu.Lock()
	e, ok := r.cache[key]
	r.mu.Unlock()
	if ok && now.Before(e.expires) {
		if e.notFound {
			return nil, dnsError(name, "no such host", true, false, false)
		}
		return e.rrs, nil
	}

	m := new(dns.Msg)
	m.SetQuestion(fqdn, qtype)
	m.SetEdns0(4096, false)
	var resp *dns.Msg
	var err error
	for _, server := range r.servers {
		resp, err = r.exchange(ctx, m, server)
		if err == nil && resp.Rcode != dns.RcodeServerFailure && resp.Rcode != dns.RcodeRefused {
			break
		}
		if ctx.Err() != nil {
			break
		}
	}
	if err != nil {
		timeout := errors.Is(err, context.DeadlineExceeded)
		var ne net.Error
		if errors.As(err, &ne) && ne.Timeout() {
			timeout = true
		}
		return nil, dnsError(name, err.Error(), false, true, timeout)
	}
	switch resp.Rcode {
	case dns.RcodeSuccess, dns.RcodeNameError:
	default:
		return nil, dnsError(name, "server answered "+dns.RcodeToString[resp.Rcode], false, true, false)
	}
	rrs, ttl := answersFor(resp, fqdn, qtype)
	entry := cacheEntry{rrs: rrs, notFound: len(rrs) == 0, expires: now.Add(ttl)}
	r.store(key, entry)
	if entry.notFound {
		return nil, dnsError(name, "no such host", true, false, false)
	}
	return rrs, nil
}

func (r *DNSResolver) exchange(ctx context.Context, m *dns.Msg, server string) (*dns.Msg, error) {
	resp, _, err := r.udp.ExchangeContext(ctx, m, server)
	if err == nil && resp.Truncated {
		resp, _, err = r.tcp.ExchangeContext(ctx, m, server)
	}
	if err == nil && resp.Id != m.Id {
		return nil, errors.New("answer does not match the question")
	}
	return resp, err
}

// answersFor picks the records of qtype out of an answer and the TTL to keep it for.
func answersFor(resp *dns.Msg, fqdn string, qtype uint16) ([]dns.RR, time.Duration) {
	ttl := maxCacheTTL
	names := map[string]bool{fqdn: true}
	// Follow the CNAME chain in the order the server gave it, bounded by the answer.
	for range resp.Answer {
		grew := false
		for _, rr := range resp.Answer {
			if c, ok := rr.(*dns.CNAME); ok && names[strings.ToLower(c.Hdr.Name)] && !names[strings.ToLower(c.Target)] {
				names[strings.ToLower(c.Target)] = true
				grew = true
			}
		}
		if !grew {
			break
		}
	}
	var out []dns.RR
	for _, rr := range resp.Answer {
		h := rr.Header()
		if h.Rrtype != qtype || !names[strings.ToLower(h.Name)] {
			continue
		}
		out = append(out, rr)
		if d := time.Duration(h.Ttl) * time.Second; d < ttl {
			ttl = d
		}
	}
	if len(out) == 0 {
		ttl = negativeTTL
		for _, rr := range resp.Ns {
			if soa, ok := rr.(*dns.SOA); ok {
				// RFC 2308: the negative TTL is the smaller of the SOA's TTL and MINIMUM.
				d := time.Duration(min(soa.Hdr.Ttl, soa.Minttl)) * time.Second
				ttl = min(d, maxCacheTTL)
			}
		}
	}
	return out, ttl
}

func (r *DNSResolver) store(key cacheKey, e cacheEntry) {
	if !e.expires.After(r.now()) {
		return
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.cache) >= maxCacheEntries {
		now := r.now()
		for k, v := range r.cache {
			if !now.Before(v.expires) {
				delete(r.cache, k)
			}
		}
		// Still full of live answers: forget an arbitrary tenth rather than grow.
		for k := range r.cache {
			if len(r.cache) < maxCacheEntries*9/10 {
				break
			}
			delete(r.cache, k)
		}
	}
	r.cache[key] = e
}

// LookupTXT returns each TXT record with its strings joined, as net.LookupTXT does.
func (r *DNSResolver) LookupTXT(ctx context.Context, name string) ([]string, error) {
	rrs, err := r.query(ctx, name, dns.TypeTXT)
	if err != nil {
		return nil, err
	}
	out := make([]string, 0, len(rrs))
	for _, rr := range rrs {
		out = append(out, strings.Join(rr.(*dns.TXT).Txt, ""))
	}
	return out, nil
}

// LookupMX returns the MX records of name.
func (r *DNSResolver) LookupMX(ctx context.Context, name string) ([]*net.MX, error) {
	rrs, err := r.query(ctx, name, dns.TypeMX)
	if err != nil {
		return nil, err
	}
	out := make([]*net.MX, 0, len(rrs))
	for _, rr := range rrs {
		mx := rr.(*dns.MX)
		out = append(out, &net.MX{Host: mx.Mx, Pref: mx.Preference})
	}
	return out, nil
}

// LookupIPAddr returns the IPv4 and IPv6 addresses of host.
func (r *DNSResolver) LookupIPAddr(ctx context.Context, host string) ([]net.IPAddr, error) {
	var out []net.IPAddr
	var firstErr error
	for _, qtype := range []uint16{dns.TypeA, dns.TypeAAAA} {
		rrs, err := r.query(ctx, host, qtype)
		if err != nil {
			var de *net.DNSError
			if firstErr == nil || (errors.As(firstErr, &de) && de.IsNotFound) {
				firstErr = err
			}
			continue
		}
		for _, rr := range rrs {
			switch v := rr.(type) {
			case *dns.A:
				out = append(out, net.IPAddr{IP: v.A})
			case *dns.AAAA:
				out = append(out, net.IPAddr{IP: v.AAAA})
			}
		}
	}
	if len(out) == 0 {
		return nil, firstErr
	}
	return out, nil
}

// LookupAddr returns the names of an address (PTR).
func (r *DNSResolver) LookupAddr(ctx context.Context, addr string) ([]string, error) {
	rev, err := dns.ReverseAddr(addr)
	if err != nil {
		return nil, dnsError(addr, "not an IP address", true, false, false)
	}
	rrs, err := r.query(ctx, rev, dns.TypePTR)
	if err != nil {
		return nil, err
	}
	out := make([]string, 0, len(rrs))
	for _, rr := range rrs {
		out = append(out, rr.(*dns.PTR).Ptr)
	}
	return out, nil
}
