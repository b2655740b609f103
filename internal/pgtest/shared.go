package pgtest

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/jackc/pgx/v5"
)

// One cluster serves all the tests of a package that call Database; each test gets a database
// of its own in it. Main stops the cluster when the package's tests end.
var (
	shared struct {
		once sync.Once
		url  string
		skip string
		stop func()
	}
	databases atomic.Int64
)

// keeper stands in for a testing.TB for the shared cluster, which outlives any one test.
type keeper struct {
	testing.TB
	cleanups []func()
	skip     string
	failed   string
}

func (k *keeper) Helper()                       {}
func (k *keeper) Cleanup(f func())              { k.cleanups = append(k.cleanups, f) }
func (k *keeper) Skipf(format string, a ...any) { k.skip = fmt.Sprintf(format, a...); panic(k) }
func (k *keeper) Fatal(a ...any)                { k.failed = fmt.Sprint(a...); panic(k) }
func (k *keeper) Fatalf(format string, a ...any) {
	k.failed = fmt.Sprintf(format, a...)
	panic(k)
}

func startShared() {
	c, stop, err := Launch()
	shared.stop = stop
	if err != nil {
		shared.skip = err.Error()
		return
	}
	shared.url = c.URL
}

// Launch starts a cluster outside any test (the benchmarks use it); stop stops and removes
// it, and is never nil.
func Launch() (c *Cluster, stop func(), err error) {
	k := &keeper{}
	stop = func() {
		for i := len(k.cleanups) - 1; i >= 0; i-- {
			k.cleanups[i]()
		}
	}
	defer func() {
		if r := recover(); r != nil {
			if r != any(k) {
				panic(r)
			}
			err = errors.New(k.skip)
			if k.failed != "" {
				err = errors.New("the cluster did not start: " + k.failed)
			}
		}
	}()
	return StartCluster(k), stop, nil
}

// CreateDatabase makes a database on the cluster and returns its URL.
func (c *Cluster) CreateDatabase(name string) (string, error) {
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, c.URL)
	if err != nil {
		return "", err
	}
	defer conn.Close(ctx)
	if _, err := conn.Exec(ctx, "CREATE DATABASE "+pgx.Identifier{name}.Sanitize()); err != nil {
		return "", err
	}
	return strings.Replace(c.URL, "/postgres?", "/"+name+"?", 1), nil
}

// Database returns the URL of a new, empty database on the package's shared cluster, or skips
// t with the reason when PostgreSQL cannot run here.
func Database(t testing.TB) string {
	t.Helper()
	shared.once.Do(startShared)
	if shared.url == "" {
		if os.Getenv("CI") != "" {
			t.Fatal(shared.skip)
		}
		t.Skip(shared.skip)
	}
	name := fmt.Sprintf("t%d_%d", os.Getpid(), databases.Add(1))
	ctx := context.Background()
	c, err := pgx.Connect(ctx, shared.url)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close(ctx)
	if _, err := c.Exec(ctx, "CREATE DATABASE "+name); err != nil {
		t.Fatal(err)
	}
	return strings.Replace(shared.url, "/postgres?", "/"+name+"?", 1)
}

// Main runs a package's tests and then stops the shared cluster, if one was started.
func Main(m *testing.M) {
	code := m.Run()
	StopShared()
	os.Exit(code)
}

// StopShared stops the shared cluster, if one was started; for a TestMain of its own.
func StopShared() {
	if shared.stop != nil {
		shared.stop()
	}
}
