package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"strings"
	"sync"
	"syscall"

	"github.com/spf13/cobra"

	"github.com/deskgate/deskgate/config"
	"github.com/deskgate/deskgate/gateway/admin"
	"github.com/deskgate/deskgate/gateway/compose"
	"github.com/deskgate/deskgate/gateway/desk"
	"github.com/deskgate/deskgate/gateway/inbound"
	"github.com/deskgate/deskgate/gateway/metrics"
	"github.com/deskgate/deskgate/gateway/model"
	"github.com/deskgate/deskgate/gateway/relay"
	"github.com/deskgate/deskgate/gateway/web"
	"github.com/deskgate/deskgate/store"
)

func serveCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "serve",
		Short: "run the daemon",
		Long: `Run the daemon: the SMTP and LMTP listeners, the relay, the admin API and, when
listen.web is set, the web pages, on the config file. SIGHUP reloads the config, SIGTERM drains
and stops (docs/operations.md); under systemd it reports READY, RELOADING and STOPPING and
feeds the watchdog. The config is described in deskgate.yaml(5) and docs/configuration.md.`,
		Args: cobra.NoArgs,
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

// serve runs the daemon on cfg until SIGINT or SIGTERM: the store, the desk with its relay and
// retention, the listeners, then the signals; at the end each stops in the reverse order.
func serve(cfg *config.Config, logOut io.Writer) error {
	logger := newLogger(cfg, logOut)
	tuneGC(cfg)
	st, err := openStore(cfg)
	if err != nil {
		logger.Error("cannot open the store", "err", err)
		return exitError{1}
	}
	defer st.Close()

	svc := desk.New(cfg, st, logger)
	// Another node sharing the store may queue the deliveries: its commit wakes this relay.
	st.OnQueueChange(svc.Kick)
	worker := relay.New(cfg, st, logger, svc.Queued)
	defer runInBackground(worker.Run)()
	defer runInBackground(svc.Retain)() // retention.delete_solved_after; does nothing while it is 0
	in := inbound.New(cfg, svc, logger)
	if err := in.Listen(); err != nil {
		logger.Error("cannot listen", "err", err)
		return exitError{1}
	}
	reloads := &reloader{path: cfg.Path, logger: logger, in: in, svc: svc, worker: worker}
	api, err := startAdmin(cfg, st, svc, in, reloads, logger)
	if err != nil {
		return exitError{1}
	}
	site, err := startWeb(cfg, svc, in, api, logger)
	if err != nil {
		return exitError{1}
	}
	logger.Info("deskgate started", "version", version, "config", cfg.Path, "data_dir", cfg.DataDir, "store", st.Where())
	logWarnings(logger, cfg.Warnings())
	notifyReady("serving")
	stopWatchdog := make(chan struct{})
	go watchdog(st, logger, stopWatchdog)
	defer close(stopWatchdog)

	waitForStop(reloads, logger)
	shutdown(in, api, site, logger)
	return nil
}

// runInBackground runs run on a goroutine of its own; the function it returns stops it and
// waits for it to return.
func runInBackground(run func(context.Context)) (stop func()) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		run(ctx)
		close(done)
	}()
	return func() {
		cancel()
		<-done
	}
}

// startAdmin starts the admin API when listen.admin is set (nil otherwise). A failure is
// logged; one to listen shuts the mail listeners down too.
func startAdmin(cfg *config.Config, st *store.Store, svc *desk.Service, in *inbound.Server, reloads *reloader, logger *slog.Logger) (*admin.Server, error) {
	if cfg.Listen.Admin == "" {
		return nil, nil
	}
	token, err := admin.ReadToken(cfg.Admin.TokenFile)
	if err != nil {
		logger.Error("admin.token_file", "err", err)
		return nil, err
	}
	api := admin.New(admin.Options{Store: st, Log: logger, Token: token, Health: in.Healthy, Desk: svc, Reload: reloads.reload,
		ReplyAddress: func(t *model.Ticket) string {
			// The address notifications of this ticket carry, under its own support address.
			return svc.Book().ReplyAddress(compose.Support(svc.Book(), t), t.ID)
		}})
	metrics.Gauge("deskgate_sessions", "Open SMTP and LMTP sessions.", func() float64 { return float64(in.ActiveSessions()) })
	reloads.api = api
	addr, err := api.Listen(cfg.Listen.Admin)
	if err != nil {
		logger.Error("cannot listen", "proto", "admin", "err", err)
		in.Shutdown(context.Background())
		return nil, err
	}
	logger.Info("listening", "proto", "admin", "addr", addr.String())
	return api, nil
}

