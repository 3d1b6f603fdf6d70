#!/bin/bash
# micro-cluster.sh: a throwaway single-node Ceph (one mon, one memstore OSD,
# no mgr) bound to 127.0.0.1, for tests of the librbd backend.
#
#   ceph/micro-cluster.sh start DIR [--cephx]   prints CEPH_CONF=DIR/ceph.conf
#   ceph/micro-cluster.sh stop DIR
#
# Everything (config, keyring, mon store, run dir, pid files, logs, admin
# sockets) lives under DIR. The daemons' PIDs are recorded in DIR/pids;
# stop ends exactly those (OSD before mon) and removes nothing.
# It installs nothing: run ceph/install-deps.sh first.
#
# The OSD keeps data in RAM (memstore, about 3x the bytes written, capacity
# MEMSTORE_BYTES, default 4 GiB). Without a mgr some commands (ceph df,
# rados df, ceph pg stat) hang, so every ceph call here has a timeout.
set -euo pipefail

CALL_TIMEOUT=${CALL_TIMEOUT:-20}     # seconds per ceph CLI call
READY_TIMEOUT=${READY_TIMEOUT:-90}   # seconds for the whole start
MEMSTORE_BYTES=${MEMSTORE_BYTES:-4294967296}

die() { echo "micro-cluster: $*" >&2; exit 1; }

usage() { die "usage: $0 start DIR [--cephx] | stop DIR"; }

# free_port prints a TCP port on 127.0.0.1 that nothing listens on and that
# is not in the list of ports given as arguments.
free_port() {
	local p i
	for i in $(seq 1 200); do
		p=$((20000 + RANDOM % 40000))
		case " $* " in *" $p "*) continue ;; esac
		if ! ss -Hltn "sport = :$p" | grep -q .; then
			echo "$p"
			return 0
		fi
	done
	die "no free port found"
}

# ceph_cli runs one ceph command with the cluster's conf and a timeout.
ceph_cli() {
	timeout "$CALL_TIMEOUT" ceph -c "$CONF" --connect-timeout "$CALL_TIMEOUT" "$@"
}

# alive PID reports whether the process exists and is not a zombie.
alive() {
	local st
	st=$(ps -o stat= -p "$1" 2>/dev/null) || return 1
	[[ -n $st && $st != Z* ]]
}

