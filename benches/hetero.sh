#!/usr/bin/env bash
# Aggregation on heterogeneous paths (not a test; it reports). The two-path
# testbed with named path profiles (tests/netns/lib.sh path_profile: dsl,
# vdsl, lte, mesh) made real by tests/pathemu delay lines inside the links:
# each path alone (plain TCP bound to its address), then one LAN flow
# through gw-agent and the concentrator, upload and download, as a ratio of
# the sum of the paths. Medians of RUNS.
#
#   sudo benches/hetero.sh [PROFILE1 PROFILE2 [RUNS [SECONDS]]]   default dsl lte 3 8
set -u
cd "$(dirname "$0")/.."
P1=${1:-dsl}; P2=${2:-lte}; RUNS=${3:-3}; SECS=${4:-8}
BUILD=${BUILD:-build}
CONCENTRATOR=$PWD/$BUILD/concentrator/mptcp-concentrator
AGENT=$PWD/$BUILD/gw-agent/gw-agent
PATHEMU=$PWD/$BUILD/tests/pathemu/pathemu
OUT=$PWD/$BUILD/bench
mkdir -p "$OUT"
TEST_NAME=hetero
. tests/netns/lib.sh
FINISH_NOT_NEEDED=1
require_netns
for t in "$AGENT" "$PATHEMU"; do [ -x "$t" ] || { echo "build first: ninja -C $BUILD"; exit 1; }; done
cd tests/netns

PATH1_PROFILE=$P1 PATH2_PROFILE=$P2 two_path_topology 100mbit || exit 1
ip netns exec "$(ns srv)" iperf3 -s -p 5201 > /dev/null 2>&1 &
start_concentrator conc conc --listen 192.0.2.1:5124 --allow-client 198.51.100.0/24
wait_listen conc 5124 && wait_listen srv 5201 || exit 1
ip netns exec "$(ns gw)" "$AGENT" --concentrator 192.0.2.1:5124 --lan gw-lan --control "$WORKDIR/control.sock" \
	--path gw-p1 --path gw-p2 > "$WORKDIR/agent.log" 2>&1 &
for i in $(seq 1 100); do grep -q "intercepting TCP" "$WORKDIR/agent.log" && break; sleep 0.05; done
sleep 2

mbit() { "$PY" -c 'import json, sys; d = json.load(sys.stdin)["end"]; print(round(d["sum_received"]["bits_per_second"] / 1e6, 2))'; }
alone() {  # alone SRC [-R]: one plain TCP flow from gw over one path
	ip netns exec "$(ns gw)" iperf3 -c 192.0.2.1 -p 5202 -B "$1" -t "$SECS" $2 -J 2>/dev/null | mbit
}
ip netns exec "$(ns conc)" iperf3 -s -p 5202 > /dev/null 2>&1 &
sleep 0.5
results=()
for run in $(seq 1 "$RUNS"); do
	for dir in up down; do
		rev=""; [ $dir = down ] && rev=-R
		a1=$(alone 198.51.100.2 "$rev"); a2=$(alone 198.51.100.66 "$rev")
		f=$(ip netns exec "$(ns lan)" iperf3 -c 203.0.113.2 -p 5201 -t "$SECS" $rev -J 2>/dev/null | mbit)
		r=$("$PY" -c "print(round($f / ($a1 + $a2), 3))")
		echo "{\"run\": $run, \"dir\": \"$dir\", \"path1_${P1}\": $a1, \"path2_${P2}\": $a2, \"flow\": $f, \"ratio\": $r}" |
			tee -a "$OUT/hetero.jsonl"
		results+=("$dir $r")
	done
done
for dir in up down; do
	printf '%s\n' "${results[@]}" | awk -v d=$dir '$1 == d { print $2 }' | sort -n |
		awk -v d=$dir -v p="$P1+$P2" '{ a[NR] = $1 } END { printf "%s %s: median ratio to the sum of the paths %s (range %s-%s)\n", p, d, a[int((NR + 1) / 2)], a[1], a[NR] }'
done
