// Command deskgate-bench is `make bench`: it measures how fast deskgate accepts new
// tickets (fsync on, data on the real disk) against Postfix's smtp-sink, which accepts
// and throws mail away, with the same load generator (smtp-source) on the same machine.
package main

import (
	"bufio"
	"encoding/json"
	"flag"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

var (
	messages = flag.Int("n", 5000, "messages per run")
	sessions = flag.Int("s", 10, "parallel SMTP sessions")
	size     = flag.Int("l", 1024, "message body bytes")
	binary   = flag.String("deskgate", "bin/deskgate", "deskgate binary")
	workDir  = flag.String("dir", "var/bench", "where the benchmark's data lives (on the disk under test)")
)

func main() {
	flag.Parse()
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(1)
	}
}

func tool(name string) (string, error) {
	if p, err := exec.LookPath(name); err == nil {
		return p, nil
	}
	p := filepath.Join("/usr/sbin", name)
	if _, err := os.Stat(p); err == nil {
		return p, nil
	}
	return "", fmt.Errorf("%s not found: apt-get install postfix", name)
}

func freePort() string {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		panic(err)
	}
	defer l.Close()
	return l.Addr().String()
}

func run() error {
	source, err := tool("smtp-source")
	if err != nil {
		return err
	}
	sink, err := tool("smtp-sink")
	if err != nil {
		return err
	}
	os.RemoveAll(*workDir)
	if err := os.MkdirAll(*workDir, 0o755); err != nil {
		return err
	}
	dir, _ := filepath.Abs(*workDir)

	fmt.Printf("deskgate benchmark: smtp-source, %d sessions, %d-byte bodies, a new connection per message, %d messages\n\n", *sessions, *size, *messages)

	// deskgate: every message opens a new ticket, committed with fsync before its 250.
	d, err := startDeskgate(dir)
	if err != nil {
		return err
	}
	defer d.stop()
	time.Sleep(500 * time.Millisecond)
	idle := rssKiB(d.cmd.Process.Pid)
	sampler := startRSSSampler(d.cmd.Process.Pid)
	cpu0 := cpuTicks(d.cmd.Process.Pid)
	dgRate, err := blast(source, d.smtp)
	dgCPU := cpuTicks(d.cmd.Process.Pid) - cpu0
	peak := sampler.stop()
	if err != nil {
		return fmt.Errorf("smtp-source against deskgate: %w", err)
	}
	commits, writes := d.storeCounters()
	stored, err := d.countTickets()
	if err != nil {
		return err
	}
	if stored != *messages {
		return fmt.Errorf("deskgate stored %d tickets for %d messages: the run is not valid", stored, *messages)
	}

	// smtp-sink: the ceiling on this machine for the same client and load.
	sinkAddr := freePort()
	args := []string{sinkAddr, "256"}
	if os.Geteuid() == 0 {
		// smtp-sink refuses to run as root without a user to switch to.
		args = append([]string{"-u", "nobody"}, args...)
	}
	sk := exec.Command(sink, args...)
	sk.Stderr = os.Stderr
	if err := sk.Start(); err != nil {
		return err
	}
	defer sk.Process.Kill()
	waitListen(sinkAddr)
	sinkCPU0 := cpuTicks(sk.Process.Pid)
	sinkRate, err := blast(source, sinkAddr)
	sinkCPU := cpuTicks(sk.Process.Pid) - sinkCPU0
	if err != nil {
		return fmt.Errorf("smtp-source against smtp-sink: %w", err)
	}

	fmt.Printf("%-34s %10.0f msg/s\n", "deskgate, new tickets (fsync)", dgRate)
	fmt.Printf("%-34s %10.0f msg/s\n", "smtp-sink (discards)", sinkRate)
	fmt.Printf("%-34s %10.2f   (goal >= 0.80)\n", "ratio deskgate / smtp-sink", dgRate/sinkRate)
	fmt.Printf("%-34s %10.0f µs (smtp-sink: %.0f µs)\n", "CPU per message, deskgate", ticksToMicros(dgCPU)/float64(*messages), ticksToMicros(sinkCPU)/float64(*messages))
	fmt.Printf("%-34s %10d KiB\n", "deskgate RSS idle", idle)
	fmt.Printf("%-34s %10d KiB\n", "deskgate RSS peak under the burst", peak)
	fmt.Printf("%-34s %10d tickets\n", "tickets stored (checked)", stored)
	if commits > 0 {
		fmt.Printf("%-34s %10.1f per fsync'd commit (%d commits)\n", "group commit: messages", float64(writes)/float64(commits), commits)
	}
	return nil
}

