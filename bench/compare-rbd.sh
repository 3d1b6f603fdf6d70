#!/usr/bin/env bash
# Side-by-side benchmark on Ceph RBD: rbdgw and Debian's tgtd with tgt-rbd
# serving images of a throwaway micro cluster (ceph/micro-cluster.sh,
# memstore in RAM, started and stopped by this script), driven alternately
# by `qemu-img bench` over iscsi://, against direct librbd as the ceiling.
# Not pass/fail: it prints, per workload, the median IOPS and MB/s of each
# peer, the CPU seconds each burnt, the ratios rbdgw/peer with their
# spread, and whether rbdgw meets issue 3's bar.
#
# Peers (PEERS, any subset, in this order of columns):
#   rbdgw     rbdgw serving an rbd: LUN (write_cache false: librbd's cache
#             off, an acknowledged write is on the OSD)
#   tgt-rbd   tgtd --bstype rbd (Debian's bs_rbd.so, synchronous librbd
#             calls on its worker threads), pointed at our conf by bsopts
#   librbd    fio's rbd engine: librbd in-process, the ceiling
#   qemu-rbd  qemu-img bench on rbd: (librbd in-process through the very
#             tool that drives the iSCSI peers): separates the initiator
#             tool's own cost from the gateway's
# Every client runs with rbd_cache false (the cluster conf says so; qemu-img
# -t none sets it too). CPU seconds: the serving daemon for the iSCSI
# peers, the client process itself (fio, qemu-img) for the librbd ones;
# "+ini" adds the initiator's (qemu-img's) for the iSCSI peers, so it is
# what each way of reaching the image costs the machine (the OSD aside).
#
# I/O pattern: 4K workloads are random for fio (randread/randwrite);
# qemu-img bench has no random mode, so its offsets advance by a stride of
# about 0.618 of the image (an odd number of blocks: with a power-of-two
# image every block is visited once per cycle), which scatters consecutive
# requests over the image's objects as random I/O does. 1M workloads are
# sequential for every peer. Images are prefilled, so reads hit data.
#
#   REPS=3            repetitions of each workload (median reported)
#   SIZE_MB=1024      size of each image (three images: rbdgw, tgt-rbd,
#                     and one the two librbd peers share)
#   SCALE=1           multiply the I/O counts (longer runs; 0.1: a smoke run)
#   PEERS="rbdgw tgt-rbd librbd"  (qemu-rbd: add it for the fourth column)
#   RBDGW_BIN=bin/rbdgw
#   MEMSTORE_BYTES    the OSD's capacity; default fits three images with
#                     memstore's overhead (it holds about 2-3x the bytes
#                     written, in RAM)
#
# Only processes this script started are stopped, by PID (the cluster's
# by micro-cluster.sh stop, from its pid file).
set -euo pipefail

REPS=${REPS:-3}
SIZE_MB=${SIZE_MB:-1024}
SCALE=${SCALE:-1}
PEERS=${PEERS:-rbdgw tgt-rbd librbd}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
RBDGW_BIN=${RBDGW_BIN:-$ROOT/bin/rbdgw}
MEMSTORE_BYTES=${MEMSTORE_BYTES:-$(((9 * SIZE_MB + 1024) << 20))}
IQN_R=iqn.2026-01.io.rbdgw.bench:rbdgw
IQN_T=iqn.2026-01.io.rbdgw.bench:tgt-rbd
IMG_R=bench-rbdgw IMG_T=bench-tgt IMG_L=bench-librbd
. "$ROOT/bench/lib.sh"

has_peer() { case " $PEERS " in *" $1 "*) return 0 ;; esac; return 1; }

bench_need qemu-img iscsi-inq rbd ceph-osd fio
if has_peer tgt-rbd; then
	bench_need tgtd tgtadm
	[ -e /usr/lib/tgt/backing-store/bs_rbd.so ] || { echo "bench: tgt-rbd missing (apt-get install tgt-rbd)"; exit 1; }
fi
! has_peer rbdgw || [ -x "$RBDGW_BIN" ] || { echo "bench: $RBDGW_BIN missing (make build)"; exit 1; }

bench_init rbdgw-bench-rbd
CEPH_DIR=$WORK/ceph
stop_cluster() { [ -f "$CEPH_DIR/pids" ] && "$ROOT/ceph/micro-cluster.sh" stop "$CEPH_DIR"; }
# After the daemons: a client of a dead cluster waits for its timeouts.
CLEANUP_LAST+=(stop_cluster)

echo "bench: work dir $WORK, ${SIZE_MB} MiB images, $REPS repetitions, peers: $PEERS"
MEMSTORE_BYTES=$MEMSTORE_BYTES "$ROOT/ceph/micro-cluster.sh" start "$CEPH_DIR" >"$WORK/cluster.out" 2>&1 ||
	{ cat "$WORK/cluster.out"; exit 1; }
CONF=$CEPH_DIR/ceph.conf
export CEPH_CONF=$CONF # fio's rbd engine and the rbd CLI read it

