#!/bin/sh
# First install: the data directory and the admin API's token. Upgrades keep both.
set -e
install -d -m 0750 -o deskgate -g deskgate /var/lib/deskgate
chown root:deskgate /etc/deskgate /etc/deskgate/deskgate.yaml
chmod 0750 /etc/deskgate
chmod 0640 /etc/deskgate/deskgate.yaml
if [ ! -e /etc/deskgate/admin.token ]; then
	umask 077
	head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n' > /etc/deskgate/admin.token
	chown root:deskgate /etc/deskgate/admin.token
	chmod 0640 /etc/deskgate/admin.token
fi
if [ -d /run/systemd/system ]; then
	systemctl daemon-reload >/dev/null 2>&1 || true
	# Running already (an upgrade): restart it on the new binary. A first install waits
	# for the operator to edit the config and `systemctl enable --now deskgate`.
	if systemctl is-active --quiet deskgate; then
		systemctl restart deskgate || true
	fi
fi
exit 0
