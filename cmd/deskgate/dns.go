package main

import (
	"context"
	"crypto"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"encoding/pem"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/deskgate/deskgate/config"
	"github.com/deskgate/deskgate/gateway/addr"
	"github.com/deskgate/deskgate/gateway/auth"
	"github.com/deskgate/deskgate/gateway/relay"
)

// loadForTools reads the config for the operator tools, which are useful before the config
// is complete (a DKIM key is made before the dkim block exists): problems are reported on
// stderr, and what could be read is used.
func loadForTools(cmd *cobra.Command) *config.Config {
	cfg, err := config.Load(configPath())
	var problems config.Problems
	if err != nil && !errors.As(err, &problems) {
		fmt.Fprintf(cmd.ErrOrStderr(), "deskgate: %v; going on without the config\n", err)
		return &config.Config{}
	}
	if cfg == nil {
		return &config.Config{}
	}
	return cfg
}

// supportDomains are the domains of the support addresses, in order, each once.
func supportDomains(cfg *config.Config) []string {
	var out []string
	seen := map[string]bool{}
	for _, a := range cfg.Support.Addresses {
		// DNS names are written in A-labels: the config keeps an IDN domain in U-labels.
		if ascii, ok := addr.ASCIIForm(a); ok {
			a = ascii
		}
		if i := strings.LastIndexByte(a, '@'); i > 0 {
			d := strings.ToLower(a[i+1:])
			if !seen[d] {
				seen[d] = true
				out = append(out, d)
			}
		}
	}
	return out
}

func dkimCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "dkim", Short: "DKIM signing keys for what deskgate sends (docs/operations.md)"}
	var selector, domain, out, keyType string
	var force bool
	keygen := &cobra.Command{
		Use:   "keygen --selector S [--domain D] [--out FILE]",
		Short: "write a new signing key (mode 0600) and print the DNS TXT record to publish",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg := loadForTools(cmd)
			if domain == "" {
				domain = cfg.DKIM.Domain
			}
			if domain == "" {
				if ds := supportDomains(cfg); len(ds) > 0 {
					domain = ds[0]
				}
			}
			if domain == "" {
				return errors.New("--domain: no domain given and none in the config (dkim.domain or support.addresses)")
			}
			if selector == "" || strings.ContainsAny(selector, ". \t") {
				return fmt.Errorf("--selector: %q is not a DNS label", selector)
			}
			if out == "" {
				out = filepath.Join(filepath.Dir(cfg.Path), "dkim-"+selector+".key")
				if cfg.Path == "" {
					out = "dkim-" + selector + ".key"
				}
			}
			if _, err := os.Stat(out); err == nil && !force {
				return fmt.Errorf("%s exists; not overwriting a signing key without --force", out)
			}
			key, err := newDKIMKey(keyType)
			if err != nil {
				return err
			}
			der, err := x509.MarshalPKCS8PrivateKey(key)
			if err != nil {
				return err
			}
			tmp, err := os.CreateTemp(filepath.Dir(out), ".dkim-*")
			if err != nil {
				return err
			}
			defer os.Remove(tmp.Name())
			if err := tmp.Chmod(0o600); err != nil {
				return err
			}
			if err := pem.Encode(tmp, &pem.Block{Type: "PRIVATE KEY", Bytes: der}); err != nil {
				return err
			}
			if err := tmp.Close(); err != nil {
				return err
			}
			if err := os.Rename(tmp.Name(), out); err != nil {
				return err
			}
			record, err := dkimRecord(key.Public())
			if err != nil {
				return err
			}
			w := cmd.OutOrStdout()
			fmt.Fprintf(w, "Wrote %s (mode 0600). Make it readable by the deskgate user, then publish:\n\n", out)
			fmt.Fprintf(w, "%s._domainkey.%s. IN TXT %s\n\n", selector, domain, zoneQuote(record))
			fmt.Fprintf(w, "and sign with it in the config:\n\ndkim:\n  domain: %s\n  selector: %s\n  private_key_file: %s\n", domain, selector, out)
			return nil
		},
	}
	keygen.Flags().StringVar(&selector, "selector", "", "the DKIM selector (s=), e.g. deskgate2026")
	keygen.Flags().StringVar(&domain, "domain", "", "the signing domain (d=); default dkim.domain, else the first support address's domain")
	keygen.Flags().StringVar(&out, "out", "", "where to write the key; default dkim-<selector>.key next to the config")
	keygen.Flags().StringVar(&keyType, "type", "rsa", "rsa (2048 bits, understood everywhere) or ed25519 (RFC 8463)")
	keygen.Flags().BoolVar(&force, "force", false, "replace an existing key file")
	cmd.AddCommand(keygen)
	return cmd
}

