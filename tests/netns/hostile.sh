#!/usr/bin/env bash
# The concentrator as the Internet sees it: clients that forge, announce,
# stall, flood and never read. It runs with the kernel settings we ship
# (deploy/sysctl/90-mptcp-concentrator.conf and the unit's `ip mptcp
# limits` line), so what is checked is what an operator installs.
#
#   cli (198.51.100.2; forges 198.51.100.9) -- conc (198.51.100.1 / 203.0.113.1) -- srv (203.0.113.2)
#
# Assertions are on counts, bytes and hashes, never on timings.
cd "$(dirname "$0")"
. ./lib.sh
require_netns
"$PY" -c 'import scapy' 2>/dev/null || skip "needs python3-scapy"

cli_conc_srv

# What we ship: the sysctl drop-in and the unit's subflow limits.
ip netns exec "$(ns conc)" sysctl -q -p ../../deploy/sysctl/90-mptcp-concentrator.conf
limits=$(sed -n 's/^ExecStartPre=+-\/usr\/bin\/ip mptcp limits set //p' ../../systemd/mptcp-concentrator.service.in)
[ -n "$limits" ] || { log "FAIL: no 'ip mptcp limits' line in the unit"; exit 1; }
ip -n "$(ns conc)" mptcp limits set $limits
ip netns exec "$(ns cli)" sysctl -qw net.ipv4.tcp_fastopen=1

# srv counts every SYN that reaches it: the concentrator's upstream connects.
ip netns exec "$(ns srv)" nft -f - <<'NFT'
table inet count {
	chain input { type filter hook input priority 0;
		tcp flags & (syn | ack) == syn counter name upstream_syns; }
	counter upstream_syns { }
}
NFT
# conc counts the forged source's SYNs: the forgery reached it.
ip netns exec "$(ns conc)" nft -f - <<'NFT'
table inet count {
	chain input { type filter hook input priority 0;
		ip saddr 198.51.100.9 tcp flags & (syn | ack) == syn counter name forged_syns; }
	counter forged_syns { }
}
NFT
forged_syns() {
	ip netns exec "$(ns conc)" nft list counter inet count forged_syns |
		awk '/packets/ { for (i = 1; i < NF; i++) if ($i == "packets") print $(i + 1) }'
}
upstream_syns() {
	ip netns exec "$(ns srv)" nft list counter inet count upstream_syns |
		awk '/packets/ { for (i = 1; i < NF; i++) if ($i == "packets") print $(i + 1) }'
}
nstat_conc() { ip netns exec "$(ns conc)" nstat -az "$1" | awk -v k="$1" '$1 == k {print $2}'; }

ip netns exec "$(ns srv)" "$PY" ./nettool.py serve --bind 203.0.113.2 --base 9000 \
	> "$WORKDIR/servers.log" 2>&1 &
start_concentrator conc main --allow-client 198.51.100.0/24 --handshake-timeout 2 \
	--connect-timeout 1 --workers 2 --metrics-listen 198.51.100.1:9190 \
	--own-address 198.18.5.5 --nat64-prefix 2001:db8:64::/96
MAIN_PID=$CONC_PID
wait_listen srv 9000 || exit 1
wait_listen conc 5124 || exit 1

C="ip netns exec $(ns cli) $PY ./nettool.py"
F="ip netns exec $(ns cli) $PY ./forge.py"
CONC=198.51.100.1:5124
DST=203.0.113.2:9000

