#!/usr/bin/env bash
# Side-by-side benchmark: rbdgw and Debian's tgtd serving identical 1 GiB
# file-backed LUNs from a temp dir (page cache warm), driven alternately by
# `qemu-img bench` over iscsi://. Not pass/fail: it prints, per workload,
# the median IOPS and MB/s of each target, the CPU seconds each daemon
# burnt (utime+stime from /proc/PID/stat) and the ratio rbdgw/tgtd.
#
#   REPS=5            repetitions of each workload (median reported)
#   SIZE_MB=1024      LUN size
#   RBDGW_BIN=bin/rbdgw
#   SCALE=1           multiply the I/O counts (longer runs)
#   ONLY=rbdgw|tgtd   benchmark one target only
#   WRITE_CACHE=true  rbdgw's disk write_cache. tgtd's file backing store
#                     acknowledges writes from the page cache (fsync only
#                     on SYNCHRONIZE CACHE/FUA), so true compares like with
#                     like; false is rbdgw's durable default (fdatasync
#                     before GOOD) and shows what that costs.
#   DURABLE=1         also serve a second rbdgw LUN with write_cache false
#                     (the durable default) and report it in its own
#                     columns, so one run shows both; 0 skips it.
#
# Only processes this script started are stopped, by PID.
set -euo pipefail

REPS=${REPS:-5}
SIZE_MB=${SIZE_MB:-1024}
SCALE=${SCALE:-1}
ONLY=${ONLY:-}
WRITE_CACHE=${WRITE_CACHE:-true}
DURABLE=${DURABLE:-1}
[ "$ONLY" = tgtd ] && DURABLE=0
[ "$WRITE_CACHE" = false ] && DURABLE=0 # the main LUN is the durable one already
ROOT=$(cd "$(dirname "$0")/.." && pwd)
RBDGW_BIN=${RBDGW_BIN:-$ROOT/bin/rbdgw}
IQN_R=iqn.2026-01.io.rbdgw.bench:rbdgw
IQN_T=iqn.2026-01.io.rbdgw.bench:tgtd
. "$ROOT/bench/lib.sh"

bench_need qemu-img tgtd tgtadm iscsi-inq
[ "$ONLY" = tgtd ] || [ -x "$RBDGW_BIN" ] || { echo "bench: $RBDGW_BIN missing (make build)"; exit 1; }

bench_init rbdgw-bench

prefill() { # a non-sparse file, read once so the page cache holds it
	dd if=/dev/zero of="$1" bs=1M count="$SIZE_MB" conv=fsync status=none
	cat "$1" >/dev/null
}

echo "bench: work dir $WORK, ${SIZE_MB} MiB LUNs, $REPS repetitions"
[ "$ONLY" = tgtd ] || prefill "$WORK/rbdgw.img"
[ "$DURABLE" = 0 ] || prefill "$WORK/durable.img"
[ "$ONLY" = rbdgw ] || prefill "$WORK/tgtd.img"

serve_rbdgw() {
PORT_R=$(free_port)
local disks luns
disks='{"name": "bench", "backend": "file:'"$WORK"'/rbdgw.img", "size": "'"$SIZE_MB"'M", "write_cache": '"$WRITE_CACHE"'}'
luns='{"lun_id": 0, "disk": "bench"}'
if [ "$DURABLE" = 1 ]; then # LUN 1: a second disk with write_cache off
	disks+=', {"name": "durable", "backend": "file:'"$WORK"'/durable.img", "size": "'"$SIZE_MB"'M", "write_cache": false}'
	luns+=', {"lun_id": 1, "disk": "durable"}'
fi
cat >"$WORK/rbdgw.json" <<EOF
{
  "portals": ["127.0.0.1:$PORT_R"],
  "data_dir": "$WORK/rbdgw-data",
  "disks": [$disks],
  "targets": [{"iqn": "$IQN_R", "acl": "open", "luns": [$luns]}]
}
EOF
start_rbdgw "$WORK/rbdgw.json" "$PORT_R"
URL_R="iscsi://127.0.0.1:$PORT_R/$IQN_R/0"
URL_D="iscsi://127.0.0.1:$PORT_R/$IQN_R/1"
inquire "$URL_R" rbdgw
[ "$DURABLE" = 0 ] || inquire "$URL_D" rbdgw
}

serve_tgtd() {
start_tgtd
tgt_adm --mode target --op new --tid 1 -T "$IQN_T"
tgt_adm --mode logicalunit --op new --tid 1 --lun 1 -b "$WORK/tgtd.img"
tgt_adm --mode target --op bind --tid 1 -I ALL
URL_T="iscsi://127.0.0.1:$PORT_T/$IQN_T/1"
inquire "$URL_T" tgtd
}

