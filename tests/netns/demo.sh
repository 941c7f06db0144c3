#!/usr/bin/env bash
# The README's demo: a LAN client behind gw-agent with two 50 Mbit/s paths to
# mptcp-concentrator; iperf3 for 20 s with path 1 cut at 7 s and restored at
# 14 s. Prints a report and writes a PNG plot (gnuplot). Everything it
# creates is removed on exit, Ctrl-C included.
#
# --mesh: the mesh variant instead (demo-mesh.sh).
# Environment: CONCENTRATOR, AGENT (set by deploy/demo.sh), OUT (results).
cd "$(dirname "$0")"
[ "${1:-}" = --mesh ] && exec bash ./demo-mesh.sh
TEST_NAME=demo
. ./lib.sh
FINISH_NOT_NEEDED=1  # a report, not a test
require_netns
OUT=${OUT:-$PWD/../../build/demo}
mkdir -p "$OUT"
RATE=50mbit
SECS=20 CUT=7 BACK=14

say() { printf '%s\n' "$*"; }
say "Building the testbed: LAN client -> gw-agent -> two paths (tbf $RATE each way) -> concentrator -> server"
two_path_topology "$RATE"
ip netns exec "$(ns srv)" iperf3 -s -J -p 5201 > /dev/null 2>&1 &  # -J: the client gets its intervals
ip netns exec "$(ns conc)" iperf3 -s -p 5202 > /dev/null 2>&1 &
start_concentrator conc conc --allow-client 198.51.100.0/24 --workers 1 --metrics-listen 9124
ip netns exec "$(ns gw)" "$AGENT" --concentrator 192.0.2.1:5124 --lan gw-lan --workers 1 \
	--path gw-p1,mode=master --path gw-p2 --control "$WORKDIR/control.sock" --metrics-listen 9125 \
	--web-listen 192.168.77.1:8125 --state-dir "$WORKDIR/state" > "$WORKDIR/agent.log" 2>&1 &
wait_listen srv 5201 && wait_listen conc 5124 && wait_listen conc 5202 || exit 1
for i in $(seq 1 100); do grep -q "endpoint" "$WORKDIR/agent.log" && break; sleep 0.05; done

steady() {
	"$PY" -c 'import json,sys; d=json.load(sys.stdin); iv=[i["sum"]["bits_per_second"] for i in d["intervals"]][2:]; print(round(sum(iv)/len(iv)/1e6,1))'
}
say "Measuring each path alone (one TCP flow from the gateway, 5 s each)..."
r1=$(ip netns exec "$(ns gw)" iperf3 -c 192.0.2.1 -p 5202 -B 198.51.100.2 -t 5 -J | steady)
r2=$(ip netns exec "$(ns gw)" iperf3 -c 192.0.2.1 -p 5202 -B 198.51.100.66 -t 5 -J | steady)
sleep 1

say "Running iperf3 from the LAN client for ${SECS} s (plain TCP to 203.0.113.2); path 1 goes down at ${CUT} s and comes back at ${BACK} s..."
tx() { ip netns exec "$(ns gw)" cat "/sys/class/net/$1/statistics/tx_bytes"; }
subflows() {  # what `gw-agent status` shows: paths, then flows and their subflows
	ip netns exec "$(ns gw)" "$AGENT" status --control "$WORKDIR/control.sock" |
		sed -n '/^PATH/,$p' | grep -v '^$' | sed 's/^/    /'
}
ip netns exec "$(ns lan)" iperf3 -c 203.0.113.2 -p 5201 -t "$SECS" -i 1 -J --get-server-output \
	> "$OUT/iperf3.json" 2>&1 &
IPERF=$!
: > "$OUT/paths.dat"
p1=$(tx gw-p1); p2=$(tx gw-p2)
for t in $(seq 1 "$SECS"); do
	sleep 1
	n1=$(tx gw-p1); n2=$(tx gw-p2)
	echo "$t $(( (n1 - p1) * 8 / 1000000 )) $(( (n2 - p2) * 8 / 1000000 ))" >> "$OUT/paths.dat"
	p1=$n1; p2=$n2
	case $t in
	3) subflows > "$OUT/subflows-before.txt" ;;
	"$CUT") ip -n "$(ns gw)" link set gw-p1 down ;;
	$((CUT + 3))) subflows > "$OUT/subflows-cut.txt" ;;
	"$BACK") ip -n "$(ns gw)" link set gw-p1 up; dhcp_default ;;
	$((BACK + 3))) subflows > "$OUT/subflows-after.txt" ;;
	esac
done
wait $IPERF

# The household's page as a browser shows it during a download (headless
# Chromium in the LAN client's namespace; the token from the agent's file).
CHROMIUM=$(command -v chromium || command -v chromium-browser || true)
if [ -n "$CHROMIUM" ] && [ -s "$WORKDIR/state/web-token" ]; then
	say "Taking a screenshot of the household's page during a 6 s download..."
	ip netns exec "$(ns lan)" iperf3 -c 203.0.113.2 -p 5201 -R -t 6 > /dev/null 2>&1 &
	dl=$!
	D0=$(ip netns exec "$(ns gw)" cat /sys/class/net/gw-p1/statistics/rx_bytes)
	dl_moving() { [ "$(ip netns exec "$(ns gw)" cat /sys/class/net/gw-p1/statistics/rx_bytes)" -gt $((D0 + 2000000)) ]; }
	wait_for 4 dl_moving  # the download under way before the page opens
	ip netns exec "$(ns lan)" "$CHROMIUM" --headless --no-sandbox --disable-gpu --no-first-run \
		--disable-dev-shm-usage --user-data-dir="$WORKDIR/chromium" --window-size=1200,1000 \
		--virtual-time-budget=4000 --screenshot="$OUT/page.png" \
		"http://192.168.77.1:8125/?token=$(cat "$WORKDIR/state/web-token")" > /dev/null 2>&1 || true
	wait "$dl"
