// Package dnstest is a small authoritative DNS server on loopback for tests and
// benchmarks: the DKIM keys, SPF and DMARC records of test domains, served over real
// UDP and TCP packets so that deskgate's own resolver is what gets tested.
package dnstest

import (
	"net"
	"strings"
	"sync"
	"time"

	"github.com/miekg/dns"
)

// Behaviour of the server for one name, or for all.
const (
	Answer   = iota // answer from the zone (the default)
	Drop            // never answer: a DNS server that hangs
	ServFail        // answer SERVFAIL
)

// Server serves a zone from memory.
type Server struct {
	Addr string // "127.0.0.1:port", UDP and TCP

	mu      sync.Mutex
	records map[key][]string
	mode    int
	modeFor map[string]int
	queries int
	udp     *dns.Server
	tcp     *dns.Server
}

type key struct {
	name  string
	qtype uint16
}

// Start serves on a free loopback port until Close.
func Start() (*Server, error) {
	s := &Server{records: map[key][]string{}, modeFor: map[string]int{}}
	// UDP and TCP share one port number; the TCP port can be taken by another process
	// (test packages run in parallel), so another UDP port is tried then.
	var pc net.PacketConn
	var l net.Listener
	var err error
	for try := 0; try < 20; try++ {
		if pc, err = net.ListenPacket("udp", "127.0.0.1:0"); err != nil {
			return nil, err
		}
		if l, err = net.Listen("tcp", pc.LocalAddr().String()); err == nil {
			break
		}
		pc.Close()
	}
	if err != nil {
		return nil, err
	}
	s.Addr = pc.LocalAddr().String()
	h := dns.HandlerFunc(s.serve)
	s.udp = &dns.Server{PacketConn: pc, Handler: h}
	s.tcp = &dns.Server{Listener: l, Handler: h}
	started := make(chan struct{}, 2)
	s.udp.NotifyStartedFunc = func() { started <- struct{}{} }
	s.tcp.NotifyStartedFunc = func() { started <- struct{}{} }
	go s.udp.ActivateAndServe()
	go s.tcp.ActivateAndServe()
	for range 2 {
		select {
		case <-started:
		case <-time.After(5 * time.Second):
		}
	}
	return s, nil
}

// Close stops the server.
func (s *Server) Close() {
	s.udp.Shutdown()
	s.tcp.Shutdown()
}

func fqdn(name string) string { return dns.Fqdn(strings.ToLower(name)) }

// TXT sets the TXT records of name; each value is one record. Values over 255 bytes
// are split into several strings of one record, as a zone file would.
func (s *Server) TXT(name string, values ...string) { s.set(name, dns.TypeTXT, values) }

// A sets the IPv4 addresses of name.
func (s *Server) A(name string, ips ...string) { s.set(name, dns.TypeA, ips) }

// MX sets the mail exchangers of name ("10 mx.example.com.").
func (s *Server) MX(name string, mxs ...string) { s.set(name, dns.TypeMX, mxs) }

func (s *Server) set(name string, qtype uint16, values []string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(values) == 0 {
		delete(s.records, key{fqdn(name), qtype})
		return
	}
	s.records[key{fqdn(name), qtype}] = values
}

// SetMode makes the server answer, hang or fail for every name.
func (s *Server) SetMode(mode int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.mode = mode
}

// SetModeFor makes the server answer, hang or fail for one name.
func (s *Server) SetModeFor(name string, mode int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.modeFor[fqdn(name)] = mode
}

// Queries is how many questions the server has been asked.
func (s *Server) Queries() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.queries
}

func (s *Server) serve(w dns.ResponseWriter, req *dns.Msg) {
	if len(req.Question) != 1 {
		return
	}
	q := req.Question[0]
	name := strings.ToLower(q.Name)
	s.mu.Lock()
	s.queries++
	mode := s.mode
	if m, ok := s.modeFor[name]; ok {
		mode = m
	}
	values := s.records[key{name, q.Qtype}]
	exists := false
	for k := range s.records {
		if k.name == name || strings.HasSuffix(k.name, "."+name) {
			exists = true
			break
		}
	}
	s.mu.Unlock()

	resp := new(dns.Msg)
	resp.SetReply(req)
	resp.Authoritative = true
	switch mode {
	case Drop:
		return
	case ServFail:
		resp.Rcode = dns.RcodeServerFailure
		w.WriteMsg(resp)
		return
	}
	hdr := dns.RR_Header{Name: q.Name, Rrtype: q.Qtype, Class: dns.ClassINET, Ttl: 300}
	for _, v := range values {
		switch q.Qtype {
		case dns.TypeTXT:
			resp.Answer = append(resp.Answer, &dns.TXT{Hdr: hdr, Txt: split255(v)})
		case dns.TypeA:
			resp.Answer = append(resp.Answer, &dns.A{Hdr: hdr, A: net.ParseIP(v).To4()})
		case dns.TypeMX:
			if rr, err := dns.NewRR(q.Name + " 300 IN MX " + v); err == nil {
				resp.Answer = append(resp.Answer, rr)
			}
		}
	}
	if len(resp.Answer) == 0 {
		if !exists {
			resp.Rcode = dns.RcodeNameError
		}
		resp.Ns = []dns.RR{&dns.SOA{Hdr: dns.RR_Header{Name: q.Name, Rrtype: dns.TypeSOA, Class: dns.ClassINET, Ttl: 60},
			Ns: "ns.test.", Mbox: "hostmaster.test.", Serial: 1, Refresh: 3600, Retry: 600, Expire: 86400, Minttl: 60}}
	}
	if _, udp := w.RemoteAddr().(*net.UDPAddr); udp {
		size := 512
		if o := req.IsEdns0(); o != nil {
			size = int(o.UDPSize())
		}
		resp.Truncate(size)
	}
	w.WriteMsg(resp)
}

func split255(s string) []string {
	var out []string
	for len(s) > 255 {
		out = append(out, s[:255])
		s = s[255:]
	}
	return append(out, s)
}
