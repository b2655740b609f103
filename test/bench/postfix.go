package main

import (
	"bufio"
	"bytes"
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/deskgate/deskgate/internal/postfixtest"
)

var pfBench = flag.Bool("postfix", true, "also measure a default Postfix doing the new-ticket job (queue the mail fsync'd, relay it into smtp-sink), in the new-ticket rounds (needs Debian's postfix, and root)")

// postfixBench is a private Postfix instance, its configuration, queue and data in a new
// directory under /var/tmp, that relays everything to an smtp-sink of its own, which counts
// what it receives.
type postfixBench struct {
	bin, dir, smtp string
	sink           *exec.Cmd
	// sinkMsgs is how many messages the sink has received, from its -c counters.
	sinkMsgs atomic.Int64
	sinkDone chan struct{}
}

type postfixRound struct {
	rate  float64       // messages accepted per second by smtp-source
	drain time.Duration // from smtp-source's end until the sink has every message and the queue is empty
	ticks int64         // CPU of Postfix's processes, burst and drain
}

// postfixUnavailable says why the Postfix rounds cannot run here, or "" when they can.
func postfixUnavailable() string {
	if _, err := tool("postfix"); err != nil {
		return err.Error()
	}
	if os.Geteuid() != 0 {
		return "a private Postfix instance must be started as root (Postfix's own rule)"
	}
	if _, err := os.Stat("/etc/postfix"); err != nil {
		return "Postfix's files are not installed (/etc/postfix): apt-get install postfix"
	}
	if _, err := user.Lookup("postfix"); err != nil {
		return "no user postfix: apt-get install postfix"
	}
	if _, err := user.LookupGroup("postdrop"); err != nil {
		return "no group postdrop: apt-get install postfix"
	}
	return ""
}

// postfixHomes is where each run's Postfix instance gets a directory of its own (its
// configuration, queue and data). Not under -dir: Postfix's daemons run as the postfix user and
// must be able to reach their queue, and a checkout's var/ is often closed to other users
// (deskgate makes its data_dir 0750). /var/tmp is on a disk, as the bench wants, where /tmp may
// be tmpfs. The directory is made afresh by MkdirTemp, so nobody else can have prepared it: the
// bench runs as root, and a name fixed in a world-writable directory could be a symlink.
var postfixHomes = "/var/tmp/deskgate-bench-postfix-"

// stopStalePostfix stops the instances interrupted runs left behind and removes them: only
// directories this user made, and only those whose master is no longer running (another
// bench may be using its own).
func stopStalePostfix() {
	dirs, _ := filepath.Glob(postfixHomes + "*")
	for _, dir := range dirs {
		fi, err := os.Lstat(dir)
		st, ok := sysStat(fi)
		if err != nil || !fi.IsDir() || !ok || int(st.Uid) != os.Geteuid() {
			continue
		}
		stale := &postfixBench{dir: dir}
		if pid := stale.masterPid(); pid > 0 && syscall.Kill(pid, 0) == nil {
			continue
		}
		if bin, err := tool("postfix"); err == nil {
			exec.Command(bin, "-c", stale.conf(), "stop").Run()
		}
		os.RemoveAll(dir)
	}
}

func sysStat(fi os.FileInfo) (*syscall.Stat_t, bool) {
	if fi == nil {
		return nil, false
	}
	st, ok := fi.Sys().(*syscall.Stat_t)
	return st, ok
}

// startPostfixBench starts the sink and an instance in a new directory under postfixHomes.
func startPostfixBench(sinkBin string) (*postfixBench, error) {
	bin, err := tool("postfix")
	if err != nil {
		return nil, err
	}
	dir, err := os.MkdirTemp(filepath.Dir(postfixHomes), filepath.Base(postfixHomes))
	if err != nil {
		return nil, err
	}
	started := false
	defer func() {
		if !started {
			os.RemoveAll(dir)
		}
	}()
	p := &postfixBench{bin: bin, dir: dir, smtp: freePort(), sinkDone: make(chan struct{})}
	// The daemons run as the postfix user: the directories must be traversable.
	for _, sub := range []string{"etc", "queue", "data"} {
		if err := os.MkdirAll(filepath.Join(dir, sub), 0o755); err != nil {
			return nil, err
		}
	}
	os.Chmod(dir, 0o755)
	if out, err := exec.Command("chown", "postfix", filepath.Join(dir, "data")).CombinedOutput(); err != nil {
		return nil, fmt.Errorf("chown: %v %s", err, out)
	}

	sinkAddr := freePort()
	host, port, _ := strings.Cut(sinkAddr, ":")
	// -c: the sink prints its counters after every message, so the bench sees each delivery.
	p.sink = exec.Command(sinkBin, "-c", "-u", "nobody", sinkAddr, "256")
	p.sink.Stderr = os.Stderr
	out, err := p.sink.StdoutPipe()
	if err != nil {
		return nil, err
	}
	if err := p.sink.Start(); err != nil {
		return nil, err
	}
	go p.countSink(out)
	waitListen(sinkAddr)

	if err := os.WriteFile(filepath.Join(dir, "etc", "main.cf"), []byte(postfixtest.MainCF(dir)+fmt.Sprintf("relayhost = [%s]:%s\n", host, port)), 0o644); err != nil {
		p.stop()
		return nil, err
	}
	if err := os.WriteFile(filepath.Join(dir, "etc", "master.cf"), []byte(postfixtest.MasterCF(p.smtp)), 0o644); err != nil {
		p.stop()
		return nil, err
	}
	for _, cmd := range []string{"check", "start"} {
		if out, err := exec.Command(bin, "-c", p.conf(), cmd).CombinedOutput(); err != nil {
			p.stop()
			return nil, fmt.Errorf("postfix %s: %v\n%s\n%s", cmd, err, out, p.log())
		}
	}
	waitListen(p.smtp)
	started = true
	return p, nil
}

