# bench/lib.sh: helpers the side-by-side benchmarks share (compare.sh,
# compare-rbd.sh). Source it; it defines functions and a few variables and
# starts nothing by itself.
#
# bench_init PREFIX creates $WORK and installs the EXIT trap. A script
# registers what it starts: daemon PIDs in PIDS (stopped by PID, never by
# name), and extra shutdown steps as functions named in CLEANUP_HOOKS (run
# first, in order) and CLEANUP_LAST (run once the PIDS are gone).

TICK=$(getconf CLK_TCK)
PIDS=()
CLEANUP_HOOKS=()
CLEANUP_LAST=()

# bench_need TOOL... exits unless every tool is on PATH.
bench_need() {
	local tool
	for tool in "$@"; do
		command -v "$tool" >/dev/null || { echo "bench: $tool missing (make deps)"; exit 1; }
	done
}

bench_init() {
	WORK=$(mktemp -d "/tmp/$1.XXXXXX")
	trap bench_cleanup EXIT
	trap 'exit 130' INT TERM
}

bench_cleanup() {
	local h p
	for h in "${CLEANUP_HOOKS[@]}"; do "$h" || true; done
	for p in "${PIDS[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
	for _ in 1 2 3 4 5 6 7 8 9 10; do
		local alive=0
		for p in "${PIDS[@]}"; do kill -0 "$p" 2>/dev/null && alive=1; done
		[ $alive = 0 ] && break
		sleep 0.5
	done
	for p in "${PIDS[@]}"; do kill -KILL "$p" 2>/dev/null || true; done
	for h in "${CLEANUP_LAST[@]}"; do "$h" || true; done
	rm -rf "$WORK"
}

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

median() { sort -g | awk '{a[NR]=$1} END {if (NR==0) print "nan"; else if (NR%2) print a[(NR+1)/2]; else print (a[NR/2]+a[NR/2+1])/2}'; }

# spread: "min-max" of a column of numbers.
spread() { sort -g | awk 'NR==1 {lo=$1} {hi=$1} END {if (NR==0) print "-"; else print lo "-" hi}'; }

# summarize_runs FILE COUNT BS -> "IOPS MB/s CPU_seconds CLIENT_CPU_seconds":
# the median IOPS and MB/s of the runs recorded in FILE, one a line as
# qemu_bench prints it, each run COUNT I/Os of BS bytes; CPU seconds of the
# target and of the client summed over the runs.
summarize_runs() {
	local file=$1 count=$2 bs=$3 secs
	secs=$(awk '{print $1}' "$file" | median)
	awk -v c="$count" -v b="$bs" -v s="$secs" -v t="$TICK" '{cpu += $2; client += $3} END {
		if (s + 0 > 0) printf "%.0f %.1f", c / s, c * b / s / 1e6; else printf "nan nan"
		printf " %.2f %.2f\n", cpu / t, client / t
	}' "$file"
}

# progress WORKLOAD REP WHO RESULT: one run's line on stderr.
progress() {
	local secs ticks
	read -r secs ticks _ <<<"$4"
	printf '  %-14s rep %d %-8s %s s, %s CPU ticks\n' "$1" "$2" "$3" "$secs" "$ticks" >&2
}

ratio() { awk -v a="$1" -v b="$2" 'BEGIN {if (b+0 > 0 && a != "nan") printf "%.2f", a / b; else print "-"}'; }

# children_ticks reads the second line of bash's `times` ("0m1.250s
# 0m0.310s": user and system time of the shell's finished children) and
# prints their sum in clock ticks.
children_ticks() {
	awk -v t="$TICK" '{
		s = 0
		for (i = 1; i <= 2; i++) { split($i, ms, /[ms]/); s += ms[1] * 60 + ms[2] }
		printf "%d", s * t + 0.5
	}'
}

# qemu_bench URL PID BS DEPTH COUNT WRITE [STEP] -> "seconds cpu_ticks
# client_ticks": one `qemu-img bench` run against a target, the CPU the
# target's process PID burnt meanwhile and qemu-img's own; with PID empty
# the target is in qemu-img (rbd:), so both are qemu-img's. STEP is the
# offset increment (default BS: sequential).
qemu_bench() {
	local url=$1 pid=$2 bs=$3 depth=$4 count=$5 write=$6 step=${7:-} out secs t0=0 t1=0 client
	local args=(bench -f raw -t none -d "$depth" -c "$count" -s "$bs")
	[ -n "$step" ] && args+=(-S "$step")
	[ "$write" = 1 ] && args+=(-w)
	[ -n "$pid" ] && t0=$(cpu_ticks "$pid")
	out=$(
		qemu-img "${args[@]}" "$url" 2>&1
		rc=$?
		times
		exit $rc
	) || { echo "bench: qemu-img ${args[*]} $url failed: $out" >&2; echo "nan 0 0"; return; }
	client=$(echo "$out" | tail -n 1 | children_ticks)
	if [ -n "$pid" ]; then
		t1=$(cpu_ticks "$pid")
	else
		t1=$client
	fi
	secs=$(echo "$out" | sed -n 's/^Run completed in \([0-9.]*\) seconds.*/\1/p')
	echo "${secs:-nan} $((t1 - t0)) $client"
}

# start_tgtd: a tgtd of our own on a free port with its own control port
# (-C), so no system tgtd or another engineer's is touched. Sets PORT_T,
# CTL_T, PID_T; tgt_adm runs tgtadm against it. bench_cleanup asks it to
# shut down first (it ignores SIGTERM while it has targets).
start_tgtd() {
	PORT_T=$(free_port)
	# tgtd takes control ports up to 32767 and makes its socket
	# /var/run/tgtd/socket.N: pick one nobody has.
	while :; do
		CTL_T=$((1024 + RANDOM % 31000))
		[ -e "/var/run/tgtd/socket.$CTL_T" ] || break
	done
	tgtd -f -C "$CTL_T" --iscsi "portal=127.0.0.1:$PORT_T" >"$WORK/tgtd.log" 2>&1 &
	PID_T=$!
	disown "$PID_T"
	PIDS+=("$PID_T")
	CLEANUP_HOOKS+=(stop_tgtd)
	wait_port "$PORT_T" "$PID_T"
	for _ in $(seq 1 50); do tgt_adm --mode target --op show >/dev/null 2>&1 && break; sleep 0.1; done
}

tgt_adm() { tgtadm -C "$CTL_T" --lld iscsi "$@"; }

stop_tgtd() { tgtadm -C "$CTL_T" --mode system --op delete --force >/dev/null 2>&1; }

# start_rbdgw CONFIG PORT: serve CONFIG from a private copy of $RBDGW_BIN
# (a concurrent `make build` must not swap the binary under us). Sets
# PID_R.
start_rbdgw() {
	local config=$1 port=$2
	cp "$RBDGW_BIN" "$WORK/rbdgw"
	mkdir -p "$WORK/rbdgw-data"
	# The images live in $WORK: that is the benchmark's image root.
	"$WORK/rbdgw" serve --config "$config" --data-dir "$WORK/rbdgw-data" --portal "127.0.0.1:$port" \
		--image-root "$WORK" >"$WORK/rbdgw.log" 2>&1 &
	PID_R=$!
	disown "$PID_R"
	PIDS+=("$PID_R")
	wait_port "$port" "$PID_R"
}

# inquire URL WHO fails the run unless the LUN answers INQUIRY.
inquire() {
	iscsi-inq "$1" >/dev/null 2>&1 || { echo "bench: $2 does not answer INQUIRY at $1"; tail -n 20 "$WORK"/*.log; exit 1; }
}
