package test

import (
	"io"
	"net/http"
	"strings"
	"testing"
)

// startWebDaemon starts deskgate with its web pages on a loopback port of their own, with
// more of the web section's keys in webYAML ("  status_view: requester\n"), and returns it
// with the pages' base URL.
func startWebDaemon(t *testing.T, webYAML string) (*daemon, string) {
	t.Helper()
	webAddr := freePort(t)
	site := "http://" + webAddr
	d := startDaemon(t, options{
		env:       []string{"DESKGATE_LISTEN_WEB=" + webAddr},
		extraYAML: "web:\n  public_url: \"" + site + "/\"\n" + webYAML,
	})
	waitListening(t, "the web pages", webAddr)
	return d, site
}

// The real binary serves the pages on listen.web: the style sheet, and for an unknown path
// the 404 page in the layout, each with the security headers; the admin listener's /metrics
// counts them by route.
func TestWebListenerServesTheFoundation(t *testing.T) {
	d, site := startWebDaemon(t, "")
	webAddr := strings.TrimPrefix(site, "http://")
	if !strings.Contains(d.logs.String(), "proto=web") {
		t.Errorf("the log does not say the web listener is up:\n%s", d.logs.String())
	}

	get := func(path string) (*http.Response, string) {
		resp, err := http.Get("http://" + webAddr + path)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		return resp, string(body)
	}
	checkHeaders := func(what string, resp *http.Response) {
		t.Helper()
		for h, want := range map[string]string{
			"Content-Security-Policy": "default-src 'none'; style-src 'self'; img-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
			"X-Content-Type-Options":  "nosniff",
			"Referrer-Policy":         "no-referrer",
			"X-Frame-Options":         "DENY",
		} {
			if got := resp.Header.Get(h); got != want {
				t.Errorf("%s: %s = %q, want %q", what, h, got, want)
			}
		}
	}

	resp, body := get("/static/style.css")
	if resp.StatusCode != 200 || !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/css") || !strings.Contains(body, "font-family") {
		t.Errorf("style sheet: %d %q, %d bytes", resp.StatusCode, resp.Header.Get("Content-Type"), len(body))
	}
	checkHeaders("style sheet", resp)

	resp, body = get("/no-such-page")
	if resp.StatusCode != 404 || !strings.Contains(body, `<html lang="en">`) || !strings.Contains(body, "<h1>Not Found</h1>") || !strings.Contains(body, "Example Support") {
		t.Errorf("unknown path: %d\n%s", resp.StatusCode, body)
	}
	checkHeaders("404 page", resp)

	// A form posted from another site is refused before any route sees it.
	req, _ := http.NewRequest(http.MethodPost, "http://"+webAddr+"/login", strings.NewReader("email=alice@example.com"))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Origin", "https://evil.test")
	req.Header.Set("Sec-Fetch-Site", "cross-site")
	if resp, err := http.DefaultClient.Do(req); err != nil {
		t.Fatal(err)
	} else {
		resp.Body.Close()
		if resp.StatusCode != 403 {
			t.Errorf("cross-site POST: %d, want 403", resp.StatusCode)
		}
	}

	code, metrics := d.api("GET", "/metrics", nil, false)
	for _, want := range []string{
		`deskgate_web_requests_total{code="200",page="GET /static/{file}"} 1`,
		`deskgate_web_requests_total{code="404",page="unrouted"} 1`,
		`deskgate_web_requests_total{code="403",page="cross-origin"} 1`,
		`deskgate_web_request_seconds_count{page="GET /static/{file}"} 1`,
	} {
		if code != 200 || !strings.Contains(string(metrics), want) {
			t.Errorf("/metrics lacks %s", want)
		}
	}
}
