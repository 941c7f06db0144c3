#!/usr/bin/env bash
# mptcp-concentrator against real kernel MPTCP, real sockets, in namespaces:
#
#   cli (198.51.100.2, .3; 2001:db8:1::2) -- conc (.1 / 203.0.113.1) -- srv (203.0.113.2; 2001:db8:2::2)
#
# The client speaks RFC 8803 through nettool.py (built from the RFC, not from
# our codec); srv runs echo/reset/half-close servers and drops port 9009.
cd "$(dirname "$0")"
. ./lib.sh
require_netns

ns_add cli; ns_add conc; ns_add srv
link cli conc; link conc srv
addr cli cli-conc 198.51.100.2/24; addr cli cli-conc 198.51.100.3/24
addr cli cli-conc 2001:db8:1::2/64
addr conc conc-cli 198.51.100.1/24; addr conc conc-cli 2001:db8:1::1/64
addr conc conc-srv 203.0.113.1/24; addr conc conc-srv 2001:db8:2::1/64
addr srv srv-conc 203.0.113.2/24; addr srv srv-conc 2001:db8:2::2/64
# 0-RTT: the client asks for a TFO cookie on its first connection and sends
# data in the SYN from then on (0x1); the concentrator runs with the kernel
# settings we ship (TFO server with cookies, 0x3).
ip netns exec "$(ns cli)" sysctl -qw net.ipv4.tcp_fastopen=1
ip netns exec "$(ns conc)" sysctl -q -p ../../deploy/sysctl/90-mptcp-concentrator.conf
ip netns exec "$(ns srv)" nft -f - <<'NFT'
table inet blackhole {
	chain input { type filter hook input priority 0; tcp dport 9009 drop; }
}
NFT

ip netns exec "$(ns srv)" "$PY" ./nettool.py serve --bind 203.0.113.2 --bind 2001:db8:2::2 --base 9000 \
	> "$WORKDIR/servers.log" 2>&1 &
HS_TIMEOUT=2
start_concentrator conc main --allow-client 198.51.100.2/32 --allow-client 2001:db8:1::/64 \
	--handshake-timeout $HS_TIMEOUT --connect-timeout 1 --workers 2
MAIN_PID=$CONC_PID
wait_listen srv 9000 || exit 1
wait_listen conc 5124 || exit 1
sleep 0.3
RSS0=$(rss_kib $MAIN_PID); FD0=$(fds $MAIN_PID)

C="ip netns exec $(ns cli) $PY ./nettool.py"
CONC=198.51.100.1:5124
DST=203.0.113.2:9000

check "100 MiB each way through one MPTCP flow (sha256)" \
	$C echo --conc $CONC --dst $DST --bytes $((100 << 20))
check "8 parallel flows, 16 MiB each way each (sha256)" \
	$C echo --conc $CONC --dst $DST --bytes $((16 << 20)) --flows 8
check "plain TCP client (MPTCP fallback), 8 MiB each way" \
	$C echo --conc $CONC --dst $DST --bytes $((8 << 20)) --tcp