# A fully written image: reads reach data, writes overwrite objects that
# exist (as on a disk in use).
make_image() {
	rbd create --size "${SIZE_MB}M" "rbd/$1"
	rbd bench --io-type write --io-size 4M --io-threads 8 --io-total "${SIZE_MB}M" --io-pattern seq "rbd/$1" >/dev/null
}
has_peer rbdgw && make_image "$IMG_R"
has_peer tgt-rbd && make_image "$IMG_T"
{ has_peer librbd || has_peer qemu-rbd; } && make_image "$IMG_L"

serve_rbdgw() {
	PORT_R=$(free_port)
	cat >"$WORK/rbdgw.json" <<EOF
{
  "portals": ["127.0.0.1:$PORT_R"],
  "data_dir": "$WORK/rbdgw-data",
  "ceph": {"conf": "$CONF"},
  "disks": [{"name": "bench", "backend": "rbd:rbd/$IMG_R", "size": "${SIZE_MB}M", "write_cache": false}],
  "targets": [{"iqn": "$IQN_R", "acl": "open", "luns": [{"lun_id": 0, "disk": "bench"}]}]
}
EOF
	start_rbdgw "$WORK/rbdgw.json" "$PORT_R"
	URL_R="iscsi://127.0.0.1:$PORT_R/$IQN_R/0"
	inquire "$URL_R" rbdgw
}

serve_tgt_rbd() {
	start_tgtd
	tgt_adm --mode target --op new --tid 1 -T "$IQN_T"
	tgt_adm --mode logicalunit --op new --tid 1 --lun 1 --bstype rbd -b "rbd/$IMG_T" --bsopts "conf=$CONF"
	tgt_adm --mode target --op bind --tid 1 -I ALL
	URL_T="iscsi://127.0.0.1:$PORT_T/$IQN_T/1"
	inquire "$URL_T" tgt-rbd
}

PID_R=0 PID_T=0
has_peer rbdgw && serve_rbdgw
has_peer tgt-rbd && serve_tgt_rbd

# The stride for "random" qemu-img runs: an odd number of 4 KiB blocks
# near the golden ratio of the image.
BLOCKS=$((SIZE_MB * 256))
STRIDE=$(((BLOCKS * 618 / 1000) | 1))
STEP_RAND=$((STRIDE * 4096))

# scaled N: N times SCALE, at least 1 (SCALE=0.1 is a quick smoke run).
scaled() { awk -v n="$1" -v s="$SCALE" 'BEGIN {c = int(n * s); print (c < 1 ? 1 : c)}'; }

# name  block-size  depth  count  write?  pattern
WORKLOADS=(
	"4k-qd1-read   4096    1  $(scaled 10000) 0 rand"
	"4k-qd1-write  4096    1  $(scaled 5000)  1 rand"
	"4k-qd32-read  4096    32 $(scaled 40000) 0 rand"
	"4k-qd32-write 4096    32 $(scaled 20000) 1 rand"
	"1m-qd16-read  1048576 16 $(scaled 2000)  0 seq"
	"1m-qd16-write 1048576 16 $(scaled 1000)  1 seq"
)

# fio_librbd BS DEPTH COUNT WRITE PATTERN -> "seconds cpu_ticks
# client_ticks" as qemu_bench prints: fio's own runtime (setup excluded)
# and the CPU of the fio processes, which are target and client at once.
fio_librbd() {
	local bs=$1 depth=$2 count=$3 write=$4 pattern=$5 rw out secs ticks
	case $pattern$write in
	rand0) rw=randread ;; rand1) rw=randwrite ;; seq0) rw=read ;; *) rw=write ;;
	esac
	out=$(
		fio --name=librbd --ioengine=rbd --clientname=admin --pool=rbd --rbdname="$IMG_L" \
			--rw="$rw" --bs="$bs" --iodepth="$depth" --io_size=$((count * bs)) --size="${SIZE_MB}M" \
			--norandommap --output-format=terse --terse-version=3 2>"$WORK/fio.err"
		rc=$?
		times
		exit $rc
	) || { echo "bench: fio failed: $(cat "$WORK/fio.err")" >&2; echo "nan 0 0"; return; }
	# terse v3: field 9 is the read runtime (ms), 50 the write runtime.
	secs=$(echo "$out" | awk -F';' 'NF > 50 {print ($9 + $50) / 1000}')
	ticks=$(echo "$out" | tail -n 1 | children_ticks)
	echo "${secs:-nan} $ticks $ticks"
}

# one PEER NAME BS DEPTH COUNT WRITE PATTERN -> "seconds cpu_ticks
# client_ticks"
one() {
	local peer=$1 bs=$3 depth=$4 count=$5 write=$6 pattern=$7 step=""
	[ "$pattern" = rand ] && step=$STEP_RAND
	case $peer in
	rbdgw) qemu_bench "$URL_R" "$PID_R" "$bs" "$depth" "$count" "$write" $step ;;
	tgt-rbd) qemu_bench "$URL_T" "$PID_T" "$bs" "$depth" "$count" "$write" $step ;;
	qemu-rbd) qemu_bench "rbd:rbd/$IMG_L:conf=$CONF" "" "$bs" "$depth" "$count" "$write" $step ;;
	librbd) fio_librbd "$bs" "$depth" "$count" "$write" "$pattern" ;;
	esac
}