# 1. A SYN with data from a forged source (inside the allowed prefix) must
# never become an upstream connect: the source never completes the
# handshake. First with the shipped sysctl, then with an operator's
# cookieless TFO (0x200), where the kernel hands the connection over at the
# SYN and only the daemon stands in the way.
unverified() { metric_at cli 198.51.100.1:9190 "mptcp_concentrator_unverified_syn_requests_total{result=\"$1\"}"; }
# Whatever the forged SYNs could cause has happened: all 40 reached the
# concentrator, the daemon holds no handshake, and (cookieless TFO: each
# became a request held for its sender's final ACK) every held request was
# dropped as never completed. A condition, not a wait past the timeout.
forged_settled() {  # forged_settled F0 HELD0 NEVER0 HELD_WANTED
	local h n
	[ $(( $(forged_syns) - $1 )) -ge 40 ] || return 1
	[ "$(metric_at cli 198.51.100.1:9190 mptcp_concentrator_handshakes_active)" = 0 ] || return 1
	h=$(( $(unverified held) - $2 )) && n=$(( $(unverified never_completed) - $3 )) || return 1
	[ "$h" -ge "$4" ] && [ "$n" -eq "$h" ]
}
forged_syn() {  # forged_syn HELD_WANTED: requests the daemon must have held (0x200: 40)
	local before after f0 f1 h0 n0
	before=$(upstream_syns); f0=$(forged_syns)
	h0=$(unverified held) && n0=$(unverified never_completed) || return 1
	$F syn-data --src 198.51.100.9 --dst $CONC --to $DST --count 20 || return 1
	$F syn-data --src 198.51.100.9 --dst $CONC --to $DST --count 20 --mptcp || return 1
	wait_for 10 forged_settled "$f0" "$h0" "$n0" "$1" ||
		{ echo "not settled: held $(( $(unverified held) - h0 )), dropped $(( $(unverified never_completed) - n0 ))"; return 1; }
	after=$(upstream_syns); f1=$(forged_syns)
	echo "{\"forged_syns_at_concentrator\": $((f1 - f0)), \"upstream_syns_from_forged\": $((after - before)), \"tfo_passive\": $(nstat_conc TcpExtTCPFastOpenPassive)}"
	# All 40 forged SYNs reached the concentrator (else nothing is shown).
	[ $((f1 - f0)) -ge 40 ] || { echo "the forged SYNs did not reach the concentrator"; return 1; }
	[ "$after" -eq "$before" ] || return 1
	# The counter works: a real client's flow is one upstream SYN.
	$C echo --conc $CONC --dst $DST --bytes 1000 || return 1
	[ "$(upstream_syns)" -eq $((after + 1)) ]
}
check "forged-source SYNs with a Convert message: no upstream SYN (shipped sysctl)" forged_syn 0
ip netns exec "$(ns conc)" sysctl -qw net.ipv4.tcp_fastopen=0x203
check "forged-source SYNs with a Convert message: no upstream SYN (cookieless TFO 0x200)" forged_syn 40
ip netns exec "$(ns conc)" sysctl -q -p ../../deploy/sysctl/90-mptcp-concentrator.conf

# 2. A client announcing another address (ADD_ADDR) must not make the
# concentrator open a subflow there: 203.0.113.9:22 is behind the
# concentrator, outside every destination rule.
add_addr() {
	local before after added
	ip -n "$(ns cli)" addr add 203.0.113.9/32 dev lo
	ip -n "$(ns cli)" mptcp limits set subflows 8 add_addr_accepted 8
	ip -n "$(ns cli)" mptcp endpoint add 203.0.113.9 port 22 signal
	before=$(nstat_conc MPTcpExtMPJoinSynTx)
	added=$(nstat_conc MPTcpExtAddAddr)
	$C echo --conc $CONC --dst $DST --bytes $((1 << 20)) --pace 2 || return 1
	after=$(nstat_conc MPTcpExtMPJoinSynTx)
	echo "{\"add_addr_received\": $(( $(nstat_conc MPTcpExtAddAddr) - added )), \"join_syns_sent\": $((after - before))}"
	ip -n "$(ns cli)" mptcp endpoint flush
	[ "$(nstat_conc MPTcpExtAddAddr)" -gt "$added" ] || { echo "no ADD_ADDR reached the concentrator"; return 1; }
	[ "$after" -eq "$before" ]
}
check "a client's ADD_ADDR for a denied address: no MP_JOIN SYN from the concentrator" add_addr

