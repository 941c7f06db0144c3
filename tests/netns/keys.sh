#!/usr/bin/env bash
# Per-gateway keys (RFC 8803 Cookie TLV) end to end, on the two-path
# testbed:
#
#   lan -- gw (gw-agent, two paths, keyed) -- conc (any client, keys required) -- srv
#
# The concentrator allows any client address and requires a key: how a VPS
# serves gateways whose addresses change. Its replay cache is small (512),
# so that one key holder's flood fills it in seconds. Cookies are built here by
# nettool.py from the format in common/cookie.h (Python's hmac, not our C).
cd "$(dirname "$0")"
. ./lib.sh
require_netns
[ -x "${AGENT:-}" ] || skip "AGENT not built"

two_path_topology 200mbit
ip netns exec "$(ns srv)" "$PY" ./nettool.py serve --bind 203.0.113.2 --base 9000 > /dev/null 2>&1 &

hex() { od -An -tx1 -N32 /dev/urandom | tr -d ' \n'; }
K7=$(hex); K8=$(hex); K9=$(hex); K10=$(hex); K12=$(hex)
umask 077
cat > "$WORKDIR/conc.keys" <<KEYS
# id secret scope
7   $K7   any
8   $K8   192.0.2.0/24          # not the gateway's addresses
9   $K9   any nat
KEYS
echo "7 $K7" > "$WORKDIR/gw.keys"
umask 022

METRICS=198.51.100.1:9190
# Two boxes of a cluster (the second on port 5125), sharing the TFO key and
# the cookies they take (--replay-peer). The first also lists a peer it
# cannot send to (from loopback to a non-loopback address: EINVAL at once),
# first, as an unreachable box would be: the second still hears of every
# cookie.
(umask 077; echo "$(head -c 16 /dev/urandom | od -An -tx1 | tr -d ' \n')" > "$WORKDIR/tfo.key")
start_concentrator conc conc --listen 192.0.2.1:5124 --allow-any-client --keys "$WORKDIR/conc.keys" \
	--metrics-listen $METRICS --workers 1 --replay-cache 512 --tfo-key-file "$WORKDIR/tfo.key" \
	--replay-listen 127.0.0.1:5130 --replay-peer 192.0.2.99:5127 --replay-peer 127.0.0.1:5131
CONC_MAIN=$CONC_PID
start_concentrator conc conc2 --listen 192.0.2.1:5125 --allow-any-client --keys "$WORKDIR/conc.keys" \
	--metrics-listen 198.51.100.1:9191 --workers 1 --tfo-key-file "$WORKDIR/tfo.key" \
	--replay-listen 127.0.0.1:5131 --replay-peer 127.0.0.1:5130
CONC2=$CONC_PID
wait_listen srv 9000 && wait_listen conc 5124 && wait_listen conc 5125 || exit 1

G="ip netns exec $(ns gw) $PY ./nettool.py"
CK="$G cookie --conc 192.0.2.1:5124 --dst 203.0.113.2:9000 --src 198.51.100.2"
metric() {  # metric NAME{LABELS}: its value at the concentrator (fails when absent)
	metric_at gw $METRICS "$1"
}

check "no Cookie: Error 3 (Missing Cookie)" $CK --key 7:$K7 --case none --expect 3
check "a valid cookie: relayed (echo intact)" $CK --key 7:$K7 --case good --expect=-1
check "the same cookie twice: the replay gets Error 32" $CK --key 7:$K7 --case replay --expect 32
# A cookie seen on the wire at one box, replayed at the other (ECMP sends a
# connection to any box): the first box told the second (replay-peer).
check "a cookie used at one box of a cluster, replayed at the other: Error 32" \
	$CK --key 7:$K7 --case replay --replay-to 192.0.2.1:5125 --expect 32
check "a NAT cookie used at box 2, replayed at box 1: Error 32" \
	$G cookie --conc 192.0.2.1:5125 --dst 203.0.113.2:9000 --src 198.51.100.2 --key 9:$K9 \
	--nat --case replay --replay-to 192.0.2.1:5124 --expect 32
