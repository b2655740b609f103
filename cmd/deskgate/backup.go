package main

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"

	"github.com/spf13/cobra"
)

func backupCmd() *cobra.Command {
	var force bool
	cmd := &cobra.Command{
		Use:   "backup FILE",
		Short: "write a consistent copy of the database while the daemon runs",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if _, err := os.Stat(args[0]); err == nil && !force {
				return fmt.Errorf("%s exists; not overwriting it without --force", args[0])
			}
			c, err := newAPIClient()
			if err != nil {
				return err
			}
			req, err := http.NewRequest(http.MethodGet, c.base+"/api/v1/backup", nil)
			if err != nil {
				return err
			}
			req.Header.Set("Authorization", "Bearer "+c.token)
			client := *c.http
			client.Timeout = 0 // a large database takes its time
			resp, err := client.Do(req)
			if err != nil {
				return fmt.Errorf("cannot reach the deskgate daemon at %s (is it running?): %w", c.base, err)
			}
			defer resp.Body.Close()
			if resp.StatusCode != http.StatusOK {
				var e struct {
					Error string `json:"error"`
				}
				if json.NewDecoder(io.LimitReader(resp.Body, 1<<16)).Decode(&e) == nil && e.Error != "" {
					return fmt.Errorf("backup: %s", e.Error)
				}
				return fmt.Errorf("backup: HTTP %d", resp.StatusCode)
			}
			// Written beside the target and renamed, so that FILE is never half a database.
			dst := args[0]
			tmp, err := os.CreateTemp(filepath.Dir(dst), ".deskgate-backup-*")
			if err != nil {
				return err
			}
			defer os.Remove(tmp.Name())
			n, err := io.Copy(tmp, resp.Body)
			if err == nil {
				err = tmp.Sync()
			}
			if cerr := tmp.Close(); err == nil {
				err = cerr
			}
			if err != nil {
				return fmt.Errorf("backup: %w", err)
			}
			if err := os.Chmod(tmp.Name(), 0o600); err != nil {
				return err
			}
			if err := os.Rename(tmp.Name(), dst); err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "%s: %d bytes\n", dst, n)
			return nil
		},
	}
	cmd.Flags().BoolVar(&force, "force", false, "replace FILE if it exists")
	return cmd
}
