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
TICK=$(getconf CLK_TCK)

for tool in qemu-img tgtd tgtadm iscsi-inq; do
	command -v "$tool" >/dev/null || { echo "bench: $tool missing (make deps)"; exit 1; }
done
[ "$ONLY" = tgtd ] || [ -x "$RBDGW_BIN" ] || { echo "bench: $RBDGW_BIN missing (make build)"; exit 1; }

WORK=$(mktemp -d /tmp/rbdgw-bench.XXXXXX)
PIDS=()
cleanup() {
	local p
	# tgtd ignores SIGTERM while it has targets; ask it through its socket.
	[ -n "${CTL_T:-}" ] && tgtadm -C "$CTL_T" --mode system --op delete --force >/dev/null 2>&1 || true
	for p in "${PIDS[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
	for _ in 1 2 3 4 5 6 7 8 9 10; do
		local alive=0
		for p in "${PIDS[@]}"; do kill -0 "$p" 2>/dev/null && alive=1; done
		[ $alive = 0 ] && break
		sleep 0.5
	done
	for p in "${PIDS[@]}"; do kill -KILL "$p" 2>/dev/null || true; done
	rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# A port on 127.0.0.1 nobody listens on right now.
free_port() {
	local p
	while :; do
		p=$((20000 + RANDOM % 20000))
		if ! (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then
			echo "$p"
			return
		fi
	done
}

wait_port() {
	local port=$1 pid=$2
	for _ in $(seq 1 200); do
		kill -0 "$pid" 2>/dev/null || { echo "bench: pid $pid exited; see $WORK/*.log"; tail -n 20 "$WORK"/*.log; exit 1; }
		(exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && return 0
		sleep 0.1
	done
	echo "bench: nothing listens on 127.0.0.1:$port"; exit 1
}

cpu_ticks() { # utime+stime of a process, in clock ticks
	local s
	s=$(cat "/proc/$1/stat")
	s=${s##*) }
	# after "comm) ": state is field 3, utime 14, stime 15
	echo "$s" | awk '{print $12 + $13}'
}

prefill() { # a non-sparse file, read once so the page cache holds it
	dd if=/dev/zero of="$1" bs=1M count="$SIZE_MB" conv=fsync status=none
	cat "$1" >/dev/null
}

echo "bench: work dir $WORK, ${SIZE_MB} MiB LUNs, $REPS repetitions"
[ "$ONLY" = tgtd ] || prefill "$WORK/rbdgw.img"
[ "$DURABLE" = 0 ] || prefill "$WORK/durable.img"
[ "$ONLY" = rbdgw ] || prefill "$WORK/tgtd.img"

start_rbdgw() {
# A private copy: a concurrent `make build` must not swap the binary under us.
cp "$RBDGW_BIN" "$WORK/rbdgw"
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
  "targets": [{"iqn": "$IQN_R", "luns": [$luns]}]
}
EOF
mkdir -p "$WORK/rbdgw-data"
"$WORK/rbdgw" serve --config "$WORK/rbdgw.json" --data-dir "$WORK/rbdgw-data" --portal "127.0.0.1:$PORT_R" >"$WORK/rbdgw.log" 2>&1 &
PID_R=$!
disown "$PID_R"
PIDS+=("$PID_R")
wait_port "$PORT_R" "$PID_R"
URL_R="iscsi://127.0.0.1:$PORT_R/$IQN_R/0"
URL_D="iscsi://127.0.0.1:$PORT_R/$IQN_R/1"
iscsi-inq "$URL_R" >/dev/null || { echo "bench: rbdgw does not answer INQUIRY at $URL_R"; exit 1; }
[ "$DURABLE" = 0 ] || iscsi-inq "$URL_D" >/dev/null || { echo "bench: rbdgw does not answer INQUIRY at $URL_D"; tail -n 20 "$WORK/rbdgw.log"; exit 1; }
}

# tgtd gets its own control socket so no system tgtd is touched.
start_tgtd() {
PORT_T=$(free_port)
CTL_T=$((PORT_T + 1))
tgtd -f -C "$CTL_T" --iscsi "portal=127.0.0.1:$PORT_T" >"$WORK/tgtd.log" 2>&1 &
PID_T=$!
disown "$PID_T"
PIDS+=("$PID_T")
wait_port "$PORT_T" "$PID_T"
adm() { tgtadm -C "$CTL_T" --lld iscsi "$@"; }
for _ in $(seq 1 50); do adm --mode target --op show >/dev/null 2>&1 && break; sleep 0.1; done
adm --mode target --op new --tid 1 -T "$IQN_T"
adm --mode logicalunit --op new --tid 1 --lun 1 -b "$WORK/tgtd.img"
adm --mode target --op bind --tid 1 -I ALL
URL_T="iscsi://127.0.0.1:$PORT_T/$IQN_T/1"
iscsi-inq "$URL_T" >/dev/null || { echo "bench: tgtd does not answer INQUIRY at $URL_T"; exit 1; }
}

PID_R=0 PID_T=0
[ "$ONLY" = tgtd ] || start_rbdgw
[ "$ONLY" = rbdgw ] || start_tgtd

# name  block-size  depth  count  write?
WORKLOADS=(
	"4k-qd1-read   4096    1  $((20000 * SCALE))  0"
	"4k-qd1-write  4096    1  $((20000 * SCALE))  1"
	"4k-qd32-read  4096   32  $((100000 * SCALE)) 0"
	"4k-qd32-write 4096   32  $((100000 * SCALE)) 1"
	"1m-qd32-read  1048576 32 $((3000 * SCALE))   0"
	"1m-qd32-write 1048576 32 $((3000 * SCALE))   1"
)

# run_one URL PID bs depth count write -> "seconds cpu_ticks"
run_one() {
	local url=$1 pid=$2 bs=$3 depth=$4 count=$5 write=$6 out secs t0 t1
	local args=(bench -f raw -t none -d "$depth" -c "$count" -s "$bs")
	[ "$write" = 1 ] && args+=(-w)
	t0=$(cpu_ticks "$pid")
	out=$(qemu-img "${args[@]}" "$url" 2>&1) || { echo "bench: qemu-img ${args[*]} $url failed: $out" >&2; echo "nan 0"; return; }
	t1=$(cpu_ticks "$pid")
	secs=$(echo "$out" | sed -n 's/^Run completed in \([0-9.]*\) seconds.*/\1/p')
	echo "${secs:-nan} $((t1 - t0))"
}

median() { sort -g | awk '{a[NR]=$1} END {if (NR==0) print "nan"; else if (NR%2) print a[(NR+1)/2]; else print (a[NR/2]+a[NR/2+1])/2}'; }

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
			rbdgw) r=$(run_one "$URL_R" "$PID_R" "$bs" "$depth" "$count" "$write") ;;
			durable) r=$(run_one "$URL_D" "$PID_R" "$bs" "$depth" "$count" "$write") ;;
			*) r=$(run_one "$URL_T" "$PID_T" "$bs" "$depth" "$count" "$write") ;;
			esac
			echo "$r" >>"$WORK/$name.$tgt"
			printf '  %-14s rep %d %-6s %s s, %s CPU ticks\n' "$name" "$rep" "$tgt" ${r% *} ${r#* } >&2
		done
	done
	for tgt in rbdgw tgtd durable; do
		[ -s "$WORK/$name.$tgt" ] || { IOPS[$name.$tgt]=nan MBS[$name.$tgt]=nan CPU[$name.$tgt]=nan; continue; }
		secs=$(awk '{print $1}' "$WORK/$name.$tgt" | median)
		IOPS[$name.$tgt]=$(awk -v c="$count" -v s="$secs" 'BEGIN {if (s+0 > 0) printf "%.0f", c / s; else print "nan"}')
		MBS[$name.$tgt]=$(awk -v c="$count" -v b="$bs" -v s="$secs" 'BEGIN {if (s+0 > 0) printf "%.1f", c * b / s / 1e6; else print "nan"}')
		CPU[$name.$tgt]=$(awk -v t="$TICK" '{s += $2} END {printf "%.2f", s / t}' "$WORK/$name.$tgt")
	done
done

ratio() { awk -v a="$1" -v b="$2" 'BEGIN {if (b+0 > 0 && a != "nan") printf "%.2f", a / b; else print "-"}'; }

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
