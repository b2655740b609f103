package test

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// make package builds a .deb and an .rpm; the .deb passes lintian, installs with dpkg, runs
// as user deskgate on its packaged config, takes a mail, and removes and purges cleanly.
func TestDebianPackage(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("installs a package: runs as root, as CI does")
	}
	if _, err := exec.LookPath("dpkg"); err != nil {
		t.Skip("dpkg is not installed: not a Debian machine")
	}
	if out, err := exec.Command("dpkg", "-s", "deskgate").CombinedOutput(); err == nil && strings.Contains(string(out), "Status: install ok") {
		t.Skip("a deskgate package is installed on this machine already; not touching it")
	}
	run := func(name string, args ...string) string {
		t.Helper()
		out, err := exec.Command(name, args...).CombinedOutput()
		if err != nil {
			t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
		}
		return string(out)
	}
	run("make", "-C", "..", "package")
	debs, _ := filepath.Glob("../dist/deskgate_*.deb")
	rpms, _ := filepath.Glob("../dist/deskgate-*.rpm")
	if len(debs) != 1 || len(rpms) != 1 {
		t.Fatalf("make package left %v and %v, want one .deb and one .rpm", debs, rpms)
	}
	deb := debs[0]
	if _, err := exec.LookPath("rpm"); err == nil {
		list := run("rpm", "-qlp", rpms[0])
		for _, want := range []string{"/usr/bin/deskgate", "/etc/deskgate/deskgate.yaml", "/usr/lib/systemd/system/deskgate.service", "/usr/share/man/man8/deskgate.8.gz"} {
			if !strings.Contains(list, want+"\n") {
				t.Errorf("the .rpm lacks %s", want)
			}
		}
		if conf := run("rpm", "-qcp", rpms[0]); !strings.Contains(conf, "/etc/deskgate/deskgate.yaml") {
			t.Errorf("the .rpm does not mark the config as a config file: %s", conf)
		}
		if lic := run("rpm", "-qp", "--queryformat", "%{LICENSE}", rpms[0]); lic != "Apache-2.0" {
			t.Errorf("the .rpm's licence is %q, want Apache-2.0", lic)
		}
		if !strings.Contains(list, "/usr/share/licenses/deskgate/LICENSE\n") {
			t.Errorf("the .rpm does not carry the licence's text")
		}
	} else {
		t.Log("rpm is not installed; .ci/run installs it")
	}
	if _, err := exec.LookPath("lintian"); err == nil {
		out, _ := exec.Command("lintian", "--tag-display-limit", "0", deb).CombinedOutput()
		for _, line := range strings.Split(string(out), "\n") {
			if strings.HasPrefix(line, "E: ") {
				t.Errorf("lintian: %s", line)
			}
		}
	} else {
		t.Log("lintian is not installed; .ci/run installs it")
	}

	run("dpkg", "-i", deb)
	t.Cleanup(func() { exec.Command("dpkg", "--purge", "deskgate").Run() })
	for _, f := range []struct {
		path, owner, group string
		mode               os.FileMode
	}{
		{"/usr/bin/deskgate", "root", "root", 0o755},
		{"/etc/deskgate/deskgate.yaml", "root", "deskgate", 0o640},
		{"/etc/deskgate/admin.token", "root", "deskgate", 0o640},
		{"/var/lib/deskgate", "deskgate", "deskgate", 0o750 | os.ModeDir},
		{"/usr/lib/systemd/system/deskgate.service", "root", "root", 0o644},
		{"/usr/share/man/man8/deskgate.8.gz", "root", "root", 0o644},
		{"/usr/share/man/man5/deskgate.yaml.5.gz", "root", "root", 0o644},
		{"/usr/share/bash-completion/completions/deskgate", "root", "root", 0o644},
		{"/usr/share/zsh/vendor-completions/_deskgate", "root", "root", 0o644},
		{"/usr/share/doc/deskgate/docs/configuration.md", "root", "root", 0o644},
	} {
		st, err := os.Stat(f.path)
		if err != nil {
			t.Errorf("%s: %v", f.path, err)
			continue
		}
		sys := st.Sys().(*syscall.Stat_t)
		owner, group := userName(t, sys.Uid), groupName(t, sys.Gid)
		if owner != f.owner || group != f.group || st.Mode() != f.mode {
			t.Errorf("%s: %s:%s %v, want %s:%s %v", f.path, owner, group, st.Mode(), f.owner, f.group, f.mode)
		}
	}
	// The licence, as Debian's machine-readable copyright file names it.
	if copyright, err := os.ReadFile("/usr/share/doc/deskgate/copyright"); err != nil || !strings.Contains(string(copyright), "\nLicense: Apache-2.0\n") {
		t.Errorf("/usr/share/doc/deskgate/copyright does not name Apache-2.0 (%v):\n%s", err, copyright)
	}
	if out, err := exec.Command("man", "-w", "deskgate").CombinedOutput(); err != nil && !strings.Contains(string(out), "not found") {
		t.Logf("man -w deskgate: %s", out)
	}
	run("/usr/bin/deskgate", "check-config", "--config", "/etc/deskgate/deskgate.yaml")

	// The packaged config as it is, on loopback ports and a Maildir instead of the local
	// Postfix (there is none in the test), run as the package's user.
	smtpAddr, adminAddr := freePort(t), freePort(t)
	env := append(os.Environ(),
		"DESKGATE_LISTEN_SMTP="+smtpAddr, "DESKGATE_LISTEN_LMTP=", "DESKGATE_LISTEN_ADMIN="+adminAddr,
		"DESKGATE_UPSTREAM_ADDRESS=maildir:/var/lib/deskgate/outbox",
		"DESKGATE_AUTHENTICATION_DNS_RESOLVER="+testDNS.Addr)
	serve := exec.Command("runuser", "-u", "deskgate", "--", "/usr/bin/deskgate", "serve", "--config", "/etc/deskgate/deskgate.yaml")
	serve.Env = env
	logs := &syncBuffer{}
	serve.Stdout, serve.Stderr = logs, logs
	if err := serve.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() {
		serve.Process.Signal(syscall.SIGTERM)
		serve.Wait()
		if t.Failed() {
			t.Logf("deskgate log:\n%s", logs.String())
		}
	}()
	waitListening(t, "the packaged deskgate", smtpAddr)
	if err := sendSMTP(smtpAddr, "jane@customer.test", []string{"support@example.com"},
		mail(map[string]string{"From": "jane@customer.test", "To": "support@example.com", "Subject": "from the package"}, "hello\n")); err != nil {
		t.Fatal(err)
	}
	cli := exec.Command("/usr/bin/deskgate", "tickets", "list", "--config", "/etc/deskgate/deskgate.yaml")
	cli.Env = env
	if out, err := cli.CombinedOutput(); err != nil || !strings.Contains(string(out), "from the package") {
		t.Errorf("tickets list: %v\n%s", err, out)
	}
	waitFor(t, "the acknowledgement in the Maildir", 10*time.Second, func() bool {
		files, _ := filepath.Glob("/var/lib/deskgate/outbox/new/*")
		return len(files) == 1
	})
	if st, err := os.Stat("/var/lib/deskgate/deskgate.db"); err != nil || userName(t, st.Sys().(*syscall.Stat_t).Uid) != "deskgate" {
		t.Errorf("the database is not the deskgate user's: %v", err)
	}
	serve.Process.Signal(syscall.SIGTERM)
	serve.Wait()

	// Remove keeps the data and the config; purge deletes them.
	run("dpkg", "-r", "deskgate")
	for _, kept := range []string{"/var/lib/deskgate/deskgate.db", "/etc/deskgate/deskgate.yaml"} {
		if _, err := os.Stat(kept); err != nil {
			t.Errorf("dpkg -r removed %s: %v", kept, err)
		}
	}
	if _, err := os.Stat("/usr/bin/deskgate"); err == nil {
		t.Errorf("dpkg -r left /usr/bin/deskgate")
	}
	run("dpkg", "--purge", "deskgate")
	for _, gone := range []string{"/var/lib/deskgate", "/etc/deskgate"} {
		if _, err := os.Stat(gone); err == nil {
			t.Errorf("dpkg --purge left %s", gone)
		}
	}
}

