#!/usr/bin/env bash
# A home whose devices misbehave, on the two-path testbed: one LAN device
# opening hundreds of connections must not use up the home's quota at the
# concentrator, and a home at the concentrator's limit must keep its paths and its
# Internet (the agent falls back as --fallback says, and probes answered
# with Error 64 do not take paths down).
#
#   lan (192.168.77.2, .3, .4) -- gw (gw-agent, 2 paths) -- conc (200 flows at most) -- srv
cd "$(dirname "$0")"
. ./lib.sh
require_netns
[ -x "${AGENT:-}" ] || skip "AGENT not built"

two_path_topology 200mbit
two_path_v6
# The ISP's router forwards, so a flow the agent sends direct (fallback)
# reaches the server without the concentrator.
ip netns exec "$(ns conc)" sysctl -qw net.ipv4.ip_forward=1
# Three LAN devices, each with its own MAC address (the agent's cap is per
# device): .2 on a bridge in the lan namespace, .3 and .4 each on a veth of
# its own plugged into that bridge, with a source rule to leave by it.
LN=$(ns lan)
ip netns exec "$LN" sysctl -qw net.ipv4.conf.all.arp_ignore=1 net.ipv4.conf.all.arp_announce=2 \
	net.ipv4.conf.all.rp_filter=0 net.ipv4.conf.default.rp_filter=0
ip -n "$LN" link add lanbr type bridge
ip -n "$LN" addr flush dev lan-gw
ip -n "$LN" link set lan-gw master lanbr
ip -n "$LN" link set lanbr up
ip -n "$LN" addr add 192.168.77.2/24 dev lanbr
ip -n "$LN" addr add 2001:db8:77::2/64 dev lanbr nodad
ip -n "$LN" route replace default via 192.168.77.1 dev lanbr
ip -n "$LN" -6 route replace default via 2001:db8:77::1 dev lanbr
for h in 3 4; do
	ip -n "$LN" link add "lan-d$h" type veth peer name "lan-b$h"
	ip -n "$LN" link set "lan-b$h" master lanbr up
	ip -n "$LN" link set "lan-d$h" up
	ip -n "$LN" addr add "192.168.77.$h/24" dev "lan-d$h"
	ip -n "$LN" rule add from "192.168.77.$h" lookup "20$h"
	ip -n "$LN" route add 192.168.77.0/24 dev "lan-d$h" table "20$h"
	ip -n "$LN" route add default via 192.168.77.1 dev "lan-d$h" table "20$h"
done
# A fourth device, IPv6 only, for the many-addresses check: its addresses
# (2001:db8:77::100 and on, added by the check) leave by its own veth.
ip -n "$LN" link add lan-d6 type veth peer name lan-b6
ip -n "$LN" link set lan-b6 master lanbr up
ip -n "$LN" link set lan-d6 up
ip -n "$LN" -6 rule add from 2001:db8:77::100/120 lookup 206
ip -n "$LN" -6 route add 2001:db8:77::/64 dev lan-d6 table 206
ip -n "$LN" -6 route add default via 2001:db8:77::1 dev lan-d6 table 206
ip netns exec "$(ns srv)" "$PY" ./nettool.py serve --bind 203.0.113.2 --bind 2001:db8:3::2 --base 9000 > /dev/null 2>&1 &
start_concentrator conc conc --listen 192.0.2.1:5124 --allow-client 198.51.100.0/24 \
	--max-flows 200 --workers 1
CONC_MAIN=$CONC_PID
wait_listen srv 9000 && wait_listen conc 5124 || exit 1
ip netns exec "$(ns gw)" "$AGENT" --concentrator 192.0.2.1:5124 --lan gw-lan --workers 1 \
	--path gw-p1 --path gw-p2 --probe-interval 0.5 --max-flows-per-host 100 \
	--control "$WORKDIR/control.sock" --metrics-listen 127.0.0.1:9125 > "$WORKDIR/agent.log" 2>&1 &
AGENT_PID=$!
for i in $(seq 1 100); do grep -q "intercepting TCP" "$WORKDIR/agent.log" && break; sleep 0.05; done

L="ip netns exec $(ns lan)"
T="$L $PY ./nettool.py"
agent_metric() {
	ip netns exec "$(ns gw)" curl -s --max-time 5 http://127.0.0.1:9125/metrics | awk -v k="$1" '$1 == k { print $2 }'
}
paths_up() { agent_paths_up "$WORKDIR/control.sock"; }
check "both paths up" paths_up

