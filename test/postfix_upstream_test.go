package test

import (
	"bytes"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-msgauth/dkim"
)

// testCA makes a CA and a certificate for 127.0.0.1 signed by it; it returns the files.
func testCA(t *testing.T, dir string) (caFile, certFile, keyFile string) {
	t.Helper()
	caKey, _ := rsa.GenerateKey(rand.Reader, 2048)
	caTmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "deskgate test CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour), IsCA: true,
		KeyUsage: x509.KeyUsageCertSign, BasicConstraintsValid: true}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	ca, _ := x509.ParseCertificate(caDER)
	key, _ := rsa.GenerateKey(rand.Reader, 2048)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: "postfix.deskgate.test"},
		IPAddresses: []net.IP{net.ParseIP("127.0.0.1")}, DNSNames: []string{"postfix.deskgate.test"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature | x509.KeyUsageKeyEncipherment, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	caFile, certFile, keyFile = filepath.Join(dir, "ca.pem"), filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	os.WriteFile(caFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: caDER}), 0o644)
	os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644)
	os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(key)}), 0o600)
	return caFile, certFile, keyFile
}

// dkimKey writes a DKIM signing key and returns its file and the DNS TXT record.
func dkimKey(t *testing.T, dir string) (string, string) {
	key, _ := rsa.GenerateKey(rand.Reader, 2048)
	der, _ := x509.MarshalPKCS8PrivateKey(key)
	file := filepath.Join(dir, "dkim.key")
	os.WriteFile(file, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), 0o600)
	pub, _ := x509.MarshalPKIXPublicKey(&key.PublicKey)
	return file, "v=DKIM1; k=rsa; p=" + base64.StdEncoding.EncodeToString(pub)
}

// TestPostfixAsUpstreamWithSTARTTLSAndDKIM: deskgate relays through a real Postfix
// over STARTTLS (verified against the test CA), Postfix delivers into a Maildir, and the
// DKIM signature of what arrives verifies against the published key.
func TestPostfixAsUpstreamWithSTARTTLSAndDKIM(t *testing.T) {
	keys, err := os.MkdirTemp("", "deskgate-keys-")
	if err != nil {
		t.Fatal(err)
	}
	os.Chmod(keys, 0o755)
	t.Cleanup(func() { os.RemoveAll(keys) })
	caFile, certFile, keyFile := testCA(t, keys)
	pf := startPostfixCF(t, virtualMaildirCF(t, "customer.test, example.com")+fmt.Sprintf(`smtpd_tls_cert_file = %s
smtpd_tls_key_file = %s
smtpd_tls_security_level = may
smtpd_tls_received_header = yes
`, certFile, keyFile), virtualService+"tlsmgr    unix  -       -       n       1000?   1       tlsmgr\n")
	dkimFile, txt := dkimKey(t, keys)
	d := startDaemon(t, options{
		upstream:  fmt.Sprintf(`{address: "%s", tls: starttls, ca_file: %s, retry_min: 1s, retry_max: 2s}`, pf.smtpAddr, caFile),
		extraYAML: fmt.Sprintf("dkim: {domain: example.com, selector: deskgate, private_key_file: %s}", dkimFile),
	})
	id := d.open(jane, []string{joe}, "Through Postfix", "Signed, please.")
	d.must("", "followers", "add", fmt.Sprint(id), carol)
	d.must("Signed and sealed.", "reply", fmt.Sprint(id), "--as", alice)
	d.waitDelivered(3)
	maildir := filepath.Join(pf.dir, "vmail", "all", "new")
	var files []string
	waitFor(t, "Postfix to deliver 4 copies: the acknowledgement, jane, joe and carol", 30*time.Second, func() bool {
		entries, _ := os.ReadDir(maildir)
		files = files[:0]
		for _, e := range entries {
			files = append(files, filepath.Join(maildir, e.Name()))
		}
		return len(files) >= 4
	})
	lookup := func(domain string) ([]string, error) {
		if domain != "deskgate._domainkey.example.com" {
			return nil, fmt.Errorf("no TXT for %s", domain)
		}
		return []string{txt}, nil
	}
	for _, f := range files {
		raw, _ := os.ReadFile(f)
		if !bytes.Contains(raw, []byte("(using TLS")) {
			t.Errorf("%s: Postfix did not receive it over TLS", filepath.Base(f))
		}
		vs, err := dkim.VerifyWithOptions(bytes.NewReader(raw), &dkim.VerifyOptions{LookupTXT: lookup})
		if err != nil || len(vs) != 1 || vs[0].Err != nil || vs[0].Domain != "example.com" {
			t.Fatalf("DKIM did not verify on %s: %v %+v\n%s", filepath.Base(f), err, vs, raw)
		}
		head := strings.ToLower(string(raw[:bytes.Index(raw, []byte("\r\n\r\n"))+1]))
		if strings.Contains(head, "to: <carol@") || strings.Contains(head, "cc: carol") {
			t.Errorf("follower in a header of %s", filepath.Base(f))
		}
	}
	t.Logf("%d messages arrived through Postfix over TLS, each with a verified DKIM signature", len(files))
	// Tampering breaks the signature: the verifier is not a rubber stamp.
	raw, _ := os.ReadFile(files[0])
	tampered := bytes.Replace(raw, []byte("Subject: "), []byte("Subject: X"), 1)
	if vs, _ := dkim.VerifyWithOptions(bytes.NewReader(tampered), &dkim.VerifyOptions{LookupTXT: lookup}); len(vs) == 1 && vs[0].Err == nil {
		t.Fatal("a tampered message still verified")
	}
}