# The other boxes are no destinations (their own addresses may trust this
# one's): box 1's peers, the unreachable one too, are refused.
check "a request for another box's own address (a replay-peer): Error 32" \
	$G cookie --conc 192.0.2.1:5124 --dst 192.0.2.99:22 --src 198.51.100.2 --key 7:$K7 --case good --expect 32
# A message from elsewhere, or from a peer's address with a guessed key,
# is counted and changes nothing.
peer_metric() { metric_at gw 198.51.100.1:9191 "mptcp_concentrator_replay_peer_$1"; }
bad_tags_over() { [ "$(peer_metric 'messages_total{result="bad_tag"}')" -ge "$1" ]; }
peer_forged() {
	local m0 e0 e1 st
	m0=$(peer_metric 'messages_total{result="bad_tag"}') &&
		e0=$(peer_metric 'entries_total{result="new"}') || return 1
	# Dated now, so that a forged entry taken would count as new.
	ip netns exec "$(ns conc)" "$PY" -c '
import os, socket, struct, time
body = b"gwrp" + bytes([2, 1, 0, 0]) + struct.pack("!IIQ", 7, int(time.time()), 1) + os.urandom(32)
udp = struct.pack("!HHHH", 5130, 5131, 8 + len(body), 0) + body
ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(udp), 0, 0x4000, 64, 17, 0,
                 socket.inet_aton("127.0.0.1"), socket.inet_aton("127.0.0.1"))
s = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_RAW)
for _ in range(5):
    s.sendto(ip + udp, ("127.0.0.1", 0))
u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
u.sendto(body, ("127.0.0.1", 5131))' || return 1
	eventually 5 bad_tags_over $((m0 + 5)) || return 1
	st=$(peer_metric 'messages_total{result="stranger"}') && e1=$(peer_metric 'entries_total{result="new"}') || return 1
	echo "{\"bad_tag\": $(( $(peer_metric 'messages_total{result="bad_tag"}') - m0 )), \"stranger\": $st, \"entries_new_before\": $e0, \"after\": $e1}"
	[ "$st" -ge 1 ] && [ "$e0" -ge 1 ] && [ "$e1" -eq "$e0" ]
}
check "forged cluster messages (a guessed key from a peer's address, a stranger's): counted, nothing taken" peer_forged
check "a cookie 200 s old: Error 32" $CK --key 7:$K7 --case stale --expect 32
check "a cookie 200 s ahead: Error 32" $CK --key 7:$K7 --case future --expect 32
check "a forged authenticator (one bit): Error 32" $CK --key 7:$K7 --case badmac --expect 32
check "an unknown key id: Error 32" $CK --key 7:$K7 --case unknownkey --expect 32
check "the right id with a wrong secret: Error 32" $CK --key 7:$(hex) --case good --expect 32
check "a cookie made for another destination: Error 32" $CK --key 7:$K7 --case otherdst --expect 32
check "a cookie made for another client address: Error 32" $CK --key 7:$K7 --case othersrc --expect 32
check "a key scoped to other prefixes: Error 32" $CK --key 8:$K8 --case good --expect 32
check "a NAT cookie for a key without nat: Error 32" $CK --key 7:$K7 --case nat --expect 32
check "a NAT cookie for a nat key: relayed" $CK --key 9:$K9 --case nat --expect=-1
# The replay cache starts empty at every start, and a NAT cookie is tied to
# no address: one dated before the concentrator started (seen, perhaps,
# by the box before a restart) is refused, though within its 90 s.
nat_before_start() {
	local start
	start=$(metric mptcp_concentrator_start_time_seconds) && [ -n "$start" ] || return 1
	[ $(( $(date +%s) - start )) -lt 80 ] || { echo "the concentrator started too long ago for this check"; return 1; }
	$CK --key 9:$K9 --case nat --time $((start - 5)) --expect 32
}
check "a NAT cookie dated before the concentrator started: Error 32" nat_before_start
# ... nor one dated more than 10 s ahead (used before a restart, it could
# otherwise be dated after it).
check "a NAT cookie dated 30 s ahead: Error 32" $CK --key 9:$K9 --case nat --time $(( $(date +%s) + 30 )) --expect 32
counted() {
	local ok missing bad replayed scope
	ok=$(metric 'mptcp_concentrator_cookies_total{result="ok"}')
	missing=$(metric 'mptcp_concentrator_cookies_total{result="missing"}')
	bad=$(metric 'mptcp_concentrator_cookies_total{result="bad_mac"}')
	replayed=$(metric 'mptcp_concentrator_cookies_total{result="replayed"}')
	scope=$(metric 'mptcp_concentrator_cookies_total{result="scope"}')
	echo "{\"ok\": $ok, \"missing\": $missing, \"bad_mac\": $bad, \"replayed\": $replayed, \"scope\": $scope}"
	# good, replay's first, the cluster replay's first, the request for a
	# peer (refused by policy after its cookie), nat: 5 ok; wrong secret,
	# otherdst, othersrc, badmac: 4 bad_mac; the replay and the NAT
	# cookie's replay from box 2: 2 replayed.
	[ "$ok" -eq 5 ] && [ "$missing" -eq 1 ] && [ "$bad" -eq 4 ] && [ "$replayed" -eq 2 ] && [ "$scope" -eq 1 ]
}
check "refusals are counted by reason" counted

