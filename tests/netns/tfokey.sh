#!/usr/bin/env bash
# TCP Fast Open keys and MPTCP, on the two-path testbed. A gateway holding
# a TFO cookie that the concentrator no longer accepts has its SYN's data
# refused, and the kernel falls that MPTCP connection back to plain TCP:
# one path, no failover (MPTcpExtMPCapableDataFallback). So:
#   - the concentrator owns its key (--tfo-key-file): a "reboot" (the
#     kernel's key changes) loses no cookie, and a rotation by reload keeps
#     the old key as the backup;
#   - the agent notices a fallen-back flow and makes the kernel forget the
#     cookie, so against a concentrator that stopped accepting TFO only the
#     first flow is lost to one path, not every one.
cd "$(dirname "$0")"
. ./lib.sh
require_netns
[ -x "${AGENT:-}" ] || skip "AGENT not built"

two_path_topology 200mbit
ip netns exec "$(ns conc)" sysctl -q -p ../../deploy/sysctl/90-mptcp-concentrator.conf
ip netns exec "$(ns srv)" "$PY" ./nettool.py serve --bind 203.0.113.2 --base 9000 > /dev/null 2>&1 &
KEYFILE=$WORKDIR/tfo-key
conc_start() {
	start_concentrator conc "conc$1" --listen 192.0.2.1:5124 --allow-client 198.51.100.0/24 \
		--workers 1 --tfo-key-file "$KEYFILE"
	CONC_MAIN=$CONC_PID
	wait_listen conc 5124
}
conc_start 1
wait_listen srv 9000 || exit 1
ip netns exec "$(ns gw)" "$AGENT" --concentrator 192.0.2.1:5124 --lan gw-lan --workers 1 \
	--control "$WORKDIR/control.sock" \
	--path gw-p1 --path gw-p2 --metrics-listen 127.0.0.1:9125 > "$WORKDIR/agent.log" 2>&1 &
AGENT_PID=$!
for i in $(seq 1 100); do grep -q "intercepting TCP" "$WORKDIR/agent.log" && break; sleep 0.05; done

L="ip netns exec $(ns lan) $PY ./nettool.py"
# Each reader prints a number or fails: a counter that cannot be read is an
# error, never a 0 (a check of differences would pass on two empty reads).
num() { local v; v=$(awk -v k="$1" '$1 == k { print $2; f = 1 } END { exit !f }') && [ -n "$v" ] && echo "$v"; }
gw_nstat() { ip netns exec "$(ns gw)" nstat -az MPTcpExtMPCapableDataFallback | num MPTcpExtMPCapableDataFallback; }
conc_nstat() { ip netns exec "$(ns conc)" nstat -az "$1" | num "$1"; }
agent_fell_back() { metric_at gw 127.0.0.1:9125 gw_agent_flows_fallen_back_total; }
flows() {  # flows N: N LAN flows one after another, 256 KiB each way
	local i
	for i in $(seq 1 "$1"); do
		$L echo --plain --dst 203.0.113.2:9000 --bytes $((256 << 10)) > /dev/null || return 1
	done
}

key_created() {
	[ -f "$KEYFILE" ] && [ "$(stat -c %a "$KEYFILE")" = 600 ] && grep -qE '^[0-9a-f]{32}$' "$KEYFILE"
}
check "a missing key file is created (mode 600, 16 random bytes)" key_created
check_0rtt "warm-up: the gateway gets its cookie" flows 3

# A reboot: the kernel's own key changes; the daemon restarts with its file.
reboot() {
	local fb0 ag0 tfo0 fb1 ag1 tfo1
	stop_concentrator "$CONC_MAIN" conc1 || return 1
	ip netns exec "$(ns conc)" sysctl -qw net.ipv4.tcp_fastopen_key="$(od -An -tx4 -N16 /dev/urandom | tr -s ' ' | sed 's/^ //; s/ /-/g')"
	conc_start 2 || return 1
	fb0=$(gw_nstat) && ag0=$(agent_fell_back) && tfo0=$(conc_nstat TcpExtTCPFastOpenPassive) || return 1
	flows 5 || return 1
	fb1=$(gw_nstat) && ag1=$(agent_fell_back) && tfo1=$(conc_nstat TcpExtTCPFastOpenPassive) || return 1
	echo "{\"fallbacks\": $((fb1 - fb0)), \"agent_counted\": $((ag1 - ag0)), \"requests_in_the_syn\": $((tfo1 - tfo0))}"
	[ $((fb1 - fb0)) -eq 0 ] && [ $((tfo1 - tfo0)) -ge 5 ]
}
check_0rtt "restart after the kernel's key changed: 5 flows, 0-RTT, none fell back to one path" reboot

# Rotation: a new primary in the file and a reload; the old key stays valid.
rotate() {
	local fb0 fb1 tfo0 tfo1
	od -An -tx1 -N16 /dev/urandom | tr -d ' \n' > "$KEYFILE.new"; echo >> "$KEYFILE.new"
	chmod 600 "$KEYFILE.new"; mv "$KEYFILE.new" "$KEYFILE"
	reload "$CONC_MAIN" "$WORKDIR/conc2.log" || return 1
	grep -h "TCP Fast Open key" "$WORKDIR/conc2.log" | tail -1 | cut -c14-
	fb0=$(gw_nstat) && tfo0=$(conc_nstat TcpExtTCPFastOpenPassive) || return 1
	flows 5 || return 1
	fb1=$(gw_nstat) && tfo1=$(conc_nstat TcpExtTCPFastOpenPassive) || return 1
	echo "{\"fallbacks\": $((fb1 - fb0)), \"requests_in_the_syn\": $((tfo1 - tfo0))}"
	[ $((fb1 - fb0)) -eq 0 ] && [ $((tfo1 - tfo0)) -ge 5 ]
}
check_0rtt "key rotated by reload: 5 flows, 0-RTT with the old cookie, none fell back" rotate

# The concentrator stops accepting TFO (server side off): the cookie the
# gateway holds is refused every time. The first flow sends it and falls
# back to one path (the kernel's doing, which the agent cannot prevent);
# the agent counts it and makes the kernel forget the cookie, so the other
# four are whole MPTCP flows. Exactly one: zero would mean the cookie was
# never sent, and the forgetting never ran.
tfo_off() {
	local fb0 fb1 ag0 ag1 rc=0
	ip netns exec "$(ns conc)" sysctl -qw net.ipv4.tcp_fastopen=1
	fb0=$(gw_nstat) && ag0=$(agent_fell_back) || rc=1
	flows 5 || rc=1
	fb1=$(gw_nstat) && ag1=$(agent_fell_back) || rc=1
	ip netns exec "$(ns conc)" sysctl -qw net.ipv4.tcp_fastopen=3
	[ $rc -eq 0 ] || return 1
	echo "{\"fallbacks\": $((fb1 - fb0)), \"agent_counted\": $((ag1 - ag0))}"
	[ $((fb1 - fb0)) -eq 1 ] && [ $((ag1 - ag0)) -eq 1 ]
}
check_0rtt "TFO refused by the concentrator: exactly the first of 5 flows falls back, the agent counts it and forgets the cookie" tfo_off
check "agent exits cleanly" stop_agent_log $AGENT_PID "$WORKDIR/agent.log"
check "concentrator exits cleanly" stop_concentrator "$CONC_MAIN" conc2
finish
