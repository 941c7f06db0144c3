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

ns_add cli; ns_add conc; ns_add srv
link cli conc; link conc srv
addr cli cli-conc 198.51.100.2/24
addr conc conc-cli 198.51.100.1/24
addr conc conc-srv 203.0.113.1/24
addr srv srv-conc 203.0.113.2/24
ip -n "$(ns srv)" route add default via 203.0.113.1

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
upstream_syns() {
	ip netns exec "$(ns srv)" nft list counter inet count upstream_syns |
		awk '/packets/ { for (i = 1; i < NF; i++) if ($i == "packets") print $(i + 1) }'
}
nstat_conc() { ip netns exec "$(ns conc)" nstat -az "$1" | awk -v k="$1" '$1 == k {print $2}'; }

ip netns exec "$(ns srv)" "$PY" ./nettool.py serve --bind 203.0.113.2 --base 9000 \
	> "$WORKDIR/servers.log" 2>&1 &
start_concentrator conc main --allow-client 198.51.100.0/24 --handshake-timeout 2 \
	--connect-timeout 1 --workers 2
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
forged_syn() {
	local before after
	before=$(upstream_syns)
	$F syn-data --src 198.51.100.9 --dst $CONC --to $DST --count 20 || return 1
	$F syn-data --src 198.51.100.9 --dst $CONC --to $DST --count 20 --mptcp || return 1
	sleep 3  # past the handshake timeout: whatever would happen has happened
	after=$(upstream_syns)
	echo "{\"upstream_syns_from_forged\": $((after - before)), \"tfo_passive\": $(nstat_conc TcpExtTCPFastOpenPassive)}"
	[ "$after" -eq "$before" ] || return 1
	# The counter works: a real client's flow is one upstream SYN.
	$C echo --conc $CONC --dst $DST --bytes 1000 || return 1
	[ "$(upstream_syns)" -eq $((after + 1)) ]
}
check "forged-source SYNs with a Convert message: no upstream SYN (shipped sysctl)" forged_syn
ip netns exec "$(ns conc)" sysctl -qw net.ipv4.tcp_fastopen=0x203
check "forged-source SYNs with a Convert message: no upstream SYN (cookieless TFO 0x200)" forged_syn
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

check "concentrator exits cleanly on SIGTERM" stop_concentrator "$MAIN_PID" main
finish