func newDKIMKey(keyType string) (crypto.Signer, error) {
	switch keyType {
	case "rsa":
		return rsa.GenerateKey(rand.Reader, 2048)
	case "ed25519":
		_, k, err := ed25519.GenerateKey(rand.Reader)
		return k, err
	}
	return nil, fmt.Errorf("--type: %q is not rsa or ed25519", keyType)
}

// dkimRecord is the TXT value that publishes a public key (RFC 6376 3.6.1, RFC 8463).
func dkimRecord(pub crypto.PublicKey) (string, error) {
	switch k := pub.(type) {
	case *rsa.PublicKey:
		der, err := x509.MarshalPKIXPublicKey(k)
		if err != nil {
			return "", err
		}
		return "v=DKIM1; k=rsa; p=" + base64.StdEncoding.EncodeToString(der), nil
	case ed25519.PublicKey:
		return "v=DKIM1; k=ed25519; p=" + base64.StdEncoding.EncodeToString(k), nil
	}
	return "", fmt.Errorf("unsupported key type %T", pub)
}

// zoneQuote writes a TXT value as zone-file strings of at most 255 bytes each.
func zoneQuote(v string) string {
	var parts []string
	for len(v) > 255 {
		parts = append(parts, `"`+v[:255]+`"`)
		v = v[255:]
	}
	parts = append(parts, `"`+v+`"`)
	if len(parts) == 1 {
		return parts[0]
	}
	return "( " + strings.Join(parts, " ") + " )"
}

// wantedRecord is one DNS record the config needs.
type wantedRecord struct {
	name, kind, value string
	why               string
	check             func(ctx context.Context, r auth.Resolver) (status, detail string)
}

