package test

import (
	"net/http"
	"os"
	"sort"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"
)

// Every path of docs/openapi.yaml answers on a running daemon with one ticket: as a route the
// server knows (never its "no such API endpoint" or 405), and GETs of things that exist 200.
func TestEveryDocumentedPathAnswers(t *testing.T) {
	d := startDaemon(t, options{})
	if err := sendSMTP(d.smtpAddr, "jane@customer.test", []string{"support@example.com"},
		mail(map[string]string{"From": "jane@customer.test", "Cc": "joe@customer.test", "Subject": "openapi"}, "hi\n")); err != nil {
		t.Fatal(err)
	}
	d.settle()
	raw, err := os.ReadFile("../docs/openapi.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var spec struct {
		Paths map[string]map[string]yaml.Node `yaml:"paths"`
	}
	if err := yaml.Unmarshal(raw, &spec); err != nil {
		t.Fatal(err)
	}
	fill := strings.NewReplacer("{id}", "1", "{cid}", "1", "{email}", "joe@customer.test")
	type call struct{ method, path string }
	var calls []call
	for path, ops := range spec.Paths {
		for method := range ops {
			if method != "parameters" {
				calls = append(calls, call{strings.ToUpper(method), path})
			}
		}
	}
	// Deleting the ticket comes last, so that every other path still finds it.
	sort.SliceStable(calls, func(i, j int) bool {
		return !(calls[i].method == "DELETE" && calls[i].path == "/api/v1/tickets/{id}") &&
			calls[j].method == "DELETE" && calls[j].path == "/api/v1/tickets/{id}"
	})
	for _, c := range calls {
		method, path := c.method, c.path
		{
			var body *strings.Reader
			if method == "POST" || method == "PATCH" {
				body = strings.NewReader("{}")
			} else {
				body = strings.NewReader("")
			}
			req, _ := http.NewRequest(method, "http://"+d.adminAddr+fill.Replace(path), body)
			req.Header.Set("Authorization", "Bearer "+d.token)
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatalf("%s %s: %v", method, path, err)
			}
			var answer strings.Builder
			buf := make([]byte, 512)
			n, _ := resp.Body.Read(buf)
			answer.Write(buf[:n])
			resp.Body.Close()
			if resp.StatusCode == 405 || strings.Contains(answer.String(), "no such API endpoint") {
				t.Errorf("%s %s: %d %s: the server does not know the documented route", method, path, resp.StatusCode, answer.String())
			}
			if method == "GET" && resp.StatusCode != 200 {
				t.Errorf("GET %s: %d %s", path, resp.StatusCode, answer.String())
			}
		}
	}
}
