#!/usr/bin/env bash
# What the verified stream costs (docs/kernel-defects.md, README "Data
# integrity"): the agent and the concentrator with and without it, on the
# same unshaped two-path testbed, interleaved run by run. Not a test: it
# asserts nothing and reports ratios.
#
#   sudo benches/verify-cost.sh [RUNS] [SECONDS]     defaults: 5 runs of 4 s
#   RATE=100gbit (each path), FLOWS="1 8"
#   SETTINGS="a=ARGS;b=ARGS" compares any two agent settings the same way
#   (any number of them; the first is the reference of the ratios), e.g.
#   SETTINGS="32k=;64k=--buffer-size 65536" benches/verify-cost.sh
#
# Per run and per setting: loadgen sends from the LAN to a sink behind the
# concentrator for SECONDS; Gbit/s from loadgen, CPU seconds of both
# daemons (utime+stime) per GB carried. The agent restarts between the
# settings (--verify-stream is the agent's offer; the concentrator agrees to
# whatever is offered). Results: $BUILD/bench/verify-cost.jsonl and a table.
set -u
cd "$(dirname "$0")/.."
RUNS=${1:-5}
SECS=${2:-4}
RATE=${RATE:-100gbit}
FLOWS=${FLOWS:-1 8}
BUILD=${BUILD:-build}
CONCENTRATOR=$PWD/$BUILD/concentrator/mptcp-concentrator
AGENT=$PWD/$BUILD/gw-agent/gw-agent
LOADGEN=$PWD/$BUILD/benches/loadgen
OUT=$PWD/$BUILD/bench
mkdir -p "$OUT"
TEST_NAME=verify-cost
. tests/netns/lib.sh
FINISH_NOT_NEEDED=1
require_netns
for t in "$LOADGEN" "$AGENT"; do [ -x "$t" ] || { echo "build first: ninja -C $BUILD"; exit 1; }; done

two_path_topology "$RATE"
X() { local n=$1; shift; ip netns exec "$(ns "$n")" "$@"; }
X srv "$LOADGEN" sink --listen 203.0.113.2:9000 > "$WORKDIR/sink.log" 2>&1 &
start_concentrator conc conc --allow-client 198.51.100.0/24 --max-flows-per-client 0 \
	--idle-timeout 0 --workers 2
CPID=$CONC_PID
wait_listen srv 9000 && wait_listen conc 5124 || exit 1
APID= ASH=
cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
HZ=$(getconf CLK_TCK)
: > "$OUT/verify-cost.jsonl"
SETTINGS=${SETTINGS:-plain=--no-verify-stream;verified=}
IFS=';' read -r -a SETS <<< "$SETTINGS"
for run in $(seq 1 "$RUNS"); do
	for set in "${SETS[@]}"; do
		setting=${set%%=*}
		# shellcheck disable=SC2086 # the setting's arguments, split
		bench_agent --idle-timeout 0 ${set#*=}
		for flows in $FLOWS; do
			t0=$(( $(cpu_ticks "$APID") + $(cpu_ticks "$CPID") ))
			out=$(X lan "$LOADGEN" send --flows "$flows" --seconds "$SECS" --to 203.0.113.2:9000 --tcp)
			t1=$(( $(cpu_ticks "$APID") + $(cpu_ticks "$CPID") ))
			echo "{\"run\": $run, \"setting\": \"$setting\", \"flows\": $flows, \"cpu_s\": $(awk -v a=$t0 -v b=$t1 -v hz="$HZ" 'BEGIN {print (b - a) / hz}'), \"load\": $out}" |
				tee -a "$OUT/verify-cost.jsonl"
		done
	done
done
"$PY" - "$OUT/verify-cost.jsonl" <<'PY'
import json, statistics, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
sets = list(dict.fromkeys(r["setting"] for r in rows))
print("| flows | setting | Gbit/s (median) | CPU s/GB (median) |")
print("|---|---|---|---|")
med = {}
for f in sorted({r["flows"] for r in rows}):
    for s in sets:
        g = [r["load"]["gbit_s"] for r in rows if r["flows"] == f and r["setting"] == s]
        c = [r["cpu_s"] / (r["load"]["bytes"] / 1e9) for r in rows
             if r["flows"] == f and r["setting"] == s and r["load"]["bytes"]]
        med[f, s] = (statistics.median(g), statistics.median(c))
        print(f"| {f} | {s} | {med[f, s][0]:.2f} [{min(g):.2f}-{max(g):.2f}] | {med[f, s][1]:.3f} [{min(c):.3f}-{max(c):.3f}] |")
ref = sets[0]
for f in sorted({r["flows"] for r in rows}):
    for s in sets[1:]:
        print(f"{f} flow(s): {s}/{ref} throughput {med[f, s][0] / med[f, ref][0]:.2f}x, "
              f"CPU per GB {med[f, s][1] / med[f, ref][1]:.2f}x")
PY
kill -TERM "$APID"; wait "$ASH" 2>/dev/null
stop_concentrator "$CPID" conc
