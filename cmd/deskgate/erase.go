package main

import (
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/deskgate/deskgate/gateway/admin"
	"github.com/deskgate/deskgate/store"
)

func ticketsDeleteCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "delete ID",
		Short: "delete a ticket with its comments, events, attachments, Message-ID entries and queued deliveries",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			id, err := parseID("ticket", strings.TrimPrefix(args[0], "#"))
			if err != nil {
				return err
			}
			c, err := newAPIClient()
			if err != nil {
				return err
			}
			var d admin.Deleted
			if _, err := c.send("DELETE", fmt.Sprintf("/api/v1/tickets/%d", id), nil, &d); err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "ticket %d deleted: %d comments, %d events, %d deliveries, %d attachments, %d Message-IDs\n",
				d.Ticket, d.Comments, d.Events, d.Deliveries, d.Attachments, d.MessageIDs)
			return nil
		},
	}
}

func eraseCmd() *cobra.Command {
	var address string
	var dryRun, asJSON bool
	cmd := &cobra.Command{
		Use:   "erase --address EMAIL [--dry-run]",
		Short: "remove a person from every ticket: tickets they opened are deleted, elsewhere their address and text are replaced by a marker",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if address == "" {
				return fmt.Errorf("--address is required")
			}
			c, err := newAPIClient()
			if err != nil {
				return err
			}
			// Erasing searches every record of the desk; a large one takes its time.
			c.http = &http.Client{Transport: c.http.Transport}
			var e admin.Erasure
			raw, err := c.send("POST", "/api/v1/erase", map[string]any{"address": address, "dry_run": dryRun}, &e)
			if err != nil {
				return err
			}
			if asJSON {
				return printJSON(cmd.OutOrStdout(), raw)
			}
			out := cmd.OutOrStdout()
			for _, a := range e.Actions {
				fmt.Fprintln(out, a)
			}
			switch {
			case e.Tickets == 0:
				fmt.Fprintf(out, "%s is on no ticket: nothing to erase\n", e.Address)
			case dryRun:
				fmt.Fprintf(out, "dry run: %d changes on %d tickets would be made; run again without --dry-run to make them\n", len(e.Actions), e.Tickets)
			default:
				fmt.Fprintf(out, "%s erased from %d tickets (%d changes); the address now reads %s\n", e.Address, e.Tickets, len(e.Actions), e.Marker)
			}
			return nil
		},
	}
	cmd.Flags().StringVar(&address, "address", "", "the person's mail address")
	cmd.Flags().BoolVar(&dryRun, "dry-run", false, "list what would change, change nothing")
	cmd.Flags().BoolVar(&asJSON, "json", false, "print the API's JSON")
	return cmd
}

func compactCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "compact",
		Short: "offline: rewrite the database into a compact file and swap it in; refused while the daemon holds it",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := loadConfig(cmd)
			if err != nil {
				return err
			}
			if cfg.Store.URL != "" {
				return errors.New("compact rewrites the bbolt file; this desk is on PostgreSQL (store.url), whose VACUUM gives space back")
			}
			c, err := store.Compact(cfg.DataDir)
			if err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "compacted in %s: %s -> %s\n", c.Took.Round(time.Millisecond), size(c.Before), size(c.After))
			return nil
		},
	}
}

func size(n int64) string {
	if n < 1<<20 {
		return fmt.Sprintf("%d KiB", n>>10)
	}
	return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20))
}