# On the wire: the second connection's SYN carries the Convert message and
# the concentrator's SYN-ACK acknowledges it with its data (the request was
# taken from the SYN), and the reply and echo arrive.
tfo_check() {
	local cap="$WORKDIR/tfo.pcap"
	capture_start conc conc-cli "$cap" 'tcp port 5124 and tcp[tcpflags] & tcp-syn != 0' || return 1
	$C tfo --conc $CONC --dst $DST || { capture_stop; return 1; }  # gets the cookie
	$C tfo --conc $CONC --dst $DST || { capture_stop; return 1; }
	capture_stop
	"$PY" ./nettool.py pcap-tfo "$cap" --port 5124 --min 1
}
check_0rtt "0-RTT: Convert message and payload in the SYN (TFO) accepted and relayed" tfo_check
# The same with the client's third ACK lost (conntrack's second packet of
# the connection, dropped once). The concentrator has the message from the
# SYN and could answer at once, but the kernel does not transmit MPTCP data
# written before the client's key arrives (sock_mptcp_key_received()): the
# reply must wait for the retransmitted SYN-ACK's ACK (~1 s), not for the
# client to give up.
tfo_lost_ack() {
	local rc=0 t0 t1 n
	# The client has the concentrator's cookie from tfo_check: data in the SYN.
	ip netns exec "$(ns conc)" sysctl -qw net.netfilter.nf_conntrack_acct=1
	ip netns exec "$(ns conc)" nft -f - <<'NFT'
table inet lostack {
	chain input { type filter hook input priority -10;
		tcp dport 5124 tcp flags == ack ct original packets 2 counter drop; }
}
NFT
	t0=$(date +%s%N)
	timeout 8 $C tfo --conc $CONC --dst $DST || rc=1
	t1=$(date +%s%N)
	n=$(ip netns exec "$(ns conc)" nft list table inet lostack | awk '/counter/ { for (i = 1; i < NF; i++) if ($i == "counter") print $(i + 2) }')
	ip netns exec "$(ns conc)" nft delete table inet lostack
	echo "third ACKs dropped: $n; reply and echo after $(( (t1 - t0) / 1000000 )) ms"
	[ $rc -eq 0 ] && [ "$n" -ge 1 ]
}
check_0rtt "0-RTT with the client's third ACK lost: the reply still arrives (after the SYN-ACK retransmit)" tfo_lost_ack
check "Convert message split over three segments, payload behind it" \
	$C echo --conc $CONC --dst $DST --bytes $((1 << 20)) --split
check "IPv6 client and IPv6 destination" \
	$C echo --conc "[2001:db8:1::1]:5124" --dst "[2001:db8:2::2]:9000" --bytes $((4 << 20))
check "IPv6 client to an IPv4 destination" \
	$C echo --conc "[2001:db8:1::1]:5124" --dst $DST --bytes $((1 << 20))

check "server half-closes first; client->server keeps flowing (sha256 at the server)" \
	$C halfclose --conc $CONC --dst 203.0.113.2:9002 --bytes $((2 << 20)) --server-log "$WORKDIR/servers.log"
check "server reset arrives at the client as a reset" \
	$C reset --conc $CONC --dst 203.0.113.2:9001
check "the reset relayed flow is logged with both ends" \
	grep -E "flow 198.51.100.2 -> 203.0.113.2:9001 reset after" "$WORKDIR/main.log"
check "every Error code from its case, a valid flow intact alongside" \
	$C errors --conc $CONC --dst $DST --closed-port 9100 --blackhole-port 9009 \
	--unroutable 192.0.2.1 --self-addr 203.0.113.1 --bad-src 198.51.100.3
check "1000 concurrent flows, all complete (sha256 each)" \
	$C echo --conc $CONC --dst $DST --bytes 65536 --flows 1000
# After 100 MiB, 1000 concurrent flows and every refusal: memory and
# descriptors go back to where they started (buffers return to the kernel,
# the heap is trimmed after the burst).
check "after the load, RSS is back within 4 MiB of its start and descriptors at their start" \
	back_to_start $MAIN_PID "$RSS0" "$FD0" 4096
check "300 stalled handshakes do not delay a valid flow, closed after timeout" \
	$C stall --conc $CONC --dst $DST --count 300 --timeout $HS_TIMEOUT

# Limits on a second and a third instance.
start_concentrator conc perclient --listen 198.51.100.1:5125 --allow-client 198.51.100.0/24 \
	--max-flows-per-client 3 --workers 2
PC_PID=$CONC_PID
start_concentrator conc total --listen 198.51.100.1:5126 --allow-client 198.51.100.0/24 \
	--max-flows 2 --workers 1 --keepalive 1
TOT_PID=$CONC_PID
wait_listen conc 5125 && wait_listen conc 5126
check "flows per client over the limit get Error 64, and recover" \
	$C limit --conc 198.51.100.1:5125 --dst $DST --count 3
check "total flows over the limit get Error 64, and recover" \
	$C limit --conc 198.51.100.1:5126 --dst $DST --count 2

