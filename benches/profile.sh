#!/usr/bin/env bash
# Where the CPU goes per byte, in both daemons (not a test: it asserts
# nothing). The unshaped two-path testbed of verify-cost.sh: loadgen sends
# from the LAN through gw-agent and mptcp-concentrator to a sink, 1 flow
# then 8, SECONDS each, once measured by counters and once sampled.
#
#   sudo benches/profile.sh [SECONDS]        default 5
#   RATE=100gbit (each path), FLOWS="1 8", AGENT_ARGS, CONC_ARGS,
#   CALLGRAPH=1 (perf record -g: perf report -i build/bench/perf-N.data -G)
#
# Per daemon and per MB carried: user and system CPU (utime, stime), system
# calls (raw_syscalls:sys_enter), io_uring_enter calls, io_uring requests
# submitted (io_uring:io_uring_submit_req) and completed, context switches;
# the machine's softirq time (/proc/stat: the receive and transmit work
# of every namespace, charged to whoever was running). Then perf record
# (cpu-clock, every CPU): each daemon's samples by kind (copies, CRC,
# io_uring, MPTCP, TCP/IP, device and qdisc, the rest) and its top symbols.
# Results: $BUILD/bench/profile.txt (and perf.data per flow count).
set -u
cd "$(dirname "$0")/.."
SECS=${1:-5}
RATE=${RATE:-100gbit}
FLOWS=${FLOWS:-1 8}
BUILD=${BUILD:-build}
CONCENTRATOR=$PWD/$BUILD/concentrator/mptcp-concentrator
AGENT=$PWD/$BUILD/gw-agent/gw-agent
LOADGEN=$PWD/$BUILD/benches/loadgen
OUT=$PWD/$BUILD/bench
mkdir -p "$OUT"
TEST_NAME=profile
. tests/netns/lib.sh
FINISH_NOT_NEEDED=1
require_netns
for t in "$LOADGEN" "$AGENT"; do [ -x "$t" ] || { echo "build first: ninja -C $BUILD"; exit 1; }; done
command -v perf > /dev/null || { echo "needs perf: apt-get install linux-perf"; exit 1; }

two_path_topology "$RATE"
X() { local n=$1; shift; ip netns exec "$(ns "$n")" "$@"; }
X srv "$LOADGEN" sink --listen 203.0.113.2:9000 > "$WORKDIR/sink.log" 2>&1 &
start_concentrator conc conc --allow-client 198.51.100.0/24 --max-flows-per-client 0 \
	--idle-timeout 0 --workers 2 --metrics-listen 127.0.0.1:9190 ${CONC_ARGS:-}
CPID=$CONC_PID
wait_listen srv 9000 && wait_listen conc 5124 || exit 1
# shellcheck disable=SC2086 # AGENT_ARGS: options, split
bench_agent --idle-timeout 0 --metrics-listen 127.0.0.1:9191 ${AGENT_ARGS:-}
HZ=$(getconf CLK_TCK)
ticks() { awk '{print $14, $15}' "/proc/$1/stat"; }
softirq() { awk '/^cpu /{print $8}' /proc/stat; }
# Verified-stream records each daemon received, whole and gathered
records() {
	local w
	for w in "gw 9191 gw_agent" "conc 9190 mptcp_concentrator"; do
		set -- $w
		metric_at "$1" "127.0.0.1:$2" "$3_stream_records_total{how=\"whole\"}"
		metric_at "$1" "127.0.0.1:$2" "$3_stream_records_total{how=\"gathered\"}"
	done | paste -sd' '
}
EVENTS=raw_syscalls:sys_enter,syscalls:sys_enter_io_uring_enter,io_uring:io_uring_submit_req,io_uring:io_uring_complete,context-switches
REPORT=$OUT/profile.txt
: > "$REPORT"
say() { echo "$*" | tee -a "$REPORT"; }
say "benches/profile.sh $SECS s per figure, RATE=$RATE, $(uname -r), $(nproc) cores, $(date -u '+%F %T') UTC"
say "agent: ${AGENT_ARGS:-defaults}; concentrator: ${CONC_ARGS:-defaults}"
for flows in $FLOWS; do
	# Counters: both daemons at once, every thread.
	STATS=
	for pid in "$APID" "$CPID"; do
		perf stat -x, -e "$EVENTS" -p "$pid" -o "$WORKDIR/stat.$pid" -- sleep $((SECS + 1)) &
		STATS="$STATS $!"
	done
	r0=$(records)
	a0=$(ticks "$APID"); c0=$(ticks "$CPID"); s0=$(softirq)
	out=$(X lan "$LOADGEN" send --flows "$flows" --seconds "$SECS" --to 203.0.113.2:9000 --tcp)
	a1=$(ticks "$APID"); c1=$(ticks "$CPID"); s1=$(softirq)
	wait $STATS
	bytes=$(echo "$out" | "$PY" -c 'import json,sys; print(json.load(sys.stdin)["bytes"])')
	say ""
	say "== $flows flow(s): $out"
	for who in agent conc; do
		if [ $who = agent ]; then pid=$APID t0=$a0 t1=$a1; else pid=$CPID t0=$c0 t1=$c1; fi
		"$PY" - "$who" "$bytes" "$HZ" "$t0" "$t1" "$WORKDIR/stat.$pid" <<'PY' | tee -a "$REPORT"
import sys
who, b, hz = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
u0, s0 = map(int, sys.argv[4].split()); u1, s1 = map(int, sys.argv[5].split())
gb, mb = b / 1e9, b / 1e6
cnt = {}
for line in open(sys.argv[6]):
    f = line.strip().split(",")
    if len(f) > 2 and f[0].replace(".", "").isdigit():
        cnt[f[2]] = float(f[0])
def per(k): return cnt.get(k, 0) / mb if mb else 0
print(f"{who}: user {(u1 - u0) / hz / gb:.3f} s/GB, system {(s1 - s0) / hz / gb:.3f} s/GB; per MB: "
      f"syscalls {per('raw_syscalls:sys_enter'):.1f}, io_uring_enter {per('syscalls:sys_enter_io_uring_enter'):.1f}, "
      f"requests {per('io_uring:io_uring_submit_req'):.1f}, completions {per('io_uring:io_uring_complete'):.1f}, "
      f"context switches {per('context-switches'):.1f}")
PY
	done
	say "verified-stream records received whole / gathered in pieces: $(echo "$r0 $(records)" |
		awk '{printf "agent %d / %d, concentrator %d / %d", $5 - $1, $6 - $2, $7 - $3, $8 - $4}')"
	say "machine softirq: $(awk -v a="$s0" -v b="$s1" -v hz="$HZ" -v by="$bytes" 'BEGIN {printf "%.3f s/GB", (b - a) / hz / (by / 1e9)}')"
	# Samples: every CPU, then each daemon's share by kind.
	perf record -q -a ${CALLGRAPH:+-g} -e cpu-clock -F 1999 -o "$OUT/perf-$flows.data" -- \
		ip netns exec "$(ns lan)" "$LOADGEN" send --flows "$flows" --seconds "$SECS" \
		--to 203.0.113.2:9000 --tcp > /dev/null 2>&1
	"$PY" benches/perf-kinds.py "$OUT/perf-$flows.data" gw-agent mptcp-concentrator | tee -a "$REPORT"
done
kill -TERM "$APID"; wait "$ASH" 2>/dev/null
stop_concentrator "$CPID" conc
echo "report: $REPORT"