ALL=(rbdgw tgt-rbd librbd qemu-rbd)
ORDER=()
for p in "${ALL[@]}"; do has_peer "$p" && ORDER+=("$p"); done
REVERSED=()
for ((i = ${#ORDER[@]} - 1; i >= 0; i--)); do REVERSED+=("${ORDER[i]}"); done

declare -A IOPS MBS CPU ALLCPU
for w in "${WORKLOADS[@]}"; do
	read -r name bs depth count write pattern <<<"$w"
	for rep in $(seq 1 "$REPS"); do
		# Alternate which peer goes first.
		if [ $((rep % 2)) = 1 ]; then order=("${ORDER[@]}"); else order=("${REVERSED[@]}"); fi
		for peer in "${order[@]}"; do
			r=$(one "$peer" "$name" "$bs" "$depth" "$count" "$write" "$pattern")
			echo "$r" >>"$WORK/$name.$peer" # line N: repetition N
			progress "$name" "$rep" "$peer" "$r"
		done
	done
	for peer in "${ORDER[@]}"; do
		read -r "IOPS[$name.$peer]" "MBS[$name.$peer]" "CPU[$name.$peer]" client <<<"$(summarize_runs "$WORK/$name.$peer" "$count" "$bs")"
		case $peer in
		rbdgw | tgt-rbd) ALLCPU[$name.$peer]=$(awk -v a="${CPU[$name.$peer]}" -v b="$client" 'BEGIN {printf "%.2f", a + b}') ;;
		*) ALLCPU[$name.$peer]=${CPU[$name.$peer]} ;;
		esac
	done
done

# rep_ratios NAME PEER: "min-max" of rbdgw/PEER IOPS over the repetitions
# (each repetition ran both, next to each other).
rep_ratios() {
	[ -s "$WORK/$1.rbdgw" ] && [ -s "$WORK/$1.$2" ] || { echo "-"; return; }
	awk 'NR == FNR {r[FNR] = $1; next} r[FNR] + 0 > 0 && $1 + 0 > 0 {printf "%.2f\n", $1 / r[FNR]}' "$WORK/$1.rbdgw" "$WORK/$1.$2" | spread
}

# iops_spread NAME PEER: "min-max" IOPS over the repetitions.
iops_spread() {
	awk -v c="$3" '$1 + 0 > 0 {printf "%.0f\n", c / $1}' "$WORK/$1.$2" | spread
}

echo
echo "${SIZE_MB} MiB RBD images on a memstore micro cluster, rbd_cache off; median of $REPS alternating runs (IOPS range over the runs; CPU: total seconds over all runs, +ini: with the initiator's)"
printf '%-14s' workload
for peer in "${ORDER[@]}"; do printf ' | %-8s %6s %7s %6s %6s %13s' "$peer" IOPS MB/s "CPU s" "+ini" range; done
echo
for w in "${WORKLOADS[@]}"; do
	read -r name _ _ count _ <<<"$w"
	printf '%-14s' "$name"
	for peer in "${ORDER[@]}"; do
		printf ' | %-8s %6s %7s %6s %6s %13s' "" "${IOPS[$name.$peer]}" "${MBS[$name.$peer]}" "${CPU[$name.$peer]}" "${ALLCPU[$name.$peer]}" "$(iops_spread "$name" "$peer" "$count")"
	done
	echo
done

has_peer rbdgw || exit 0
# Issue 3's bar: >= 0.85x direct librbd everywhere, ahead of tgt-rbd
# everywhere, >= 1.5x tgt-rbd on 1M sequential.
echo
echo "rbdgw/peer IOPS: ratio of medians (range of the per-run ratios); bar: >= 0.85x librbd, > 1x tgt-rbd, >= 1.5x tgt-rbd on 1M"
printf '%-14s' workload
for peer in "${ORDER[@]}"; do [ "$peer" = rbdgw ] || printf ' | %-8s %5s %11s' "$peer" x range; done
printf ' | %s\n' bar
for w in "${WORKLOADS[@]}"; do
	read -r name bs _ <<<"$w"
	printf '%-14s' "$name"
	verdict=ok
	for peer in "${ORDER[@]}"; do
		[ "$peer" = rbdgw ] && continue
		x=$(ratio "${IOPS[$name.rbdgw]}" "${IOPS[$name.$peer]}")
		printf ' | %-8s %5s %11s' "" "$x" "$(rep_ratios "$name" "$peer")"
		want=""
		case $peer in
		librbd) want=0.85 ;;
		tgt-rbd) want=1.0001; [ "$bs" -ge 1048576 ] && want=1.5 ;;
		esac
		[ -n "$want" ] && awk -v x="$x" -v w="$want" 'BEGIN {exit !(x == "-" || x + 0 < w + 0)}' && verdict=MISS
	done
	printf ' | %s\n' "$verdict"
done