# Graceful stop: a flow in progress finishes; new connections are refused.
drain_check() {
	# Paced over 3 s, so it is mid-transfer when SIGTERM arrives at 0.5 s.
	$C echo --conc 198.51.100.1:5125 --dst $DST --bytes $((8 << 20)) --pace 3 > "$WORKDIR/drain.out" 2>&1 &
	local cpid=$!
	# Mid-transfer: its upstream connection is open when SIGTERM comes;
	# and the listener is closed before the new connection is tried.
	wait_for 10 eval "[ \$(ip netns exec $(ns conc) ss -Htn state established '( dport = :9000 )' | wc -l) -ge 1 ]" ||
		{ echo "the flow never reached the server"; return 1; }
	kill -TERM "$PC_PID"
	wait_for 10 eval "[ -z \"\$(ip netns exec $(ns conc) ss -Hltn '( sport = :5125 )')\" ]" ||
		{ echo "still listening 10 s after SIGTERM"; return 1; }
	if $C echo --conc 198.51.100.1:5125 --dst $DST --bytes 10 >/dev/null 2>&1; then
		echo "new flow accepted after SIGTERM"; return 1
	fi
	wait $cpid || { cat "$WORKDIR/drain.out"; return 1; }
	cat "$WORKDIR/drain.out"
	"$PY" -c 'import json,sys; d=json.load(open(sys.argv[1])); sys.exit(0 if d["seconds"] > 1.5 else 1)' \
		"$WORKDIR/drain.out" || { echo "flow ended before SIGTERM: not a drain"; return 1; }
	wait "$PC_PID" || { echo "exit status $?"; tail "$WORKDIR/perclient.log"; return 1; }
}
check "SIGTERM: stops accepting, the running flow drains and completes" drain_check

