package main

import (
	"errors"
	"fmt"
	"io"

	"github.com/spf13/cobra"

	"github.com/deskgate/deskgate/config"
	"github.com/deskgate/deskgate/store"
)

func checkConfigCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "check-config",
		Short: "validate the config file; print every problem with its key path",
		Long: `Validate the config file and print every problem with its key path, or the environment
variable it came from; exit 1 on any. Checks that files named in it exist and parse, and that
data_dir can be created and written, and, when store.url is set, that PostgreSQL answers.
Settings that are valid but unsafe on a real MX (authentication.agent_identity: none), or
capped (limits.max_sessions_per_ip above half of limits.max_sessions), are
printed on stderr as "warning: KEY: ..." and do not change the exit status; serve logs the
same warnings at start and at each reload. Every key: deskgate.yaml(5), docs/configuration.md.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			path := configPath()
			cfg, err := config.Load(path)
			if err != nil {
				printProblems(cmd, path, err)
				return exitError{1}
			}
			printWarnings(cmd.ErrOrStderr(), cfg.Warnings())
			if cfg.Store.URL != "" {
				version, err := store.CheckPostgres(cfg.Store.URL, cfg.Store.PasswordFile)
				if err != nil {
					fmt.Fprintf(cmd.ErrOrStderr(), "%v\n%s: 1 problem(s)\n", err, path)
					return exitError{1}
				}
				fmt.Fprintf(cmd.OutOrStdout(), "store.url: PostgreSQL %s at %s answers\n", version, store.Redact(cfg.Store.URL))
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

// printWarnings prints warnings the way check-config does, for it and for reload.
func printWarnings(w io.Writer, warnings []config.Problem) {
	for _, p := range warnings {
		fmt.Fprintf(w, "warning: %s\n", p)
	}
}