# 3a. The concentrator's own addresses, as they are now: one added after
# start (a VIP moving in), a prefix routed to lo after start (AnyIP: the
# box answers every address in it), its router (a default route added
# after start, by gateway and then by a nexthop group), one the operator names (a 1:1 NAT's public address), and
# IPv4 reached through the operator's NAT64 prefix.
refreshes() {
	metric_at cli 198.51.100.1:9190 mptcp_concentrator_own_address_refreshes_total
}
refreshed_since() { [ "$(refreshes)" -gt "$1" ]; }
own_addresses() {
	local rc=0 r0
	r0=$(refreshes) || return 1
	ip -n "$(ns conc)" addr add 203.0.113.50/32 dev lo
	ip -n "$(ns conc)" route add local 203.0.113.64/26 dev lo
	# A router (a default route's next hop): its management may trust the
	# box's address.
	ip -n "$(ns conc)" route add default via 203.0.113.254 dev conc-srv
	# The refresh follows the events within ~50 ms.
	wait_for 5 refreshed_since "$r0" || { echo "no refresh after the changes"; rc=1; }
	$C error --conc $CONC --dst 203.0.113.50:9190 --code 32 || rc=1
	$C error --conc $CONC --dst 203.0.113.77:9190 --code 32 || rc=1
	$C error --conc $CONC --dst 198.18.5.5:80 --code 32 || rc=1
	# (its event may come in a burst after the first refresh's)
	wait_for 5 $C error --conc $CONC --dst 203.0.113.254:22 --code 32 > /dev/null ||
		{ echo "the router was not refused"; $C error --conc $CONC --dst 203.0.113.254:22 --code 32; rc=1; }
	$C error --conc $CONC --dst "[2001:db8:64::7f00:1]:80" --code 32 || rc=1
	$C error --conc $CONC --dst "[2001:db8:64::cb00:7102]:9000" --code 97 || rc=1  # allowed: no route
	# A router given as a nexthop object (ip nexthop, as FRR installs
	# routes), in a group: followed to its gateway. Without the kernel's
	# compatibility mode (net.ipv4.nexthop_compat_mode=0), routes name the
	# object alone.
	ip netns exec "$(ns conc)" sysctl -qw net.ipv4.nexthop_compat_mode=0
	ip -n "$(ns conc)" nexthop add id 4101 via 203.0.113.253 dev conc-srv
	ip -n "$(ns conc)" nexthop add id 4102 group 4101
	ip -n "$(ns conc)" route replace default nhid 4102
	wait_for 5 $C error --conc $CONC --dst 203.0.113.253:22 --code 32 > /dev/null ||
		{ echo "a router in a nexthop group was not refused"; $C error --conc $CONC --dst 203.0.113.253:22 --code 32; rc=1; }
	# The object changed in place (no route event): followed too.
	ip -n "$(ns conc)" nexthop replace id 4101 via 203.0.113.252 dev conc-srv
	wait_for 5 $C error --conc $CONC --dst 203.0.113.252:22 --code 32 > /dev/null ||
		{ echo "a nexthop object's new gateway was not refused"; $C error --conc $CONC --dst 203.0.113.252:22 --code 32; rc=1; }
	ip -n "$(ns conc)" route replace default via 203.0.113.254 dev conc-srv
	ip -n "$(ns conc)" nexthop del id 4102
	ip -n "$(ns conc)" nexthop del id 4101
	ip netns exec "$(ns conc)" sysctl -qw net.ipv4.nexthop_compat_mode=1
	ip -n "$(ns conc)" route del default via 203.0.113.254 dev conc-srv
	ip -n "$(ns conc)" route del local 203.0.113.64/26 dev lo
	ip -n "$(ns conc)" addr del 203.0.113.50/32 dev lo
	return $rc
}
check "own addresses: one added after start, an AnyIP prefix, its router (a gateway, a nexthop group), the operator's, IPv4 behind its NAT64 prefix: Error 32" own_addresses

# 3. The metrics server answers one scrape at a time: a client trickling
# its request (a byte every 0.5 s; each read alone is within a per-read
# timeout) must be cut off by an overall deadline, and scrapes go on.
slow_scrape() {
	$C trickle --dst 198.51.100.1:9190 --interval 0.5 --bytes 24 || return 1
	ip netns exec "$(ns cli)" curl -sf --max-time 5 http://198.51.100.1:9190/metrics | grep -c '^mptcp_concentrator_' |
		awk '{ print "{\"series_after\": " $1 "}"; exit ($1 > 10 ? 0 : 1) }'
}
check "metrics: a trickling client is cut off by the overall deadline; scrapes go on" slow_scrape

