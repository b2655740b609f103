#!/bin/sh
# On removal (not on upgrade) stop the daemon first: it lets messages in DATA finish.
set -e
case "$1" in
remove|0)
	if [ -d /run/systemd/system ]; then
		systemctl disable --now deskgate >/dev/null 2>&1 || true
	fi
	;;
esac
exit 0
