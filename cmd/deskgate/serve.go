package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"github.com/spf13/cobra"

	"github.com/deskgate/deskgate/config"
	"github.com/deskgate/deskgate/gateway/admin"
	"github.com/deskgate/deskgate/gateway/auth"
	"github.com/deskgate/deskgate/gateway/compose"
	"github.com/deskgate/deskgate/gateway/desk"
	"github.com/deskgate/deskgate/gateway/inbound"
	"github.com/deskgate/deskgate/gateway/relay"
	"github.com/deskgate/deskgate/store"
)

func serveCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "serve",
		Short: "run the daemon",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			path := configPath()
			cfg, err := config.Load(path)
			if err != nil {
				printProblems(cmd, path, err)
				fmt.Fprintln(cmd.ErrOrStderr(), "deskgate: not starting")
				return exitError{1}
			}
			return serve(cfg, cmd.ErrOrStderr())
		},
	}
}

func newLogger(cfg *config.Config, w io.Writer) *slog.Logger {
	var level slog.Level
	level.UnmarshalText([]byte(cfg.Log.Level))
	opts := &slog.HandlerOptions{Level: level}
	if cfg.Log.Format == "json" {
		return slog.New(slog.NewJSONHandler(w, opts))
	}
	return slog.New(slog.NewTextHandler(w, opts))
}

func serve(cfg *config.Config, logOut io.Writer) error {
	logger := newLogger(cfg, logOut)
	st, err := store.Open(cfg.DataDir)
	if err != nil {
		logger.Error("cannot open the store", "err", err)
		return exitError{1}
	}
	defer st.Close()

	svc := desk.New(cfg, st, logger)
	worker := relay.New(cfg, st, logger, svc.Queued)
	workerCtx, stopWorker := context.WithCancel(context.Background())
	workerDone := make(chan struct{})
	go func() {
		worker.Run(workerCtx)
		close(workerDone)
	}()
	defer func() {
		stopWorker()
		<-workerDone
	}()
	in := inbound.New(cfg, svc, logger)
	if err := in.Listen(); err != nil {
		logger.Error("cannot listen", "err", err)
		return exitError{1}
	}
	var api *admin.Server
	if cfg.Listen.Admin != "" {
		token, err := admin.ReadToken(cfg.Admin.TokenFile)
		if err != nil {
			logger.Error("admin.token_file", "err", err)
			return exitError{1}
		}
		api = admin.New(st, logger, token, nil, func(b *strings.Builder) {
			writeInboundMetrics(b, in)
			writeStoreMetrics(b, st)
			writeAuthMetrics(b, &svc.AuthStats)
			fmt.Fprintf(b, "# HELP deskgate_undecodable_messages_total Received mail that could not be fully decoded (rule M1); the original is kept.\n# TYPE deskgate_undecodable_messages_total counter\ndeskgate_undecodable_messages_total %d\n", svc.ParseProblems.Load())
			fmt.Fprintf(b, "# HELP deskgate_relay_recipients_total Recipients delivered or failed.\n# TYPE deskgate_relay_recipients_total counter\n")
			fmt.Fprintf(b, "deskgate_relay_recipients_total{result=\"sent\"} %d\ndeskgate_relay_recipients_total{result=\"failed\"} %d\ndeskgate_relay_recipients_total{result=\"deferred\"} %d\n",
				worker.Sent.Load(), worker.Failed.Load(), worker.Deferred.Load())
		})
		api.Desk = svc
		api.ReplyAddress = func(t *store.Ticket) string {
			// The address notifications of this ticket carry, under its own support address.
			return svc.Book().ReplyAddress(compose.Support(svc.Book(), t), t.ID)
		}
		addr, err := api.Listen(cfg.Listen.Admin)
		if err != nil {
			logger.Error("cannot listen", "proto", "admin", "err", err)
			in.Shutdown(context.Background())
			return exitError{1}
		}
		logger.Info("listening", "proto", "admin", "addr", addr.String())
	}
	logger.Info("deskgate started", "version", version, "config", cfg.Path, "data_dir", cfg.DataDir)

	sigs := make(chan os.Signal, 4)
	signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM, syscall.SIGHUP)
	for sig := range sigs {
		if sig == syscall.SIGHUP {
			reload(cfg.Path, logger, in, svc, worker, api)
			continue
		}
		logger.Info("shutting down", "signal", sig.String())
		break
	}
	ctx, cancel := context.WithTimeout(context.Background(), in.Grace())
	defer cancel()
	if api != nil {
		api.Close()
	}
	// Sessions in the middle of a DATA get to finish, so that nothing acknowledged is
	// cut off; the store is closed only after them.
	in.Shutdown(ctx)
	logger.Info("stopped")
	return nil
}

