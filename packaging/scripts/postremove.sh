#!/bin/sh
# Removing the package keeps the tickets and the config; purging (dpkg --purge) deletes
# them. rpm has no purge: its erase keeps the data, to be deleted by hand.
set -e
case "$1" in
purge)
	rm -rf /var/lib/deskgate
	rm -f /etc/deskgate/admin.token
	rmdir /etc/deskgate 2>/dev/null || true
	;;
esac
if [ -d /run/systemd/system ]; then
	systemctl daemon-reload >/dev/null 2>&1 || true
fi
exit 0
