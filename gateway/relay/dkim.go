package relay

import (
	"bytes"
	"crypto"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"os"

	"github.com/emersion/go-msgauth/dkim"

	"github.com/deskgate/deskgate/config"
)

// signedHeaders are the fields a receiver judges a message by; Auto-Submitted and the
// threading fields are signed too, so that nobody can turn a reply into an
// automatic message or move it to another thread on the way.
var signedHeaders = []string{"From", "Reply-To", "To", "Cc", "Subject", "Date", "Message-Id",
	"In-Reply-To", "References", "Auto-Submitted", "MIME-Version", "Content-Type", "Content-Transfer-Encoding"}

// signer signs outgoing mail with DKIM (relaxed/relaxed).
type signer struct {
	domain, selector string
	key              crypto.Signer
}

func newSigner(cfg config.DKIM) (*signer, error) {
	if !cfg.Enabled() {
		return nil, nil
	}
	s, err := LoadDKIMKey(cfg.PrivateKeyFile)
	if err != nil {
		return nil, fmt.Errorf("dkim.private_key_file: %w", err)
	}
	return &signer{domain: cfg.Domain, selector: cfg.Selector, key: s}, nil
}

// LoadDKIMKey reads a PEM private key (PKCS#8, or PKCS#1 RSA) for DKIM signing.
func LoadDKIMKey(path string) (crypto.Signer, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	block, _ := pem.Decode(b)
	if block == nil {
		return nil, fmt.Errorf("%s holds no PEM block", path)
	}
	var key any
	if key, err = x509.ParsePKCS8PrivateKey(block.Bytes); err != nil {
		if key, err = x509.ParsePKCS1PrivateKey(block.Bytes); err != nil {
			return nil, fmt.Errorf("%s holds no RSA or Ed25519 key", path)
		}
	}
	s, ok := key.(crypto.Signer)
	if !ok {
		return nil, fmt.Errorf("%s: unsupported key type %T", path, key)
	}
	return s, nil
}

// sign returns msg with a DKIM-Signature on top.
func (s *signer) sign(msg []byte) ([]byte, error) {
	if s == nil {
		return msg, nil
	}
	var out bytes.Buffer
	opts := &dkim.SignOptions{Domain: s.domain, Selector: s.selector, Signer: s.key,
		HeaderCanonicalization: dkim.CanonicalizationRelaxed, BodyCanonicalization: dkim.CanonicalizationRelaxed,
		HeaderKeys: present(msg)}
	if err := dkim.Sign(&out, bytes.NewReader(msg), opts); err != nil {
		return nil, err
	}
	return out.Bytes(), nil
}

// present lists the signedHeaders that msg has: signing an absent field would forbid
// adding it, which is allowed, but then receivers treat some harmless additions as
// tampering.
func present(msg []byte) []string {
	end := bytes.Index(msg, []byte("\r\n\r\n"))
	if end < 0 {
		end = len(msg)
	}
	head := bytes.ToLower(append([]byte("\r\n"), msg[:end]...))
	var out []string
	for _, h := range signedHeaders {
		if bytes.Contains(head, []byte("\r\n"+string(bytes.ToLower([]byte(h)))+":")) {
			out = append(out, h)
		}
	}
	return out
}
