package config

import (
	"strings"
	"testing"
	"time"
)

// withWeb turns listen.web on in validBase and appends a web section.
func withWeb(listen, web string) string {
	body := strings.Replace(validBase, "  admin: \"127.0.0.1:8025\"\n", "  admin: \"127.0.0.1:8025\"\n  web: \""+listen+"\"\n", 1)
	if web != "" {
		body += "web:\n" + web
	}
	return body
}

func TestWebIsOffByDefault(t *testing.T) {
	cfg, err := Load(writeConfig(t, validBase))
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Listen.Web != "" || cfg.Web.PublicURL != "" {
		t.Errorf("listen.web = %q, web.public_url = %q, want both off", cfg.Listen.Web, cfg.Web.PublicURL)
	}
	if cfg.Web.StatusView != StatusViewRequester || cfg.Web.SessionLifetime != 12*time.Hour || cfg.Web.TrustedHeader != "" {
		t.Errorf("web defaults: %+v", cfg.Web)
	}
}

func TestWebLoads(t *testing.T) {
	cfg, err := Load(writeConfig(t, withWeb("127.0.0.1:8080", `  public_url: "https://support.example.com/desk/"
  status_view: requester_and_ccs
  session_lifetime: 2h
  trusted_header: X-Forwarded-Email
  trusted_proxies: ["127.0.0.1", "10.0.0.0/8", "fd00::/8"]
`)))
	if err != nil {
		t.Fatalf("refused: %v", err)
	}
	if cfg.Web.PublicURL != "https://support.example.com/desk" {
		t.Errorf("public_url = %q, want its trailing slash trimmed", cfg.Web.PublicURL)
	}
	if !cfg.Web.Secure() {
		t.Error("an https public_url is not Secure")
	}
	if cfg.Web.SessionLifetime != 2*time.Hour || cfg.Web.StatusView != StatusViewRequesterAndCCs {
		t.Errorf("web: %+v", cfg.Web)
	}
	nets := cfg.Web.TrustedProxyNets()
	if len(nets) != 3 || nets[0].String() != "127.0.0.1/32" || nets[1].String() != "10.0.0.0/8" {
		t.Errorf("trusted proxies = %v", nets)
	}
}

func TestWebProblemsNameTheirKey(t *testing.T) {
	for _, c := range []struct {
		name, listen, web, key, fragment string
	}{
		{"bad listen", "localhost", `  public_url: "http://x.example"` + "\n", "listen.web", "not host:port"},
		{"unix listen", "unix:/tmp/w.sock", `  public_url: "http://x.example"` + "\n", "listen.web", "unix socket is not supported"},
		{"no public url", "127.0.0.1:8080", "", "web.public_url", "required when listen.web is set"},
		{"relative url", "127.0.0.1:8080", `  public_url: "support.example.com"` + "\n", "web.public_url", "absolute http"},
		{"ftp url", "127.0.0.1:8080", `  public_url: "ftp://support.example.com"` + "\n", "web.public_url", "absolute http"},
		{"query", "127.0.0.1:8080", `  public_url: "https://support.example.com/?a=b"` + "\n", "web.public_url", "query or a fragment"},
		{"fragment", "127.0.0.1:8080", `  public_url: "https://support.example.com/#x"` + "\n", "web.public_url", "query or a fragment"},
		{"user", "127.0.0.1:8080", `  public_url: "https://u:p@support.example.com"` + "\n", "web.public_url", "user"},
		{"status view", "", "  status_view: everyone\n", "web.status_view", `"everyone" is not one of`},
		{"lifetime", "", "  session_lifetime: 0s\n", "web.session_lifetime", "must be positive"},
		{"negative lifetime", "", "  session_lifetime: -1h\n", "web.session_lifetime", "must be positive"},
		{"header without proxies", "", "  trusted_header: X-Forwarded-Email\n", "web.trusted_proxies", "required when web.trusted_header is set"},
		{"bad header", "", "  trusted_header: \"X Email\"\n  trusted_proxies: [127.0.0.1]\n", "web.trusted_header", "not a header name"},
		{"bad cidr", "", "  trusted_proxies: [127.0.0.1, 10.0.0.0/33]\n", "web.trusted_proxies[1]", "neither a CIDR"},
	} {
		t.Run(c.name, func(t *testing.T) {
			ps := problemsOf(t, withWeb(c.listen, c.web))
			if !hasProblem(ps, c.key, c.fragment) {
				t.Errorf("want %s: …%s…, got %v", c.key, c.fragment, ps)
			}
		})
	}
}

func TestWebFromTheEnvironment(t *testing.T) {
	t.Setenv("DESKGATE_LISTEN_WEB", "127.0.0.1:8080")
	t.Setenv("DESKGATE_WEB_PUBLIC_URL", "http://localhost:8080")
	t.Setenv("DESKGATE_WEB_TRUSTED_PROXIES", "127.0.0.1, ::1")
	cfg, err := Load(writeConfig(t, validBase))
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Listen.Web != "127.0.0.1:8080" || cfg.Web.PublicURL != "http://localhost:8080" || cfg.Web.Secure() {
		t.Errorf("web from the environment: %q %+v", cfg.Listen.Web, cfg.Web)
	}
	if len(cfg.Web.TrustedProxyNets()) != 2 {
		t.Errorf("trusted proxies = %v", cfg.Web.TrustedProxies)
	}
}
