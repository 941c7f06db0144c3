#!/usr/bin/env bash
# Many gateways over real paths, every system side by side (not a test: it
# asserts nothing, it reports ratios measured within the run).
#
#   sudo deploy/setup.sh --bench && meson setup build && ninja -C build
#   sudo benches/fleet.sh [--quick] [--out DIR] [--gmax N]
#
# Each scenario is one topology of benches/fleet-phase.sh (G gateways, each
# with a LAN client, gw-agent, HAProxy and ss-tunnel, paths with lib.sh
# path profiles made real by tests/pathemu delay lines), on which our
# system, HAProxy 2.6 and shadowsocks-libev (both under mptcpize) and the
# kernel's own MPTCP with no proxy run interleaved, RUNS times:
#
#   agg       one flow up and down on dsl+lte, dsl+mesh, dsl+lte+mesh,
#             against the sum of what each path delivers alone
#   failover  the slow or lossy path goes silent, comes back, then the fast
#             one goes silent: throughput every 0.1 s
#   fleet     G gateways upload at once (iperf3 -P 2 each) for G = 1, 8, 32,
#             GMAX: aggregate, Jain's index, concentrator CPU per GB/core;
#             then 8 gateways on 1 Gbit/s paths with 1 and 2 workers
#   rate      wrk -H "Connection: close" from 8 gateways, requests/s, p50,
#             p99, against plain routing; on dsl+lte and on undelayed
#             100 Mbit/s paths (where the proxies' own cost shows)
#   lul       request latency (64-byte echo every 0.1 s) idle and while an
#             upload or a download saturates the gateway's paths
#   mem       idle flows over 8 gateways, as many as the descriptor limit
#             lets the concentrator hold: bytes per flow and per gateway
#
# Results (DIR, default benches/results; --quick: build/bench/fleet-quick):
# fleet.jsonl (every measurement), results.md (tables), *.png (gnuplot).
# --quick: one run of each scenario on small settings, under 5 minutes.
set -u
cd "$(dirname "$0")/.."
QUICK=0 OUT="" GMAX=${GMAX:-64}
while [ $# -gt 0 ]; do
	case $1 in
	--quick) QUICK=1 ;;
	--out) OUT=$2; shift ;;
	--gmax) GMAX=$2; shift ;;
	*) echo "usage: benches/fleet.sh [--quick] [--out DIR] [--gmax N]"; exit 2 ;;
	esac
	shift
done
[ "$(id -u)" -eq 0 ] || { echo "run as root (network namespaces)"; exit 1; }
BUILD=${BUILD:-build}
for t in concentrator/mptcp-concentrator gw-agent/gw-agent tests/pathemu/pathemu benches/loadgen; do
	[ -x "$BUILD/$t" ] || { echo "build first: meson setup $BUILD && ninja -C $BUILD"; exit 1; }
done
for p in haproxy ss-server ss-tunnel mptcpize iperf3 wrk nginx gnuplot; do
	command -v $p >/dev/null || { echo "needs $p: run deploy/setup.sh --bench"; exit 1; }
done
if [ $QUICK = 1 ]; then
	OUT=${OUT:-$BUILD/bench/fleet-quick}
else
	OUT=${OUT:-benches/results}
fi
mkdir -p "$OUT"
J=$OUT/fleet.jsonl
: > "$J"
T0=$(date +%s)
ALL="kernel ours haproxy shadowsocks"
phase() {  # phase SCENARIO G "PROFILES" [VAR=VALUE...]
	local s=$1 g=$2 p=$3; shift 3
	echo "== $s, $g gateway(s), paths $p $* ($(($(date +%s) - T0)) s in)"
	env "$@" bash benches/fleet-phase.sh "$s" "$g" "$p" "$J" 2>&1 | grep --line-buffered -E '^\{|^\[fleet' | cut -c1-160
}
if [ $QUICK = 1 ]; then
	phase agg 1 "dsl lte" RUNS=1 SECS=3
	phase failover 1 "dsl lte" RUNS=1 DIRS=down
	phase fleet 4 "dsl lte" RUNS=1 SECS=3
	phase rate 4 "dsl lte" RUNS=1 SECS=3 SYSTEMS="routed $ALL"
	phase lul 1 "dsl lte" RUNS=1 SECS=2
	phase mem 2 "dsl lte" IDLE_FLOWS=2000
else
	for p in "dsl lte" "dsl mesh" "dsl lte mesh"; do phase agg 1 "$p" RUNS=3 SECS=6; done
	for p in "dsl lte" "dsl mesh"; do phase failover 1 "$p" RUNS=3; done
	for g in 1 8 32 "$GMAX"; do phase fleet "$g" "dsl lte" RUNS=3 SECS=8; done
	# Unshaped paths: the proxies' CPU is the limit; one worker, then two.
	for w in 1 2; do phase fleet 8 "1gbit 1gbit" RUNS=3 SECS=6 CONC_WORKERS=$w; done
	phase rate 8 "dsl lte" RUNS=3 SECS=6 SYSTEMS="routed $ALL"
	phase rate 8 "100mbit 100mbit" RUNS=3 SECS=6 SYSTEMS="routed $ALL"
	phase lul 1 "dsl lte" RUNS=3 SECS=5
	# The concentrator holds two descriptors per flow and keeps some in
	# reserve: 8,000 fit the 20,000 this machine allows a process.
	phase mem 8 "dsl lte" IDLE_FLOWS=${IDLE_FLOWS:-8000}
fi
ELAPSED=$(($(date +%s) - T0))
echo "== done in $ELAPSED s"
/usr/bin/python3 benches/fleet-report.py "$J" "$OUT" "$ELAPSED" "$(uname -r), $(nproc) cores, $(date -u +%Y-%m-%d)"
