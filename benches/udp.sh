#!/usr/bin/env bash
# udp.sh - LAN UDP through gw-agent and mptcp-concentrator (docs/udp-carrier.md),
# side by side with the same traffic routed directly, on the two-path
# testbed (tests/netns/lib.sh's two_path_topology):
#
#   latency   UDP ping-pong (100 bytes, one at a time): through the agent and
#             the concentrator, and from the gateway itself over path 1
#             straight to the server (routed by the concentrator's host)
#   cpu       iperf3 -u at a fixed rate through both: CPU time of each daemon
#             per datagram carried (/proc/PID/stat), and what arrived
#   ceiling   iperf3 -u as fast as one flow goes (-b 0): ours, and routed
#   cut       a call-like stream (50 datagrams/s of 200 bytes both ways),
#             path 1 cut (link down) at 2 s: failover, redundant, and the
#             alternative a router without a tunnel has (the kernel's own
#             routing, the second default route by metric, masquerade:
#             conntrack keeps the flow's old mapping, so its datagrams leave
#             by line 2 with line 1's address and their answers are lost
#             until the entry expires)
#
#   sudo benches/udp.sh            # about 90 s; BUILD (build), RATE (1000mbit)
#
# Prints one JSON line per figure, writes $OUT/udp.jsonl (OUT: $BUILD/bench).
set -u
cd "$(dirname "$0")/.."
BUILD=${BUILD:-build}
RATE=${RATE:-1000mbit}
CONCENTRATOR=$PWD/$BUILD/concentrator/mptcp-concentrator
AGENT=$PWD/$BUILD/gw-agent/gw-agent
OUT=${OUT:-$PWD/$BUILD/bench}
mkdir -p "$OUT"
TEST_NAME=udp-bench
FINISH_NOT_NEEDED=1
cd tests/netns
. ./lib.sh
require_netns
[ -x "$AGENT" ] || { log "no $AGENT: build first"; exit 1; }
: > "$OUT/udp.jsonl"
emit() { echo "$1" | tee -a "$OUT/udp.jsonl"; }

two_path_topology "$RATE" || exit 1
U="$PY ./udptool.py"
ip netns exec "$(ns srv)" $U echo --bind 203.0.113.2 --port 7000 > /dev/null 2>&1 &
ip netns exec "$(ns srv)" iperf3 -s -p 5201 > /dev/null 2>&1 &
ip netns exec "$(ns conc)" sysctl -qw net.ipv4.ip_forward=1
printf '1 %s any\n' "$(od -An -tx1 -N32 /dev/urandom | tr -d ' \n')" > "$WORKDIR/keys"; chmod 600 "$WORKDIR/keys"
start_concentrator conc conc --allow-client 198.51.100.0/24 --keys "$WORKDIR/keys" --workers 1 \
	--metrics-listen 127.0.0.1:9180 --udp-rate-per-gateway 0
CONC=$CONC_PID
wait_listen conc 5124 && wait_listen srv 5201 || exit 1

start_agent() {  # start_agent ARGS...
	ip netns exec "$(ns gw)" "$AGENT" --concentrator 192.0.2.1:5124 --lan gw-lan --workers 1 \
		--path gw-p1,mode=master --path gw-p2 --key-file "$WORKDIR/keys" \
		--control "$WORKDIR/agent.sock" --metrics-listen 127.0.0.1:9181 "$@" \
		> "$WORKDIR/agent.log" 2>&1 &
	AGENT_PID=$!
	wait_for 10 session_up || { cat "$WORKDIR/agent.log"; exit 1; }
	agent_paths_up "$WORKDIR/agent.sock" > /dev/null || exit 1
}
session_up() { [ "$(metric_at gw 127.0.0.1:9181 gw_agent_udp_session_up)" = 1 ]; }
cpu_ticks() { awk '{ print $14 + $15 }' "/proc/$1/stat"; }
lan() { ip netns exec "$(ns lan)" "$@"; }

start_agent
# ---- latency ----
ours=$(lan $U pingpong --to 203.0.113.2:7000 --count 3000 --size 100)
direct=$(ip netns exec "$(ns gw)" $U pingpong --to 203.0.113.2:7000 --count 3000 --size 100 \
	--bind 198.51.100.2)
