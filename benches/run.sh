#!/usr/bin/env bash
# Concentrator benchmark (not a test: it asserts nothing, it reports).
#
#   sudo benches/run.sh [RUNS] [SECONDS]      defaults: 5 runs of 4 s
#   SHAPE=1gbit sudo benches/run.sh           tbf-shape the client link both ways
#
# Topology (unshaped veth): cli -- conc -- srv. conc runs the concentrator and
# also routes, so the reference path (MPTCP straight from cli to srv, no
# proxy) crosses the same links and namespaces.
#
# Measured, interleaved run by run so drift hits both sides alike:
#   direct      loadgen over MPTCP cli -> srv sink (kernel MPTCP, no proxy)
#   conc        loadgen over MPTCP cli -> concentrator -> TCP -> srv sink
#   direct_tcp  the same with plain TCP: isolates the relay engine from
#   conc_tcp    MPTCP's own receive path (see benches/README.md)
#   iperf3      iperf3 under mptcpize cli -> srv (reference figure)
# for 1 and 8 flows; medians and ranges; concentrator CPU seconds per GB
# relayed (utime+stime from /proc); resident memory with 8000 idle flows.
# Results: build/bench/results.json and a printed table.
set -u
cd "$(dirname "$0")/.."
RUNS=${1:-5}
SECS=${2:-4}
IDLE_FLOWS=${IDLE_FLOWS:-8000}
BUILD=${BUILD:-build}
CONCENTRATOR=$PWD/$BUILD/concentrator/mptcp-concentrator
LOADGEN=$PWD/$BUILD/benches/loadgen
OUT=$PWD/$BUILD/bench
mkdir -p "$OUT"
TEST_NAME=bench
. tests/netns/lib.sh
FINISH_NOT_NEEDED=1  # a report, not a test
require_netns
[ -x "$LOADGEN" ] || { echo "build first: ninja -C $BUILD"; exit 1; }
command -v iperf3 >/dev/null && command -v mptcpize >/dev/null || { echo "run deploy/setup.sh"; exit 1; }

cli_conc_srv
ip -n "$(ns cli)" route add 203.0.113.0/24 via 198.51.100.1
ip netns exec "$(ns conc)" sysctl -qw net.ipv4.ip_forward=1
if [ -n "${SHAPE:-}" ]; then
	# Both directions of the client link, as a DSL or fibre line would be.
	ip netns exec "$(ns cli)" tc qdisc add dev cli-conc root tbf rate "$SHAPE" burst 1mb latency 20ms
	ip netns exec "$(ns conc)" tc qdisc add dev conc-cli root tbf rate "$SHAPE" burst 1mb latency 20ms
	log "client link shaped to $SHAPE both ways"
fi

X() { local n=$1; shift; ip netns exec "$(ns "$n")" "$@"; }

X srv "$LOADGEN" sink --listen 203.0.113.2:9000 > "$OUT/sink.log" 2>&1 &
# mptcpize makes iperf3's sockets MPTCP (iperf3 3.12 has no --mptcp).
X srv mptcpize run iperf3 -s -p 5201 > /dev/null 2>&1 &
start_concentrator conc bench --allow-client 198.51.100.0/24 --max-flows-per-client 0 --idle-timeout 0
CPID=$CONC_PID
wait_listen srv 9000 && wait_listen srv 5201 && wait_listen conc 5124 || exit 1

cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
HZ=$(getconf CLK_TCK)

: > "$OUT/runs.jsonl"
for run in $(seq 1 "$RUNS"); do
	for flows in 1 8; do
		d=$(X cli "$LOADGEN" send --to 203.0.113.2:9000 --flows $flows --seconds "$SECS")
		t0=$(cpu_ticks "$CPID")
		c=$(X cli "$LOADGEN" send --to 198.51.100.1:5124 --convert 203.0.113.2:9000 --flows $flows --seconds "$SECS")
		t1=$(cpu_ticks "$CPID")
		dt=$(X cli "$LOADGEN" send --to 203.0.113.2:9000 --flows $flows --seconds "$SECS" --tcp)
		ct=$(X cli "$LOADGEN" send --to 198.51.100.1:5124 --convert 203.0.113.2:9000 --flows $flows --seconds "$SECS" --tcp)
		i=$(X cli mptcpize run iperf3 -c 203.0.113.2 -p 5201 -P $flows -t "$SECS" -J 2>/dev/null |
			"$PY" -c 'import json,sys; print(json.load(sys.stdin)["end"]["sum_received"]["bits_per_second"]/1e9)' 2>/dev/null || echo 0)
		echo "{\"run\": $run, \"flows\": $flows, \"direct\": $d, \"conc\": $c, \"direct_tcp\": $dt, \"conc_tcp\": $ct, \"conc_cpu_s\": $(awk -v a="$t0" -v b="$t1" -v hz="$HZ" 'BEGIN {print (b - a) / hz}'), \"iperf3_gbit_s\": $i}" >> "$OUT/runs.jsonl"
		g() { echo "$1" | grep -o '"gbit_s": [0-9.]*' | cut -d' ' -f2; }
		log "run $run, $flows flow(s) Gbit/s: MPTCP direct $(g "$d") conc $(g "$c") | TCP direct $(g "$dt") conc $(g "$ct") | iperf3 $i"
	done
