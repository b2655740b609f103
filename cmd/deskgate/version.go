package main

import (
	"fmt"
	"runtime"
	"runtime/debug"

	"github.com/spf13/cobra"
)

// version is set at build time: -ldflags "-X main.version=..."
var version = "dev"

func buildInfo() string {
	rev, dirty, when := "", "", ""
	if bi, ok := debug.ReadBuildInfo(); ok {
		for _, s := range bi.Settings {
			switch s.Key {
			case "vcs.revision":
				rev = s.Value
			case "vcs.modified":
				if s.Value == "true" {
					dirty = "+dirty"
				}
			case "vcs.time":
				when = s.Value
			}
		}
	}
	if len(rev) > 12 {
		rev = rev[:12]
	}
	out := fmt.Sprintf("deskgate %s", version)
	if rev != "" {
		out += fmt.Sprintf(" (%s%s %s)", rev, dirty, when)
	}
	return out + fmt.Sprintf(" %s %s/%s", runtime.Version(), runtime.GOOS, runtime.GOARCH)
}

func versionCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "version",
		Short: "print version and build info",
		Args:  cobra.NoArgs,
		Run: func(cmd *cobra.Command, _ []string) {
			fmt.Fprintln(cmd.OutOrStdout(), buildInfo())
		},
	}
}
