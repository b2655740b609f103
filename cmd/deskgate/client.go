package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"time"

	"github.com/deskgate/deskgate/config"
	"github.com/deskgate/deskgate/gateway/admin"
)

// apiClient is what every admin subcommand uses: the daemon's API, found through the
// same config file the daemon reads.
type apiClient struct {
	base  string
	token string
	http  *http.Client
}

func newAPIClient() (*apiClient, error) {
	path := configPath()
	cfg, err := config.Load(path)
	var ps config.Problems
	if err != nil && !errors.As(err, &ps) {
		return nil, err
	}
	// The CLI needs only the admin keys; a problem elsewhere (an unreadable TLS key,
	// say) is the daemon's business, not a reason to refuse to list tickets.
	for _, p := range ps {
		if p.Key == "listen.admin" || p.Key == "admin.token_file" || p.Key == "" {
			return nil, fmt.Errorf("%s: %s", path, p)
		}
	}
	if cfg.Listen.Admin == "" {
		return nil, fmt.Errorf("%s: listen.admin is empty, so there is no admin API to talk to", path)
	}
	token, err := admin.ReadToken(cfg.Admin.TokenFile)
	if err != nil {
		return nil, fmt.Errorf("admin.token_file: %w", err)
	}
	host, port, err := net.SplitHostPort(cfg.Listen.Admin)
	if err != nil {
		return nil, fmt.Errorf("listen.admin: %w", err)
	}
	if host == "" || host == "0.0.0.0" || host == "::" {
		host = "127.0.0.1"
	}
	return &apiClient{base: "http://" + net.JoinHostPort(host, port), token: token, http: &http.Client{Timeout: 30 * time.Second}}, nil
}

// get fetches path into out (when not nil) and returns the raw JSON too.
func (c *apiClient) get(path string, q url.Values, out any) ([]byte, error) {
	u := c.base + path
	if len(q) > 0 {
		u += "?" + q.Encode()
	}
	return c.do(http.MethodGet, u, nil, out)
}

// send makes a request with a JSON body (nil for none) and decodes the answer into out.
func (c *apiClient) send(method, path string, body any, out any) ([]byte, error) {
	var r io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return nil, err
		}
		r = bytes.NewReader(b)
	}
	return c.do(method, c.base+path, r, out)
}

func (c *apiClient) do(method, u string, body io.Reader, out any) ([]byte, error) {
	req, err := http.NewRequest(method, u, body)
	if err != nil {
		return nil, err
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	req.Header.Set("Authorization", "Bearer "+c.token)
	resp, err := c.http.Do(req)
	if err != nil {
		return nil, fmt.Errorf("cannot reach the deskgate daemon at %s (is it running?): %w", c.base, err)
	}
	defer resp.Body.Close()
	answer, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, err
	}
	if resp.StatusCode/100 != 2 {
		var e struct {
			Error string `json:"error"`
		}
		if json.Unmarshal(answer, &e) == nil && e.Error != "" {
			return nil, fmt.Errorf("%s (HTTP %d)", e.Error, resp.StatusCode)
		}
		return nil, fmt.Errorf("HTTP %d from %s", resp.StatusCode, u)
	}
	if out != nil {
		if err := json.Unmarshal(answer, out); err != nil {
			return nil, fmt.Errorf("bad answer from the daemon: %w", err)
		}
	}
	return answer, nil
}

// printJSON writes the API's compact JSON indented, for people; it is the same JSON.
func printJSON(w io.Writer, raw []byte) error {
	var out bytes.Buffer
	if err := json.Indent(&out, bytes.TrimSpace(raw), "", "  "); err != nil {
		_, err = w.Write(raw)
		return err
	}
	out.WriteByte('\n')
	_, err := w.Write(out.Bytes())
	return err
}
