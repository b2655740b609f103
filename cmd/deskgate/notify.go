package main

import (
	"fmt"
	"log/slog"
	"time"

	"github.com/coreos/go-systemd/v22/daemon"
	"golang.org/x/sys/unix"

	"github.com/deskgate/deskgate/store"
)

// systemd is told what the daemon is doing (sd_notify), so that the unit can be Type=notify:
// `systemctl start` returns once the listeners are up, and a watchdog restarts a daemon whose
// store stopped answering. Without $NOTIFY_SOCKET every call is a no-op.

func notifyReady(status string) {
	daemon.SdNotify(false, daemon.SdNotifyReady+"\nSTATUS="+status)
}

// notifyReloading is sent before a reload, with the time systemd needs to match it to the
// READY=1 that ends it.
func notifyReloading() {
	var ts unix.Timespec
	unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts)
	daemon.SdNotify(false, fmt.Sprintf("%s\nMONOTONIC_USEC=%d", daemon.SdNotifyReloading, ts.Nano()/1000))
}

func notifyStopping() {
	daemon.SdNotify(false, daemon.SdNotifyStopping+"\nSTATUS=draining sessions")
}

// watchdog pings systemd at half of WatchdogSec for as long as the store is not wedged, and
// stops pinging when it is, so that systemd restarts a daemon that hangs on its disk. Which
// failures a restart would mend is the store's to say (a database that does not answer is not
// one of them: the daemon answers 451 and reconnects by itself).
func watchdog(st *store.Store, logger *slog.Logger, stop <-chan struct{}) {
	interval, err := daemon.SdWatchdogEnabled(false)
	if err != nil || interval <= 0 {
		return
	}
	tick := time.NewTicker(interval / 2)
	defer tick.Stop()
	for {
		select {
		case <-stop:
			return
		case <-tick.C:
			if err := st.Wedged(); err != nil {
				logger.Error("store does not answer; not pinging the watchdog", "err", err)
				continue
			}
			daemon.SdNotify(false, daemon.SdNotifyWatchdog)
		}
	}
}
