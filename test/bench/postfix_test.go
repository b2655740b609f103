package main

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// The sink's -c output is what tells the bench that Postfix delivered: the count must follow
// its last counter line, whatever the reads' boundaries.
func TestCountSinkFollowsTheLastCounter(t *testing.T) {
	p := &postfixBench{sinkDone: make(chan struct{})}
	out := "sess=0 quit=0 mesg=1\rsess=1 quit=1 mesg=1\rsess=1 quit=1 mesg=2\rsess=9 quit=9 mesg=1203\r"
	p.countSink(strings.NewReader(out))
	<-p.sinkDone
	if got := p.sinkMsgs.Load(); got != 1203 {
		t.Errorf("count %d, want 1203", got)
	}
}

func TestMedianOfRounds(t *testing.T) {
	for _, c := range []struct {
		in   []float64
		want float64
	}{{nil, 0}, {[]float64{5}, 5}, {[]float64{9, 1, 5}, 5}, {[]float64{4, 1, 3, 2}, 2.5}} {
		if got := median(c.in); got != c.want {
			t.Errorf("median(%v) = %v, want %v", c.in, got, c.want)
		}
	}
}

// A message file anywhere in a queue, its hashed subdirectories included, means not drained.
func TestQueueEmptySeesDeferredMail(t *testing.T) {
	dir := t.TempDir()
	p := &postfixBench{dir: dir}
	deferred := filepath.Join(dir, "queue", "deferred", "A")
	os.MkdirAll(deferred, 0o755)
	os.MkdirAll(filepath.Join(dir, "queue", "active"), 0o755)
	if !p.queueEmpty() {
		t.Fatal("empty directories counted as queued mail")
	}
	os.WriteFile(filepath.Join(deferred, "A1B2C3"), []byte("x"), 0o600)
	if p.queueEmpty() {
		t.Fatal("a deferred message was not seen")
	}
}

// The CPU of children that have exited and been reaped stays in the tree's figure, as
// Postfix's daemons exit after 100 uses. The child burns CPU time, not wall time, so a busy
// machine cannot starve it below the figure, and the tree must hold at least what wait(2)
// reported for it.
func TestTreeTicksKeepsReapedChildren(t *testing.T) {
	if os.Getenv(burnCPUEnv) != "" {
		burnCPU(300 * time.Millisecond)
		os.Exit(0)
	}
	before := treeTicks(os.Getpid())
	cmd := exec.Command(os.Args[0], "-test.run=^TestTreeTicksKeepsReapedChildren$")
	cmd.Env = append(os.Environ(), burnCPUEnv+"=1")
	if err := cmd.Run(); err != nil {
		t.Fatalf("the burning child failed: %v", err)
	}
	time.Sleep(10 * time.Millisecond)
	got := treeTicks(os.Getpid()) - before
	childTicks := int64((cmd.ProcessState.UserTime() + cmd.ProcessState.SystemTime()) / (10 * time.Millisecond))
	if childTicks < 25 {
		t.Fatalf("the child reported only %d ticks of CPU; it should have burned 30", childTicks)
	}
	// Each of utime and stime is rounded to a tick on its own.
	if got < childTicks-2 {
		t.Errorf("tree grew by %d ticks after a reaped child used %d", got, childTicks)
	}
}

const burnCPUEnv = "DESKGATE_BENCH_TEST_BURN_CPU"

// burnCPU spins until this process has used d of CPU time.
func burnCPU(d time.Duration) {
	for {
		var ru syscall.Rusage
		if syscall.Getrusage(syscall.RUSAGE_SELF, &ru) == nil &&
			time.Duration(ru.Utime.Nano()+ru.Stime.Nano()) >= d {
			return
		}
		for i := 0; i < 100000; i++ {
			spun ^= i * 31
		}
	}
}

// spun is where burnCPU's loop writes, so that the loop is not work without effect.
var spun int

// Only what an interrupted run of this user left is stopped and removed: not a symlink someone
// planted under the name (the bench runs as root), and not another run's live instance.
func TestStalePostfixCleanupTouchesOnlyDeadInstancesOfItsOwn(t *testing.T) {
	base := t.TempDir()
	old := postfixHomes
	postfixHomes = filepath.Join(base, "pf-")
	t.Cleanup(func() { postfixHomes = old })

	victim := filepath.Join(base, "victim")
	os.MkdirAll(victim, 0o755)
	os.WriteFile(filepath.Join(victim, "precious"), []byte("x"), 0o644)
	os.Symlink(victim, postfixHomes+"link")
	for name, pid := range map[string]int{"live": os.Getpid(), "dead": 1 << 30} {
		pidDir := filepath.Join(postfixHomes+name, "queue", "pid")
		os.MkdirAll(pidDir, 0o755)
		os.WriteFile(filepath.Join(pidDir, "master.pid"), []byte(fmt.Sprintf("%11d\n", pid)), 0o644)
	}

	stopStalePostfix()

	if _, err := os.Stat(filepath.Join(victim, "precious")); err != nil {
		t.Errorf("the cleanup followed a planted symlink: %v", err)
	}
	if _, err := os.Lstat(postfixHomes + "link"); err != nil {
		t.Errorf("the planted symlink itself should be left alone: %v", err)
	}
	if _, err := os.Stat(postfixHomes + "live"); err != nil {
		t.Errorf("another run's live instance was removed: %v", err)
	}
	if _, err := os.Stat(postfixHomes + "dead"); err == nil {
		t.Error("an interrupted run's instance, its master gone, was left behind")
	}
}
