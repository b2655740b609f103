// Command deskgate is the help-desk mail gateway: the daemon and its admin CLI.
package main

import (
	"errors"
	"fmt"
	"os"
	"strings"

	"github.com/spf13/cobra"
)

// DefaultConfigPath is used when neither --config nor $DESKGATE_CONFIG is given.
const DefaultConfigPath = "/etc/deskgate/deskgate.yaml"

var configFlag string

func configPath() string {
	if configFlag != "" {
		return configFlag
	}
	if p := os.Getenv("DESKGATE_CONFIG"); p != "" {
		return p
	}
	return DefaultConfigPath
}

// exitError carries an exit status without printing anything more.
type exitError struct{ code int }

func (e exitError) Error() string { return fmt.Sprintf("exit %d", e.code) }

func main() {
	root := &cobra.Command{
		Use:   "deskgate",
		Short: "Help-desk mail gateway: tickets, CCs and followers over SMTP and LMTP",
		Long: `deskgate receives a support address's mail over SMTP or LMTP, threads it into tickets, keeps
CCs visible and followers hidden, and relays every notification through an upstream MTA.

deskgate serve runs the daemon; the other commands talk to it through its admin API, reading
the address and token from the same config file.

Documentation (docs/ in the source, /usr/share/doc/deskgate/docs in the packages):
  configuration.md  every config key; also deskgate.yaml(5)
  behaviour.md      how CCs, followers, visibility and notifications work
  rules.md          every rule by ID, as explain cites them
  authentication.md how agents prove who they are (DKIM, SPF, DMARC)
  postfix.md        Postfix in front over LMTP
  operations.md     install, reload, stop, backup, queue, monitoring, DNS records
  openapi.yaml      the admin API`,
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.PersistentFlags().StringVar(&configFlag, "config", "", "config file (default $DESKGATE_CONFIG, else "+DefaultConfigPath+")")
	root.AddCommand(serveCmd(), checkConfigCmd(), versionCmd(), ticketsCmd(),
		participantCmd("cc", "an expert manages CCs", "ccs", "CC"),
		participantCmd("followers", "an expert manages followers (agents only)", "followers", "follower"),
		replyCmd(), commentsCmd(), assignCmd(), solveCmd(), explainCmd(), queueCmd(), backupCmd(), eraseCmd(), compactCmd(), dkimCmd(), dnsCmd(), reloadCmd(), migrateCmd(), storeCmd(), manCmd())
	refuseUnknownSubcommands(root)
	if err := root.Execute(); err != nil {
		var ee exitError
		if errors.As(err, &ee) {
			os.Exit(ee.code)
		}
		fmt.Fprintln(os.Stderr, "deskgate:", err)
		os.Exit(1)
	}
}

// refuseUnknownSubcommands makes every command group fail on a word it does not know
// ("deskgate tickets delete 5"), as scripts need, instead of printing help and exiting 0. A
// group given no word still prints its help.
func refuseUnknownSubcommands(cmd *cobra.Command) {
	for _, sub := range cmd.Commands() {
		refuseUnknownSubcommands(sub)
	}
	if !cmd.HasSubCommands() || cmd.Runnable() {
		return
	}
	cmd.Args = cobra.ArbitraryArgs
	cmd.RunE = func(cmd *cobra.Command, args []string) error {
		if len(args) == 0 {
			return cmd.Help()
		}
		var names []string
		for _, sub := range cmd.Commands() {
			if sub.IsAvailableCommand() {
				names = append(names, sub.Name())
			}
		}
		return fmt.Errorf("unknown command %q for %q; it has: %s", args[0], cmd.CommandPath(), strings.Join(names, ", "))
	}
}
