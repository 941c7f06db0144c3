#!/usr/bin/env bash
# Several concentrators behind one service address, on ECMP routing:
#
#   lN -- gN (gw-agent, paths p1 100.64.N.2, p2 100.65.N.2) ==2 links== rtr (BIRD, ECMP)
#   rtr -- b1 (mptcp-concentrator + BIRD; service 192.0.2.1 on lo, own 10.0.1.2)
#   rtr -- b2 (the same; own 10.0.2.2)
#   rtr -- srv (203.0.113.2)
#
# Each box announces 192.0.2.1/32 over BGP while its concentrator keeps a
# route for it in table 5124 (BIRD imports that table); rtr installs both
# next hops and hashes connections by their 4-tuple. A box takes joins only
# on its own address (it announces it; the C flag keeps joins off
# 192.0.2.1), so every subflow of a flow reaches the box that has it.
cd "$(dirname "$0")"
. ./lib.sh
require_netns
[ -x "${AGENT:-}" ] || skip "AGENT not built"
command -v bird >/dev/null && command -v birdc >/dev/null || skip "needs BIRD (bird2)"
command -v nft >/dev/null || skip "needs nftables"

G=4
ns_add rtr; ns_add b1; ns_add b2; ns_add srv
for n in $(seq 1 $G); do ns_add "g$n"; ns_add "l$n"; done
ip netns exec "$(ns rtr)" sysctl -qw net.ipv4.ip_forward=1 net.ipv4.fib_multipath_hash_policy=1
for b in 1 2; do
	link rtr "b$b"
	addr rtr "rtr-b$b" "10.0.$b.1/30"; addr "b$b" "b$b-rtr" "10.0.$b.2/30"
	addr "b$b" lo 192.0.2.1/32
	ip -n "$(ns "b$b")" route add default via "10.0.$b.1"
	ip netns exec "$(ns "b$b")" sysctl -qw net.ipv4.tcp_fastopen=3
	ip -n "$(ns "b$b")" mptcp limits set subflows 8 add_addr_accepted 0
done
link rtr srv
addr rtr rtr-srv 203.0.113.1/24; addr srv srv-rtr 203.0.113.2/24
ip -n "$(ns srv)" route add default via 203.0.113.1
for n in $(seq 1 $G); do
	for p in 1 2; do
		net=$((63 + p))
		ip link add "g$n-p$p" netns "$(ns "g$n")" type veth peer name "r-g$n-p$p" netns "$(ns rtr)"
		ip -n "$(ns "g$n")" link set "g$n-p$p" up; ip -n "$(ns rtr)" link set "r-g$n-p$p" up
		addr "g$n" "g$n-p$p" "100.$net.$n.2/30"; addr rtr "r-g$n-p$p" "100.$net.$n.1/30"
		# As a DHCP client leaves it: a default route per line.
		ip -n "$(ns "g$n")" route add default via "100.$net.$n.1" metric $((100 * p))
	done
	link "l$n" "g$n"
	addr "l$n" "l$n-g$n" "192.168.$n.2/24"; addr "g$n" "g$n-l$n" "192.168.$n.1/24"
	ip -n "$(ns "l$n")" route add default via "192.168.$n.1"
	ip netns exec "$(ns "g$n")" sysctl -q -p ../../deploy/sysctl/90-gw-agent.conf
done
ip netns exec "$(ns srv)" "$PY" ./nettool.py serve --bind 203.0.113.2 --base 9000 > /dev/null 2>&1 &
ip netns exec "$(ns srv)" "$PY" ./udptool.py echo --bind 203.0.113.2 --port 7000 > /dev/null 2>&1 &

# BIRD: each box exports what its concentrator puts in table 5124; rtr
# merges equal BGP routes into one ECMP route.
bird_start() {  # bird_start NS CONFIG
	printf '%s\n' "$2" > "$WORKDIR/bird-$1.conf"
	ip netns exec "$(ns "$1")" bird -c "$WORKDIR/bird-$1.conf" -s "$WORKDIR/bird-$1.ctl" \
		-P "$WORKDIR/bird-$1.pid" > "$WORKDIR/bird-$1.log" 2>&1
}
for b in 1 2; do
	bird_start "b$b" "router id 10.0.$b.2;
