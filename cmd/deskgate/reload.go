package main

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/deskgate/deskgate/config"
	"github.com/deskgate/deskgate/gateway/admin"
)

// reloadCmd asks the running daemon to re-read its config and returns only once the daemon has
// taken it, or fails when the daemon refused it, so that the operator, and `systemctl reload`,
// learn which.
func reloadCmd() *cobra.Command {
	var pid int
	cmd := &cobra.Command{
		Use:   "reload [--pid PID]",
		Short: "reload the running daemon's config and wait until it is live (exit 1 if it was refused)",
		Long: `Ask the running daemon to re-read the config file it was started with, and wait until the
new config is live. It prints "config reloaded" and the config's warnings (as check-config
does), or, when the daemon refuses the file, every problem with its key path and exits 1: the
daemon then keeps the config it runs on.

Without --pid, deskgate reload asks over the admin API (POST /api/v1/reload), at the address
and with the token of the config file. With --pid (the systemd unit's ExecReload passes
$MAINPID), it sends that process SIGHUP and waits for the result on /metrics, which needs no
token, so that it works after a change of the admin token too; with listen.admin off it sends
the signal without waiting (the log has the result). Without --pid, when the API cannot be
reached and $MAINPID is set, it does the same with $MAINPID.

What a reload changes and what needs a restart: deskgate.yaml(5), docs/configuration.md.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if pid > 0 {
				return signalReload(cmd, pid)
			}
			c, err := newAPIClient()
			if err == nil {
				var answered bool
				if answered, err = askReload(cmd, c); answered {
					return err
				}
			}
			if main, _ := strconv.Atoi(os.Getenv("MAINPID")); main > 0 {
				fmt.Fprintf(cmd.ErrOrStderr(), "deskgate: %v; sending SIGHUP to $MAINPID %d instead\n", err, main)
				return signalReload(cmd, main)
			}
			// A file the CLI cannot read the admin keys from cannot be asked about, but the
			// daemon would refuse it too: say why, as a refusal would.
			if _, lerr := config.Load(configPath()); lerr != nil {
				printProblems(cmd, configPath(), lerr)
				fmt.Fprintln(cmd.ErrOrStderr(), "deskgate: not reloaded; a running daemon keeps its config")
				return exitError{1}
			}
			return fmt.Errorf("cannot ask the daemon to reload: %v; `deskgate reload --pid PID` sends it SIGHUP instead", err)
		},
	}
	cmd.Flags().IntVar(&pid, "pid", 0, "send SIGHUP to this process (the daemon's; systemd passes $MAINPID) instead of asking the admin API")
	return cmd
}

// askReload is POST /api/v1/reload. answered is false when the daemon could not be asked (not
// running, another token, a daemon from before the endpoint), so that the caller can try
// SIGHUP; otherwise err is nil when the new config is live and exit 1 when it was refused.
func askReload(cmd *cobra.Command, c *apiClient) (answered bool, err error) {
	req, err := http.NewRequest(http.MethodPost, c.base+"/api/v1/reload", nil)
	if err != nil {
		return false, err
	}
	req.Header.Set("Authorization", "Bearer "+c.token)
	resp, err := c.http.Do(req)
	if err != nil {
		return false, fmt.Errorf("cannot reach the deskgate daemon at %s (is it running?): %w", c.base, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return false, err
	}
	switch resp.StatusCode {
	case http.StatusOK:
		var ok admin.Reloaded
		if err := json.Unmarshal(body, &ok); err != nil {
			return true, fmt.Errorf("bad answer from the daemon: %w", err)
		}
		fmt.Fprintln(cmd.OutOrStdout(), "config reloaded")
		for _, w := range ok.Warnings {
			printWarnings(cmd.ErrOrStderr(), []config.Problem{{Key: w.Key, Msg: w.Message}})
		}
		return true, nil
	case http.StatusUnprocessableEntity:
		var refused admin.ReloadRefused
		if err := json.Unmarshal(body, &refused); err != nil {
			return true, fmt.Errorf("bad answer from the daemon: %w", err)
		}
		for _, p := range refused.Problems {
			fmt.Fprintln(cmd.ErrOrStderr(), config.Problem{Key: p.Key, Msg: p.Message})
		}
		fmt.Fprintf(cmd.ErrOrStderr(), "deskgate: the daemon refused %s (%d problem(s)) and keeps the config it runs on\n", refused.Config, len(refused.Problems))
		return true, exitError{1}
	}
	var e struct {
		Error string `json:"error"`
	}
	if json.Unmarshal(body, &e) == nil && e.Error != "" {
		return false, fmt.Errorf("the daemon at %s answered %d: %s", c.base, resp.StatusCode, e.Error)
	}
	return false, fmt.Errorf("the daemon at %s answered HTTP %d", c.base, resp.StatusCode)
}

// signalReload sends SIGHUP and, when /metrics can be read, waits for the reload's result.
func signalReload(cmd *cobra.Command, pid int) error {
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
			if _, err := config.Load(configPath()); err != nil {
				printProblems(cmd, configPath(), err)
			}
			return errors.New("the daemon refused the new config and keeps the running one")
		case after["ok"] > before["ok"]:
			fmt.Fprintln(cmd.OutOrStdout(), "config reloaded")
			return nil
		}
	}
	return errors.New("the daemon did not report the reload within 30s")
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
