package admin

import (
	"io"
	"log/slog"
	"os"
	"sort"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"

	"github.com/deskgate/deskgate/store"
)

// specRoutes reads docs/openapi.yaml as "METHOD /path" patterns.
func specRoutes(t *testing.T) []string {
	t.Helper()
	raw, err := os.ReadFile("../../docs/openapi.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var spec struct {
		OpenAPI string                          `yaml:"openapi"`
		Paths   map[string]map[string]yaml.Node `yaml:"paths"`
	}
	if err := yaml.Unmarshal(raw, &spec); err != nil {
		t.Fatalf("docs/openapi.yaml: %v", err)
	}
	if !strings.HasPrefix(spec.OpenAPI, "3.") {
		t.Fatalf("docs/openapi.yaml is OpenAPI %q, want 3.x", spec.OpenAPI)
	}
	var out []string
	for path, ops := range spec.Paths {
		for method := range ops {
			if method == "parameters" || method == "summary" || method == "description" {
				continue
			}
			out = append(out, strings.ToUpper(method)+" "+path)
		}
	}
	sort.Strings(out)
	return out
}

// Every route the server registers is in docs/openapi.yaml, and the document names no route
// that the server does not have.
func TestOpenAPIDescribesEveryRoute(t *testing.T) {
	st, err := store.Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	s := New(Options{Store: st, Log: slog.New(slog.NewTextHandler(io.Discard, nil)), Token: "token"})
	s.Handler()
	registered := map[string]bool{}
	for _, r := range s.Routes() {
		registered[r] = true
	}
	documented := map[string]bool{}
	for _, r := range specRoutes(t) {
		documented[r] = true
		if !registered[r] {
			t.Errorf("docs/openapi.yaml has %s, which the server does not serve", r)
		}
	}
	for r := range registered {
		if !documented[r] {
			t.Errorf("the server serves %s, which docs/openapi.yaml does not describe", r)
		}
	}
}