done

# Memory: a fresh instance, RSS before and with IDLE_FLOWS idle flows.
start_concentrator conc mem --listen 198.51.100.1:5125 --allow-client 198.51.100.0/24 \
	--max-flows-per-client 0 --idle-timeout 0
MPID=$CONC_PID
wait_listen conc 5125
sleep 0.5
rss() { awk '/VmRSS/ {print $2}' "/proc/$1/status"; }
rss0=$(rss "$MPID")
X cli "$LOADGEN" idle --to 198.51.100.1:5125 --convert 203.0.113.2:9000 --flows "$IDLE_FLOWS" > "$OUT/idle.out" 2>&1 &
IDLE=$!
for i in $(seq 1 600); do grep -q ready "$OUT/idle.out" && break; sleep 0.1; done
IDLE=$(leaf $IDLE)  # loadgen itself, not the subshell X runs in
sleep 1
rss1=$(rss "$MPID")
opened=$(awk '/ready/ {print $2}' "$OUT/idle.out")
kill -TERM $IDLE; wait $IDLE 2>/dev/null
stop_concentrator "$MPID" mem
stop_concentrator "$CPID" bench

"$PY" - "$OUT/runs.jsonl" "$rss0" "$rss1" "${opened:-0}" "$OUT/results.json" <<'PY'
import json, statistics, sys
runs = [json.loads(l) for l in open(sys.argv[1])]
rss0, rss1, opened = int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
res = {"runs": runs, "throughput": {}, "memory": {}}
f = lambda v: f"{statistics.median(v):6.2f} [{min(v):5.2f}-{max(v):5.2f}]"
print(f"\n{'client leg':>10} {'flows':>5}  {'direct (no proxy)':>22}  {'via concentrator':>22}  {'ratio':>6}")
for leg, dk, ck in (("MPTCP", "direct", "conc"), ("TCP", "direct_tcp", "conc_tcp")):
    for flows in (1, 8):
        rs = [r for r in runs if r["flows"] == flows]
        d = [r[dk]["gbit_s"] for r in rs]
        c = [r[ck]["gbit_s"] for r in rs]
        ratio = statistics.median(c) / statistics.median(d)
        res["throughput"][f"{leg}-{flows}"] = {"direct_median": statistics.median(d),
            "direct_range": [min(d), max(d)], "conc_median": statistics.median(c),
            "conc_range": [min(c), max(c)], "ratio": ratio}
        print(f"{leg:>10} {flows:>5}  {f(d):>22}  {f(c):>22}  {ratio:6.2f}")
for flows in (1, 8):
    rs = [r for r in runs if r["flows"] == flows]
    i = [r["iperf3_gbit_s"] for r in rs]
    cpu = sum(r["conc_cpu_s"] for r in rs) / (sum(r["conc"]["bytes"] for r in rs) / 1e9)
    res["throughput"][f"MPTCP-{flows}"]["iperf3_median"] = statistics.median(i)
    res["throughput"][f"MPTCP-{flows}"]["conc_cpu_s_per_gb"] = cpu
    print(f"{flows} flow(s): iperf3 under mptcpize, no proxy: {f(i)} Gbit/s; "
          f"concentrator CPU {cpu:.2f} s per GB relayed")
per_flow = (rss1 - rss0) * 1024 / opened if opened else float("nan")
res["memory"] = {"idle_flows": opened, "rss_kib_before": rss0, "rss_kib_with_flows": rss1,
                 "bytes_per_idle_flow": per_flow}
print(f"\nGbit/s, median [range] over {len(runs)//2} runs. Memory: RSS {rss0} KiB idle, "
      f"{rss1} KiB with {opened} idle flows: {per_flow:.0f} bytes per flow (user space).")
json.dump(res, open(sys.argv[5], "w"), indent=1)
PY
