#!/usr/bin/env bash
# IPv6 paths, handover mode and `gw-agent status`, on the two-path testbed
# with IPv6 added (lib.sh two_path_v6):
#
#   lan (2001:db8:77::2) -- gw: gw-agent --(gw-p1: 2001:db8:1::2 ; gw-p2: 2001:db8:2::2)--
#       conc (service [2001:db8:ff::1]:5124) -- srv (2001:db8:3::2)
#
# Path 2 is in handover mode: no joins from it while path 1 is up; when
# path 1 goes, the agent (the path manager) opens joins from path 2, the
# running flow gets a subflow on it and carries on; when path 1 returns,
# path 2 goes back to standby. The concentrator is reached over IPv6, so
# the probes run over IPv6 too. `gw-agent status` is read at each step and
# checked against the kernel (the running flow's subflows, MPTCP_SUBFLOW_ADDRS
# on the agent's socket; no MPTCP endpoints at all).
cd "$(dirname "$0")"
. ./lib.sh
require_netns
[ -x "${AGENT:-}" ] || skip "AGENT not built"
command -v nft >/dev/null || skip "needs nftables"

two_path_topology 50mbit
two_path_v6

ip netns exec "$(ns srv)" "$PY" ./nettool.py serve --bind 2001:db8:3::2 --bind 203.0.113.2 \
	--base 9000 > "$WORKDIR/servers.log" 2>&1 &
start_concentrator conc conc --allow-client 2001:db8:1::/64 --allow-client 2001:db8:2::/64 \
	--allow-client 198.51.100.0/24 --workers 1
wait_listen srv 9000 && wait_listen conc 5124 || exit 1

CTL=$WORKDIR/control.sock
status() { ip netns exec "$(ns gw)" "$AGENT" status --control "$CTL"; }
eps() { ip -n "$(ns gw)" mptcp endpoint show; }
# The status rows of a path's families: "ROWS-ENDING" matched against each
# (the last column is the path's local id while joins are opened from it).
rows() { echo "$1" | awk -v p="$2" '/^gw-p/ { cur = $1 } /^FLOWS/ { exit } cur == p && NF'; }
joins() {  # joins STATUS PATH ID|-: every family row of PATH ends with ID
	local r; r=$(rows "$1" "$2")
	[ "$(echo "$r" | wc -l)" -eq 2 ] && ! echo "$r" | grep -qvE " $3\$"
}

no_agent() {
	local out rc=0
	out=$(status 2>&1) || rc=$?
	echo "$out"
	[ $rc -eq 1 ] && echo "$out" | grep -q "cannot reach the agent at $CTL"
}
check "gw-agent status without an agent: exit 1 and says where it looked" no_agent

ip netns exec "$(ns gw)" "$AGENT" --concentrator '[2001:db8:ff::1]:5124' --lan gw-lan \
	--workers 1 --path gw-p1 --path gw-p2,mode=handover --control "$CTL" \
	--metrics-listen 127.0.0.1:9125 > "$WORKDIR/agent.log" 2>&1 &
AGENT_PID=$!
for i in $(seq 1 100); do grep -q "intercepting TCP" "$WORKDIR/agent.log" && break; sleep 0.05; done

standby() {
	local s e
	e=$(eps); s=$(status) || return 1
	echo "$e"; echo "$s" | sed -n '1,/^FLOWS/p'
	# the agent is the path manager: no endpoints; joins from path 1 on
	# each family, none from path 2
	[ -z "$e" ] && joins "$s" gw-p1 1 && joins "$s" gw-p2 - &&
	ip -n "$(ns gw)" -6 rule show | grep -q "from 2001:db8:1::2 lookup 19793" &&
	ip -n "$(ns gw)" -6 route show table 19794 | grep -q "default via 2001:db8:2::1 dev gw-p2" &&
	# status agrees: path 1 up on both families with a probe RTT over IPv6,
	# path 2 in standby, endpoint ids as the kernel shows them
	echo "$s" | grep -E "^gw-p1 +on +up +198.51.100.2 " >/dev/null &&
	echo "$s" | grep -E "^ +up +2001:db8:1::2 +2001:db8:1::1 +[0-9.]+ ms" >/dev/null &&
	echo "$s" | grep -E "^gw-p2 +handover +standby +198.51.100.66 " >/dev/null &&
	echo "$s" | grep -E "^ +standby +2001:db8:2::2 " >/dev/null
}
check "handover: joins only from path 1 (IPv4 and IPv6), no MPTCP endpoints; status shows path 2 in standby" eventually 10 standby

# One IPv6 LAN flow, 24 MiB each way paced over 12 s, across the cut.
ip netns exec "$(ns lan)" "$PY" ./nettool.py echo --plain --dst '[2001:db8:3::2]:9000' \
	--bytes $((24 << 20)) --pace 12 > "$WORKDIR/flow.out" 2>&1 &
FLOW=$!