# Timeouts that end flows, each on an instance of its own. A client sends
# its request and 1,000 bytes (the echo comes back), then nothing: idle.
idle_client() {  # idle_client PORT SECONDS: one such flow, held SECONDS
	$C noread --conc 198.51.100.1:$1 --dst $DST --count 1 --bytes 1000 --seconds "$2" > /dev/null 2>&1 &
}
upstream_flows() { ip netns exec "$(ns conc)" ss -Htn state established '( dport = :9000 )' | wc -l; }
idle_timeout_check() {
	local pid c rc=0
	start_concentrator conc idle --listen 198.51.100.1:5127 --allow-client 198.51.100.0/24 \
		--workers 1 --idle-timeout 2 --metrics-listen 198.51.100.1:9195
	pid=$CONC_PID
	wait_listen conc 5127 || return 1
	idle_client 5127 30; c=$!
	wait_for 10 eval '[ "$(upstream_flows)" -ge 1 ]' || { echo "the flow never reached the server"; rc=1; }
	# 2 s idle (checked once a second): closed within 10 s, counted as idle.
	wait_for 10 eval '[ "$(upstream_flows)" -eq 0 ]' || { echo "the idle flow is still open after 10 s"; rc=1; }
	echo "{\"closed_idle\": $(metric_at cli 198.51.100.1:9195 'mptcp_concentrator_flows_closed_total{outcome="idle"}')}"
	[ "$(metric_at cli 198.51.100.1:9195 'mptcp_concentrator_flows_closed_total{outcome="idle"}')" = 1 ] || rc=1
	kill $c 2>/dev/null; wait $c 2>/dev/null
	stop_concentrator "$pid" idle || rc=1
	return $rc
}
check "--idle-timeout 2: a silent flow is closed and counted as idle" idle_timeout_check
drain_timeout_check() {
	local pid c t0 t1 rc=0 code
	start_concentrator conc drainto --listen 198.51.100.1:5128 --allow-client 198.51.100.0/24 \
		--workers 1 --drain-timeout 2
	pid=$CONC_PID
	wait_listen conc 5128 || return 1
	idle_client 5128 30; c=$!
	wait_for 10 eval '[ "$(upstream_flows)" -ge 1 ]' || { echo "the flow never reached the server"; rc=1; }
	t0=$(date +%s%N)
	kill -TERM "$pid"
	wait_for 10 eval '! kill -0 "$pid" 2>/dev/null'
	wait "$pid"; code=$?
	t1=$(date +%s%N)
	kill $c 2>/dev/null; wait $c 2>/dev/null
	echo "{\"exit\": $code, \"exited_after_ms\": $(( (t1 - t0) / 1000000 )), \"upstream_flows_left\": $(upstream_flows)}"
	grep -h "shutdown" "$WORKDIR/drainto.log" | tail -2
	# Gone within the 10 s the loop allows (2 s of drain, then the flow is
	# closed), exit 0, nothing left open upstream.
	[ $rc -eq 0 ] && [ "$code" -eq 0 ] && ! kill -0 "$pid" 2>/dev/null && [ "$(upstream_flows)" -eq 0 ]
}
check "--drain-timeout 2: SIGTERM with a flow that never ends: closed after the drain, exit 0" drain_timeout_check
# MPTCP switched off in the namespace (sysctl net.mptcp.enabled=0): the
# concentrator says so and serves plain TCP clients.
mptcp_off_check() {
	local pid rc=0
	ip netns exec "$(ns conc)" sysctl -qw net.mptcp.enabled=0
	start_concentrator conc nomptcp --listen 198.51.100.1:5129 --allow-client 198.51.100.0/24 --workers 1
	pid=$CONC_PID
	wait_listen conc 5129 || rc=1
	ip netns exec "$(ns conc)" sysctl -qw net.mptcp.enabled=1
	grep -h "MPTCP is disabled (sysctl net.mptcp.enabled = 0): listening with plain TCP" "$WORKDIR/nomptcp.log" || rc=1
	$C echo --conc 198.51.100.1:5129 --dst $DST --bytes $((1 << 20)) || rc=1
	stop_concentrator "$pid" nomptcp || rc=1
	return $rc
}
check "net.mptcp.enabled=0: the concentrator says so, listens with plain TCP and relays" mptcp_off_check
# A gateway that vanishes (power cut): no FIN, no RST. Keepalive must find
# it and free both sockets of its flow. Last, as it takes the client link down.
keepalive_check() {
	local n i
	# 1000 bytes with the Convert message, one 64 KiB chunk, then 60 s of
	# silence before its FIN: idle, with nothing unacknowledged either way.
	$C echo --conc 198.51.100.1:5126 --dst $DST --bytes 66536 --pace 60 > /dev/null 2>&1 &
	local cpid=$!
	for i in $(seq 1 50); do
		n=$(ip netns exec "$(ns conc)" ss -Htn state established '( dport = :9000 )' | wc -l)
		[ "$n" -ge 1 ] && break; sleep 0.1
	done
	[ "$n" -ge 1 ] || { echo "flow not established"; return 1; }
	sleep 1  # let the echo of the chunk come back: the flow is now idle
	ip -n "$(ns cli)" link set cli-conc down
	kill -KILL $cpid 2>/dev/null
	# keepalive 1 s: idle 1 s + 6 probes 1 s apart, so about 7 s.
	for i in $(seq 1 200); do
		n=$(ip netns exec "$(ns conc)" ss -Htn state established '( sport = :5126 or dport = :9000 )' | wc -l)
		[ "$n" -eq 0 ] && { echo "{\"freed_after_s\": $((i / 10))}"; return 0; }
		sleep 0.1
	done
	ip netns exec "$(ns conc)" ss -tn
	return 1
}
check "a vanished client is found by keepalive; both sockets freed" keepalive_check
check "third instance exits cleanly on SIGTERM" stop_concentrator "$TOT_PID" total
check "it was closed as an MPTCP flow with no subflow left" \
	grep -E "flows without subflows 1," "$WORKDIR/total.log"
check "main instance exits cleanly on SIGTERM" stop_concentrator "$MAIN_PID" main
counts_check() {
	grep -E "accepted .*mptcp [1-9].*tcp fallback [1-9]" "$WORKDIR/main.log" || { tail -20 "$WORKDIR/main.log"; return 1; }
}
check "MPTCP and TCP-fallback clients are counted apart" counts_check

finish