// reload re-reads the config on SIGHUP. Listeners, data_dir and TLS need a restart; the
// rest (agents, policy, limits, support addresses, token) applies to new sessions.
func reload(path string, logger *slog.Logger, in *inbound.Server, svc *desk.Service, worker *relay.Worker, api *admin.Server) {
	cfg, err := config.Load(path)
	if err != nil {
		logger.Error("reload refused; keeping the running config", "config", path, "problems", strings.ReplaceAll(err.Error(), "\n", "; "))
		return
	}
	in.SetConfig(cfg)
	svc.SetConfig(cfg)
	worker.SetConfig(cfg)
	if api != nil && cfg.Admin.TokenFile != "" {
		if token, err := admin.ReadToken(cfg.Admin.TokenFile); err == nil {
			api.SetToken(token)
		}
	}
	logger.Info("config reloaded", "config", path)
}

func writeInboundMetrics(b *strings.Builder, in *inbound.Server) {
	fmt.Fprintf(b, "# HELP deskgate_messages_total Messages by result.\n# TYPE deskgate_messages_total counter\n")
	fmt.Fprintf(b, "deskgate_messages_total{result=\"accepted\"} %d\n", in.Stats.Accepted.Load())
	fmt.Fprintf(b, "deskgate_messages_total{result=\"duplicate\"} %d\n", in.Stats.Duplicates.Load())
	fmt.Fprintf(b, "deskgate_messages_total{result=\"refused\"} %d\n", in.Stats.Refused.Load())
	fmt.Fprintf(b, "deskgate_messages_total{result=\"tempfail\"} %d\n", in.Stats.TempFailed.Load())
	fmt.Fprintf(b, "# HELP deskgate_refusals_total Refusing replies (4xx and 5xx) by protocol, reply code and enhanced code: refused sessions, commands, recipients and messages.\n# TYPE deskgate_refusals_total counter\n")
	in.Stats.EachRefusal(func(proto, code, enhanced string, n int64) {
		fmt.Fprintf(b, "deskgate_refusals_total{proto=%q,code=%q,enhanced=%q} %d\n", proto, code, enhanced, n)
	})
	fmt.Fprintf(b, "# HELP deskgate_sessions Open SMTP and LMTP sessions.\n# TYPE deskgate_sessions gauge\ndeskgate_sessions %d\n", in.ActiveSessions())
}

func writeAuthMetrics(b *strings.Builder, stats *auth.Stats) {
	families := []struct{ family, name, help string }{
		{"result", "deskgate_sender_auth_total", "Received mail by authentication.agent_identity mode and the result that mode decides by."},
		{"agent_claim", "deskgate_agent_claims_total", "Mail from agent addresses: proven, spoofed (filed as an end user's) or deferred (451, DNS failed)."},
	}
	for _, f := range families {
		fmt.Fprintf(b, "# HELP %s %s\n# TYPE %s counter\n", f.name, f.help, f.name)
		stats.Each(func(family, mode, outcome string, n int64) {
			if family == f.family {
				fmt.Fprintf(b, "%s{mode=%q,outcome=%q} %d\n", f.name, mode, outcome, n)
			}
		})
	}
}

func writeStoreMetrics(b *strings.Builder, st *store.Store) {
	s := st.Stats()
	fmt.Fprintf(b, "# HELP deskgate_store_commits_total Write transactions committed (each one fsync).\n# TYPE deskgate_store_commits_total counter\ndeskgate_store_commits_total %d\n", s.Commits.Load())
	fmt.Fprintf(b, "# HELP deskgate_store_writes_total Changes carried by those transactions (group commit).\n# TYPE deskgate_store_writes_total counter\ndeskgate_store_writes_total %d\n", s.Writes.Load())
	fmt.Fprintf(b, "# HELP deskgate_store_commit_seconds_total Time spent committing, fsync included.\n# TYPE deskgate_store_commit_seconds_total counter\ndeskgate_store_commit_seconds_total %.6f\n", float64(s.CommitMicros.Load())/1e6)
}
