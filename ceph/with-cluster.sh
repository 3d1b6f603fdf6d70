#!/bin/bash
# with-cluster.sh CMD [ARG...]: run CMD against a throwaway micro Ceph
# cluster (ceph/micro-cluster.sh) with RBDGW_CEPH_CONF naming its conf.
#
# The cluster lives in a fresh temporary directory and is stopped whatever
# happens: CMD's success or failure, a failed start, Ctrl-C or SIGTERM.
# The directory is removed after a success and kept (logs) after a
# failure. Exit status: CMD's, or 1 when the cluster did not start.
#
#   CEPHX=1        start the cluster with cephx authentication
#   KEEP_CEPH=1    keep the directory even after a success
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
dir=$(mktemp -d "${TMPDIR:-/tmp}/rbdgw-ceph-XXXXXX")

cleanup() {
	local rc=$?
	trap - EXIT INT TERM
	if [[ -f $dir/pids ]]; then
		bash "$here/micro-cluster.sh" stop "$dir" || echo "with-cluster: stopping the cluster in $dir failed" >&2
	fi
	if ((rc == 0)) && [[ -z ${KEEP_CEPH:-} ]]; then
		rm -rf "$dir"
	else
		echo "with-cluster: cluster files and logs kept in $dir" >&2
	fi
	exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

[[ $# -gt 0 ]] || { echo "usage: $0 CMD [ARG...]" >&2; exit 2; }

t0=$SECONDS
bash "$here/micro-cluster.sh" start "$dir" ${CEPHX:+--cephx} >/dev/null
echo "with-cluster: micro cluster up in $((SECONDS - t0))s ($dir)" >&2
export RBDGW_CEPH_CONF=$dir/ceph.conf

# CMD runs in a process group of its own, in the background: a trapped
# signal interrupts `wait` at once (it would wait for a foreground
# command to end first), and is passed on to all of CMD (go test and the
# test binary it runs) as SIGTERM, since background commands of a script
# ignore SIGINT.
t0=$SECONDS
setsid "$@" &
child=$!
stop_child() {
	kill -TERM -- -"$child" 2>/dev/null || kill -TERM "$child" 2>/dev/null || true
	wait "$child" 2>/dev/null || true
	echo "with-cluster: interrupted after $((SECONDS - t0))s" >&2
	exit "$1"
}
trap 'stop_child 130' INT
trap 'stop_child 143' TERM
set +e
wait "$child"
rc=$?
set -e
echo "with-cluster: '$*' took $((SECONDS - t0))s, exit $rc" >&2
exit "$rc"
