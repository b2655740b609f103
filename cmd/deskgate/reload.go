package main

import (
	"bufio"
	"errors"
	"fmt"
	"net/http"
	"os"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/cobra"
)

// reloadCmd is the unit's ExecReload: it sends SIGHUP and returns only once the daemon has
// taken the new config, or fails when the daemon refused it, so that `systemctl reload` says
// which (on every systemd version, not only those that understand RELOADING=1).
func reloadCmd() *cobra.Command {
	var pid int
	cmd := &cobra.Command{
		Use:   "reload [--pid PID]",
		Short: "reload the running daemon's config and wait until it is live (exit 1 if it was refused)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if pid == 0 {
				pid, _ = strconv.Atoi(os.Getenv("MAINPID"))
			}
			if pid <= 0 {
				return errors.New("--pid: the daemon's process id is needed (systemd passes $MAINPID)")
			}
			c, err := newAPIClient()
			var before map[string]float64
			if err == nil {
				before, err = reloadCounts(c.base)
			}
			if err != nil {
				// Without the admin API there is nothing to wait on: the signal is all.
				fmt.Fprintf(cmd.ErrOrStderr(), "deskgate: %v; sending SIGHUP without waiting for the result (the log has it)\n", err)
				return syscall.Kill(pid, syscall.SIGHUP)
			}
			if err := syscall.Kill(pid, syscall.SIGHUP); err != nil {
				return fmt.Errorf("SIGHUP to %d: %w", pid, err)
			}
			deadline := time.Now().Add(30 * time.Second)
			for time.Now().Before(deadline) {
				time.Sleep(50 * time.Millisecond)
				after, err := reloadCounts(c.base)
				if err != nil {
					continue
				}
				switch {
				case after["refused"] > before["refused"]:
					return errors.New("the daemon refused the new config and keeps the running one; `deskgate check-config` says why")
				case after["ok"] > before["ok"]:
					fmt.Fprintln(cmd.OutOrStdout(), "config reloaded")
					return nil
				}
			}
			return errors.New("the daemon did not report the reload within 30s")
		},
	}
	cmd.Flags().IntVar(&pid, "pid", 0, "the daemon's process id (default $MAINPID)")
	return cmd
}

// reloadCounts reads deskgate_config_reloads_total by result from /metrics.
func reloadCounts(base string) (map[string]float64, error) {
	resp, err := http.Get(base + "/metrics")
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("HTTP %d", resp.StatusCode)
	}
	out := map[string]float64{}
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		line := sc.Text()
		rest, ok := strings.CutPrefix(line, `deskgate_config_reloads_total{result="`)
		if !ok {
			continue
		}
		result, value, ok := strings.Cut(rest, `"} `)
		if !ok {
			continue
		}
		n, err := strconv.ParseFloat(value, 64)
		if err == nil {
			out[result] = n
		}
	}
	return out, sc.Err()
}
