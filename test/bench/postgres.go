package main

import (
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/deskgate/deskgate/internal/pgtest"
)

var pgBench = flag.Bool("postgres", true, "also measure new tickets on PostgreSQL, one node and two (needs Debian's postgresql)")

// extraConfig is appended to every config startDeskgateWith writes.
var extraConfig string

type pgResult struct {
	one, two       float64
	writerPerMsgUs float64
	// lockPerMsgUs is the write lock's time per change: the serial part, whatever the nodes.
	lockPerMsgUs float64
	// CPU per message in the one-node run: deskgate's and PostgreSQL's processes'; and how
	// busy the machine was in each run.
	deskgateUs, postgresUs float64
	busyOne, busyTwo       float64
	skipped                string
}

// postgresTicks sums the CPU time of every PostgreSQL process on the machine.
func postgresTicks() int64 {
	var total int64
	entries, _ := os.ReadDir("/proc")
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		comm, err := os.ReadFile(fmt.Sprintf("/proc/%d/comm", pid))
		if err != nil || strings.TrimSpace(string(comm)) != "postgres" {
			continue
		}
		total += cpuTicks(pid)
	}
	return total
}

// machineTicks returns the busy and total CPU ticks of the whole machine, from /proc/stat.
func machineTicks() (busy, total int64) {
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return 0, 0
	}
	f := strings.Fields(strings.SplitN(string(b), "\n", 2)[0])
	for i, v := range f[1:] {
		n, _ := strconv.ParseInt(v, 10, 64)
		total += n
		if i != 3 && i != 4 { // idle and iowait
			busy += n
		}
	}
	return busy, total
}

func busyShare(b0, t0 int64) float64 {
	b1, t1 := machineTicks()
	if t1 == t0 {
		return 0
	}
	return float64(b1-b0) / float64(t1-t0)
}

// runPostgres measures new tickets with the desk on PostgreSQL (a throwaway cluster under dir,
// fsync on): one node, then two nodes on one database with the load split between them.
func runPostgres(source, dir string) (pgResult, error) {
	var r pgResult
	c, stop, err := pgtest.Launch()
	defer stop()
	if err != nil {
		r.skipped = err.Error()
		return r, nil
	}
	defer func() { extraConfig = "" }()

	url, err := c.CreateDatabase("bench_one")
	if err != nil {
		return r, err
	}
	extraConfig = fmt.Sprintf("store: {url: %q}\n", url)
	oneDir := filepath.Join(dir, "pg-one")
	os.MkdirAll(oneDir, 0o755)
	d, err := startDeskgate(oneDir)
	if err != nil {
		return r, err
	}
	dg0, pg0 := cpuTicks(d.cmd.Process.Pid), postgresTicks()
	b0, t0 := machineTicks()
	r.one, err = blast(source, d.smtp)
	r.busyOne = busyShare(b0, t0)
	r.deskgateUs = ticksToMicros(cpuTicks(d.cmd.Process.Pid)-dg0) / float64(*messages)
	r.postgresUs = ticksToMicros(postgresTicks()-pg0) / float64(*messages)
	_, writes, writerSeconds := d.storeCounters()
	if writes > 0 {
		r.writerPerMsgUs = writerSeconds / float64(writes) * 1e6
		r.lockPerMsgUs = lockSeconds / float64(writes) * 1e6
	}
	stored, cerr := d.countTickets()
	d.stop()
	if err != nil {
		return r, fmt.Errorf("one node: %w", err)
	}
	if cerr != nil || stored != *messages {
		return r, fmt.Errorf("one node stored %d tickets for %d messages (%v): the run is not valid", stored, *messages, cerr)
	}

	url, err = c.CreateDatabase("bench_two")
	if err != nil {
		return r, err
	}
	extraConfig = fmt.Sprintf("store: {url: %q}\n", url)
	var nodes []*deskgate
	for i := 0; i < 2; i++ {
		nd := filepath.Join(dir, fmt.Sprintf("pg-two-%d", i))
		os.MkdirAll(nd, 0o755)
		n, err := startDeskgate(nd)
		if err != nil {
			return r, err
		}
		defer n.stop()
		nodes = append(nodes, n)
	}
	// The same offered load as the one-node run, half to each node, as two MX hosts of
	// equal preference would get it.
	start := time.Now()
	b0, t0 = machineTicks()
	var wg sync.WaitGroup
	errs := make([]error, 2)
	for i, n := range nodes {
		wg.Add(1)
		go func(i int, addr string) {
			defer wg.Done()
			cmd := exec.Command(source, "-s", strconv.Itoa(*sessions), "-m", strconv.Itoa(*messages/2), "-l", strconv.Itoa(*size),
				"-f", "jane@customer.test", "-t", "support@example.com", "-S", "benchmark", addr)
			out, err := cmd.CombinedOutput()
			if err == nil && len(strings.TrimSpace(string(out))) > 0 {
				err = fmt.Errorf("smtp-source reported: %s", out)
			}
			errs[i] = err
		}(i, n.smtp)
	}
	wg.Wait()
	took := time.Since(start)
	r.busyTwo = busyShare(b0, t0)
	for _, err := range errs {
		if err != nil {
			return r, fmt.Errorf("two nodes: %w", err)
		}
	}
	stored, err = nodes[0].countTickets()
	if err != nil || stored != *messages/2*2 {
		return r, fmt.Errorf("two nodes stored %d tickets for %d messages (%v): the run is not valid", stored, *messages/2*2, err)
	}
	r.two = float64(*messages/2*2) / took.Seconds()
	return r, nil
}