flow_on_p1() {
	local s; s=$(status) || return 1
	echo "$s" | sed -n '/^FLOWS/,$p'
	echo "$s" | grep -E "^2001:db8:77::2\]?:?[0-9]* -> \[2001:db8:3::2\]:9000 +via concentrator|2001:db8:77::2.* -> \[2001:db8:3::2\]:9000  via concentrator" >/dev/null &&
	echo "$s" | grep -E "^ +1 subflow$" >/dev/null &&
	echo "$s" | grep -E "^ +gw-p1 +\[2001:db8:1::2\]:[0-9]+ -> \[2001:db8:ff::1\]:5124 +established" >/dev/null
}
check "status lists the IPv6 flow with its one subflow, on path 1" eventually 10 flow_on_p1

ip -n "$(ns gw)" link set gw-p1 down
T_CUT=$(date +%s.%N)
handed_over() {
	local i s
	for i in $(seq 1 40); do
		s=$(status)
		joins "$s" gw-p2 "2 backup" && break
		sleep 0.025
	done
	echo "$s" | sed -n '1,/^FLOWS/p'
	echo "joins from path 2 after $("$PY" -c "import sys,time; print(round(time.time() - float(sys.argv[1]), 3))" "$T_CUT") s"
	joins "$s" gw-p2 "2 backup" && ! rows "$s" gw-p1 | grep -qE " 1$"
}
check "path 1 down: joins from path 2 (both families) within 1 s" handed_over
subflow_on_p2() {
	local s; s=$(status) || return 1
	echo "$s" | grep -E "^gw-p[12] " ; echo "$s" | sed -n '/^FLOWS/,$p'
	echo "$s" | grep -E "^gw-p1 +on +down \(link\)" >/dev/null &&
	echo "$s" | grep -E "^gw-p2 +handover +up " >/dev/null &&
	echo "$s" | grep -E "^ +gw-p2 +\[2001:db8:2::2\]:[0-9]+ -> \[2001:db8:ff::1\]:5124 +established" >/dev/null
}
check "the running flow got a subflow on path 2 (status shows it established)" eventually 10 subflow_on_p2
new_flow_v6() {
	ip netns exec "$(ns lan)" "$PY" ./nettool.py echo --plain --dst '[2001:db8:3::2]:9000' --bytes $((1 << 20)) &&
	ip netns exec "$(ns lan)" "$PY" ./nettool.py echo --plain --dst 203.0.113.2:9000 --bytes $((1 << 20)) ||
		{ tail -5 "$WORKDIR/agent.log"; tail -5 "$WORKDIR/conc.log"; return 1; }
}
check "new IPv6 and IPv4 flows start on path 2 while path 1 is down" new_flow_v6

# Link up; IPv6 dropped the address with the link (keep_addr_on_down=0), so
# it comes back as SLAAC or DHCPv6 would bring it, then the defaults.
ip -n "$(ns gw)" link set gw-p1 up; addr gw gw-p1 2001:db8:1::2/64; dhcp_default; dhcp_default6
back_to_standby() {
	local e s
	e=$(eps); s=$(status) || return 1
	echo "$e"; echo "$s" | grep -E "^gw-p[12] |^ +(up|standby|down)"
	[ -z "$e" ] && joins "$s" gw-p1 1 && joins "$s" gw-p2 - &&
	echo "$s" | grep -E "^gw-p2 +handover +standby" >/dev/null
}
check "path 1 back: path 2 returns to standby, no joins from it" eventually 10 back_to_standby
flow_done() {
	wait $FLOW; local rc=$?
	cat "$WORKDIR/flow.out"
	[ $rc -eq 0 ] && grep -q '"ok": 1' "$WORKDIR/flow.out"
}
check "the IPv6 flow spanning both changes completed, 24 MiB each way, hashes equal" flow_done

no_errors() { ! grep -E " (error|critical):" "$WORKDIR/agent.log"; }
# Idle, with IPv4 and IPv6 on both paths: reconciles come from the 2 s
# period (and real events), not from the echoes of the agent's own route
# refreshes (which made about 20 a second).
reconciles() { metric_at gw 127.0.0.1:9125 gw_agent_path_reconciles_total; }
idle_reconciles() {
	local a b
	# 3 s is the window measured, not a wait for something to happen.
	a=$(reconciles) && sleep 3 && b=$(reconciles) || { echo "metrics unreachable"; return 1; }
	echo "{\"reconciles_in_3s_idle\": $((b - a))}"
	[ $((b - a)) -le 4 ]
}
check "idle dual-stack paths: at most 4 reconciles in 3 s (the 2 s period), not a loop" idle_reconciles
check "the agent logged no errors (IPv6 routes refresh cleanly every 2 s)" no_errors

stop_agent() {
	kill -TERM "$AGENT_PID"; wait "$AGENT_PID" || { tail -30 "$WORKDIR/agent.log"; return 1; }
	[ ! -e "$CTL" ] && [ -z "$(eps)" ] && ! ip -n "$(ns gw)" -6 rule show | grep -q "lookup 1979[34]" &&
	[ "$(ip netns exec "$(ns gw)" sysctl -n net.mptcp.path_manager)" = kernel ]
}
check "agent exits cleanly, removes its IPv6 rules and the control socket, puts the kernel's path manager back" stop_agent
check "concentrator exits cleanly" stop_concentrator "$CONC_PID" conc
finish