# 4. Out of descriptors, the metrics server must wait, not spin: a second
# instance with 64 descriptors, filled by idle connections, then a scrape
# waiting in its backlog. The process's CPU over 2 s is read from /proc
# (nothing else runs: a spinning accept loop takes the whole 2 s).
emfile_metrics() {
	local pid tid t0 t1 ticks rc=0
	ip netns exec "$(ns conc)" prlimit --nofile=64:64 "$CONCENTRATOR" --listen 198.51.100.1:5130 \
		--allow-client 198.51.100.0/24 --workers 1 --handshake-timeout 30 \
		--max-flows 1000 --max-handshakes 1000 --max-handshakes-per-client 0 \
		--metrics-listen 198.51.100.1:9191 > "$WORKDIR/emfile.log" 2>&1 &
	pid=$!
	wait_listen conc 9191 || return 1
	local hold curl
	$C hold --dst 198.51.100.1:5130 --count 100 --seconds 6 > "$WORKDIR/hold.out" &
	hold=$!
	sleep 1.5
	ip netns exec "$(ns cli)" curl -s --max-time 4 -o /dev/null http://198.51.100.1:9191/metrics &
	curl=$!
	sleep 0.5
	t0=$(awk '{ print $14 + $15 }' /proc/$pid/stat)
	sleep 2
	t1=$(awk '{ print $14 + $15 }' /proc/$pid/stat)
	ticks=$((t1 - t0))
	echo "{\"cpu_ticks_in_2s\": $ticks, \"ticks_per_s\": $(getconf CLK_TCK), \"accept_pauses\": $(grep -c pausing "$WORKDIR/emfile.log")}"
	wait $hold $curl
	stop_concentrator "$pid" emfile || rc=1
	# The workers paused accepting: descriptors really ran out.
	[ $rc -eq 0 ] && [ "$ticks" -lt $(( $(getconf CLK_TCK) / 2 )) ] && grep -q pausing "$WORKDIR/emfile.log"
}
check "metrics: out of descriptors, the accept loop waits instead of spinning" emfile_metrics

# 5. Floods of connections that are refused or never speak: bounded
# handshakes (total and per client), refusals closed fast. A third instance
# with 1024 descriptors allows .2 and .4; .3 is not allowed. While 1500
# connections from .3 and then 1000 silent ones from .4 are held open, a
# flow from .2 completes, the instance's descriptors stay bounded, and
# afterwards they return to where they started.
ip -n "$(ns cli)" addr add 198.51.100.3/24 dev cli-conc
ip -n "$(ns cli)" addr add 198.51.100.4/24 dev cli-conc
flood() {
	local pid fd0 fdmax=0 n rc=0 holder hits acc
	ip netns exec "$(ns conc)" prlimit --nofile=1024:1024 "$CONCENTRATOR" --listen 198.51.100.1:5131 \
		--allow-client 198.51.100.2/32 --allow-client 198.51.100.4/32 --workers 1 \
		--handshake-timeout 30 --max-handshakes-per-client 64 \
		--metrics-listen 198.51.100.1:9193 > "$WORKDIR/flood.log" 2>&1 &
	pid=$!
	wait_listen conc 5131 || return 1
	sleep 0.3
	fd0=$(fds $pid)
	for src in 198.51.100.3:1500 198.51.100.4:1000; do
		ip netns exec "$(ns cli)" bash -c "ulimit -n 8192; exec $PY ./nettool.py hold \
			--dst 198.51.100.1:5131 --src ${src%:*} --count ${src#*:} --seconds 6" \
			> "$WORKDIR/hold-${src%:*}.out" &
		holder=$!
		sleep 3  # the connections are open now (a count, not a timing, is checked below)
		n=$(fds $pid); [ "$n" -gt "$fdmax" ] && fdmax=$n
		$C echo --conc 198.51.100.1:5131 --dst $DST --bytes 100000 --src 198.51.100.2 || rc=1
		n=$(fds $pid); [ "$n" -gt "$fdmax" ] && fdmax=$n
		wait $holder
		cat "$WORKDIR/hold-${src%:*}.out"
	done
	# The load happened (else the checks above mean nothing): the
	# instance accepted at least 90% of the 2,500 connections (the client
	# side cannot count them: many are reset as they open, by design), and
	# the silent ones met the per-client handshake limit.
	hits=$(metric_at cli 198.51.100.1:9193 'mptcp_concentrator_limit_hits_total{limit="handshakes"}')
	echo "{\"handshake_limit_hits\": ${hits:-none}}"
	[ "${hits:-0}" -gt 0 ] || rc=1
	sleep 1.5  # refused ones linger 1 s
	n=$(fds $pid)
	echo "{\"fds_start\": $fd0, \"fds_max_during\": $fdmax, \"fds_after\": $n}"
	grep -h -E "too many handshakes|refused" "$WORKDIR/flood.log" | head -3
	stop_concentrator "$pid" flood || rc=1
	grep -E "accepted" "$WORKDIR/flood.log" | tail -1
	# Its stop summary counts every connection it accepted, refused or not.
	acc=$(sed -n 's/.*info: accepted \([0-9]*\) .*/\1/p' "$WORKDIR/flood.log" | tail -1)
	[ "${acc:-0}" -ge 2250 ] || { echo "accepted ${acc:-none} of the 2,500 flood connections: the load did not happen"; rc=1; }
	[ $rc -eq 0 ] && [ "$fdmax" -lt 300 ] && [ "$n" -le $((fd0 + 2)) ]
}
check "floods of refused and silent connections: a valid flow completes, descriptors stay bounded and return" flood