func TestSystemdUnitIsHardened(t *testing.T) {
	if _, err := exec.LookPath("systemd-analyze"); err != nil {
		t.Skip("systemd-analyze (Debian package systemd) is not installed")
	}
	out, _ := exec.Command("systemd-analyze", "security", "--offline=true", "--no-pager", "../packaging/deskgate.service").CombinedOutput()
	i := strings.LastIndex(string(out), "Overall exposure level for deskgate.service: ")
	if i < 0 {
		t.Fatalf("no rating:\n%s", out)
	}
	fields := strings.Fields(string(out)[i+len("Overall exposure level for deskgate.service: "):])
	level, err := strconv.ParseFloat(fields[0], 64)
	if err != nil || level > 2.0 {
		t.Errorf("exposure %s, want 2.0 or lower", fields[0])
	}
	t.Logf("systemd-analyze security: %s", fields[0])
}

func userName(t *testing.T, uid uint32) string {
	out, err := exec.Command("getent", "passwd", fmt.Sprint(uid)).Output()
	if err != nil {
		return fmt.Sprint(uid)
	}
	return strings.SplitN(string(out), ":", 2)[0]
}

func groupName(t *testing.T, gid uint32) string {
	out, err := exec.Command("getent", "group", fmt.Sprint(gid)).Output()
	if err != nil {
		return fmt.Sprint(gid)
	}
	return strings.SplitN(string(out), ":", 2)[0]
}
