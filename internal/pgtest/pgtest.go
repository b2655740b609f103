// Package pgtest starts a throwaway PostgreSQL cluster for tests: initdb and pg_ctl from
// Debian's postgresql package, run as the postgres user when the tests run as root (initdb
// refuses root), in a temporary directory, listening on 127.0.0.1 only. A test that needs one
// is skipped, with the reason, where PostgreSQL is not installed.
package pgtest

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"sort"
	"strconv"
	"testing"
)

// binDir finds the newest installed PostgreSQL's programs.
func binDir() (string, error) {
	found, _ := filepath.Glob("/usr/lib/postgresql/*/bin/initdb")
	if len(found) > 0 {
		sort.Slice(found, func(i, j int) bool { return version(found[i]) < version(found[j]) })
		return filepath.Dir(found[len(found)-1]), nil
	}
	if p, err := exec.LookPath("initdb"); err == nil {
		return filepath.Dir(p), nil
	}
	return "", fmt.Errorf("initdb not found (apt-get install postgresql)")
}

func version(initdb string) int {
	n, _ := strconv.Atoi(filepath.Base(filepath.Dir(filepath.Dir(initdb))))
	return n
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// Cluster is a running throwaway cluster.
type Cluster struct {
	// URL reaches the cluster's postgres database as the superuser deskgate.
	URL  string
	run  func(name string, args ...string) error
	data string
	dir  string
	opts string
}

// Start starts a cluster for t and returns the URL to reach it as the superuser deskgate; the
// cluster is stopped and removed when t ends.
func Start(t testing.TB) string {
	t.Helper()
	return StartCluster(t).URL
}

// StartCluster is Start, returning the cluster so that a test can stop and start it.
func StartCluster(t testing.TB) *Cluster {
	t.Helper()
	bin, err := binDir()
	if err != nil {
		if os.Getenv("CI") != "" {
			t.Fatalf("no PostgreSQL in CI: .ci/run must install the Debian package postgresql (%v)", err)
		}
		t.Skipf("no PostgreSQL here (apt-get install postgresql; .ci/run installs it): %v", err)
	}
	dir, err := os.MkdirTemp("", "deskgate-pg-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	var as []string
	if os.Geteuid() == 0 {
		u, err := user.Lookup("postgres")
		if err != nil {
			t.Skipf("running as root and there is no postgres user to run PostgreSQL as: %v", err)
		}
		uid, _ := strconv.Atoi(u.Uid)
		gid, _ := strconv.Atoi(u.Gid)
		if err := os.Chown(dir, uid, gid); err != nil {
			t.Fatal(err)
		}
		as = []string{"runuser", "-u", "postgres", "--"}
	}
	run := func(name string, args ...string) error {
		all := append(append(append([]string{}, as...), filepath.Join(bin, name)), args...)
		cmd := exec.Command(all[0], all[1:]...)
		if out, err := cmd.CombinedOutput(); err != nil {
			return fmt.Errorf("%s: %v\n%s", name, err, out)
		}
		return nil
	}
	c := &Cluster{run: run, data: filepath.Join(dir, "data"), dir: dir}
	if err := run("initdb", "-D", c.data, "-A", "trust", "-U", "deskgate", "-E", "UTF8", "--no-sync"); err != nil {
		t.Skipf("PostgreSQL could not be set up here: %v", err)
	}
	port, err := freePort()
	if err != nil {
		t.Fatal(err)
	}
	// Tests open many stores side by side, each with its pools.
	c.opts = fmt.Sprintf("-c listen_addresses=127.0.0.1 -p %d -c unix_socket_directories=%s -c max_connections=400", port, dir)
	if err := c.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { run("pg_ctl", "-D", c.data, "-m", "immediate", "-w", "stop") })
	c.URL = fmt.Sprintf("postgres://deskgate@127.0.0.1:%d/postgres?sslmode=disable", port)
	return c
}

// Start starts the cluster again after Stop, on the same port.
func (c *Cluster) Start() error {
	if err := c.run("pg_ctl", "-D", c.data, "-l", filepath.Join(c.dir, "log"), "-w", "-t", "60", "-o", c.opts, "start"); err != nil {
		log, _ := os.ReadFile(filepath.Join(c.dir, "log"))
		return fmt.Errorf("PostgreSQL did not start: %v\n%s", err, log)
	}
	return nil
}

// Stop stops the cluster at once, as a crash would (every client's connection breaks).
func (c *Cluster) Stop() error {
	return c.run("pg_ctl", "-D", c.data, "-m", "immediate", "-w", "stop")
}
