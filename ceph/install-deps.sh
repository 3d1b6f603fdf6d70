#!/bin/sh
# install-deps.sh installs the Debian 12 (Ceph 16 "pacific") packages that
# ceph/micro-cluster.sh and the librbd backend (rbdlun/rbd, cgo) need.
# Idempotent: does nothing when every package is already installed.
set -eu

# procps (ps) and iproute2 (ss): micro-cluster.sh checks daemons and free
# ports with them, and a minimal Debian image lacks both.
PKGS="ceph-mon ceph-osd ceph-common librbd-dev librados-dev uuid-runtime procps iproute2"

missing=""
for p in $PKGS; do
	if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
		missing="$missing $p"
	fi
done
[ -z "$missing" ] && exit 0

SUDO=""
[ "$(id -u)" -ne 0 ] && SUDO="sudo"
export DEBIAN_FRONTEND=noninteractive
echo "install-deps: installing$missing" >&2
# Quiet: the apt output goes to a log that is shown only on failure.
log=$(mktemp)
if ! { $SUDO apt-get update -qq && $SUDO apt-get install -y -qq --no-install-recommends $missing; } >"$log" 2>&1; then
	cat "$log" >&2
	rm -f "$log"
	exit 1
fi
rm -f "$log"