// startWeb starts the web pages when listen.web is set (nil otherwise). A failure is logged,
// and the listeners already up are shut down with it.
func startWeb(cfg *config.Config, svc *desk.Service, in *inbound.Server, api *admin.Server, logger *slog.Logger) (*web.Server, error) {
	if cfg.Listen.Web == "" {
		return nil, nil
	}
	// The pages read the config through the desk, so that a reload reaches them too.
	site := web.New(svc.Config, svc, logger)
	addr, err := site.Listen(cfg.Listen.Web)
	if err != nil {
		logger.Error("cannot listen", "proto", "web", "err", err)
		if api != nil {
			api.Close()
		}
		in.Shutdown(context.Background())
		return nil, err
	}
	logger.Info("listening", "proto", "web", "addr", addr.String(), "public_url", cfg.Web.PublicURL)
	return site, nil
}

// waitForStop reloads the config at each SIGHUP, and returns at SIGINT or SIGTERM.
func waitForStop(reloads *reloader, logger *slog.Logger) {
	sigs := make(chan os.Signal, 4)
	signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM, syscall.SIGHUP)
	for sig := range sigs {
		if sig == syscall.SIGHUP {
			reloads.reload()
			continue
		}
		logger.Info("shutting down", "signal", sig.String())
		notifyStopping()
		return
	}
}

// shutdown closes the listeners: the admin API at once, the web requests and the mail sessions
// under way within limits.shutdown_grace.
func shutdown(in *inbound.Server, api *admin.Server, site *web.Server, logger *slog.Logger) {
	ctx, cancel := context.WithTimeout(context.Background(), in.Grace())
	defer cancel()
	if api != nil {
		api.Close()
	}
	if site != nil {
		// Requests under way finish, within the same grace as the mail sessions.
		if err := site.Shutdown(ctx); err != nil {
			logger.Warn("web requests cut off at shutdown", "err", err)
		}
	}
	// Sessions in the middle of a DATA get to finish, so that nothing acknowledged is
	// cut off; the store is closed only after them.
	in.Shutdown(ctx)
	logger.Info("stopped")
}

// reloader re-reads the config file, for SIGHUP and for POST /api/v1/reload alike, one
// reload at a time. Listeners, data_dir, the store and TLS need a restart; the rest (agents,
// policy, limits, support addresses, token) applies to new sessions.
type reloader struct {
	mu     sync.Mutex
	path   string
	logger *slog.Logger
	in     *inbound.Server
	svc    *desk.Service
	worker *relay.Worker
	api    *admin.Server
}

// reload returns when the new config is live, with its warnings, or when it was refused,
// with config.Problems; systemd hears RELOADING=1 and READY=1 around it either way.
func (r *reloader) reload() (file string, warnings []config.Problem, err error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	notifyReloading()
	warnings, err = r.apply()
	status, result := "serving; config reloaded", "ok"
	if err != nil {
		status, result = "serving; reload refused, running config kept (see the log)", "refused"
	}
	metrics.ConfigReloads.WithLabelValues(result).Inc()
	notifyReady(status)
	return r.path, warnings, err
}

func (r *reloader) apply() ([]config.Problem, error) {
	cfg, err := config.Load(r.path)
	if err != nil {
		r.logger.Error("reload refused; keeping the running config", "config", r.path, "problems", strings.ReplaceAll(err.Error(), "\n", "; "))
		return nil, err
	}
	var warnings []config.Problem
	old := r.svc.Config()
	for _, c := range []struct {
		key     string
		changed bool
	}{
		{"data_dir", old.DataDir != cfg.DataDir},
		{"store.url", old.Store.URL != cfg.Store.URL},
		{"store.password_file", old.Store.PasswordFile != cfg.Store.PasswordFile},
	} {
		if c.changed {
			warnings = append(warnings, config.Problem{Key: c.key, Msg: "changed in the config, but the store stays open as it is until the next restart"})
		}
	}
	if old.Listen.Web != cfg.Listen.Web {
		warnings = append(warnings, config.Problem{Key: "listen.web", Msg: "changed in the config, but the web listener stays as it is until the next restart"})
	}
	tuneGC(cfg)
	r.in.SetConfig(cfg)
	r.svc.SetConfig(cfg)
	r.worker.SetConfig(cfg)
	if r.api != nil && cfg.Admin.TokenFile != "" {
		if token, err := admin.ReadToken(cfg.Admin.TokenFile); err == nil {
			r.api.SetToken(token)
		}
	}
	r.logger.Info("config reloaded", "config", r.path)
	warnings = append(warnings, cfg.Warnings()...)
	logWarnings(r.logger, warnings)
	return warnings, nil
}

// logWarnings logs what check-config warns of, so that a journal shows it at every start and
// reload, for as long as the config says it.
func logWarnings(logger *slog.Logger, warnings []config.Problem) {
	for _, w := range warnings {
		logger.Warn(w.Msg, "key", w.Key)
	}
}
