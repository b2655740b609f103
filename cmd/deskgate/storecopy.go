package main

import (
	"errors"
	"fmt"
	"sort"
	"time"

	"github.com/spf13/cobra"

	"github.com/deskgate/deskgate/store"
)

func storeCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "store",
		Short: "move a desk between stores",
		Args:  cobra.NoArgs,
	}
	cmd.AddCommand(storeCopyCmd())
	return cmd
}

func storeCopyCmd() *cobra.Command {
	var from, to string
	cmd := &cobra.Command{
		Use:   "copy --from URL --to URL",
		Short: "copy a whole desk between stores (bbolt:/var/lib/deskgate, postgres://...)",
		Long: `Copy everything a desk holds from one store into another, empty one: tickets, comments,
events, attachments, the original mails, the Message-ID index, the outbound queue with its
messages, the id sequences and the secret behind reply addresses, so that replies to mail sent
before the move still find their tickets.

A store is bbolt:DIR (the data_dir that holds deskgate.db; the daemon using it must be stopped)
or a postgres:// URL (the password from PGPASSWORD or ~/.pgpass). A PostgreSQL source is read on
one snapshot, so its nodes may keep running; the copy holds what was committed when it began.
The destination must hold no tickets. A copy cut short leaves part of the desk in the
destination: empty it (drop and create the database, or remove its deskgate.db) and copy again.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if from == "" || to == "" {
				return errors.New("both --from and --to are required")
			}
			if from == to {
				return errors.New("--from and --to name the same store")
			}
			src, err := store.OpenURL(from, false)
			if err != nil {
				return fmt.Errorf("--from: %w", err)
			}
			defer src.Close()
			dst, err := store.OpenURL(to, true)
			if err != nil {
				return fmt.Errorf("--to: %w", err)
			}
			start := time.Now()
			out := cmd.OutOrStdout()
			// A large desk takes minutes: say how far it got every few seconds.
			last := time.Now()
			progress := func(bucket string, n int) {
				if time.Since(last) >= 5*time.Second {
					fmt.Fprintf(cmd.ErrOrStderr(), "%s: %d records so far\n", bucket, n)
					last = time.Now()
				}
			}
			copied, err := store.CopyAll(src, dst, progress)
			if cerr := dst.Close(); err == nil {
				err = cerr
			}
			if err != nil {
				return fmt.Errorf("copy: %w", err)
			}
			names := make([]string, 0, len(copied.Records))
			for name := range copied.Records {
				names = append(names, name)
			}
			sort.Strings(names)
			for _, name := range names {
				fmt.Fprintf(out, "%-20s %d\n", name, copied.Records[name])
			}
			fmt.Fprintf(out, "copied %d tickets from %s to %s in %s\n", copied.Tickets, store.Redact(from), store.Redact(to), time.Since(start).Round(time.Millisecond))
			return nil
		},
	}
	cmd.Flags().StringVar(&from, "from", "", "the store to copy: bbolt:DIR or postgres://...")
	cmd.Flags().StringVar(&to, "to", "", "the empty store to copy into: bbolt:DIR or postgres://...")
	return cmd
}
