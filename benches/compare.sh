#!/usr/bin/env bash
# The whole product against the alternatives, side by side in one run (not a
# test: it asserts nothing, it reports ratios).
#
#   sudo deploy/setup.sh --bench          # haproxy, shadowsocks-libev
#   sudo benches/compare.sh [RUNS] [SECONDS]        defaults: 3 runs of 4 s
#   RATE=1gbit (default; each path, both ways), IDLE_FLOWS=2000,
#   AGENT_ARGS / CONC_ARGS: extra options for our daemons (tuning runs),
#   PERF=1: perf record -a during each measurement, the last run's kept
#   (build/bench/perf-SETUP-FLOWS.data) and read by benches/perf-kinds.py
#   for each proxy's processes at the end
#
# Testbed: lib.sh two_path_topology, the demo's: a LAN client behind a
# gateway with two tbf-shaped paths to the concentrator host, then a server
# running loadgen's sink. Each setup carries the LAN client's plain TCP over
# one MPTCP connection per flow across both paths (the gateway's MPTCP
# joins, opened by gw-agent as the path manager for MPTCP connections to the
# concentrator host's address, are there for all of them):
#
#   kernel      reference: no proxy at all; loadgen on the gateway speaks
#               MPTCP to the sink (both paths; to the concentrator host's
#               address, forwarded there to the sink), so this is what the
#               kernel's MPTCP alone does over the same links
#   ours        LAN -> gw-agent (TPROXY) -> RFC 8803 over MPTCP -> mptcp-concentrator -> sink
#   haproxy     LAN -> haproxy (tcp mode) -> MPTCP -> haproxy -> sink, both
#               under mptcpize (HAProxy 2.6 has no MPTCP of its own)
#   shadowsocks LAN -> ss-tunnel -> MPTCP -> ss-server -> sink, both under
#               mptcpize, chacha20-ietf-poly1305 (OpenMPTCProuter's setup;
#               shadowsocks always encrypts)
#
# For 1 and 8 flows, interleaved run by run: Gbit/s (loadgen, median and
# range), CPU seconds per GB (utime+stime of both proxy processes over the
# bytes they carried), and user-space memory per idle flow (RSS of both
# processes with IDLE_FLOWS idle flows, minus at rest, measured first, on
# fresh processes). Results:
# build/bench/compare.json and a table.
set -u
cd "$(dirname "$0")/.."
RUNS=${1:-3}
SECS=${2:-4}
RATE=${RATE:-1gbit}
IDLE_FLOWS=${IDLE_FLOWS:-2000}
BUILD=${BUILD:-build}
CONCENTRATOR=$PWD/$BUILD/concentrator/mptcp-concentrator
AGENT=$PWD/$BUILD/gw-agent/gw-agent
# PATH1_PROFILE / PATH2_PROFILE (lib.sh path_profile: dsl, lte, mesh, ...)
# put delay lines with those profiles inside the paths.
PATHEMU=${PATHEMU:-$PWD/$BUILD/tests/pathemu/pathemu}
LOADGEN=$PWD/$BUILD/benches/loadgen
OUT=$PWD/$BUILD/bench
mkdir -p "$OUT"
TEST_NAME=compare
. tests/netns/lib.sh
FINISH_NOT_NEEDED=1
require_netns
for t in "$LOADGEN" "$AGENT"; do [ -x "$t" ] || { echo "build first: ninja -C $BUILD"; exit 1; }; done
for p in haproxy ss-server ss-tunnel mptcpize; do
	command -v $p >/dev/null || { echo "needs $p: run deploy/setup.sh --bench"; exit 1; }
done

two_path_topology "$RATE"
# The concentrator host routes too (the reference's subflows cross it).
ip netns exec "$(ns conc)" sysctl -qw net.ipv4.ip_forward=1
ip -n "$(ns srv)" route replace default via 203.0.113.1
# The reference's loadgen reaches the sink through the concentrator's
# address (NAT to srv here): the agent's path manager manages MPTCP
# connections to that address, so the reference gets the joins every
# proxy's gateway leg gets (HAProxy's and ss-tunnel's go there too).
ip netns exec "$(ns conc)" nft -f - <<'NFT'
table ip kref {
	chain pre {
		type nat hook prerouting priority dstnat;
		ip daddr 192.0.2.1 tcp dport 9000 dnat to 203.0.113.2
	}
}
NFT
X() { local n=$1; shift; ip netns exec "$(ns "$n")" "$@"; }