fi

"$PY" - "$OUT" "$r1" "$r2" "$CUT" "$BACK" <<'PY'
import json, sys
out, r1, r2, cut, back = sys.argv[1], float(sys.argv[2]), float(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5])
d = json.load(open(f"{out}/iperf3.json"))
if "error" in d:
    sys.exit("iperf3 failed: " + d["error"])
# What the server received each second: the client's own intervals are what
# it wrote into the agent's socket, which buffers (its first second read
# 236 Mbit/s on two 50 Mbit/s paths).
flow = [i["sum"]["bits_per_second"] / 1e6 for i in d["server_output_json"]["intervals"]]
paths = {int(l.split()[0]): (int(l.split()[1]), int(l.split()[2])) for l in open(f"{out}/paths.dat")}
with open(f"{out}/throughput.dat", "w") as f:
    for t, v in enumerate(flow, 1):
        a, b = paths.get(t, (0, 0))
        f.write(f"{t} {v:.1f} {a} {b}\n")
print()
print(" second  flow Mbit/s   path 1   path 2")
for t, v in enumerate(flow, 1):
    a, b = paths.get(t, (0, 0))
    mark = "   <- path 1 cut" if t == cut + 1 else "   <- path 1 back" if t == back + 1 else ""
    print(f"  {t:5d}  {v:10.1f}  {a:7d}  {b:7d}{mark}")
both = [v for t, v in enumerate(flow, 1) if 3 <= t <= cut]
alone = [v for t, v in enumerate(flow, 1) if cut + 2 <= t <= back]
again = [v for t, v in enumerate(flow, 1) if back + 2 <= t]
avg = lambda x: sum(x) / len(x) if x else 0.0
recovered = next((t - back for t, v in enumerate(flow, 1) if t > back and v > 1.5 * max(r1, r2)), None)
print()
print(f"Each path alone: {r1:.1f} + {r2:.1f} = {r1 + r2:.1f} Mbit/s.")
print(f"The one LAN flow got {avg(both):.1f} Mbit/s with both paths "
      f"({100 * avg(both) / (r1 + r2):.0f}% of the sum), {avg(alone):.1f} on path 2 alone, "
      f"{avg(again):.1f} once path 1 was back"
      + (f" (within {recovered} s)." if recovered else "."))
print(f"iperf3 finished without error: {d['end']['sum_received']['bytes'] / 1e6:.0f} MB in 20 s.")
PY
echo
say "gw-agent status (paths; each LAN flow with its MPTCP subflows: path, local -> concentrator):"
say "  at 3 s (both paths):";          cat "$OUT/subflows-before.txt"
say "  at $((CUT + 3)) s (path 1 down):";  cat "$OUT/subflows-cut.txt"
say "  at $((BACK + 3)) s (path 1 back):"; cat "$OUT/subflows-after.txt"
say "Metrics scraped from /metrics at the end (a selection; Prometheus text format):"
{
	ip netns exec "$(ns conc)" curl -sf http://127.0.0.1:9124/metrics
	ip netns exec "$(ns gw)" curl -sf http://127.0.0.1:9125/metrics
} | grep -E '^(mptcp_concentrator_(connections_accepted_total|flows_closed_total\{outcome="done"|bytes_total|subflows_per_flow_(count|sum)|upstream_connect_seconds_(count|sum))|gw_agent_(path_up|path_bytes_total|path_probe_rtt_seconds|flows_total\{via="concentrator"|bytes_total|concentrator_up|path_manager_joins_total))' |
	sed 's/^/    /'
say "The agent is the path manager: each join opened as backup, made active 100 ms after it is up"
say "(net.mptcp.path_manager in the gateway: $(ip netns exec "$(ns gw)" sysctl -n net.mptcp.path_manager))."

if command -v gnuplot >/dev/null; then
	gnuplot <<GP
set terminal png size 900,450
set output "$OUT/throughput.png"
set title "One LAN TCP flow through gw-agent over two ${RATE} paths"
set xlabel "seconds"; set ylabel "Mbit/s"; set yrange [0:*]; set key below
set arrow from $((CUT + 1)), graph 0 to $((CUT + 1)), graph 1 nohead lc rgb "red" dt 2
set arrow from $((BACK + 1)), graph 0 to $((BACK + 1)), graph 1 nohead lc rgb "dark-green" dt 2
set label "path 1 cut" at $((CUT + 1)).2, graph 0.95
set label "path 1 back" at $((BACK + 1)).2, graph 0.95
plot "$OUT/throughput.dat" using 1:2 with linespoints lw 2 title "flow (iperf3)", \
     "" using 1:3 with lines title "path 1 (bytes out)", \
     "" using 1:4 with lines title "path 2 (bytes out)"
GP
	say "Plot: $OUT/throughput.png"
fi
if [ -s "$OUT/page.png" ]; then
	say "Page: $OUT/page.png (the household's page, served by the agent at http://192.168.77.1:8125/ on the LAN)"
fi
say "Cleaning up the namespaces."