protocol device {}
protocol kernel svc { ipv4 { import all; export none; }; kernel table 5124; learn; scan time 1; }
protocol bgp up { local 10.0.$b.2 as 6510$b; neighbor 10.0.$b.1 as 65000;
	hold time 9; ipv4 { import none; export where proto = \"svc\"; }; }" || exit 1
done
bird_start rtr "router id 10.0.0.1;
protocol device {}
protocol kernel { merge paths on; ipv4 { import none; export all; }; }
protocol bgp b1 { local 10.0.1.1 as 65000; neighbor 10.0.1.2 as 65101; hold time 9;
	ipv4 { import all; export none; }; }
protocol bgp b2 { local 10.0.2.1 as 65000; neighbor 10.0.2.2 as 65102; hold time 9;
	ipv4 { import all; export none; }; }" || exit 1

# One TCP Fast Open key for the service (the first box creates the file):
# a gateway's cookie from one box is good at the other, or its flow lands
# there without 0-RTT and, on this kernel, falls back to one path.
# A key per gateway, scoped to its two lines' addresses (the boxes hold
# them all): UDP in a cluster needs keys, the box address its ACCEPT names
# is trusted under a key only.
(umask 077
 for n in $(seq 1 $G); do
	printf '%s %s 100.64.%s.0/24 100.65.%s.0/24\n' "$n" "$(od -An -tx1 -N32 /dev/urandom | tr -d ' \n')" "$n" "$n" > "$WORKDIR/key-g$n"
 done
 cat "$WORKDIR"/key-g* > "$WORKDIR/keys")
box() {  # box N: start box N's concentrator; pid in BOX_PID[N]
	start_concentrator "b$1" "conc-b$1" --allow-client 100.64.0.0/10 --workers 1 --keys "$WORKDIR/keys" \
		--join-address "10.0.$1.2" --service-route 192.0.2.1/32 --box "b$1" \
		--drain-deadline 8 --metrics-listen 127.0.0.1:9189 --tfo-key-file "$WORKDIR/tfo.key"
	BOX_PID[$1]=$CONC_PID
	wait_listen "b$1" 5124
}
box 1 && box 2 || exit 1
AGENT_PIDS=()
for n in $(seq 1 $G); do
	ip netns exec "$(ns "g$n")" "$AGENT" --concentrator 192.0.2.1:5124 --lan "g$n-l$n" --workers 1 \
		--path "g$n-p1,mode=master" --path "g$n-p2" --cluster --control "$WORKDIR/agent-g$n.sock" \
		--key-file "$WORKDIR/key-g$n" \
		> "$WORKDIR/agent-g$n.log" 2>&1 &
	AGENT_PIDS[$n]=$!
done

hops() { ip -n "$(ns rtr)" route show 192.0.2.1 | grep -c "nexthop via\|via 10.0"; }
# route_hops N: rtr's route to the service address has N next hops (within 15 s).
route_hops() {
	local i
	for i in $(seq 1 150); do
		[ "$(ip -n "$(ns rtr)" route show 192.0.2.1 | grep -o 'via 10\.0\.[12]\.2' | sort -u | wc -l)" = "$1" ] &&
			{ ip -n "$(ns rtr)" route show 192.0.2.1; return 0; }
		sleep 0.1
	done
	ip -n "$(ns rtr)" route show 192.0.2.1; return 1
}
check "both boxes announce 192.0.2.1: rtr has an ECMP route over both" route_hops 2
# Every agent running, with both its paths up (each probes the service
# address, which either box may answer).
agents_up() {
	local n
	for n in $(seq 1 $G); do
		kill -0 "${AGENT_PIDS[$n]}" 2>/dev/null || { echo "agent g$n is not running"; tail -5 "$WORKDIR/agent-g$n.log"; return 1; }
		[ "$(ip netns exec "$(ns "g$n")" "$AGENT" status --control "$WORKDIR/agent-g$n.sock" |
			grep -c "^g$n-p[12] .* up ")" -eq 2 ] || return 1
	done
}
check "every gateway's agent runs, both its paths up" wait_for 15 agents_up

metric() {  # metric BOX NAME-AND-LABELS: the value, summed over matching series; fails if none or unreachable
	local page
	page=$(ip netns exec "$(ns "b$1")" curl -sf --max-time 5 http://127.0.0.1:9189/metrics) ||
		{ echo "box $1: metrics unreachable" >&2; return 1; }
	awk -v m="$2" 'index($0, m) == 1 {s += $NF; f = 1} END {if (!f) exit 1; print s + 0}' <<< "$page" ||
		{ echo "box $1: no series $2" >&2; return 1; }
}
accepted() { metric "$1" "mptcp_concentrator_connections_accepted_total{box=\"b$1\""; }
fallbacks() { metric "$1" "mptcp_concentrator_connections_accepted_total{box=\"b$1\",kind=\"tcp_fallback\"}"; }
nstat_of() { ip netns exec "$(ns "b$1")" nstat -az "$2" | awk -v k="$2" '$1 == k {print $2; f = 1} END {exit !f}'; }

# echo_all N BYTES [PACE]: N flows from every gateway's LAN at once, the
# sending spread over PACE seconds; all intact.
echo_all() {
	local n pids=() rc=0
	for n in $(seq 1 $G); do
		ip netns exec "$(ns "l$n")" "$PY" ./nettool.py echo --plain --dst 203.0.113.2:9000 \
			--bytes "$2" --flows "$1" --pace "${3:-0}" > "$WORKDIR/echo-$n.out" 2>&1 &
		pids+=($!)
	done
	for n in "${pids[@]}"; do wait "$n" || rc=1; done
	cat "$WORKDIR"/echo-*.out
	return $rc
}
# Flows relayed by box N, and those of them with two subflows or fewer
# (the initial one and a join from each of the two paths make three): the
# concentrator's subflows-per-flow histogram.
relayed() { metric "$1" "mptcp_concentrator_subflows_per_flow_count{box=\"b$1\""; }
single() { metric "$1" "mptcp_concentrator_subflows_per_flow_bucket{box=\"b$1\",le=\"2\""; }
spread() {
	local f1 f2 o1 o2 s1 s2 g1 g2 p1 p2
	f1=$(relayed 1) && f2=$(relayed 2) && o1=$(single 1) && o2=$(single 2) || return 1
	# Spread over 1 s: the joins are up before a flow ends (the histogram
	# counts a flow's subflows at its first FIN).
	echo_all 8 300000 1 || return 1
	# A box counts a flow at its first FIN, which reaches it after the
	# client has had its echo and closed: the counts are read until they
	# have every flow (5 s at most), not at once.
	F1=$f1 F2=$f2
	all_counted() { [ $(($(relayed 1) - F1 + $(relayed 2) - F2)) -ge $((8 * G)) ]; }
	wait_for 5 all_counted
	g1=$(relayed 1) && g2=$(relayed 2) && p1=$(single 1) && p2=$(single 2) || return 1
	f1=$((g1 - f1)); f2=$((g2 - f2)); o1=$((p1 - o1)); o2=$((p2 - o2))
	# Every subflow on the box of its flow: no box saw a join for a
	# connection it does not have, and every flow had more than one
	# subflow per path (its joins went to the box's own address, from
	# both paths).
	s1=$(nstat_of 1 MPTcpExtMPJoinNoTokenFound) && s2=$(nstat_of 2 MPTcpExtMPJoinNoTokenFound) || return 1
	echo "{\"flows_box1\": $f1, \"flows_box2\": $f2, \"two_subflows_or_fewer\": $((o1 + o2)), \"joins_without_connection\": $(( s1 + s2 ))}"
	if [ $((o1 + o2)) -gt 0 ]; then  # what the kernels were told
		ip -n "$(ns g1)" mptcp limits show; ip -n "$(ns g1)" mptcp endpoint show
		for b in 1 2; do ip -n "$(ns "b$b")" mptcp endpoint show; ip -n "$(ns "b$b")" mptcp limits show
			ip netns exec "$(ns "b$b")" sysctl net.mptcp.allow_join_initial_addr_port; done
		ip netns exec "$(ns g1)" nstat -az | grep -E "Join|AddAddr|Echo" | awk '$2 > 0'
		grep -v "intercepting" "$WORKDIR/agent-g1.log" | tail -8
	fi
	[ "$f1" -gt 0 ] && [ "$f2" -gt 0 ] && [ $((f1 + f2)) -ge $((8 * G)) ] &&
		[ $((o1 + o2)) -eq 0 ] && [ $(( s1 + s2 )) -eq 0 ]
}
check "32 flows from 4 gateways (2 paths each) complete; both boxes carry flows; every flow has a join per path, all on the box of its flow" spread

# LAN UDP: each gateway's carrier session lives on one box, and the shared
# address would take each path to either box (its own 4-tuple): the ACCEPT
# names the box's own address, where every path then goes. Both paths of
# every gateway answered (a PING to the other box would get no PONG), and
# each LAN's datagrams answered, by either path alone.
agent_status() { ip netns exec "$(ns "g$1")" "$AGENT" status --control "$WORKDIR/agent-g$1.sock"; }
udp_on_box() {  # udp_on_box N [BOX]: gateway N's UDP session is up on a box (BOX: that one), both paths answered
	local st
	st=$(agent_status "$1") || return 1
	echo "$st" | grep -qE "^udp: session up \(box 10\.0\.${2:-[12]}\.2\)" &&
		[ "$(echo "$st" | grep -cE "^  path g$1-p[12] +usable rtt ([1-9][0-9]*|0\.[0-9]*[1-9])")" -eq 2 ]
}
udp_all_on_box() {
	local n
	for n in $(seq 1 $G); do udp_on_box "$n" "${1:-}" || return 1; done
}
udp_bursts() {  # every LAN at once: 20 datagrams, each from a new source port, all answered
	local n pids=() rc=0
	for n in $(seq 1 $G); do
		ip netns exec "$(ns "l$n")" "$PY" ./udptool.py burst --to 203.0.113.2:7000 --count 20 \
			--size 300 > "$WORKDIR/udp-$n.out" 2>&1 &
		pids+=($!)
	done
	for n in "${pids[@]}"; do wait "$n" || rc=1; done
	cat "$WORKDIR"/udp-*.out
	return $rc
}
p1_out() {  # every agent has taken path 1 out of UDP use (its link is down)
	local n
	for n in $(seq 1 $G); do agent_status "$n" | grep -qE "^  path g$n-p1 +unusable" || return 1; done
}
udp_cluster() {
	local n rc=0
	wait_for 10 udp_all_on_box || {
		for n in $(seq 1 $G); do agent_status "$n" | grep -A3 '^udp'; done; return 1; }
	for n in $(seq 1 $G); do agent_status "$n" | grep '^udp'; done
	udp_bursts || return 1
	# Path 1 of every gateway down: the same, by path 2 alone.
	for n in $(seq 1 $G); do ip -n "$(ns "g$n")" link set "g$n-p1" down; done
	wait_for 5 p1_out || { echo "path 1 still in use"; rc=1; }
	udp_bursts || rc=1
	for n in $(seq 1 $G); do ip -n "$(ns "g$n")" link set "g$n-p1" up
		ip -n "$(ns "g$n")" route replace default via "100.64.$n.1" metric 100; done
	wait_for 15 agents_up && wait_for 10 udp_all_on_box || { echo "paths not back"; rc=1; }
	return $rc
}
check "UDP: every gateway's session on one box, reached there by both paths (the ACCEPT's box address); each LAN's datagrams answered, by path 2 alone too" udp_cluster

# Drain box 1 while long flows run on both boxes.
box1_busy() { [ "$(metric 1 'mptcp_concentrator_flows_active{')" -gt 0 ]; }
drain() {
	local t0 tw tg long="" rc=0 a1 a2 i batch
	# Long flows until box 1 carries some (the shared address spreads
	# flows by their ports: 8 of them all land on box 2 once in 256 runs,
	# and box 1 would then exit at once, with nothing to drain).
	for batch in 1 2 3 4; do
		for n in $(seq 1 $G); do
			ip netns exec "$(ns "l$n")" "$PY" ./nettool.py echo --plain --dst 203.0.113.2:9000 \
				--bytes 2000000 --pace 4 --flows 2 > "$WORKDIR/long-$batch-$n.out" 2>&1 &
			long="$long $!"
		done
		wait_for 2 box1_busy && break
	done
	echo "{\"long_flow_batches\": $batch}"
	t0=$(date +%s%N)
	kill -USR1 "${BOX_PID[1]}"
	route_hops 1 > /dev/null || { echo "route not withdrawn"; return 1; }
	tg=$(date +%s%N)
	local b1 b2
	a1=$(accepted 1) && a2=$(accepted 2) || return 1
	echo_all 4 50000 > /dev/null || { echo "new flows failed during the drain"; rc=1; }
	b1=$(accepted 1) && b2=$(accepted 2) || return 1
	a1=$((b1 - a1)); a2=$((b2 - a2))
	for i in $long; do wait "$i" || rc=1; done
	cat "$WORKDIR"/long-*.out
	for i in $(seq 1 200); do kill -0 "${BOX_PID[1]}" 2>/dev/null || break; sleep 0.05; done
	wait "${BOX_PID[1]}"; local code=$?
	tw=$(date +%s%N)
	grep -h "draining\|drained" "$WORKDIR/conc-b1.log" | cut -c14-
	echo "{\"route_gone_ms\": $(( (tg - t0) / 1000000 )), \"box1_exited_ms\": $(( (tw - t0) / 1000000 )), \"exit\": $code, \"new_flows_box1\": $a1, \"new_flows_box2\": $a2}"
	[ $rc -eq 0 ] && [ "$code" -eq 0 ] && [ "$a1" -eq 0 ] && [ "$a2" -ge $((4 * G)) ]
}
check "drain box 1 (SIGUSR1): route withdrawn, new flows all to box 2, running flows finish, box 1 exits 0" drain

back() {
	box 1 || return 1
	route_hops 2 && wait_for 15 agents_up && spread
}
check "box 1 back: announced again and taking new flows" back

# Box 1 dies outright (concentrator and BIRD killed, as at a power cut).
kill_box() {
	local pid rc=0 long2 a2 n
	ip netns exec "$(ns l1)" "$PY" ./nettool.py echo --plain --dst 203.0.113.2:9000 \
		--bytes 1500000 --pace 3 --flows 4 > "$WORKDIR/kill-long.out" 2>&1 &
	long2=$!
	sleep 1
	kill -KILL "${BOX_PID[1]}"; wait "${BOX_PID[1]}" 2>/dev/null
	kill -KILL "$(cat "$WORKDIR/bird-b1.pid")"
	route_hops 1 > /dev/null || { echo "route not withdrawn"; return 1; }
	local b2
	a2=$(accepted 2) || return 1
	echo_all 4 50000 || rc=1
	wait $long2
	b2=$(accepted 2) || return 1
	echo "{\"flows_on_the_killed_box_failed_or_not\": \"$(tail -1 "$WORKDIR/kill-long.out" | cut -c1-120)\", \"new_flows_box2\": $((b2 - a2))}"
	# UDP: the gateways whose sessions were on box 1 open new ones on box 2
	# (box 1 answers on no line: a new session by the shared address).
	wait_for 15 udp_all_on_box 2 || {
		for n in $(seq 1 $G); do agent_status "$n" | grep -A3 '^udp'; done; rc=1; }
	udp_bursts || rc=1
	[ $rc -eq 0 ] && [ $((b2 - a2)) -ge $((4 * G)) ]
}
check "box 1 killed: route withdrawn, every new flow completes on box 2; UDP sessions move to box 2" kill_box
check "box 2 exits cleanly" stop_concentrator "${BOX_PID[2]}" conc-b2
agents_stop() {
	local n rc=0
	for n in $(seq 1 $G); do stop_agent_log "${AGENT_PIDS[$n]}" "$WORKDIR/agent-g$n.log" || rc=1; done
	return $rc
}
check "every gateway's agent exits cleanly" agents_stop
finish
