package main

import (
	"bytes"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"flag"
	"fmt"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/emersion/go-msgauth/dkim"

	"github.com/deskgate/deskgate/internal/dnstest"
)

var (
	authN    = flag.Int("auth-n", 6000, "agents' replies in each sender-authentication run (runs of 2000, about a second, swung between 0.73 and 0.91)")
	benchDNS *dnstest.Server
)

type authResult struct {
	n                int
	signed, unsigned float64
	dnsQueries       int
}

// runAuth measures what checking agents' mail costs: the same agents' replies, once
// DKIM-signed and checked under agent_identity: dmarc against a DNS server on loopback,
// once unsigned under none, each on a fresh instance. Both runs ask the same DNS server
// (none still computes and records the results); only the dmarc run proves agents.
func runAuth(dir string) (authResult, error) {
	r := authResult{n: *authN}
	ns := benchDNS
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		return r, err
	}
	pub, _ := x509.MarshalPKIXPublicKey(&key.PublicKey)
	ns.TXT("bench._domainkey.example.com", "v=DKIM1; k=rsa; p="+base64.StdEncoding.EncodeToString(pub))
	ns.TXT("_dmarc.example.com", "v=DMARC1; p=reject")
	ns.TXT("example.com", "v=spf1 -all")

	// Sign before the clock starts: the sender's cost is not deskgate's.
	body := bytes.Repeat([]byte("The vendor says to unplug it and wait ten minutes.\r\n"), *size/52+1)
	messages := func(reply string, sign bool) ([][]byte, error) {
		out := make([][]byte, r.n)
		for i := range out {
			msg := fmt.Sprintf("From: Agent %d <agent%d@example.com>\r\nTo: %s\r\nSubject: Re: Fan-out\r\nMessage-ID: <auth-%v-%d@example.com>\r\nDate: %s\r\n\r\n%s",
				i%10+1, i%10+1, reply, sign, i, time.Now().Format(time.RFC1123Z), body)
			if !sign {
				out[i] = []byte(msg)
				continue
			}
			var b bytes.Buffer
			if err := dkim.Sign(&b, bytes.NewReader([]byte(msg)), &dkim.SignOptions{Domain: "example.com", Selector: "bench", Signer: key,
				HeaderCanonicalization: dkim.CanonicalizationRelaxed, BodyCanonicalization: dkim.CanonicalizationRelaxed}); err != nil {
				return nil, err
			}
			out[i] = b.Bytes()
		}
		return out, nil
	}

	one := func(sub, mode string, sign bool) (float64, error) {
		path := dir + "/" + sub
		os.MkdirAll(path, 0o755)
		d, err := startDeskgateWith(path, "", fmt.Sprintf(`{agent_identity: %s, dns_resolver: "%s"}`, mode, ns.Addr))
		if err != nil {
			return 0, err
		}
		defer d.stop()
		if err := smtpSend(d.smtp, "jane@customer.test", "support@example.com",
			"From: Jane <jane@customer.test>\r\nTo: support@example.com\r\nSubject: Fan-out\r\nMessage-ID: <auth@customer.test>\r\n\r\nstart\r\n"); err != nil {
			return 0, err
		}
		reply, err := d.replyAddress()
		if err != nil {
			return 0, err
		}
		msgs, err := messages(reply, sign)
		if err != nil {
			return 0, err
		}
		var next atomic.Int64
		var failed atomic.Value
		var wg sync.WaitGroup
		start := time.Now()
		for range *sessions {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for {
					i := int(next.Add(1)) - 1
					if i >= len(msgs) {
						return
					}
					if err := smtpSend(d.smtp, fmt.Sprintf("agent%d@example.com", i%10+1), reply, string(msgs[i])); err != nil {
						failed.Store(err)
						return
					}
				}
			}()
		}
		wg.Wait()
		rate := float64(r.n) / time.Since(start).Seconds()
		if err, _ := failed.Load().(error); err != nil {
			return 0, err
		}
		// Under none nothing is proven: the agents' replies are believed, "unverified".
		outcome := "proven"
		if mode == "none" {
			outcome = "unverified"
		}
		if got := d.metric(fmt.Sprintf(`deskgate_agent_claims_total{mode="%s",outcome="%s"}`, mode, outcome)); got != r.n {
			return 0, fmt.Errorf("%d of %d agents' replies %s under %s: the run is not valid", got, r.n, outcome, mode)
		}
		return rate, nil
	}
	q0 := ns.Queries()
	if r.signed, err = one("signed", "dmarc", true); err != nil {
		return r, err
	}
	r.dnsQueries = ns.Queries() - q0
	if r.unsigned, err = one("unsigned", "none", false); err != nil {
		return r, err
	}
	return r, nil
}
