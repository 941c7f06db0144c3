#!/usr/bin/env bash
# The path emulator (tests/pathemu) against what it is told: delay each way,
# jitter without reordering, loss, and tbf's rate around it.
#
#   a (198.51.100.2) -- emu (tunA <pathemu> tunB) -- b (203.0.113.2)
#
# In emu, what arrives from a is routed into tunA, pathemu holds it and
# writes it into tunB, from where the kernel forwards it on to b; and the
# other way round. Checks are bounds that a correct delay line meets on any
# machine: no packet earlier than its delay (a hard floor), losses within
# binomial bounds, order kept, rate a ratio of tbf's.
cd "$(dirname "$0")"
. ./lib.sh
require_netns
[ -x "${PATHEMU:-}" ] || skip "PATHEMU not built"
[ -c /dev/net/tun ] || skip "needs /dev/net/tun"
command -v iperf3 >/dev/null || skip "needs iperf3"

ns_add a; ns_add emu; ns_add b
link a emu; link emu b
addr a a-emu 198.51.100.2/24; addr emu emu-a 198.51.100.1/24
addr emu emu-b 203.0.113.1/24; addr b b-emu 203.0.113.2/24
ip -n "$(ns a)" route add default via 198.51.100.1
ip -n "$(ns b)" route add default via 203.0.113.1
E="ip netns exec $(ns emu)"
$E sysctl -qw net.ipv4.ip_forward=1 net.ipv4.conf.all.rp_filter=0 net.ipv4.conf.default.rp_filter=0
emu_start() {  # emu_start PATHEMU-ARGS...: (re)start the delay line
	[ -n "${EMU_PID:-}" ] && { kill "$EMU_PID"; wait "$EMU_PID" 2>/dev/null; }
	$E "$PATHEMU" --a tunA --b tunB "$@" > "$WORKDIR/emu.log" 2>&1 &
	EMU_PID=$!
	local i
	for i in $(seq 1 100); do grep -q ready "$WORKDIR/emu.log" && break; sleep 0.02; done
	for t in tunA tunB; do
		ip -n "$(ns emu)" link set "$t" up
		$E sysctl -qw "net.ipv4.conf.$t.rp_filter=0"
	done
	ip -n "$(ns emu)" route replace default dev tunA table 100
	ip -n "$(ns emu)" route replace default dev tunB table 101
}
ip -n "$(ns emu)" rule add iif emu-a lookup 100
ip -n "$(ns emu)" rule add iif emu-b lookup 101
ip netns exec "$(ns b)" "$PY" ./nettool.py serve --bind 203.0.113.2 --base 9000 --udp443 > /dev/null 2>&1 &
ip netns exec "$(ns b)" iperf3 -s -p 5201 > /dev/null 2>&1 &
wait_listen b 5201 || exit 1
A="ip netns exec $(ns a) $PY ./nettool.py"

rtt_bounds() {  # rtt_bounds FLOOR_MS MEDIAN_MAX_MS
	local out
	out=$($A rtt --dst 203.0.113.2:443 --count 200 --interval 0.005) || return 1
	echo "$out"
	echo "$out" | "$PY" -c 'import json, sys
d = json.load(sys.stdin); lo, hi = float(sys.argv[1]), float(sys.argv[2])
sys.exit(0 if d["lost"] == 0 and d["reordered"] == 0 and d["min_ms"] >= lo and d["median_ms"] <= hi else 1)' "$1" "$2"
}
emu_start --delay-ab 15 --delay-ba 10
check "15 ms one way and 10 ms back: no reply under 25 ms, median under 30, none lost or reordered" rtt_bounds 25 30
emu_start --delay-ab 15 --delay-ba 10 --jitter-ab 10
check "with 10 ms of jitter: none under 25 ms, median under 40, replies still in order" rtt_bounds 25 40

loss() {
	local out
	out=$($A rtt --dst 203.0.113.2:443 --count 3000 --interval 0.0005) || return 1
	echo "$out"
	# 2% of 3000 is 60, sd 7.7: [30, 90] is four sd either way.
	echo "$out" | "$PY" -c 'import json, sys
d = json.load(sys.stdin); sys.exit(0 if 30 <= d["lost"] <= 90 else 1)'
}
emu_start --delay-ab 2 --delay-ba 2 --loss-ab 0.02 --seed 7
check "2% loss one way: 3000 probes lose between 30 and 90" loss

rate() {
	local bps
	ip netns exec "$(ns emu)" tc qdisc replace dev emu-b root tbf rate 20mbit burst 32kb latency 100ms
	bps=$(ip netns exec "$(ns a)" iperf3 -c 203.0.113.2 -p 5201 -t 4 -J |
		"$PY" -c 'import json, sys; print(int(json.load(sys.stdin)["end"]["sum_received"]["bits_per_second"]))') || return 1
	ip netns exec "$(ns emu)" tc qdisc del dev emu-b root
	echo "{\"mbit_s\": $((bps / 1000000)), \"configured\": 20, \"rtt_ms\": 25}"
	[ "$bps" -ge 17000000 ] && [ "$bps" -le 21000000 ]
}
emu_start --delay-ab 15 --delay-ba 10
check "20 Mbit/s by tbf over 25 ms of RTT: one TCP flow gets 85-105% of it" rate

# Inside a link (TAP mode, bridged at both ends): c and d on one subnet,
# 10 ms each way between them, invisible to routing.
ns_add c; ns_add d
emu_link c c-d d d-c --delay-ab 10 --delay-ba 10
addr c c-d 192.0.2.1/24; addr d d-c 192.0.2.2/24
ip netns exec "$(ns d)" "$PY" ./nettool.py serve --bind 192.0.2.2 --base 9100 --udp443 > /dev/null 2>&1 &
wait_listen d 9100 || exit 1
tap_link() {
	local out
	out=$(ip netns exec "$(ns c)" "$PY" ./nettool.py rtt --dst 192.0.2.2:443 --count 100 --interval 0.005) || return 1
	echo "$out"
	echo "$out" | "$PY" -c 'import json, sys
d = json.load(sys.stdin); sys.exit(0 if d["lost"] == 0 and d["min_ms"] >= 20 and d["median_ms"] <= 25 else 1)'
}
check "inside a link (TAP, bridged): 10 ms each way, no reply under 20 ms, median under 25" tap_link

stop_emu() {  # SIGTERM: a clean exit (status 0) and the counts line
	local rc=0
	kill "$EMU_PID"; wait "$EMU_PID" || { rc=$?; echo "pathemu exited $rc"; }
	grep "^{" "$WORKDIR/emu.log" || { echo "no counts line"; rc=1; }
	return $rc
}
check "pathemu stops on SIGTERM and reports its counts" stop_emu
finish
