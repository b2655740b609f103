// Package test holds deskgate's end-to-end tests: they build the real binary, start it on
// loopback ports and speak SMTP and LMTP to it with real clients (Go's net/smtp, go-smtp's
// client, swaks, and Postfix).
package test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/deskgate/deskgate/internal/dnstest"
	"github.com/deskgate/deskgate/internal/pgtest"
)

var binary string

// testDNS serves the test domains' DKIM keys, SPF and DMARC records to every daemon
// the tests start (authentication.dns_resolver), over real DNS packets on loopback.
var testDNS *dnstest.Server

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "deskgate-e2e-bin")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	binary = filepath.Join(dir, "deskgate")
	args := []string{"build", "-o", binary}
	if os.Getenv("E2E_RACE") != "" {
		// The daemon under the race detector: E2E_RACE=1 go test ./test/
		args = append(args, "-race")
	}
	build := exec.Command("go", append(args, "../cmd/deskgate")...)
	build.Stdout, build.Stderr = os.Stderr, os.Stderr
	if err := build.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "building deskgate:", err)
		os.Exit(1)
	}
	testDNS, err = dnstest.Start()
	if err != nil {
		fmt.Fprintln(os.Stderr, "test DNS server:", err)
		os.Exit(1)
	}
	code := m.Run()
	pgtest.StopShared()
	testDNS.Close()
	os.RemoveAll(dir)
	os.Exit(code)
}

// handedOut are the ports freePort has given this test process: the kernel may give a port
// again once its listener is closed, and a test that takes one port for a dead upstream and
// then starts a daemon on three more must not find the daemon listening on the dead one.
var handedOut = struct {
	sync.Mutex
	ports map[string]bool
}{ports: map[string]bool{}}

// freePort asks the kernel for a free loopback port that this process has not handed out.
func freePort(t testing.TB) string {
	t.Helper()
	handedOut.Lock()
	defer handedOut.Unlock()
	for range 1000 {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		addr := l.Addr().String()
		l.Close()
		if !handedOut.ports[addr] {
			handedOut.ports[addr] = true
			return addr
		}
	}
	t.Fatal("the kernel gave only ports that were handed out already")
	return ""
}