X srv "$LOADGEN" sink --listen 203.0.113.2:9000 > "$OUT/sink.log" 2>&1 &
start_concentrator conc compare --allow-client 198.51.100.0/24 --max-flows-per-client 0 \
	--idle-timeout 0 --workers 2 ${CONC_ARGS:-}
CPID=$CONC_PID
X gw "$AGENT" --concentrator 192.0.2.1:5124 --lan gw-lan --path gw-p1 --path gw-p2 \
	--workers 2 --idle-timeout 0 --max-flows-per-host 0 --control "$WORKDIR/ctl.sock" \
	${AGENT_ARGS:-} > "$WORKDIR/agent.log" 2>&1 &
APID=$!

cat > "$WORKDIR/hp-gw.cfg" <<EOF
global
	maxconn 9000
	nbthread 2
defaults
	mode tcp
	timeout connect 5s
	timeout client 1h
	timeout server 1h
frontend lan
	bind 192.168.77.1:7001
	default_backend up
backend up
	server conc 192.0.2.1:7002
EOF
sed -e 's/bind 192.168.77.1:7001/bind 192.0.2.1:7002/' -e 's/server conc 192.0.2.1:7002/server srv 203.0.113.2:9000/' \
	"$WORKDIR/hp-gw.cfg" > "$WORKDIR/hp-conc.cfg"
X gw mptcpize run haproxy -db -f "$WORKDIR/hp-gw.cfg" > "$WORKDIR/hp-gw.log" 2>&1 &
HG=$!
X conc mptcpize run haproxy -db -f "$WORKDIR/hp-conc.cfg" > "$WORKDIR/hp-conc.log" 2>&1 &
HC=$!
SS_OPTS=(-k bench-password -m chacha20-ietf-poly1305 -n 19000 -t 3600)
X conc mptcpize run ss-server -s 192.0.2.1 -p 7102 "${SS_OPTS[@]}" > "$WORKDIR/ss-server.log" 2>&1 &
SC=$!
X gw mptcpize run ss-tunnel -s 192.0.2.1 -p 7102 -b 192.168.77.1 -l 7101 -L 203.0.113.2:9000 \
	"${SS_OPTS[@]}" > "$WORKDIR/ss-tunnel.log" 2>&1 &
