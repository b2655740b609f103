package test

import (
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// The daemon speaks systemd's notify protocol: READY=1 once it serves, RELOADING=1 and then
// READY=1 around a SIGHUP (so that `systemctl reload` returns once the new config is live),
// STOPPING=1 on SIGTERM, and WATCHDOG=1 while its store answers. A unixgram socket stands in
// for systemd.
func TestSystemdNotify(t *testing.T) {
	sock := filepath.Join(t.TempDir(), "notify.sock")
	conn, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: sock, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	got := make(chan string, 64)
	go func() {
		buf := make([]byte, 4096)
		for {
			n, err := conn.Read(buf)
			if err != nil {
				close(got)
				return
			}
			got <- string(buf[:n])
		}
	}()
	next := func(want string) string {
		t.Helper()
		deadline := time.After(10 * time.Second)
		for {
			select {
			case m := <-got:
				if strings.HasPrefix(m, "WATCHDOG=1") && want != "WATCHDOG=1" {
					continue
				}
				if !strings.HasPrefix(m, want) {
					t.Fatalf("systemd was told %q, want %s first", m, want)
				}
				return m
			case <-deadline:
				t.Fatalf("systemd was never told %s", want)
			}
		}
	}
	d := startDaemon(t, options{env: []string{"NOTIFY_SOCKET=" + sock, "WATCHDOG_USEC=400000", "WATCHDOG_PID="}})
	next("READY=1")
	next("WATCHDOG=1")

	d.cmd.Process.Signal(syscall.SIGHUP)
	if m := next("RELOADING=1"); !strings.Contains(m, "MONOTONIC_USEC=") {
		t.Errorf("RELOADING=1 without MONOTONIC_USEC: %q", m)
	}
	if m := next("READY=1"); !strings.Contains(m, "config reloaded") {
		t.Errorf("after the reload: %q", m)
	}
	// A broken file: the reload ends, and the status says it was refused.
	os.WriteFile(d.configPath, []byte("limits: [\n"), 0o600)
	d.cmd.Process.Signal(syscall.SIGHUP)
	next("RELOADING=1")
	if m := next("READY=1"); !strings.Contains(m, "reload refused") {
		t.Errorf("after a refused reload: %q", m)
	}
	d.cmd.Process.Signal(syscall.SIGTERM)
	next("STOPPING=1")
	<-d.exited
	if code := d.cmd.ProcessState.ExitCode(); code != 0 {
		t.Errorf("exit status %d after SIGTERM, want 0", code)
	}
}

// deskgate reload (the unit's ExecReload) returns once the daemon has the new config, and
// fails, saying so, when the daemon refused it.
func TestReloadCommandWaitsForTheResult(t *testing.T) {
	d := startDaemon(t, options{})
	pid := fmt.Sprint(d.cmd.Process.Pid)
	out, stderr, code := d.cli("reload", "--pid", pid)
	if code != 0 || !strings.Contains(out, "config reloaded") {
		t.Errorf("reload of a good file: exit %d %s %s", code, out, stderr)
	}
	good, _ := os.ReadFile(d.configPath)
	os.WriteFile(d.configPath, append(good, []byte("limits: {max_ccs: lots}\n")...), 0o600)
	_, stderr, code = d.cli("reload", "--pid", pid)
	if code == 0 || !strings.Contains(stderr, "refused") {
		t.Errorf("reload of a broken file: exit %d %s", code, stderr)
	}
	os.WriteFile(d.configPath, good, 0o600)
	if metrics := d.metrics(); metrics[`deskgate_config_reloads_total{result="ok"}`] != 1 || metrics[`deskgate_config_reloads_total{result="refused"}`] != 1 {
		t.Errorf("reload counts: %v", metrics)
	}
}

// /healthz answers 503 when a listener cannot be reached any more: here the LMTP socket's
// file was removed, as a cleaner of /run would.
func TestHealthzChecksTheListeners(t *testing.T) {
	d := startDaemon(t, options{lmtpUnix: true})
	if code, body := d.api("GET", "/healthz", nil, false); code != 200 {
		t.Fatalf("healthy daemon: %d %s", code, body)
	}
	if err := os.Remove(d.lmtpAddr); err != nil {
		t.Fatal(err)
	}
	code, body := d.api("GET", "/healthz", nil, false)
	if code != 503 || !strings.Contains(string(body), "lmtp listener") {
		t.Errorf("with the LMTP socket gone: %d %s, want 503 naming the listener", code, body)
	}
}
