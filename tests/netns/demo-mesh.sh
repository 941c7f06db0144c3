#!/usr/bin/env bash
# The mesh demo (./deploy/demo.sh --mesh): three home routers on one mesh
# segment, each with a 20 Mbit/s line; A borrows B's and C's lines. A LAN
# client on A uploads for 20 s; C leaves the mesh at 7 s and returns at
# 14 s. Prints what each line carried per second and A's `gw-agent status`.
# Everything it creates is removed on exit, Ctrl-C included.
cd "$(dirname "$0")"
TEST_NAME=demo
. ./lib.sh
FINISH_NOT_NEEDED=1  # a report, not a test
require_netns
OUT=${OUT:-$PWD/../../build/demo}
mkdir -p "$OUT"
RATE=20mbit SECS=20 CUT=7 BACK=14

say() { printf '%s\n' "$*"; }
say "Building the mesh: routers A, B, C on one segment, each with its own $RATE line to the concentrator"
mesh_topology "$RATE"
ip netns exec "$(ns srv)" iperf3 -s -p 5201 > /dev/null 2>&1 &
start_concentrator conc conc --listen 192.0.2.1:5124 --allow-client 198.51.100.0/24 --workers 1
wait_listen srv 5201 && wait_listen conc 5124 || exit 1
mesh_agent b agent-b --lan b-lanb --path b-dsl --lend b-mesh,uplink=19mbit || exit 1
mesh_agent c agent-c --lan c-lan --path c-dsl --lend c-mesh || exit 1
mesh_agent a agent-a --lan a-lan --path a-dsl --mesh a-mesh --congestion cubic || exit 1
status_a() { ip netns exec "$(ns a)" "$AGENT" status --control "$WORKDIR/agent-a.sock" | sed -n '/^PATH/,/^$/p'; }
# Until A's three paths are up (quietly: the control socket may not be
# listening yet at the first tries).
for i in $(seq 1 80); do
	[ "$(status_a 2>/dev/null | grep -c ' up ')" -eq 3 ] && break
	sleep 0.1
done
say ""
say "A's paths (gw-agent status): its own line and one per lending neighbour"
status_a | sed 's/^/    /'

tx() { ip netns exec "$(ns "$1")" cat "/sys/class/net/$1-dsl/statistics/tx_bytes"; }
say "Uploading from A's LAN client for $SECS s; C leaves the mesh at $CUT s and returns at $BACK s..."
ip netns exec "$(ns lan)" iperf3 -c 203.0.113.2 -p 5201 -t "$SECS" -i 1 -J > "$OUT/mesh-iperf3.json" 2>&1 &
IPERF=$!
declare -A prev
for g in a b c; do prev[$g]=$(tx $g); done
: > "$OUT/mesh-lines.dat"
for t in $(seq 1 "$SECS"); do
	sleep 1
	row="$t"
	for g in a b c; do
		now=$(tx $g); row="$row $(( (now - prev[$g]) * 8 / 1000000 ))"; prev[$g]=$now
	done
	echo "$row" >> "$OUT/mesh-lines.dat"
	case $t in
	"$CUT") ip -n "$(ns c)" link set c-mesh down ;;
	$((CUT + 4))) status_a > "$OUT/mesh-status-c-away.txt" ;;
	"$BACK") ip -n "$(ns c)" link set c-mesh up ;;
	esac
done
wait $IPERF
"$PY" - "$OUT" "$CUT" "$BACK" <<'PY'
import json, sys
out, cut, back = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
d = json.load(open(f"{out}/mesh-iperf3.json"))
if "error" in d:
    sys.exit("iperf3 failed: " + d["error"])
rows = [l.split() for l in open(f"{out}/mesh-lines.dat")]
print()
print(" second   line A   line B   line C  (Mbit/s leaving each router's line)")
for r in rows:
    t = int(r[0])
    mark = "   <- C left the mesh" if t == cut + 1 else "   <- C back" if t == back + 1 else ""
    print(f"  {t:5d}  {r[1]:>7}  {r[2]:>7}  {r[3]:>7}{mark}")
print(f"\nA's upload: {d['end']['sum_received']['bits_per_second'] / 1e6:.1f} Mbit/s over {len(rows)} s, "
      f"no error; while C was away the other two lines carried it.")
PY
say ""
say "A's paths while C was away:"
sed 's/^/    /' "$OUT/mesh-status-c-away.txt"
say "Files: $OUT/mesh-lines.dat, $OUT/mesh-iperf3.json"
