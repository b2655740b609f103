package test

import (
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// deskgate dkim keygen writes a key and prints its record; deskgate dns prints what the
// config needs, and --check finds each record missing, then ok once published in the test
// DNS, then different when another key is published.
func TestDKIMKeygenAndDNSCheck(t *testing.T) {
	dir := t.TempDir()
	keyFile := filepath.Join(dir, "dkim.key")
	cfgFile := filepath.Join(dir, "deskgate.yaml")
	base := `hostname: mx.dnscheck.test
data_dir: ` + dir + `/data
support: {addresses: [help@dnscheck.test]}
upstream: {address: "relay.dnscheck.test:587"}
authentication: {dns_resolver: "` + testDNS.Addr + `"}
`
	os.WriteFile(cfgFile, []byte(base), 0o600)
	cli := func(args ...string) (string, int) {
		cmd := exec.Command(binary, append([]string{"--config", cfgFile}, args...)...)
		out, err := cmd.CombinedOutput()
		code := 0
		if ee, ok := err.(*exec.ExitError); ok {
			code = ee.ExitCode()
		}
		return string(out), code
	}

	out, code := cli("dkim", "keygen", "--selector", "dg1", "--out", keyFile)
	if code != 0 {
		t.Fatalf("keygen: %d\n%s", code, out)
	}
	if st, err := os.Stat(keyFile); err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("key file: %v %v, want mode 0600", err, st)
	}
	if !strings.Contains(out, "dg1._domainkey.dnscheck.test. IN TXT") {
		t.Fatalf("keygen printed no record:\n%s", out)
	}
	if _, code := cli("dkim", "keygen", "--selector", "dg1", "--out", keyFile); code == 0 {
		t.Errorf("keygen overwrote a key without --force")
	}
	// The published value: the quoted strings of the record, joined.
	var record string
	for _, m := range regexp.MustCompile(`"([^"]*)"`).FindAllStringSubmatch(out[strings.Index(out, "IN TXT"):strings.Index(out, "and sign")], -1) {
		record += m[1]
	}
	os.WriteFile(cfgFile, []byte(base+"dkim: {domain: dnscheck.test, selector: dg1, private_key_file: "+keyFile+"}\n"), 0o600)

	out, code = cli("dns")
	for _, want := range []string{"dnscheck.test. IN MX 10 mx.dnscheck.test.", `"v=spf1 mx a:relay.dnscheck.test ~all"`,
		"_dmarc.dnscheck.test. IN TXT", "dg1._domainkey.dnscheck.test. IN TXT"} {
		if code != 0 || !strings.Contains(out, want) {
			t.Errorf("deskgate dns lacks %q:\n%s", want, out)
		}
	}

	out, code = cli("dns", "--check")
	if code != 1 || strings.Count(out, "missing") != 4 {
		t.Errorf("nothing published: exit %d\n%s", code, out)
	}
	testDNS.MX("dnscheck.test", "10 mx.dnscheck.test.")
	testDNS.TXT("dnscheck.test", "v=spf1 mx a:relay.dnscheck.test ~all")
	testDNS.TXT("_dmarc.dnscheck.test", "v=DMARC1; p=quarantine")
	testDNS.TXT("dg1._domainkey.dnscheck.test", record)
	out, code = cli("dns", "--check")
	if code != 0 || strings.Count(out, "ok ") != 4 {
		t.Errorf("all published: exit %d\n%s", code, out)
	}
	other := strings.Replace(record, "p=MII", "p=MIIX", 1)
	testDNS.TXT("dg1._domainkey.dnscheck.test", other)
	out, code = cli("dns", "--check")
	if code != 1 || !strings.Contains(out, "different") {
		t.Errorf("another key published: exit %d\n%s", code, out)
	}
}
