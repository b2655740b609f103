package main

import (
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"
)

var rounds = flag.Int("rounds", 3, "rounds of the new-ticket burst; each round runs deskgate, then Postfix, then smtp-sink, so that the machine's drift hits all three")

// deskgateRound is one new-ticket burst into a fresh deskgate.
type deskgateRound struct {
	rate                float64
	ticks               int64
	mallocs, allocBytes int
	idle, peak          int // RSS in KiB
	commits, writes     int
	writerSeconds       float64
}

type newTicketRounds struct {
	deskgate  []deskgateRound
	postfix   []postfixRound
	pfSkipped string // why there are no Postfix rounds
	sink      []float64
	sinkTicks []int64
}

// runNewTickets runs the rounds. Only the first deskgate round is profiled, so that the
// profile covers one burst as it always did.
func runNewTickets(source, sinkBin, dir string) (newTicketRounds, error) {
	var nt newTicketRounds
	sinkAddr := freePort()
	sk, err := startSink(sinkBin, sinkAddr)
	if err != nil {
		return nt, err
	}
	defer func() {
		sk.Process.Kill()
		sk.Wait()
	}()
	var pf *postfixBench
	switch {
	case !*pfBench:
		nt.pfSkipped = "-postfix=false"
	case postfixUnavailable() != "":
		nt.pfSkipped = postfixUnavailable()
	default:
		if pf, err = startPostfixBench(sinkBin); err != nil {
			return nt, fmt.Errorf("postfix: %w", err)
		}
		defer pf.stop()
	}
	for r := 1; r <= max(1, *rounds); r++ {
		prof := ""
		if r == 1 {
			prof = *profile
		}
		d, err := deskgateBurst(source, filepath.Join(dir, fmt.Sprintf("newtickets-%d", r)), prof)
		if err != nil {
			return nt, err
		}
		nt.deskgate = append(nt.deskgate, d)
		if pf != nil {
			p, err := pf.round(source)
			if err != nil {
				return nt, err
			}
			nt.postfix = append(nt.postfix, p)
		}
		ticks0 := cpuTicks(sk.Process.Pid)
		rate, err := blast(source, sinkAddr)
		if err != nil {
			return nt, fmt.Errorf("smtp-source against smtp-sink: %w", err)
		}
		nt.sink = append(nt.sink, rate)
		nt.sinkTicks = append(nt.sinkTicks, cpuTicks(sk.Process.Pid)-ticks0)
	}
	return nt, nil
}

// deskgateBurst starts a deskgate on an empty desk in dir and sends it the burst: every
// message opens a new ticket, committed with fsync before its 250.
func deskgateBurst(source, dir, profile string) (deskgateRound, error) {
	var r deskgateRound
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return r, err
	}
	d, err := startDeskgate(dir)
	if err != nil {
		return r, err
	}
	defer func() {
		d.stop()
		os.RemoveAll(d.outbox)
	}()
	time.Sleep(500 * time.Millisecond)
	pid := d.cmd.Process.Pid
	r.idle = rssKiB(pid)
	sampler := startRSSSampler(pid)
	cpu0 := cpuTicks(pid)
	mallocs0, allocBytes0 := d.metric("go_memstats_mallocs_total"), d.metric("go_memstats_alloc_bytes_total")
	profiled := d.startProfile(profile)
	r.rate, err = blast(source, d.smtp)
	r.ticks = cpuTicks(pid) - cpu0
	r.mallocs, r.allocBytes = d.metric("go_memstats_mallocs_total")-mallocs0, d.metric("go_memstats_alloc_bytes_total")-allocBytes0
	profiled()
	r.peak = sampler.stop()
	if err != nil {
		return r, fmt.Errorf("smtp-source against deskgate: %w", err)
	}
	r.commits, r.writes, r.writerSeconds = d.storeCounters()
	stored, err := d.countTickets()
	if err != nil {
		return r, err
	}
	if stored != *messages {
		return r, fmt.Errorf("deskgate stored %d tickets for %d messages: the run is not valid", stored, *messages)
	}
	return r, nil
}