// daemon is one running deskgate.
type daemon struct {
	t          testing.TB
	dir        string
	configPath string
	smtpAddr   string
	lmtpAddr   string
	adminAddr  string
	token      string
	cmd        *exec.Cmd
	env        []string
	logs       *syncBuffer
	exited     chan struct{}
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// options change the config a test daemon starts with.
type options struct {
	extraYAML string // appended to the config
	lmtpUnix  bool
	dir       string // reuse a data dir (restart)
	upstream  string // the upstream block's YAML; default: a Maildir under the data dir
	auth      string // the authentication block's YAML; default: none, with the test DNS
	env       []string
}

func writeDaemonConfig(t testing.TB, o options) *daemon {
	t.Helper()
	d := &daemon{t: t, dir: o.dir, env: o.env}
	if d.dir == "" {
		d.dir = t.TempDir()
	}
	d.smtpAddr, d.adminAddr = freePort(t), freePort(t)
	lmtpListen := freePort(t)
	d.lmtpAddr = lmtpListen
	if o.lmtpUnix {
		d.lmtpAddr = filepath.Join(d.dir, "lmtp.sock")
		lmtpListen = "unix:" + d.lmtpAddr
	}
	d.token = "test-token-" + filepath.Base(d.dir)
	tokenFile := filepath.Join(d.dir, "admin.token")
	if err := os.WriteFile(tokenFile, []byte(d.token+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	upstream := o.upstream
	if upstream == "" {
		upstream = fmt.Sprintf(`{address: "maildir:%s/outbox"}`, d.dir)
	}
	auth := o.auth
	if auth == "" {
		auth = `{agent_identity: none}`
	}
	if !strings.Contains(auth, "dns_resolver") {
		auth = strings.Replace(auth, "{", fmt.Sprintf(`{dns_resolver: "%s", `, testDNS.Addr), 1)
	}
	cfg := fmt.Sprintf(`hostname: mx.deskgate.test
data_dir: %s/data
listen:
  smtp: "%s"
  lmtp: "%s"
  admin: "%s"
support:
  name: Example Support
  addresses: [support@example.com, billing@example.com]
agents:
  - {email: alice@example.com, name: Alice, role: agent}
  - {email: bob@example.com, name: Bob, role: light_agent}
  - {email: carol@example.com, name: Carol, role: agent}
  - {email: dana@example.com, name: Dana, role: agent}
authentication: %s
upstream: %s
admin:
  token_file: %s
log:
  level: debug
%s
`, d.dir, d.smtpAddr, lmtpListen, d.adminAddr, auth, upstream, tokenFile, o.extraYAML)
	d.configPath = filepath.Join(d.dir, "deskgate.yaml")
	if err := os.WriteFile(d.configPath, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	return d
}

// startDaemon starts deskgate and waits until /healthz answers.
func startDaemon(t testing.TB, o options) *daemon {
	t.Helper()
	d := writeDaemonConfig(t, o)
	d.start()
	return d
}

func (d *daemon) start() {
	d.t.Helper()
	// freePort can lose a race for a port to another process; pick new ones then.
	for try := 0; ; try++ {
		if d.startOnce() || try == 3 {
			return
		}
		d.repickPorts()
	}
}

// repickPorts moves the daemon's TCP listeners to fresh ports in its config.
func (d *daemon) repickPorts() {
	raw, err := os.ReadFile(d.configPath)
	if err != nil {
		d.t.Fatal(err)
	}
	cfg := string(raw)
	for _, old := range []*string{&d.smtpAddr, &d.adminAddr, &d.lmtpAddr} {
		if strings.HasPrefix(*old, "127.0.0.1:") {
			fresh := freePort(d.t)
			cfg = strings.Replace(cfg, `"`+*old+`"`, `"`+fresh+`"`, 1)
			*old = fresh
		}
	}
	if err := os.WriteFile(d.configPath, []byte(cfg), 0o600); err != nil {
		d.t.Fatal(err)
	}
}

// startOnce starts deskgate; false means a port was taken and another try is due.
func (d *daemon) startOnce() bool {
	t := d.t
	t.Helper()
	d.logs = &syncBuffer{}
	d.cmd = exec.Command(binary, "serve", "--config", d.configPath)
	d.cmd.Stdout, d.cmd.Stderr = d.logs, d.logs
	// The test's own DESKGATE_SCREENSHOTS (make screenshots) is no config key: deskgate
	// refuses to start on an unknown DESKGATE_ variable, so the daemon does not inherit it.
	env := slices.DeleteFunc(os.Environ(), func(kv string) bool { return strings.HasPrefix(kv, screenshotsEnv+"=") })
	d.cmd.Env = append(env, d.env...)
	if err := d.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	d.exited = make(chan struct{})
	go func() {
		d.cmd.Wait()
		close(d.exited)
	}()
	t.Cleanup(func() {
		d.stop()
		if strings.Contains(d.logs.String(), "WARNING: DATA RACE") {
			t.Errorf("the race detector found a data race in deskgate (E2E_RACE)")
		}
		if t.Failed() {
			t.Logf("deskgate log:\n%s", d.logs.String())
		}
	})
	deadline := time.Now().Add(15 * time.Second)
	for time.Now().Before(deadline) {
		select {
		case <-d.exited:
			if strings.Contains(d.logs.String(), "address already in use") {
				return false
			}
			t.Fatalf("deskgate exited at start:\n%s", d.logs.String())
		default:
		}
		resp, err := http.Get("http://" + d.adminAddr + "/healthz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				return true
			}
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("deskgate did not become healthy:\n%s", d.logs.String())
	return false
}

// stop ends deskgate gracefully (SIGTERM) and waits.
func (d *daemon) stop() {
	if d.cmd == nil || d.cmd.Process == nil {
		return
	}
	select {
	case <-d.exited:
		return
	default:
	}
	d.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-d.exited:
	case <-time.After(20 * time.Second):
		d.cmd.Process.Kill()
		<-d.exited
	}
}

// kill9 ends deskgate the hard way, as a crash or power cut would.
func (d *daemon) kill9() {
	d.cmd.Process.Signal(syscall.SIGKILL)
	<-d.exited
}

func (d *daemon) api(method, path string, body io.Reader, withToken bool) (int, []byte) {
	d.t.Helper()
	req, err := http.NewRequest(method, "http://"+d.adminAddr+path, body)
	if err != nil {
		d.t.Fatal(err)
	}
	if withToken {
		req.Header.Set("Authorization", "Bearer "+d.token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		d.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, b
}

type person struct {
	Email string `json:"email"`
	Name  string `json:"name"`
}

type attachment struct {
	Name        string `json:"name"`
	ContentType string `json:"content_type"`
	Size        int64  `json:"size"`
}

type comment struct {
	ID          uint64       `json:"id"`
	Author      string       `json:"author"`
	Public      bool         `json:"public"`
	ThirdParty  bool         `json:"third_party"`
	Via         string       `json:"via"`
	MessageID   string       `json:"message_id"`
	Body        string       `json:"body"`
	Attachments []attachment `json:"attachments"`
	Notified    []any        `json:"notified"`
	Problems    []string     `json:"problems"`
}

type ticket struct {
	ID           uint64    `json:"id"`
	Subject      string    `json:"subject"`
	Status       string    `json:"status"`
	Requester    person    `json:"requester"`
	Assignee     string    `json:"assignee"`
	ReplyAddress string    `json:"reply_address"`
	CCs          []person  `json:"ccs"`
	Followers    []person  `json:"followers"`
	Comments     []comment `json:"comments"`
}

func (d *daemon) tickets() []ticket {
	d.t.Helper()
	code, body := d.api("GET", "/api/v1/tickets?limit=1000", nil, true)
	if code != 200 {
		d.t.Fatalf("GET /api/v1/tickets: %d %s", code, body)
	}
	var list []ticket
	if err := json.Unmarshal(body, &list); err != nil {
		d.t.Fatalf("tickets JSON: %v: %s", err, body)
	}
	return list
}

func (d *daemon) decodeTickets(body []byte) []ticket {
	d.t.Helper()
	var list []ticket
	if err := json.Unmarshal(body, &list); err != nil {
		d.t.Fatalf("tickets JSON: %v: %s", err, body)
	}
	return list
}

func (d *daemon) ticket(id uint64) ticket {
	d.t.Helper()
	var tk ticket
	d.getJSON(fmt.Sprintf("/api/v1/tickets/%d", id), &tk)
	return tk
}

// getJSON reads an API answer that must be 200 into v.
func (d *daemon) getJSON(path string, v any) {
	d.t.Helper()
	code, body := d.api("GET", path, nil, true)
	if code != 200 {
		d.t.Fatalf("GET %s: %d %s", path, code, body)
	}
	if err := json.Unmarshal(body, v); err != nil {
		d.t.Fatalf("GET %s: JSON: %v: %s", path, err, body)
	}
}

// cli runs the deskgate binary against this daemon's config.
func (d *daemon) cli(args ...string) (string, string, int) {
	d.t.Helper()
	return d.cliIn("", args...)
}

// cliIn is cli with stdin.
func (d *daemon) cliIn(stdin string, args ...string) (string, string, int) {
	d.t.Helper()
	cmd := exec.Command(binary, append([]string{"--config", d.configPath}, args...)...)
	cmd.Stdin = strings.NewReader(stdin)
	var out, errOut bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errOut
	err := cmd.Run()
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		d.t.Fatal(err)
	}
	return out.String(), errOut.String(), code
}

// waitFor polls cond until it holds or the time is up.
func waitFor(t testing.TB, what string, timeout time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		if cond() {
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("timed out waiting for %s", what)
}

// waitListening waits until something accepts connections on addr.
func waitListening(t testing.TB, what, addr string) {
	t.Helper()
	waitFor(t, what+" to listen on "+addr, 10*time.Second, func() bool {
		c, err := net.Dial("tcp", addr)
		if err == nil {
			c.Close()
		}
		return err == nil
	})
}

// mail builds a small RFC 5322 message.
func mail(headers map[string]string, body string) []byte {
	var b strings.Builder
	order := []string{"From", "To", "Cc", "Subject", "Message-ID", "In-Reply-To", "References", "Date"}
	seen := map[string]bool{}
	for _, k := range order {
		if v, ok := headers[k]; ok {
			fmt.Fprintf(&b, "%s: %s\r\n", k, v)
			seen[k] = true
		}
	}
	for k, v := range headers {
		if !seen[k] {
			fmt.Fprintf(&b, "%s: %s\r\n", k, v)
		}
	}
	if _, ok := headers["Date"]; !ok {
		fmt.Fprintf(&b, "Date: %s\r\n", time.Now().Format(time.RFC1123Z))
	}
	b.WriteString("\r\n")
	b.WriteString(strings.ReplaceAll(body, "\n", "\r\n"))
	return []byte(b.String())
}