PID_R=0 PID_T=0
[ "$ONLY" = tgtd ] || serve_rbdgw
[ "$ONLY" = rbdgw ] || serve_tgtd

# name  block-size  depth  count  write?
WORKLOADS=(
	"4k-qd1-read   4096    1  $((20000 * SCALE))  0"
	"4k-qd1-write  4096    1  $((20000 * SCALE))  1"
	"4k-qd32-read  4096   32  $((100000 * SCALE)) 0"
	"4k-qd32-write 4096   32  $((100000 * SCALE)) 1"
	"1m-qd32-read  1048576 32 $((3000 * SCALE))   0"
	"1m-qd32-write 1048576 32 $((3000 * SCALE))   1"
)

declare -A IOPS MBS CPU
for w in "${WORKLOADS[@]}"; do
	read -r name bs depth count write <<<"$w"
	: >"$WORK/$name.rbdgw"
	: >"$WORK/$name.tgtd"
	: >"$WORK/$name.durable"
	for rep in $(seq 1 "$REPS"); do
		# Alternate which target goes first.
		if [ $((rep % 2)) = 1 ]; then order="rbdgw tgtd durable"; else order="durable tgtd rbdgw"; fi
		for tgt in $order; do
			[ "$tgt" = durable ] && { [ "$DURABLE" = 1 ] || continue; }
			[ -n "$ONLY" ] && [ "$ONLY" != "${tgt/durable/rbdgw}" ] && continue
			case $tgt in
			rbdgw) r=$(qemu_bench "$URL_R" "$PID_R" "$bs" "$depth" "$count" "$write") ;;
			durable) r=$(qemu_bench "$URL_D" "$PID_R" "$bs" "$depth" "$count" "$write") ;;
			*) r=$(qemu_bench "$URL_T" "$PID_T" "$bs" "$depth" "$count" "$write") ;;
			esac
			echo "$r" >>"$WORK/$name.$tgt"
			progress "$name" "$rep" "$tgt" "$r"
		done
	done
	for tgt in rbdgw tgtd durable; do
		[ -s "$WORK/$name.$tgt" ] || { IOPS[$name.$tgt]=nan MBS[$name.$tgt]=nan CPU[$name.$tgt]=nan; continue; }
		read -r "IOPS[$name.$tgt]" "MBS[$name.$tgt]" "CPU[$name.$tgt]" _ <<<"$(summarize_runs "$WORK/$name.$tgt" "$count" "$bs")"
	done
done

echo
echo "qemu-img bench over iscsi://, ${SIZE_MB} MiB file-backed LUNs, median of $REPS (CPU: total seconds over all reps); rbdgw write_cache=$WRITE_CACHE"
printf '%-14s | %10s %9s %8s | %9s %9s %8s | %6s %6s\n' workload "rbdgw IOPS" "MB/s" "CPU s" "tgtd IOPS" "MB/s" "CPU s" "IOPS x" "CPU x"
printf '%s\n' "---------------+-------------------------------+-------------------------------+--------------"
for w in "${WORKLOADS[@]}"; do
	read -r name _ <<<"$w"
	printf '%-14s | %10s %9s %8s | %9s %9s %8s | %6s %6s\n' "$name" \
		"${IOPS[$name.rbdgw]}" "${MBS[$name.rbdgw]}" "${CPU[$name.rbdgw]}" \
		"${IOPS[$name.tgtd]}" "${MBS[$name.tgtd]}" "${CPU[$name.tgtd]}" \
		"$(ratio "${IOPS[$name.rbdgw]}" "${IOPS[$name.tgtd]}")" "$(ratio "${CPU[$name.rbdgw]}" "${CPU[$name.tgtd]}")"
done
echo "(IOPS x and CPU x are rbdgw/tgtd: higher IOPS x is better, lower CPU x is better)"
if [ "$DURABLE" = 1 ]; then
	echo
	echo "rbdgw with write_cache=false (durable default: FUA on every write, concurrent fdatasyncs shared), same runs"
	printf '%-14s | %10s %9s %8s | %6s %9s\n' workload "rbdgw IOPS" "MB/s" "CPU s" "IOPS x" "vs WCE=1"
	printf '%s\n' "---------------+-------------------------------+-----------------"
	for w in "${WORKLOADS[@]}"; do
		read -r name _ <<<"$w"
		printf '%-14s | %10s %9s %8s | %6s %9s\n' "$name" \
			"${IOPS[$name.durable]}" "${MBS[$name.durable]}" "${CPU[$name.durable]}" \
			"$(ratio "${IOPS[$name.durable]}" "${IOPS[$name.tgtd]}")" "$(ratio "${IOPS[$name.durable]}" "${IOPS[$name.rbdgw]}")"
	done
	echo "(IOPS x is durable rbdgw/tgtd; vs WCE=1 is durable/write-cached rbdgw)"
fi