func dnsCmd() *cobra.Command {
	var check bool
	cmd := &cobra.Command{
		Use:   "dns [--check]",
		Short: "print the MX, SPF, DKIM and DMARC records the config needs; --check compares them with DNS",
		Long: `Print the DNS records a support domain needs for deskgate: MX (mail reaches the MX), SPF and
DKIM (what deskgate sends is accepted), DMARC (mail that claims to be from your agents can be
told apart). With --check, each is looked up through authentication.dns_resolver (or the
system's resolver) and marked ok, missing or different; the exit status is 1 when any is not
ok. docs/operations.md explains each record.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg := loadForTools(cmd)
			records, err := wantedRecords(cfg)
			if err != nil {
				return err
			}
			w := cmd.OutOrStdout()
			if !check {
				for _, r := range records {
					fmt.Fprintf(w, "; %s\n%s. IN %s %s\n\n", r.why, r.name, r.kind, r.value)
				}
				return nil
			}
			resolver := auth.NewResolver(cfg.Authentication.DNSResolver)
			bad := 0
			for _, r := range records {
				ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
				status, detail := r.check(ctx, resolver)
				cancel()
				if status != "ok" {
					bad++
				}
				fmt.Fprintf(w, "%-9s %-5s %s  %s\n", status, r.kind, r.name, detail)
			}
			if bad > 0 {
				fmt.Fprintf(w, "\n%d of %d records are not as the config needs; `deskgate dns` prints them.\n", bad, len(records))
				return exitError{1}
			}
			return nil
		},
	}
	cmd.Flags().BoolVar(&check, "check", false, "look the records up and compare")
	return cmd
}

func wantedRecords(cfg *config.Config) ([]wantedRecord, error) {
	domains := supportDomains(cfg)
	if len(domains) == 0 {
		return nil, errors.New("support.addresses: no support address in the config, so no domain to describe")
	}
	host := strings.TrimSuffix(strings.ToLower(cfg.Hostname), ".")
	var out []wantedRecord
	for _, d := range domains {
		out = append(out, wantedRecord{
			name: d, kind: "MX", value: "10 " + host + ".",
			why: "mail for " + d + " goes to deskgate (or to the Postfix in front of it, then name that host)",
			check: func(ctx context.Context, r auth.Resolver) (string, string) {
				mxs, err := r.LookupMX(ctx, d)
				if err != nil {
					return lookupStatus(err)
				}
				var names []string
				for _, mx := range mxs {
					n := strings.TrimSuffix(strings.ToLower(mx.Host), ".")
					if n == host {
						return "ok", "MX " + n
					}
					names = append(names, n)
				}
				return "different", "MX is " + strings.Join(names, ", ") + ", not " + host + " (fine if that host hands the mail to deskgate)"
			},
		})
		spf := "v=spf1 mx ~all"
		upstreamHost := ""
		if h, _, err := net.SplitHostPort(cfg.Upstream.Address); err == nil && !strings.HasPrefix(cfg.Upstream.Address, config.MaildirPrefix) {
			upstreamHost = h
			if ip := net.ParseIP(h); ip == nil {
				spf = "v=spf1 mx a:" + h + " ~all"
			} else if !ip.IsLoopback() {
				spf = "v=spf1 mx ip" + map[bool]string{true: "4", false: "6"}[ip.To4() != nil] + ":" + h + " ~all"
			}
		}
		why := "deskgate's envelope sender is " + d + " (LOCAL+bounce-…@" + d + "): allow the hosts that send for it"
		if upstreamHost != "" {
			why += "; the mail leaves through " + upstreamHost + ", allow the address it sends from"
		}
		out = append(out, wantedRecord{
			name: d, kind: "TXT", value: `"` + spf + `"`, why: why + " (SPF, RFC 7208)",
			check: txtCheck(d, "v=spf1", nil),
		})
		out = append(out, wantedRecord{
			name: "_dmarc." + d, kind: "TXT", value: `"v=DMARC1; p=quarantine; adkim=r; aspf=r"`,
			why:   "DMARC (RFC 7489): mail claiming to be from " + d + " must be signed or sent from its hosts; start with p=none to watch reports",
			check: txtCheck("_dmarc."+d, "v=DMARC1", nil),
		})
	}
	if cfg.DKIM.Enabled() {
		key, err := relay.LoadDKIMKey(cfg.DKIM.PrivateKeyFile)
		if err != nil {
			return nil, fmt.Errorf("dkim.private_key_file: %w", err)
		}
		record, err := dkimRecord(key.Public())
		if err != nil {
			return nil, err
		}
		name := cfg.DKIM.Selector + "._domainkey." + cfg.DKIM.Domain
		wantKey := record[strings.Index(record, "p="):]
		out = append(out, wantedRecord{
			name: name, kind: "TXT", value: zoneQuote(record),
			why:   "the public half of dkim.private_key_file: receivers verify deskgate's signatures with it",
			check: txtCheck(name, "v=DKIM1", func(v string) bool { return strings.Contains(strings.ReplaceAll(v, " ", ""), wantKey) }),
		})
	}
	return out, nil
}

// txtCheck finds a TXT record of name that starts with prefix and, when same is given, is the
// one wanted.
func txtCheck(name, prefix string, same func(string) bool) func(context.Context, auth.Resolver) (string, string) {
	return func(ctx context.Context, r auth.Resolver) (string, string) {
		txts, err := r.LookupTXT(ctx, name)
		if err != nil {
			return lookupStatus(err)
		}
		for _, t := range txts {
			if !strings.HasPrefix(strings.ToLower(t), strings.ToLower(prefix)) {
				continue
			}
			if same != nil && !same(t) {
				return "different", "published: " + shorten(t)
			}
			return "ok", shorten(t)
		}
		return "missing", "no " + prefix + " record"
	}
}

func lookupStatus(err error) (string, string) {
	var de *net.DNSError
	if errors.As(err, &de) && de.IsNotFound {
		return "missing", "no such record"
	}
	return "unknown", "lookup failed: " + err.Error()
}

func shorten(s string) string {
	if len(s) > 60 {
		return s[:57] + "..."
	}
	return s
}