# The gateway: no allow-listed address, its key in a file, two paths with
# probes (which must carry the cookie too, or every path goes down).
ip netns exec "$(ns gw)" "$AGENT" --concentrator 192.0.2.1:5124 --lan gw-lan --workers 1 \
	--path gw-p1 --path gw-p2 --probe-interval 0.5 --key-file "$WORKDIR/gw.keys" \
	--control "$WORKDIR/control.sock" --metrics-listen 127.0.0.1:9125 > "$WORKDIR/agent.log" 2>&1 &
AGENT_PID=$!
for i in $(seq 1 100); do grep -q "intercepting TCP" "$WORKDIR/agent.log" && break; sleep 0.05; done
L="ip netns exec $(ns lan) $PY ./nettool.py"
paths_up() { agent_paths_up "$WORKDIR/control.sock"; }
check "keyed probes: both paths up" paths_up
check "LAN flows through the keyed gateway: 20 flows, 1 MiB each way (sha256)" \
	$L echo --plain --dst 203.0.113.2:9000 --bytes $((1 << 20)) --flows 20

# Rotation: the concentrator learns key 10 beside 7, the gateway switches to
# 10, then the concentrator drops 7. Flows run through every step.
rotate() {
	# Every step runs whatever an earlier one said (a failed batch must
	# not leave the keys half rotated for the checks after this one).
	local rc=0
	umask 077
	printf '7 %s any\n10 %s any\n' "$K7" "$K10" > "$WORKDIR/conc.keys"
	reload $CONC_MAIN "$WORKDIR/conc.log" || rc=1
	$L echo --plain --dst 203.0.113.2:9000 --bytes 100000 --flows 4 || rc=1
	echo "10 $K10" > "$WORKDIR/gw.keys"
	reload $AGENT_PID "$WORKDIR/agent.log" || rc=1
	$L echo --plain --dst 203.0.113.2:9000 --bytes 100000 --flows 4 || rc=1
	printf '10 %s any\n' "$K10" > "$WORKDIR/conc.keys"
	reload $CONC_MAIN "$WORKDIR/conc.log" || rc=1
	umask 022
	$L echo --plain --dst 203.0.113.2:9000 --bytes 100000 --flows 4 || rc=1
	$CK --key 7:$K7 --case good --expect 32 || rc=1
	grep -h "reloaded" "$WORKDIR/conc.log" | tail -1
	# A flow reset by the verified stream: what the daemons said.
	[ $rc -eq 0 ] || grep -h -E "verified stream|record's bytes" "$WORKDIR/conc.log" "$WORKDIR/agent.log" | tail -3
	return $rc
}
check "key rotation by reload: flows go on, the retired key is refused" rotate
# Since the nettool cases: every refusal counter stands still but the one
# retired-key request (unknown_key 1 -> 2), and the gateway's flows and
# probes (every 0.5 s per path) are all ok.
agent_counted() {
	local ok unknown others
	ok=$(metric 'mptcp_concentrator_cookies_total{result="ok"}')
	unknown=$(metric 'mptcp_concentrator_cookies_total{result="unknown_key"}')
	others=0
	for r in missing malformed scope nat stale bad_mac replayed; do
		others=$((others + $(metric "mptcp_concentrator_cookies_total{result=\"$r\"}")))
	done
	echo "{\"ok\": $ok, \"unknown_key\": $unknown, \"other_refusals\": $others}"
	[ "$ok" -ge $((3 + 20 + 12)) ] && [ "$unknown" -eq 2 ] && [ "$others" -eq $((1 + 4 + 1 + 1 + 4 + 2)) ] && return 0
	# Which requests were refused, and when against the reloads: the
	# concentrator's refusal lines (source, destination, reason).
	grep -h -E "refused|reloaded" "$WORKDIR/conc.log" | tail -20
	grep -h -E "reloaded|error" "$WORKDIR/agent.log" | tail -5
	return 1
}
check "the gateway's flows and probes were all accepted" agent_counted

