package main

import (
	"fmt"

	"github.com/spf13/cobra"

	"github.com/deskgate/deskgate/store"
)

func migrateCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "migrate",
		Short: "bring the store's layout up to this deskgate's and exit (serve does it at start too); on bbolt the daemon must be stopped",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := loadConfig(cmd)
			if err != nil {
				return err
			}
			st, err := openStore(cfg)
			if err != nil {
				return err
			}
			from := st.MigratedFrom()
			if err := st.Close(); err != nil {
				return err
			}
			if from == store.SchemaVersion {
				fmt.Fprintf(cmd.OutOrStdout(), "schema version %d: nothing to do\n", from)
			} else {
				fmt.Fprintf(cmd.OutOrStdout(), "schema version %d -> %d\n", from, store.SchemaVersion)
			}
			return nil
		},
	}
}