start() {
	local dir=$1 cephx=$2
	command -v ceph-mon >/dev/null && command -v ceph-osd >/dev/null && command -v rbd >/dev/null ||
		die "Ceph is not installed; run ceph/install-deps.sh"
	mkdir -p "$dir"
	dir=$(cd "$dir" && pwd)
	CONF=$dir/ceph.conf
	if [[ -s $dir/pids ]]; then
		local pid
		for pid in $(cut -d' ' -f2 "$dir/pids"); do
			alive "$pid" && die "$dir already has a running cluster (pid $pid); stop it first"
		done
	fi
	[[ -e $dir/mon ]] && die "$dir holds an old cluster's data; use an empty directory"
	local t0=$SECONDS
	mkdir -p "$dir/run" "$dir/log" "$dir/mon" "$dir/osd/ceph-0"
	: >"$dir/pids"

	local fsid osd_uuid p2 p1 auth
	fsid=$(uuidgen)
	osd_uuid=$(uuidgen)
	p2=$(free_port)
	p1=$(free_port "$p2")
	auth=none
	[[ $cephx == 1 ]] && auth=cephx
	local addrv="[v2:127.0.0.1:$p2,v1:127.0.0.1:$p1]"

	cat >"$CONF" <<EOF
[global]
fsid = $fsid
mon host = $addrv
auth cluster required = $auth
auth service required = $auth
auth client required = $auth
auth allow insecure global id reclaim = false
keyring = $dir/keyring
run dir = $dir/run
pid file = $dir/run/\$name.pid
admin socket = $dir/run/\$name.asok
log file = $dir/log/\$name.log
log to stderr = false
err to stderr = false
mon cluster log file = $dir/log/cluster.log
crash dir = $dir/crash
osd objectstore = memstore
memstore device bytes = $MEMSTORE_BYTES
osd pool default size = 1
osd pool default min size = 1
osd pool default pg num = 8
osd pool default pgp num = 8
osd pool default pg autoscale mode = off
osd crush chooseleaf type = 0
mon allow pool size one = true
mon allow pool delete = true
mon warn on pool no redundancy = false
client mount timeout = 30
rados mon op timeout = 30
rbd cache = false

[mon.a]
public addrv = $addrv
mon data = $dir/mon/ceph-a

[osd]
osd data = $dir/osd/ceph-\$id
public addr = 127.0.0.1
cluster addr = 127.0.0.1
osd max object name len = 256
osd max object namespace len = 64
EOF

	# One keyring for every entity; ceph-mon --mkfs imports it into the auth
	# database, so with --cephx the OSD and the admin client just work.
	ceph-authtool --create-keyring "$dir/keyring" --gen-key -n mon. --cap mon 'allow *' >/dev/null
	ceph-authtool "$dir/keyring" --gen-key -n client.admin \
		--cap mon 'allow *' --cap osd 'allow *' --cap mgr 'allow *' >/dev/null
	ceph-authtool "$dir/keyring" --gen-key -n osd.0 \
		--cap mon 'allow profile osd' --cap osd 'allow *' --cap mgr 'allow profile osd' >/dev/null

	monmaptool --create --fsid "$fsid" --addv a "$addrv" "$dir/monmap" >/dev/null
	ceph-mon -c "$CONF" --mkfs -i a --monmap "$dir/monmap" --keyring "$dir/keyring" \
		>"$dir/log/mon-mkfs.out" 2>&1 || { cat "$dir/log/mon-mkfs.out" >&2; die "ceph-mon --mkfs failed"; }

	ceph-mon -c "$CONF" -i a -f >"$dir/log/mon.a.out" 2>&1 &
	echo "mon.a $!" >>"$dir/pids"

	# ceph osd new blocks until the mon has quorum; retry briefly while it
	# binds.
	local id="" i
	for i in $(seq 1 10); do
		if id=$(ceph_cli osd new "$osd_uuid" 0 2>"$dir/log/osd-new.err"); then
			break
		fi
		sleep 1
	done
	[[ $id == 0 ]] || { cat "$dir/log/osd-new.err" >&2; die "ceph osd new failed (got '$id')"; }

	ceph-osd -c "$CONF" -i 0 --mkfs --osd-uuid "$osd_uuid" >"$dir/log/osd-mkfs.out" 2>&1 ||
		{ cat "$dir/log/osd-mkfs.out" >&2; die "ceph-osd --mkfs failed"; }
	ceph-osd -c "$CONF" -i 0 -f >"$dir/log/osd.0.out" 2>&1 &
	echo "osd.0 $!" >>"$dir/pids"

	ceph_cli osd pool create rbd 8 8 >/dev/null 2>&1 || die "pool create failed"
	timeout "$CALL_TIMEOUT" rbd -c "$CONF" pool init rbd || die "rbd pool init failed"

	# Ready means an image can be created and removed.
	local probe="micro-cluster-probe-$$"
	while :; do
		if timeout "$CALL_TIMEOUT" rbd -c "$CONF" create --size 1M "rbd/$probe" 2>/dev/null &&
			timeout "$CALL_TIMEOUT" rbd -c "$CONF" rm --no-progress "rbd/$probe" 2>/dev/null; then
			break
		fi
		((SECONDS - t0 < READY_TIMEOUT)) || die "cluster not ready after ${READY_TIMEOUT}s; logs in $dir/log"
		sleep 1
	done
	echo "micro-cluster: ready in $((SECONDS - t0))s (mon $addrv, auth $auth)" >&2
	echo "CEPH_CONF=$CONF"
}

stop() {
	local dir=$1
	[[ -f $dir/pids ]] || die "$dir/pids not found"
	local name pid order=(osd.0 mon.a)
	for want in "${order[@]}"; do
		while read -r name pid; do
			[[ $name == "$want" ]] || continue
			alive "$pid" || continue
			kill -TERM "$pid" 2>/dev/null || true
			local i
			for i in $(seq 1 100); do
				alive "$pid" || break
				sleep 0.1
			done
			if alive "$pid"; then
				kill -KILL "$pid" 2>/dev/null || true
			fi
			# Reap it if it is our child; otherwise wait until it is gone.
			wait "$pid" 2>/dev/null || true
			for i in $(seq 1 50); do
				alive "$pid" || break
				sleep 0.1
			done
		done <"$dir/pids"
	done
}

[[ $# -ge 2 ]] || usage
cmd=$1 dir=$2
shift 2
cephx=0
for a in "$@"; do
	case $a in
	--cephx) cephx=1 ;;
	*) usage ;;
	esac
done
case $cmd in
start) start "$dir" "$cephx" ;;
stop) stop "$dir" ;;
*) usage ;;
esac