# One key holder (key 12, from the server's side of the Internet) floods the
# concentrator with valid cookies dated at the far end of the window, Info
# alone and Connect, while the gateway runs flows: the cache fills, and the
# key holder pays for it alone (its own cookies are refused as stale); the
# gateway gets no Error 32 and every flow completes.
rejected32() {
	metric_at gw 127.0.0.1:9125 'gw_agent_concentrator_errors_total{code="32",reason="not_authorized"}'
}
future_flood() {
	local before after stale fp batches=0
	umask 077
	printf '10 %s any\n12 %s any\n' "$K10" "$K12" > "$WORKDIR/conc.keys"
	umask 022
	reload $CONC_MAIN "$WORKDIR/conc.log" || return 1
	before=$(rejected32) || return 1
	ip netns exec "$(ns srv)" "$PY" ./nettool.py cookieflood --conc 192.0.2.1:5124 \
		--dst 203.0.113.2:9000 --key 12:$K12 --src 203.0.113.2 --count 1500 --info \
		> "$WORKDIR/flood.json" 2>&1 &
	fp=$!
	while kill -0 $fp 2>/dev/null || [ $batches -lt 2 ]; do
		$L echo --plain --dst 203.0.113.2:9000 --bytes 100000 --flows 10 > "$WORKDIR/batch.out" || {
			echo "an honest batch failed during the flood:"; cat "$WORKDIR/batch.out"
			echo "gateway's Error 32: $(rejected32)"
			grep -h -E "refused|verified stream|record's bytes" "$WORKDIR/conc.log" | tail -4
			return 1; }
		batches=$((batches + 1))
	done
	wait $fp || { cat "$WORKDIR/flood.json"; echo "the flood did not happen"; return 1; }
	paths_up > /dev/null || { echo "the gateway's paths went down"; return 1; }
	after=$(rejected32) || return 1
	stale=$(metric 'mptcp_concentrator_cookies_total{result="stale"}')
	echo "{\"flood\": $(cat "$WORKDIR/flood.json"), \"honest_batches_of_10\": $batches," \
		"\"gateway_error32\": [$before, $after], \"concentrator_stale\": $stale}"
	[ "$after" -eq "$before" ] && [ "${stale:-0}" -gt 0 ]
}
check "a key holder's future-dated flood fills the replay cache: the gateway keeps every flow and probe" future_flood

# Key files hold secrets: readable by others, they are refused by name.
perms() {
	local out
	chmod 644 "$WORKDIR/conc.keys"
	out=$(ip netns exec "$(ns conc)" "$CONCENTRATOR" --allow-any-client --keys "$WORKDIR/conc.keys" --check-config 2>&1) && return 1
	chmod 600 "$WORKDIR/conc.keys"
	echo "$out"
	echo "$out" | grep -q "conc.keys: holds secrets but its mode is 0644"
}
check "a key file readable by others is refused, naming the file and mode" perms
never_logged() {
	! grep -l -i -E "$K7|$K8|$K9|$K10|$K12" "$WORKDIR"/*.log
}
check "no secret appears in any log" never_logged

check "agent exits cleanly" stop_agent_log $AGENT_PID "$WORKDIR/agent.log"
check "concentrator exits cleanly" stop_concentrator "$CONC_MAIN" conc
check "the second box exits cleanly" stop_concentrator "$CONC2" conc2
finish
