package main

import (
	"errors"
	"fmt"

	"github.com/spf13/cobra"

	"github.com/deskgate/deskgate/config"
	"github.com/deskgate/deskgate/store"
)

func checkConfigCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "check-config",
		Short: "validate the config file; print every problem with its key path",
		Long: `Validate the config file and print every problem with its key path, or the environment
variable it came from; exit 1 on any. Warnings (a valid setting that does not do what it seems
to) are printed as "warning: KEY: ..." and do not change the exit status. Checks that files
named in it exist and parse, and that data_dir can be created and written, and, when store.url
is set, that PostgreSQL answers. Every key: deskgate.yaml(5), docs/configuration.md.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			path := configPath()
			cfg, err := config.Load(path)
			if err != nil {
				printProblems(cmd, path, err)
				return exitError{1}
			}
			if cfg.Store.URL != "" {
				version, err := store.CheckPostgres(cfg.Store.URL, cfg.Store.PasswordFile)
				if err != nil {
					fmt.Fprintf(cmd.ErrOrStderr(), "%v\n%s: 1 problem(s)\n", err, path)
					return exitError{1}
				}
				fmt.Fprintf(cmd.OutOrStdout(), "store.url: PostgreSQL %s at %s answers\n", version, store.Redact(cfg.Store.URL))
			}
			// A warning is no problem: the file is valid, but something in it does not do
			// what it seems to.
			for _, w := range cfg.Warnings() {
				fmt.Fprintf(cmd.ErrOrStderr(), "warning: %s\n", w)
			}
			fmt.Fprintf(cmd.OutOrStdout(), "%s: ok\n", path)
			return nil
		},
	}
}

// loadConfig loads the config for an offline command; on problems it prints them and returns
// the error that exits 1.
func loadConfig(cmd *cobra.Command) (*config.Config, error) {
	path := configPath()
	cfg, err := config.Load(path)
	if err != nil {
		printProblems(cmd, path, err)
		return nil, exitError{1}
	}
	return cfg, nil
}

func printProblems(cmd *cobra.Command, path string, err error) {
	var ps config.Problems
	if errors.As(err, &ps) {
		for _, p := range ps {
			fmt.Fprintln(cmd.ErrOrStderr(), p.String())
		}
		fmt.Fprintf(cmd.ErrOrStderr(), "%s: %d problem(s)\n", path, len(ps))
		return
	}
	fmt.Fprintf(cmd.ErrOrStderr(), "%s: %v\n", path, err)
}
