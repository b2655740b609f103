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
	Port int
	run  func(name string, args ...string) error
	data string
	dir  string
	opts string
	// as runs a program as the cluster's owner.
	as []string
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
	c := &Cluster{run: run, data: filepath.Join(dir, "data"), dir: dir, as: as}
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
	c.Port = port
	return c
}

// StartStandby makes a streaming standby of c with pg_basebackup, named name (its
// application_name, for synchronous_standby_names), starts it on a port of its own and stops
// it when t ends. The primary must be running.
func (c *Cluster) StartStandby(t testing.TB, name string) *Cluster {
	t.Helper()
	dir, err := os.MkdirTemp("", "deskgate-pg-standby-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	if len(c.as) > 0 {
		u, err := user.Lookup("postgres")
		if err != nil {
			t.Fatal(err)
		}
		uid, _ := strconv.Atoi(u.Uid)
		gid, _ := strconv.Atoi(u.Gid)
		if err := os.Chown(dir, uid, gid); err != nil {
			t.Fatal(err)
		}
	}
	s := &Cluster{run: c.run, data: filepath.Join(dir, "data"), dir: dir, as: c.as}
	conninfo := fmt.Sprintf("host=127.0.0.1 port=%d user=deskgate application_name=%s", c.Port, name)
	if err := c.run("pg_basebackup", "-D", s.data, "-d", conninfo, "-X", "stream", "-c", "fast", "-R", "--no-sync"); err != nil {
		t.Fatal(err)
	}
	port, err := freePort()
	if err != nil {
		t.Fatal(err)
	}
	s.Port = port
	s.opts = fmt.Sprintf("-c listen_addresses=127.0.0.1 -p %d -c unix_socket_directories=%s -c max_connections=400 -c primary_conninfo='%s'", port, dir, conninfo)
	if err := s.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.run("pg_ctl", "-D", s.data, "-m", "immediate", "-w", "stop") })
	s.URL = fmt.Sprintf("postgres://deskgate@127.0.0.1:%d/postgres?sslmode=disable", port)
	return s
}

// Promote makes a standby the primary.
func (c *Cluster) Promote() error {
	return c.run("pg_ctl", "-D", c.data, "-w", "-t", "60", "promote")
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