# 5b. Handshakes that hold their slot past reading the request: connects
# in progress to a blackholed destination (up to the connect timeout) from
# two clients fill every slot of an instance (64, 32 per client); a third
# client's flow still completes: the oldest handshake gives way, whatever
# it is doing (it used to be only those still reading their request, so
# everyone was reset until the connects timed out).
pending() {
	local pid rc=0 h1 h2 ev
	ip netns exec "$(ns srv)" nft -f - <<'NFT' || return 1
table inet blackhole {
	chain input { type filter hook input priority 0; tcp dport 9009 drop; }
}
NFT
	ip netns exec "$(ns conc)" "$CONCENTRATOR" --listen 198.51.100.1:5134 \
		--allow-client 198.51.100.0/24 --workers 1 --max-handshakes 64 \
		--max-handshakes-per-client 32 --connect-timeout 10 \
		--metrics-listen 198.51.100.1:9196 > "$WORKDIR/pending.log" 2>&1 &
	pid=$!
	wait_listen conc 5134 || return 1
	$C hold --dst 198.51.100.1:5134 --src 198.51.100.3 --count 32 --request 203.0.113.2:9009 \
		--seconds 6 > "$WORKDIR/pending-3.out" &
	h1=$!
	$C hold --dst 198.51.100.1:5134 --src 198.51.100.4 --count 32 --request 203.0.113.2:9009 \
		--seconds 6 > "$WORKDIR/pending-4.out" &
	h2=$!
	full() {
		[ "$(metric_at cli 198.51.100.1:9196 mptcp_concentrator_handshakes_active)" -ge 64 ]
	}
	wait_for 5 full || { echo "the slots never filled"; rc=1; }
	$C echo --conc 198.51.100.1:5134 --dst $DST --bytes 100000 --src 198.51.100.2 ||
		{ echo "a third client was locked out"; rc=1; }
	ev=$(metric_at cli 198.51.100.1:9196 mptcp_concentrator_handshake_evictions_total)
	echo "{\"evictions\": ${ev:-none}}"
	[ "${ev:-0}" -ge 1 ] || rc=1
	wait $h1 $h2
	cat "$WORKDIR/pending-3.out" "$WORKDIR/pending-4.out" | tr '\n' ' '; echo
	stop_concentrator "$pid" pending || rc=1
	ip netns exec "$(ns srv)" nft delete table inet blackhole
	return $rc
}
check "connects in progress to a blackhole fill every handshake slot: a third client's flow completes" pending

