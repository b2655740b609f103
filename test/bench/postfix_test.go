package main

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
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
// Postfix's daemons exit after 100 uses.
func TestTreeTicksKeepsReapedChildren(t *testing.T) {
	before := treeTicks(os.Getpid())
	// About a third of a second of CPU in a child, then reaped by Wait.
	cmd := exec.Command("sh", "-c", "i=0; end=$(($(date +%s%N)+300000000)); while [ $(date +%s%N) -lt $end ]; do i=$((i+1)); done")
	if err := cmd.Run(); err != nil {
		t.Skip("no sh:", err)
	}
	time.Sleep(10 * time.Millisecond)
	if got := treeTicks(os.Getpid()) - before; got < 10 {
		t.Errorf("tree grew by %d ticks after a child burned ~30", got)
	}
}

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