# capped_device DST SRCS OUT: one device opens 300 connections to DST from
# SRCS (comma-separated, in turn): exactly 100 must still carry bytes 2 s
# later; another device's flow goes through the concentrator meanwhile.
capped_device() {
	local holder before rc=0
	$L bash -c "ulimit -n 4096; exec $PY ./nettool.py hold --dst $1 --src $2 \
		--count 300 --seconds 2 --verify 100" > "$3" &
	holder=$!
	# Its connections are all made (it says how many) before the other
	# device tries.
	wait_for 20 grep -q held "$3" || { echo "the device did not open its connections"; rc=1; }
	before=$(agent_metric 'gw_agent_flows_total{via="concentrator"}')
	$T echo --plain --dst 203.0.113.2:9000 --src 192.168.77.3 --bytes 100000 || rc=1
	[ "$(agent_metric 'gw_agent_flows_total{via="concentrator"}')" -gt "$before" ] ||
		{ echo "the other device's flow did not go through the concentrator"; rc=1; }
	wait $holder || rc=1
	cat "$3"
	return $rc
}

# One device opens 300 connections: 100 go through, the rest are reset at
# once.
one_device() {
	local rc=0 hits
	capped_device 203.0.113.2:9000 192.168.77.2 "$WORKDIR/hold1.out" || rc=1
	# Reset by nftables (per device) or by the agent (per address).
	local dev host
	dev=$(agent_metric gw_agent_device_limit_hits_total); host=$(agent_metric gw_agent_host_limit_hits_total)
	[ -n "$dev" ] && [ -n "$host" ] || { echo "no limit counters in the agent's metrics"; return 1; }
	hits=$((dev + host))
	echo "{\"limit_hits\": $hits}"
	[ $rc -eq 0 ] && [ $hits -ge 200 ]
}
check "one device with 300 connections is capped at 100; another device's flow goes through" one_device

# One device (lan-d6, its own MAC) with 30 IPv6 addresses (privacy
# addresses, or picked to get round a cap), 10 connections from each: still
# one device, capped at 100 in all.
many_addresses() {
	local srcs= i rc=0 hits0 hits
	for i in $(seq 100 129); do
		ip -n "$LN" addr add "2001:db8:77::$i/64" dev lan-d6 nodad || return 1
		srcs="$srcs${srcs:+,}2001:db8:77::$i"
	done
	hits0=$(agent_metric gw_agent_device_limit_hits_total)
	[ -n "$hits0" ] || { echo "no device limit counter in the agent's metrics"; return 1; }
	capped_device "[2001:db8:3::2]:9000" "$srcs" "$WORKDIR/hold-v6.out" || rc=1
	hits=$(agent_metric gw_agent_device_limit_hits_total)
	hits=$(( ${hits:-0} - hits0 ))
	echo "{\"device_limit_hits\": $hits}"
	[ $rc -eq 0 ] && [ $hits -ge 200 ]
}
check "one device with 30 IPv6 addresses is capped at 100 in all; another device's flow goes through" many_addresses

# Three devices, 100 each: the home's quota (200) is exceeded. The flows
# past it are answered with Error 64 and fall back direct (--fallback
# direct, the default): all 300 work, and both paths stay up although their
# probes are answered with Error 64 too.
quota() {
	local rc=0 h pids=()
	for h in 2 3 4; do
		$L bash -c "ulimit -n 4096; exec $PY ./nettool.py hold --dst 203.0.113.2:9000 --src 192.168.77.$h \
			--count 100 --seconds 8 --verify 100" > "$WORKDIR/hold-$h.out" &
		pids+=($!)
		sleep 0.5
	done
	# Probes every 0.5 s are answered with Error 64 while the home is at
	# its limit: no path may go down meanwhile (sampled every 0.2 s, for
	# about 5 s: ten probes per path).
	local down=0 i
	for i in $(seq 1 20); do
		ip netns exec "$(ns gw)" "$AGENT" status --control "$WORKDIR/control.sock" > "$WORKDIR/st"
		grep -q "^gw-p[12] .*down" "$WORKDIR/st" && down=$((down + 1))
		sleep 0.2
	done
	echo "{\"samples_with_a_path_down\": $down}"
	[ $down -eq 0 ] || rc=1
	for h in "${pids[@]}"; do wait $h || rc=1; done
	cat "$WORKDIR"/hold-[234].out | grep alive | tr '\n' ' '; echo
	echo "{\"via_direct\": $(agent_metric 'gw_agent_flows_total{via="direct"}'), \"error_64\": $(agent_metric 'gw_agent_concentrator_errors_total{code="64",reason="resource_exceeded"}')}"
	# The probes met the quota too.
	grep "answers probes with error 64" "$WORKDIR/agent.log" || { echo "no probe met the quota"; rc=1; }
	[ $rc -eq 0 ] && [ "$(agent_metric 'gw_agent_flows_total{via="direct"}')" -ge 100 ]
}
check "the home over its concentrator quota: every flow works (direct past it), paths stay up" quota

