#!/bin/sh
# deskgate runs as its own system user; it is made before the files are unpacked, so that
# /etc/deskgate/deskgate.yaml and /var/lib/deskgate can belong to its group from the start.
set -e
if ! getent group deskgate >/dev/null; then
	groupadd --system deskgate
fi
if ! getent passwd deskgate >/dev/null; then
	useradd --system --gid deskgate --home-dir /var/lib/deskgate --no-create-home \
		--shell /usr/sbin/nologin --comment "deskgate mail gateway" deskgate
fi
exit 0
