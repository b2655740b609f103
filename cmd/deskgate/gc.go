package main

import (
	"os"
	"runtime/debug"

	"github.com/deskgate/deskgate/config"
)

// gcPercent is the garbage collector's target when GOGC does not set one. deskgate's live
// heap is small (tens of MiB) and nearly all of what a message allocates is garbage by the
// time it is answered, so Go's default of 100 collects several times a second under load,
// and profiles put the collector's marking and assists at a tenth of the CPU per message.
// At 400 it collects a quarter as often, for some tens of MiB more (docs/benchmarks.md,
// issue 23).
const gcPercent = 400

// tuneGC sets the collector for cfg: a target of gcPercent, and a soft memory limit that
// makes it collect as often as it must when message data fills limits.max_data_memory, so
// that the larger target never lets large messages take more memory than they did. GOGC and
// GOMEMLIMIT in the environment win, as with any Go program.
func tuneGC(cfg *config.Config) {
	if os.Getenv("GOGC") == "" {
		debug.SetGCPercent(gcPercent)
	}
	if os.Getenv("GOMEMLIMIT") == "" {
		// Each message in the budget counts twice (its bytes and its decoding), and the rest
		// of the daemon is well under 256 MiB.
		debug.SetMemoryLimit(int64(cfg.Limits.MaxDataMemory)*2 + 256<<20)
	}
}