// blast runs smtp-source and returns messages per second.
func blast(source, addr string) (float64, error) {
	start := time.Now()
	cmd := exec.Command(source, "-s", strconv.Itoa(*sessions), "-m", strconv.Itoa(*messages), "-l", strconv.Itoa(*size),
		"-f", "jane@customer.test", "-t", "support@example.com", "-S", "benchmark", addr)
	out, err := cmd.CombinedOutput()
	if err != nil {
		return 0, fmt.Errorf("%v: %s", err, out)
	}
	if len(strings.TrimSpace(string(out))) > 0 {
		// smtp-source prints only on trouble (a refused message, a dropped session).
		return 0, fmt.Errorf("smtp-source reported: %s", out)
	}
	return float64(*messages) / time.Since(start).Seconds(), nil
}

type deskgate struct {
	cmd   *exec.Cmd
	smtp  string
	admin string
	token string
}

func startDeskgate(dir string) (*deskgate, error) {
	d := &deskgate{smtp: freePort(), admin: freePort(), token: "bench-token"}
	tokenFile := filepath.Join(dir, "admin.token")
	os.WriteFile(tokenFile, []byte(d.token), 0o600)
	cfg := fmt.Sprintf(`hostname: bench.deskgate.test
data_dir: %[1]s/data
listen: {smtp: "%[2]s", lmtp: "", admin: "%[3]s"}
support: {name: Bench Support, addresses: [support@example.com]}
limits: {max_sessions: 500}
authentication: {agent_identity: none}
upstream: {address: "maildir:%[1]s/outbox"}
admin: {token_file: %[4]s}
log: {level: warn}
`, dir, d.smtp, d.admin, tokenFile)
	path := filepath.Join(dir, "deskgate.yaml")
	if err := os.WriteFile(path, []byte(cfg), 0o600); err != nil {
		return nil, err
	}
	d.cmd = exec.Command(*binary, "serve", "--config", path)
	d.cmd.Stdout, d.cmd.Stderr = os.Stderr, os.Stderr
	if err := d.cmd.Start(); err != nil {
		return nil, err
	}
	for i := 0; i < 200; i++ {
		if resp, err := http.Get("http://" + d.admin + "/healthz"); err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				return d, nil
			}
		}
		time.Sleep(25 * time.Millisecond)
	}
	d.stop()
	return nil, fmt.Errorf("deskgate did not start")
}

func (d *deskgate) stop() {
	d.cmd.Process.Signal(syscall.SIGTERM)
	d.cmd.Wait()
}

func (d *deskgate) countTickets() (int, error) {
	total, before := 0, ""
	for {
		req, _ := http.NewRequest("GET", "http://"+d.admin+"/api/v1/tickets?limit=1000"+before, nil)
		req.Header.Set("Authorization", "Bearer "+d.token)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			return 0, err
		}
		var page []struct {
			ID uint64 `json:"id"`
		}
		err = json.NewDecoder(resp.Body).Decode(&page)
		resp.Body.Close()
		if err != nil {
			return 0, err
		}
		if len(page) == 0 {
			return total, nil
		}
		total += len(page)
		before = "&before=" + strconv.FormatUint(page[len(page)-1].ID, 10)
	}
}

// storeCounters reads the group-commit counters from /metrics.
func (d *deskgate) storeCounters() (commits, writes int) {
	resp, err := http.Get("http://" + d.admin + "/metrics")
	if err != nil {
		return 0, 0
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) != 2 {
			continue
		}
		n, _ := strconv.Atoi(f[1])
		switch f[0] {
		case "deskgate_store_commits_total":
			commits = n
		case "deskgate_store_writes_total":
			writes = n
		}
	}
	return commits, writes
}

func waitListen(addr string) {
	for i := 0; i < 200; i++ {
		if c, err := net.Dial("tcp", addr); err == nil {
			c.Close()
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func rssKiB(pid int) int {
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "VmRSS:"); ok {
			n, _ := strconv.Atoi(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")))
			return n
		}
	}
	return 0
}

// cpuTicks is a process's user+system CPU time in clock ticks (/proc/PID/stat).
func cpuTicks(pid int) int64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0
	}
	// The command name may hold spaces; the fields we want follow its ')'.
	s := string(b)
	f := strings.Fields(s[strings.LastIndexByte(s, ')')+1:])
	if len(f) < 13 {
		return 0
	}
	utime, _ := strconv.ParseInt(f[11], 10, 64)
	stime, _ := strconv.ParseInt(f[12], 10, 64)
	return utime + stime
}

// ticksToMicros assumes the kernel's USER_HZ of 100, as on every Linux we run on.
func ticksToMicros(t int64) float64 { return float64(t) * 10000 }

type rssSampler struct {
	done chan struct{}
	wg   sync.WaitGroup
	peak int
}

func startRSSSampler(pid int) *rssSampler {
	s := &rssSampler{done: make(chan struct{})}
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		t := time.NewTicker(20 * time.Millisecond)
		defer t.Stop()
		for {
			if r := rssKiB(pid); r > s.peak {
				s.peak = r
			}
			select {
			case <-s.done:
				return
			case <-t.C:
			}
		}
	}()
	return s
}

func (s *rssSampler) stop() int {
	close(s.done)
	s.wg.Wait()
	return s.peak
}