SG=$!
wait_listen srv 9000 && wait_listen conc 5124 && wait_listen gw 7001 && wait_listen conc 7002 &&
	wait_listen gw 7101 && wait_listen conc 7102 || { tail "$WORKDIR"/*.log; exit 1; }
# mptcpize runs its command as a child: measure the proxies themselves.
APID=$(leaf $APID); HG=$(leaf $HG); HC=$(leaf $HC); SG=$(leaf $SG); SC=$(leaf $SC)
for p in $APID $CPID $HG $HC $SG $SC; do log "measuring pid $p: $(tr '\0' ' ' < /proc/$p/cmdline | cut -c1-60)"; done
for i in $(seq 1 100); do grep -q "endpoint" "$WORKDIR/agent.log" && break; sleep 0.05; done
sleep 2

cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
HZ=$(getconf CLK_TCK)
mpc_syn() { X conc nstat -az MPTcpExtMPCapableSYNRX | awk '/MPTcp/ {print $2}'; }

# measure NAME PIDS... -- loadgen args: one JSON line with CPU of the pids.
measure() {
	local name=$1; shift
	local pids=() t0=0 t1=0 out p
	while [ "$1" != "--" ]; do pids+=("$1"); shift; done
	shift
	for p in "${pids[@]}"; do t0=$((t0 + $(cpu_ticks "$p"))); done
	# PERF=1: every CPU sampled while it runs (benches/perf-kinds.py)
	local perf=
	if [ -n "${PERF:-}" ]; then
		perf record -q -a -e cpu-clock -F 999 -o "$OUT/perf-$name-$flows.data" > /dev/null 2>&1 &
		perf=$!
	fi
	out=$("$@")
	[ -n "$perf" ] && { kill -INT "$perf"; wait "$perf"; }
	for p in "${pids[@]}"; do t1=$((t1 + $(cpu_ticks "$p"))); done
	echo "{\"setup\": \"$name\", \"cpu_s\": $(awk -v a=$t0 -v b=$t1 -v hz="$HZ" 'BEGIN {print (b - a) / hz}'), \"load\": $out}"
}

# Memory first, on fresh processes (after throughput runs, heap and buffer
# pages already touched make the per-flow figure depend on history).
rss() { awk '/VmRSS/ {print $2}' "/proc/$1/status"; }
# idle NAME TARGET PIDS...: RSS of the pids at rest and with IDLE_FLOWS idle flows
idle() {
	local name=$1 to=$2; shift 2
	local r0=0 r1=0 p n
	for p in "$@"; do r0=$((r0 + $(rss "$p"))); done
	local rest; rest=$(for p in "$@"; do printf '%s:%s ' "$(cat /proc/$p/comm)" "$(rss "$p")"; done)
	X lan "$LOADGEN" idle --to "$to" --flows "$IDLE_FLOWS" --tcp > "$WORKDIR/idle-$name.out" 2>&1 &
	local ip=$!
	for i in $(seq 1 600); do grep -q ready "$WORKDIR/idle-$name.out" && break; sleep 0.1; done
	# X runs in a subshell: $! is that shell, not loadgen. Killing only the
	# shell left the idle flows open for the rest of the bench (and with
	# them 1,024 flows against the agent's per-host cap: later runs of
	# ours were refused and carried nothing).
	ip=$(leaf $ip)
	# past the daemons' heap trim (5 s after a burst of new flows) and the
	# shrinking of their buffer rings (5 s quiet, then halving each second)
	sleep 12
	for p in "$@"; do r1=$((r1 + $(rss "$p"))); done
	n=$(awk '/ready/ {print $2}' "$WORKDIR/idle-$name.out")
	kill -TERM $ip; wait $ip 2>/dev/null
	echo "{\"setup\": \"$name\", \"rss_kib_rest\": $r0, \"rss_kib_idle\": $r1, \"flows\": ${n:-0}, \"at_rest\": \"$rest\", \"per_process\": \"$(for p in "$@"; do printf '%s:%s ' "$(cat /proc/$p/comm)" "$(rss "$p")"; done)\"}" >> "$OUT/compare-mem.jsonl"
	sleep 2
}
: > "$OUT/compare-mem.jsonl"
idle ours 203.0.113.2:9000 "$APID" "$CPID"
idle haproxy 192.168.77.1:7001 "$HG" "$HC"
idle shadowsocks 192.168.77.1:7101 "$SG" "$SC"

syn0=$(mpc_syn)
: > "$OUT/compare.jsonl"
for run in $(seq 1 "$RUNS"); do
	for flows in 1 8; do
		L="$LOADGEN send --flows $flows --seconds $SECS"
		{
			measure kernel -- X gw $L --to 192.0.2.1:9000
			measure ours "$APID" "$CPID" -- X lan $L --to 203.0.113.2:9000 --tcp
			measure haproxy "$HG" "$HC" -- X lan $L --to 192.168.77.1:7001 --tcp
			measure shadowsocks "$SG" "$SC" -- X lan $L --to 192.168.77.1:7101 --tcp
		} | sed "s/^{/{\"run\": $run, \"flows\": $flows, /" | tee -a "$OUT/compare.jsonl" |
			"$PY" -c '
import json, sys
for l in sys.stdin:
    d = json.loads(l)
    print("[compare] run %s, %s flow(s), %12s: %6.3f Gbit/s" % (d["run"], d["flows"], d["setup"], d["load"]["gbit_s"]), flush=True)'
	done
done
syn1=$(mpc_syn)
log "MPTCP connections the concentrator host accepted meanwhile: $((syn1 - syn0)) (every proxied flow's gateway leg is MPTCP)"

PATHS_LABEL="shaped to $RATE each way"
[ -n "${PATH1_PROFILE:-}${PATH2_PROFILE:-}" ] &&
	PATHS_LABEL="with the profiles ${PATH1_PROFILE:-$RATE} and ${PATH2_PROFILE:-$RATE} (loadgen uploads: the sum is their up rates)"
"$PY" - "$OUT/compare.jsonl" "$OUT/compare-mem.jsonl" "$OUT/compare.json" "$PATHS_LABEL" <<'PY'
import json, statistics, sys
runs = [json.loads(l) for l in open(sys.argv[1])]
mem = {m["setup"]: m for m in (json.loads(l) for l in open(sys.argv[2]))}
res = {"paths": sys.argv[4], "runs": runs, "summary": {}}
setups = ["kernel", "ours", "haproxy", "shadowsocks"]
print(f"\nTwo paths {sys.argv[4]}; Gbit/s median [range] over {max(r['run'] for r in runs)} runs")
print(f"{'setup':>12} {'flows':>5} {'Gbit/s':>22} {'vs kernel':>9} {'vs ours':>8} {'CPU s/GB':>9}")
for flows in (1, 8):
    med = {}
    for s in setups:
        rs = [r for r in runs if r["setup"] == s and r["flows"] == flows]
        g = [r["load"]["gbit_s"] for r in rs]
        byts = sum(r["load"]["bytes"] for r in rs)
        cpu = sum(r["cpu_s"] for r in rs) / (byts / 1e9) if s != "kernel" and byts else None
        med[s] = statistics.median(g)
        res["summary"][f"{s}-{flows}"] = {"gbit_s_median": med[s], "range": [min(g), max(g)],
                                         "cpu_s_per_gb": cpu}
    for s in setups:
        m = res["summary"][f"{s}-{flows}"]
        m["ratio_vs_kernel"] = med[s] / med["kernel"] if med["kernel"] else None
        m["ratio_vs_ours"] = med[s] / med["ours"] if med["ours"] else None
        cpu = f"{m['cpu_s_per_gb']:9.2f}" if m["cpu_s_per_gb"] is not None else f"{'-':>9}"
        rng = f"{m['gbit_s_median']:6.3f} [{m['range'][0]:5.3f}-{m['range'][1]:5.3f}]"
        print(f"{s:>12} {flows:>5} {rng:>22} {m['ratio_vs_kernel']:9.2f} {m['ratio_vs_ours']:8.2f} {cpu}")
bad = [r for r in runs if r["load"].get("broken")]
if bad:
    print(f"\nWARNING: {len(bad)} run(s) had flows refused, reset or ended early; their figures are not throughput:")
    for r in bad:
        print(f"  run {r['run']}, {r['flows']} flow(s), {r['setup']}: {r['load']['broken']} broken")
res["broken_runs"] = len(bad)
print(f"\nUser-space memory per idle flow (both processes, RSS with N idle flows minus at rest):")
for s in setups[1:]:
    m = mem.get(s)
    if m and m["flows"]:
        per = (m["rss_kib_idle"] - m["rss_kib_rest"]) * 1024 / m["flows"]
        m["bytes_per_idle_flow"] = per
        print(f"{s:>12}: {per:8.0f} bytes  ({m['flows']} flows; {m['rss_kib_rest']} -> {m['rss_kib_idle']} KiB)")
res["memory"] = mem
json.dump(res, open(sys.argv[3], "w"), indent=1)
PY
if [ -n "${PERF:-}" ]; then
	for flows in 1 8; do
		echo "== where the CPU went, $flows flow(s), last run (every CPU's samples)"
		"$PY" benches/perf-kinds.py "$OUT/perf-ours-$flows.data" gw-agent mptcp-concentrator
		"$PY" benches/perf-kinds.py "$OUT/perf-haproxy-$flows.data" \
			"haproxy-gateway=$(ls /proc/$HG/task | paste -sd,)" \
			"haproxy-concentrator=$(ls /proc/$HC/task | paste -sd,)"
		"$PY" benches/perf-kinds.py "$OUT/perf-shadowsocks-$flows.data" ss-tunnel ss-server
	done
fi
kill -TERM "$APID" "$HG" "$HC" "$SG" "$SC" 2>/dev/null
wait "$APID" 2>/dev/null
stop_concentrator "$CPID" compare