// median of the figures; the rounds' ratios are taken between medians.
func median(v []float64) float64 {
	if len(v) == 0 {
		return 0
	}
	s := slices.Sorted(slices.Values(v))
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

// each maps the rounds to one figure each.
func each[T any](rounds []T, f func(T) float64) []float64 {
	out := make([]float64, len(rounds))
	for i, r := range rounds {
		out[i] = f(r)
	}
	return out
}

// perRound formats the rounds' figures for the end of a line.
func perRound(v []float64, format string) string {
	if len(v) < 2 {
		return ""
	}
	s := make([]string, len(v))
	for i, x := range v {
		s[i] = fmt.Sprintf(format, x)
	}
	return " (rounds: " + strings.Join(s, ", ") + ")"
}

// rates are deskgate's rounds' rates.
func (nt newTicketRounds) rates() []float64 {
	return each(nt.deskgate, func(r deskgateRound) float64 { return r.rate })
}

// rate is the rounds' median rate of deskgate, the figure the other runs' ratios use.
func (nt newTicketRounds) rate() float64 { return median(nt.rates()) }

// print writes the rounds' lines: each product's rate, median first, then the ratios between
// medians, and deskgate's costs per message.
func (nt newTicketRounds) print() {
	n := float64(*messages)
	perMsg := func(ticks int64) float64 { return ticksToMicros(ticks) / n }
	dg := nt.rate()
	if len(nt.deskgate) > 1 {
		fmt.Printf("new tickets in %d rounds of deskgate, Postfix, smtp-sink; medians, then each round\n", len(nt.deskgate))
	}
	fmt.Printf("%-34s %10.0f msg/s%s\n", "deskgate, new tickets (fsync)", dg, perRound(nt.rates(), "%.0f"))
	pfRates := each(nt.postfix, func(r postfixRound) float64 { return r.rate })
	if nt.pfSkipped != "" {
		fmt.Printf("%-34s %10s (%s)\n", "Postfix, relaying to smtp-sink", "skipped", nt.pfSkipped)
	} else {
		drains := each(nt.postfix, func(r postfixRound) float64 { return r.drain.Seconds() })
		fmt.Printf("%-34s %10.0f msg/s%s\n", "Postfix, relaying to smtp-sink", median(pfRates), perRound(pfRates, "%.0f"))
		fmt.Printf("%-34s %10.2f s after the last 250, every message in the sink%s\n", "Postfix's queue drained", median(drains), perRound(drains, "%.2f"))
	}
	sink := median(nt.sink)
	fmt.Printf("%-34s %10.0f msg/s%s\n", "smtp-sink (discards)", sink, perRound(nt.sink, "%.0f"))
	if nt.pfSkipped == "" {
		fmt.Printf("%-34s %10.2f   (goal >= 3.00)\n", "ratio deskgate / Postfix", dg/median(pfRates))
	}
	fmt.Printf("%-34s %10.2f   (goal >= 0.70)\n", "ratio deskgate / smtp-sink", dg/sink)
	cpu := each(nt.deskgate, func(r deskgateRound) float64 { return perMsg(r.ticks) })
	fmt.Printf("%-34s %10.0f µs (smtp-sink: %.0f µs)%s\n", "CPU per message, deskgate", median(cpu), median(each(nt.sinkTicks, perMsg)), perRound(cpu, "%.0f"))
	if nt.pfSkipped == "" {
		pcpu := each(nt.postfix, func(r postfixRound) float64 { return perMsg(r.ticks) })
		fmt.Printf("%-34s %10.0f µs (all its processes, burst and drain)%s\n", "CPU per message, Postfix", median(pcpu), perRound(pcpu, "%.0f"))
	}
	fmt.Printf("%-34s %10.0f (%.0f KiB)\n", "allocations per message, deskgate",
		median(each(nt.deskgate, func(r deskgateRound) float64 { return float64(r.mallocs) / n })),
		median(each(nt.deskgate, func(r deskgateRound) float64 { return float64(r.allocBytes) / n / 1024 })))
}