# The concentrator at its total limit answers every probe with Error 64:
# a restart with --max-flows 1 and one held flow. For 3 s (six probes per
# path), no path may go down: the concentrator's trouble is not the path's.
probes_at_limit() {
	local holder down=0 i lines0 lines1 refused rc=0
	stop_concentrator "$CONC_MAIN" conc || return 1
	start_concentrator conc conc2 --listen 192.0.2.1:5124 --allow-client 198.51.100.0/24 \
		--max-flows 1 --workers 1 --metrics-listen 198.51.100.1:9191
	CONC_MAIN=$CONC_PID
	wait_listen conc 5124 || return 1
	# The agent says so once per change: a line more than before proves
	# these probes, not the quota check's, met the limit.
	lines0=$(grep -c "answers probes with error 64" "$WORKDIR/agent.log")
	$T hold --dst 203.0.113.2:9000 --src 192.168.77.2 --count 1 --seconds 5 --verify 1 \
		> "$WORKDIR/hold-limit.out" &
	holder=$!
	# The held flow takes the concentrator's one place before sampling.
	wait_for 5 conc_metric 'mptcp_concentrator_flows_active' 1 || { echo "the held flow never reached the concentrator"; rc=1; }
	for i in $(seq 1 15); do
		ip netns exec "$(ns gw)" "$AGENT" status --control "$WORKDIR/control.sock" > "$WORKDIR/st" || rc=1
		grep -q "^gw-p[12] " "$WORKDIR/st" || { echo "status lists no path"; rc=1; }
		grep -q "^gw-p[12] .*down" "$WORKDIR/st" && down=$((down + 1))
		sleep 0.2
	done
	refused=$(conc_metric 'mptcp_concentrator_refusals_total{code="64",reason="resource_exceeded"}')
	wait $holder || { echo "the held flow failed"; rc=1; }
	cat "$WORKDIR/hold-limit.out"
	lines1=$(grep -c "answers probes with error 64" "$WORKDIR/agent.log")
	echo "{\"samples_with_a_path_down\": $down, \"error_64_sent\": ${refused:-none}, \"agent_lines\": [$lines0, $lines1]}"
	[ "$lines1" -gt "$lines0" ] || { echo "no probe got Error 64 during this check"; rc=1; }
	# Two paths, a probe each every 0.5 s for 3 s: at least 6 refusals.
	[ "${refused:-0}" -ge 6 ] || { echo "the concentrator refused too few probes for the check to mean anything"; rc=1; }
	[ $rc -eq 0 ] && [ $down -eq 0 ]
}
conc_metric() {  # conc_metric NAME{LABELS} [WANT]: the value; with WANT, succeeds when equal
	local v
	v=$(metric_at gw 198.51.100.1:9191 "$1") || return 1
	[ $# -lt 2 ] && { echo "$v"; return 0; }
	[ "$v" = "$2" ]
}
check "probes answered with Error 64 (the concentrator at its limit) keep the paths up" probes_at_limit
# Out of descriptors, the agent's status socket must wait, not spin: its
# open-file limit lowered to what it holds plus 10 (prlimit on the running
# process), 40 LAN connections to use them up, then a status request
# waiting in the socket's backlog. The agent's CPU over 2 s is read from
# /proc (a spinning accept loop takes all of it).
control_emfile() {
	local n holder t0 t1 ticks soft
	n=$(fds $AGENT_PID)
	soft=$(prlimit --pid $AGENT_PID --nofile --noheadings --output SOFT)
	prlimit --pid $AGENT_PID --nofile=$((n + 10)): || return 1
	# Held 4 s: past the 3.5 s of requests and measurement below.
	$T hold --dst 203.0.113.2:9000 --src 192.168.77.3 --count 40 --seconds 4 > /dev/null &
	holder=$!
	sleep 1
	# Ten status requests over the window: descriptors come and go as
	# flows fail for want of them; one request at least meets a full table.
	ip netns exec "$(ns gw)" "$PY" -c 'import socket, sys, time
c = []
for i in range(10):
    s = socket.socket(socket.AF_UNIX); s.connect(sys.argv[1]); s.send(b"status\n"); c.append(s)
    time.sleep(0.25)
time.sleep(1)' "$WORKDIR/control.sock" &
	sleep 0.5
	t0=$(awk '{ print $14 + $15 }' /proc/$AGENT_PID/stat)
	sleep 2
	t1=$(awk '{ print $14 + $15 }' /proc/$AGENT_PID/stat)
	ticks=$((t1 - t0))
	wait $holder
	prlimit --pid $AGENT_PID --nofile=$soft:
	echo "{\"agent_cpu_ticks_in_2s\": $ticks, \"ticks_per_s\": $(getconf CLK_TCK)}"
	# The status socket's accept met the limit (and paused: counted).
	local pauses
	pauses=$(agent_metric 'gw_agent_accept_pauses_total{socket="status"}')
	echo "{\"status_accept_pauses\": $pauses}"
	[ "$ticks" -lt $(( $(getconf CLK_TCK) / 2 )) ] && [ "$pauses" -ge 1 ]
}
check "status socket: out of descriptors, the agent waits instead of spinning" control_emfile
check "agent exits cleanly" stop_agent_log $AGENT_PID "$WORKDIR/agent.log"
check "concentrator exits cleanly" stop_concentrator "$CONC_MAIN" conc2
finish