# 6. Peers that never read: 50 clients whose downloads are never read
# (the echo's bytes pile up toward them) and 50 uploads into a server
# that never reads, at once, each more flows than the worker's 32 buffers. While
# they stall, a valid 8 MiB echo completes (sha256): stalled sends hold no
# shared buffer.
noread() {
	local pid rc=0 what wmem parked
	# Small socket buffers, so a stalled peer stalls the daemon's sends
	# after 64 KiB rather than after the kernel's 4 MiB.
	wmem=$(ip netns exec "$(ns conc)" sysctl -n net.ipv4.tcp_wmem)
	ip netns exec "$(ns conc)" sysctl -qw net.ipv4.tcp_wmem="4096 16384 65536"
	ip netns exec "$(ns srv)" sysctl -qw net.ipv4.tcp_rmem="4096 65536 65536"
	ip netns exec "$(ns conc)" "$CONCENTRATOR" --listen 198.51.100.1:5132 \
		--allow-client 198.51.100.0/24 --workers 1 --buffers 32 \
		--metrics-listen 198.51.100.1:9194 > "$WORKDIR/noread.log" 2>&1 &
	pid=$!
	wait_listen conc 5132 || return 1
	parked_more() { [ "$(metric_at cli 198.51.100.1:9194 mptcp_concentrator_parked_sends_total)" -ge "$1" ]; }
	# Both at once (they stall independently; the suite's time is short):
	# 50 clients that never read and 50 uploads into a server that never
	# reads, then the valid flow beside all 100.
	local p0 holders=()
	p0=$(metric_at cli 198.51.100.1:9194 mptcp_concentrator_parked_sends_total) || p0=0
	for what in 9000:clients 9004:servers; do
		$C noread --conc 198.51.100.1:5132 --dst 203.0.113.2:${what%:*} --count 50 \
			--bytes $((512 << 10)) --min-bytes 65536 --seconds 60 > "$WORKDIR/noread-${what#*:}.out" &
		holders+=($!)
	done
	# They are stalled once the concentrator parks their sends (after 2 s
	# without progress): half of them at least.
	wait_for 20 parked_more $((p0 + 50)) ||
		{ echo "the never-reading clients and servers did not stall"; rc=1; }
	timeout 20 $C echo --conc 198.51.100.1:5132 --dst $DST --bytes $((8 << 20)) ||
		{ echo "valid flow did not complete beside 50 never-reading clients and 50 servers"; rc=1; }
	kill "${holders[@]}" 2>/dev/null; wait "${holders[@]}" 2>/dev/null
	for what in clients servers; do
		cat "$WORKDIR/noread-$what.out"
		grep -q '"load_ok": true' "$WORKDIR/noread-$what.out" ||
			{ echo "the never-reading $what did not open and fill their connections"; rc=1; }
	done
	parked=$(metric_at cli 198.51.100.1:9194 mptcp_concentrator_parked_sends_total)
	echo "{\"parked_sends\": ${parked:-none}}"
	[ "${parked:-0}" -gt 0 ] || { echo "no send was parked: the stall never happened"; rc=1; }
	ip netns exec "$(ns conc)" sysctl -qw net.ipv4.tcp_wmem="$wmem"
	grep -h "parked" "$WORKDIR/noread.log" | tail -1
	stop_concentrator "$pid" noread || rc=1
	return $rc
}
check "peers that never read (clients, then servers) do not starve a valid flow" noread

# The heap parked sends hold is bounded (--max-parked-memory, here 16 MiB),
# and one client holds at most an eighth of it (32 flows of 64 KiB): 60
# never-reading clients from one address park 32 and the rest are reset
# and counted; then 4 from another address still park (one client's stalls
# never reset another's), and a valid flow completes.
noread_bound() {
	local pid rc=0 h1 wmem refused bytes sends
	wmem=$(ip netns exec "$(ns conc)" sysctl -n net.ipv4.tcp_wmem)
	ip netns exec "$(ns conc)" sysctl -qw net.ipv4.tcp_wmem="4096 16384 65536"
	ip netns exec "$(ns conc)" "$CONCENTRATOR" --listen 198.51.100.1:5133 \
		--allow-client 198.51.100.0/24 --workers 1 --buffers 32 --max-parked-memory 16 \
		--metrics-listen 198.51.100.1:9195 > "$WORKDIR/noread-bound.log" 2>&1 &
	pid=$!
	wait_listen conc 5133 || return 1
	pm() { metric_at cli 198.51.100.1:9195 "mptcp_concentrator_parked_$1"; }
	$C noread --conc 198.51.100.1:5133 --dst 203.0.113.2:9000 --count 60 --src 198.51.100.2 \
		--bytes $((1 << 20)) --min-bytes 0 --seconds 40 > "$WORKDIR/noread-bound.out" &
	h1=$!
	settled() {  # 32 parked and 28 refused: all 60 stalled
		[ "$(pm sends_total)" -ge 32 ] && [ "$(( $(pm sends_total) + $(pm refused_total) ))" -ge 60 ]
	}
	wait_for 25 settled || { echo "the 60 did not all stall"; rc=1; }
	refused=$(pm refused_total); sends=$(pm sends_total); bytes=$(pm bytes)
	echo "{\"one_client\": {\"parked_sends\": $sends, \"parked_refused\": $refused, \"parked_bytes\": $bytes}}"
	[ "$refused" -gt 0 ] && [ "$bytes" -le $((16 << 20)) ] || rc=1
	# Held 4 s (its sends stall and park after 2 s), then it says how many
	# of its 4 the concentrator reset: none may be.
	$C noread --conc 198.51.100.1:5133 --dst 203.0.113.2:9000 --count 4 --src 198.51.100.4 \
		--bytes $((1 << 20)) --min-bytes 0 --seconds 4 > "$WORKDIR/noread-other.out" 2>&1
	cat "$WORKDIR/noread-other.out"
	grep -q '"reset_by_the_far_side": 0' "$WORKDIR/noread-other.out" ||
		{ echo "another client's stalled flows were reset"; rc=1; }
	echo "{\"after_another_client\": {\"parked_sends\": $(pm sends_total), \"parked_refused\": $(pm refused_total)}}"
	timeout 20 $C echo --conc 198.51.100.1:5133 --dst $DST --bytes $((8 << 20)) ||
		{ echo "valid flow did not complete"; rc=1; }
	kill $h1 2>/dev/null; wait $h1 2>/dev/null
	ip netns exec "$(ns conc)" sysctl -qw net.ipv4.tcp_wmem="$wmem"
	stop_concentrator "$pid" noread-bound || rc=1
	return $rc
}
check "parked heap: bounded, one client holds at most its share, another's stalls still park" noread_bound