func (p *postfixBench) conf() string { return filepath.Join(p.dir, "etc") }

func (p *postfixBench) log() string {
	b, _ := os.ReadFile(filepath.Join(p.dir, "maillog"))
	return string(b)
}

// countSink follows smtp-sink -c's counters ("sess=N quit=N mesg=N", each ended by '\r').
func (p *postfixBench) countSink(out io.Reader) {
	defer close(p.sinkDone)
	sc := bufio.NewScanner(out)
	sc.Split(func(data []byte, atEOF bool) (int, []byte, error) {
		if i := bytes.IndexAny(data, "\r\n"); i >= 0 {
			return i + 1, data[:i], nil
		}
		if atEOF && len(data) > 0 {
			return len(data), data, nil
		}
		return 0, nil, nil
	})
	for sc.Scan() {
		_, v, ok := strings.Cut(sc.Text(), "mesg=")
		if !ok {
			continue
		}
		if n, err := strconv.ParseInt(strings.Fields(v)[0], 10, 64); err == nil {
			p.sinkMsgs.Store(n)
		}
	}
}

func (p *postfixBench) stop() {
	exec.Command(p.bin, "-c", p.conf(), "stop").Run()
	if p.sink != nil && p.sink.Process != nil {
		p.sink.Process.Kill()
		<-p.sinkDone // Wait closes the pipe: the counter's reader must be done first.
		p.sink.Wait()
	}
	os.RemoveAll(p.dir)
}

// round sends the burst into Postfix's smtpd and waits until the sink has every message and
// the queue is empty: mail accepted but not delivered does not count.
func (p *postfixBench) round(source string) (postfixRound, error) {
	var r postfixRound
	before := p.sinkMsgs.Load()
	master := p.masterPid()
	ticks0 := treeTicks(master)
	rate, err := blast(source, p.smtp)
	if err != nil {
		return r, fmt.Errorf("smtp-source against Postfix: %w", err)
	}
	r.rate = rate
	accepted := time.Now()
	// Postfix drains a burst like this in about a second; a deferred message would wait for
	// the next queue run, minutes away, and the round would not count anyway.
	deadline := accepted.Add(2 * time.Minute)
	for p.sinkMsgs.Load()-before < int64(*messages) || !p.queueEmpty() {
		if time.Now().After(deadline) {
			return r, fmt.Errorf("the sink received %d of %d messages from Postfix in 2 minutes; its log ends:\n%s",
				p.sinkMsgs.Load()-before, *messages, lastLines(p.log(), 20))
		}
		time.Sleep(25 * time.Millisecond)
	}
	r.drain = time.Since(accepted)
	r.ticks = treeTicks(master) - ticks0
	if got := p.sinkMsgs.Load() - before; got != int64(*messages) {
		return r, fmt.Errorf("the sink received %d messages from Postfix for %d sent: the run is not valid", got, *messages)
	}
	return r, nil
}

// queueEmpty says whether no message file is left in Postfix's queues.
func (p *postfixBench) queueEmpty() bool {
	for _, q := range []string{"maildrop", "incoming", "active", "deferred", "hold", "corrupt"} {
		found := errors.New("found")
		err := filepath.WalkDir(filepath.Join(p.dir, "queue", q), func(_ string, e fs.DirEntry, err error) error {
			if err == nil && e.Type().IsRegular() {
				return found
			}
			return nil
		})
		if err == found {
			return false
		}
	}
	return true
}

// masterPid reads the pid Postfix's master wrote.
func (p *postfixBench) masterPid() int {
	b, _ := os.ReadFile(filepath.Join(p.dir, "queue", "pid", "master.pid"))
	pid, _ := strconv.Atoi(strings.TrimSpace(string(b)))
	return pid
}

// treeTicks is the CPU time of a process tree in clock ticks: each live process's own time and
// that of its children it has reaped. Postfix's daemons exit after 100 uses or when idle and
// the master reaps them, so their time stays counted.
func treeTicks(root int) int64 {
	if root <= 0 {
		return 0
	}
	children := map[int][]int{}
	entries, _ := os.ReadDir("/proc")
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		if f := statFields(pid); len(f) > 1 {
			ppid, _ := strconv.Atoi(f[1])
			children[ppid] = append(children[ppid], pid)
		}
	}
	var total int64
	var walk func(int)
	walk = func(pid int) {
		if f := statFields(pid); len(f) > 14 {
			for _, i := range []int{11, 12, 13, 14} { // utime, stime, cutime, cstime
				n, _ := strconv.ParseInt(f[i], 10, 64)
				total += n
			}
		}
		for _, c := range children[pid] {
			walk(c)
		}
	}
	walk(root)
	return total
}

func lastLines(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	return strings.Join(lines[max(0, len(lines)-n):], "\n")
}