emit "{\"figure\": \"latency\", \"ours\": $ours, \"routed\": $direct}"

# ---- CPU per datagram at a fixed rate ----
hz=$(getconf CLK_TCK)
for spec in "20M 1200" "20M 200"; do
	set -- $spec
	a0=$(cpu_ticks "$AGENT_PID"); c0=$(cpu_ticks "$CONC")
	d0=$(metric_at gw 127.0.0.1:9181 'gw_agent_udp_datagrams_total{direction="up"}')
	res=$(lan iperf3 -c 203.0.113.2 -p 5201 -u -b "$1" -l "$2" -t 5 -J)
	a1=$(cpu_ticks "$AGENT_PID"); c1=$(cpu_ticks "$CONC")
	d1=$(metric_at gw 127.0.0.1:9181 'gw_agent_udp_datagrams_total{direction="up"}')
	emit "$("$PY" -c '
import json, sys
r = json.loads(sys.argv[1]); hz = int(sys.argv[2]); n = max(1, int(sys.argv[4]))
a, c = [int(x) for x in sys.argv[3].split()], int(sys.argv[5])
s = r["end"]["sum"]
print(json.dumps({"figure": "cpu_per_datagram", "rate": sys.argv[6], "bytes": int(sys.argv[7]),
                  "datagrams_carried": n, "agent_us": round(a[0] * 1e6 / hz / n, 2),
                  "concentrator_us": round(c * 1e6 / hz / n, 2),
                  "received_mbit_s": round(s["bits_per_second"] / 1e6, 1),
                  "lost_percent": round(s.get("lost_percent", 0), 2)}))' \
		"$res" "$hz" "$((a1 - a0))" "$((d1 - d0))" "$((c1 - c0))" "$1" "$2")"
done

# ---- one flow's ceiling ----
ceiling() {  # ceiling NS [-B ADDR]
	local ns=$1; shift
	ip netns exec "$(ns "$ns")" iperf3 -c 203.0.113.2 -p 5201 -u -b 0 -l 1200 -t 5 -J "$@" |
		"$PY" -c '
import json, sys
s = json.load(sys.stdin)["end"]["sum"]   # UDP: the sender rate, the receiver loss
lost = s.get("lost_percent", 0)
print(json.dumps({"sent_mbit_s": round(s["bits_per_second"] / 1e6, 1), "lost_percent": round(lost, 2),
                  "received_mbit_s": round(s["bits_per_second"] * (1 - lost / 100) / 1e6, 1)}))'
}
emit "{\"figure\": \"ceiling_one_flow\", \"ours\": $(ceiling lan), \"routed\": $(ceiling gw -B 198.51.100.2)}"

# ---- a path cut under a call ----
cut() {  # cut: the call, path 1's link down at 2 s, back after
	lan $U call --to 203.0.113.2:7000 --rate 50 --size 200 --seconds 6 > "$WORKDIR/call.json" &
	local pid=$!
	sleep 2
	ip -n "$(ns conc)" link set conc-p1 down
	wait $pid
	ip -n "$(ns conc)" link set conc-p1 up
	dhcp_default
	cat "$WORKDIR/call.json"
}
failover=$(cut)
wait_for 10 agent_paths_up "$WORKDIR/agent.sock"
kill -TERM "$AGENT_PID"; wait "$AGENT_PID"
start_agent --udp redundant
redundant=$(cut)
wait_for 10 agent_paths_up "$WORKDIR/agent.sock"
kill -TERM "$AGENT_PID"; wait "$AGENT_PID"
# The alternative: no agent; the gateway routes the LAN (masquerade out of
# either line) by its two default routes; the kernel drops path 1's when its
# link goes down. The server sees the call move to another address.
ip netns exec "$(ns gw)" nft -f - <<'NFT'
table ip benchnat {
	chain post {
		type nat hook postrouting priority srcnat;
		oifname { "gw-p1", "gw-p2" } masquerade
	}
}
NFT
routed=$(cut)
emit "{\"figure\": \"cut_call\", \"failover\": $failover, \"redundant\": $redundant, \"routed_metric_failover\": $routed}"
stop_concentrator "$CONC" conc