# 7. A crowd: 2,000 connections that send nothing, 2,000 that send a byte a
# second (from four more addresses: 1,000 each, within the per-client
# handshake limit), and 2,000 connect-and-close, all at once. A valid flow
# completes meanwhile, and afterwards the main instance's memory and
# descriptors are back where they were.
for a in 5 6 7 8; do ip -n "$(ns cli)" addr add 198.51.100.$a/24 dev cli-conc; done
crowd() {
	local rc=0 pids=() rss0 fd0
	rss0=$(rss_kib $MAIN_PID); fd0=$(fds $MAIN_PID)
	for spec in "5:" "6:" "7:--trickle" "8:--trickle"; do
		ip netns exec "$(ns cli)" bash -c "ulimit -n 8192; exec $PY ./nettool.py hold --dst $CONC \
			--src 198.51.100.${spec%%:*} --count 1000 --expect 1000 --seconds 4 --connect-timeout 10 \
			${spec#*:}" > "$WORKDIR/crowd-${spec%%:*}.out" &
		pids+=($!)
	done
	# 6,000 SYNs at once: some meet a full accept queue and are dropped;
	# the kernel sends them again (1, 3, 7 s), so each connect gets 10 s and
	# the crowd reaches every count it asks for.
	$C hold --dst $CONC --src 198.51.100.4 --count 2000 --expect 2000 --churn --connect-timeout 10 \
		> "$WORKDIR/churn.out" &
	pids+=($!)
	sleep 2
	$C echo --conc $CONC --dst $DST --bytes $((4 << 20)) --src 198.51.100.2 || rc=1
	for p in "${pids[@]}"; do wait $p || { echo "a crowd did not open all its connections"; rc=1; }; done
	cat "$WORKDIR"/crowd-*.out "$WORKDIR/churn.out" | tr '\n' ' '; echo
	local m=198.51.100.1:9190
	echo "{\"handshakes_max\": $(metric_at cli $m mptcp_concentrator_handshakes_max)," \
		"\"evictions\": $(metric_at cli $m mptcp_concentrator_handshake_evictions_total)," \
		"\"limit_hits\": $(metric_at cli $m 'mptcp_concentrator_limit_hits_total{limit="handshakes"}')," \
		"\"timeouts\": $(metric_at cli $m mptcp_concentrator_handshake_timeouts_total)}"
	back_to_start $MAIN_PID "$rss0" "$fd0" 4096 || rc=1
	return $rc
}
check "2,000 silent, 2,000 trickling and 2,000 churning connections: a valid flow completes; RSS and descriptors return" crowd

check "concentrator exits cleanly on SIGTERM" stop_concentrator "$MAIN_PID" main
finish
