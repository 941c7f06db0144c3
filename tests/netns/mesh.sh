#!/usr/bin/env bash
# Neighbours' lines through the mesh. Three home routers on one mesh segment
# (a bridge standing for the shared Wi-Fi channel), each with its own DSL
# line (tbf-shaped) to the concentrator; A borrows, B and C lend:
#
#   lan -- A (gw-agent --mesh) --dsl-- conc (192.0.2.1) -- srv
#          |  mesh 10.77.0.0/24 (bridge in "air")
#   lanb -- B (gw-agent --lend) -- modem --dsl-- conc
#          C (gw-agent --lend) --dsl-- conc
#
# B's line is behind a modem, as at home: the line's rate is the modem's
# (tbf), and B shapes its own upload just under it (--lend ...,uplink=) so
# the queue is B's, where its household's traffic goes first.
cd "$(dirname "$0")"
. ./lib.sh
require_netns
[ -x "${AGENT:-}" ] || skip "AGENT not built"
command -v iperf3 >/dev/null || skip "needs iperf3"
command -v nft >/dev/null || skip "needs nftables"

RATE=${RATE:-20mbit}
mesh_topology "$RATE"
ip netns exec "$(ns srv)" iperf3 -s -J -p 5201 > /dev/null 2>&1 &  # -J: clients get its intervals
ip netns exec "$(ns srv)" iperf3 -s -p 5203 > /dev/null 2>&1 &
ip netns exec "$(ns srv)" "$PY" ./nettool.py serve --bind 203.0.113.2 --base 9000 --udp443 > /dev/null 2>&1 &
# (UDP 443 too: UDP at the concentrator's address on another port than its
# own, which a lender does not forward: lend_firewall.)
ip netns exec "$(ns conc)" "$PY" ./nettool.py serve --bind 192.0.2.1 --base 9000 --udp443 > /dev/null 2>&1 &
ip netns exec "$(ns lanb)" "$PY" ./nettool.py serve --bind 192.168.78.2 --base 9000 --udp443 > /dev/null 2>&1 &
ip netns exec "$(ns srv)" "$PY" ./udptool.py echo --bind 203.0.113.2 --port 7000 > /dev/null 2>&1 &
# A line alone: iperf3 from each router to the concentrator host.
ip netns exec "$(ns conc)" iperf3 -s -p 5202 > /dev/null 2>&1 &
ip netns exec "$(ns conc)" iperf3 -s -p 5204 > /dev/null 2>&1 &
ip netns exec "$(ns conc)" iperf3 -s -p 5205 > /dev/null 2>&1 &
start_concentrator conc conc --listen 192.0.2.1:5124 --allow-client 198.51.100.0/24 --workers 1
wait_listen srv 5201 && wait_listen conc 5124 && wait_listen conc 9000 && wait_listen lanb 9000 &&
	wait_listen conc 5202 && wait_listen conc 5204 && wait_listen conc 5205 || exit 1

# Mesh keys, one per household, bound to its address in the others' files
# (so B and C cannot speak for each other), and key 8, which A takes from
# any address of the mesh (a key the households share). Each signs with
# the first key in its file: B and C their announcements, A its borrow
# requests (key 4, which B and C hold for A's address).
hex() { od -An -tx1 -N32 /dev/urandom | tr -d ' \n'; }
S4=$(hex); S5=$(hex); S6=$(hex); S8=$(hex)
(umask 077
 printf '5 %s 10.77.0.2/32\n4 %s 10.77.0.1/32\n8 %s 10.77.0.0/24\n' "$S5" "$S4" "$S8" > "$WORKDIR/b.mkeys"
 printf '6 %s 10.77.0.3/32\n4 %s 10.77.0.1/32\n' "$S6" "$S4" > "$WORKDIR/c.mkeys"
 printf '4 %s 10.77.0.1/32\n5 %s 10.77.0.2/32\n6 %s 10.77.0.3/32\n8 %s 10.77.0.0/24\n' "$S4" "$S5" "$S6" "$S8" > "$WORKDIR/a.mkeys")
MESH_KEYS=
# B knows a second concentrator (192.0.2.3: a listener on conc's loopback)
# and C lends to a cluster's join addresses (joins=192.0.2.0/29), for what
# a lender forwards to (lend_each).
addr conc lo 192.0.2.3/32
ip netns exec "$(ns conc)" "$PY" ./nettool.py serve --bind 192.0.2.3 --base 5124 > /dev/null 2>&1 &
wait_listen conc 5125 || exit 1  # nettool's second port (5124 is the concentrator's too)
mesh_agent b agent-b --lan b-lanb --path b-dsl --mesh-key "$WORKDIR/b.mkeys" \
	--metrics-listen 127.0.0.1:9191 \
	--concentrator 192.0.2.3:5124 \
	${LEND_B:---lend b-mesh,uplink=$(( ${RATE%mbit} * 95 / 100 ))mbit,flows=64} || exit 1
B=$AGENT_PID
mesh_agent c agent-c --lan c-lan --path c-dsl --lend c-mesh,joins=192.0.2.0/29 \
	--mesh-key "$WORKDIR/c.mkeys" || exit 1
C=$AGENT_PID
# cubic, as on a home router: this machine's default is BBR, which left each
# subflow over the shaped lines about 8% idle (0.88-0.92 of the sum; cubic
# 0.975; README, --congestion).
mesh_agent a agent-a --lan a-lan --path a-dsl --mesh a-mesh --metrics-listen 127.0.0.1:9190 \
	--congestion cubic --mesh-key "$WORKDIR/a.mkeys" || exit 1
A=$AGENT_PID

status_a() { ip netns exec "$(ns a)" "$AGENT" status --control "$WORKDIR/agent-a.sock"; }
# wait_paths N: A shows N paths up (its line and N-1 neighbours) within 8 s.
wait_paths() {
	local i st
	for i in $(seq 1 80); do
		st=$(status_a)
		[ "$(echo "$st" | grep -cE '^a-(dsl|mesh~10\.77\.0\.[23]) .* up ')" -eq "$1" ] && { echo "$st" | grep "^a-"; return 0; }
		sleep 0.1
	done
	echo "$st"; return 1
}
check "A borrows: its line and both neighbours' are paths, up" wait_paths 3
# The columns of status stay in line whatever the path names: a
# neighbour's (a-mesh~10.77.0.2) is longer than an interface's.
status_aligned() {
	status_a | awk '/^PATH / { h = index($0, " MODE ") + 1 }
		/^a-/ { if (h > 1 && substr($0, h - 1, 2) ~ /^ [a-z]/) ok++; else bad++ }
		END { exit !(ok >= 3 && !bad) }' || { status_a | sed -n '/^PATH/,/^$/p'; return 1; }
}
check "status: every path's mode under MODE, the neighbours' long names included" status_aligned

# What each line carries alone, then one flow from A's LAN over all three.
line_alone() {  # line_alone NS SRC PORT
	ip netns exec "$(ns "$1")" iperf3 -c 192.0.2.1 -B "198.51.100.$2" -p "$3" -t 3 -J |
		"$PY" -c 'import json,sys; print(json.load(sys.stdin)["end"]["sum_received"]["bits_per_second"] / 1e6)'
}
# What went out on each line (A's, B's behind its modem, C's).
line_tx() {
	echo "$(ip netns exec "$(ns a)" cat /sys/class/net/a-dsl/statistics/tx_bytes)" \
	     "$(ip netns exec "$(ns mb)" cat /sys/class/net/mb-conc/statistics/tx_bytes)" \
	     "$(ip netns exec "$(ns c)" cat /sys/class/net/c-dsl/statistics/tx_bytes)"
}
aggregate_once() {
	local la lb lc out t0 t1
	# The three lines alone, at once: they share no link.
	line_alone a 2 5202 > "$WORKDIR/la" & local pa=$!
	line_alone b 6 5204 > "$WORKDIR/lb" & local pb=$!
	line_alone c 10 5205 > "$WORKDIR/lc" || return 1
	wait $pa && wait $pb || return 1
	la=$(cat "$WORKDIR/la"); lb=$(cat "$WORKDIR/lb"); lc=$(cat "$WORKDIR/lc")
	sleep 0.5
	t0=$(line_tx)
	out=$(ip netns exec "$(ns lan)" iperf3 -c 203.0.113.2 -p 5201 -t 10 -J --get-server-output) || return 1
	t1=$(line_tx)
	echo "$out" | "$PY" -c '
import json, sys
d = json.load(sys.stdin); lines = [float(x) for x in sys.argv[1:4]]
t0, t1 = [int(x) for x in sys.argv[4].split()], [int(x) for x in sys.argv[5].split()]
dur = d["end"]["sum_sent"]["seconds"]
per_line = [round((b - a) * 8 / dur / 1e6, 1) for a, b in zip(t0, t1)]
# What the server received (the client counts what it wrote into the
# agent socket, which buffers) after the first 3 s: bytes over seconds, not
# a mean of per-interval rates, which a short last interval (the buffered
# tail arriving in a few ms) skewed by up to 20% either way.
iv = [i["sum"] for i in d["server_output_json"]["intervals"]][3:]
iv = [i for i in iv if i["seconds"] > 0.5]
got = sum(i["bytes"] for i in iv) * 8 / sum(i["seconds"] for i in iv) / 1e6
print(json.dumps({"lines_alone_mbit_s": [round(x, 1) for x in lines], "sum": round(sum(lines), 1),
                  "flow_mbit_s": round(got, 1), "ratio": round(got / sum(lines), 3),
                  "each_line_during_flow_mbit_s": per_line}))
sys.exit(0 if got >= 0.9 * sum(lines) else 1)' "$la" "$lb" "$lc" "$t0" "$t1"
}
aggregate() {  # shaped throughput on a shared machine: single tries here
	local n       # ranged 0.86-0.97, so up to three, as paths.sh does
	for n in 1 2 3; do
		aggregate_once && return 0
		sleep 1
	done
	return 1
}
if [ "${BUILD_KIND:-plain}" = asan ]; then
	log "mesh aggregation ratio: measured in the plain build only (not repeated under ASan)"
else
	check "one LAN flow on A gets >= 0.9 of the sum of the three lines" aggregate
fi

# Each neighbour's path with its own bytes (nftables counters per borrow
# address), in the metrics and the status.
nb_bytes() {
	local m st
	m=$(ip netns exec "$(ns a)" curl -s http://127.0.0.1:9190/metrics | grep '^gw_agent_path_bytes_total{path="a-mesh~')
	st=$(status_a | grep "^a-mesh~")
	echo "$m"; echo "$st"
	local b2 b3 all
	b2=$(echo "$m" | awk -F'} ' '/a-mesh~10.77.0.2",direction="tx"/ {print $2}')
	b3=$(echo "$m" | awk -F'} ' '/a-mesh~10.77.0.3",direction="tx"/ {print $2}')
	all=$(ip netns exec "$(ns a)" cat /sys/class/net/a-mesh/statistics/tx_bytes)
	echo "{\"mesh_interface_tx\": $all}"
	# Each counts its own (at least its probes), not the interface's total.
	[ "${b2:-0}" -gt 0 ] && [ "${b3:-0}" -gt 0 ] && [ $((b2 + b3)) -lt "$all" ] &&
		[ "$(echo "$st" | wc -l)" -eq 2 ]
}
check "status and metrics show each neighbour's path with its own bytes" nb_bytes

# B lends and yields: its own household's upload keeps at least 0.9 of what
# it gets alone while A borrows B's line at full rate.
b_own() {  # b_own: B's LAN client's upload through B's agent, Mbit/s
	ip netns exec "$(ns lanb)" iperf3 -c 203.0.113.2 -p 5203 -t 8 -J | "$PY" -c '
import json, sys
d = json.load(sys.stdin)
iv = [i["sum"]["bits_per_second"] / 1e6 for i in d["intervals"]][2:]
print(round(sum(iv) / len(iv), 2))'
}
yield_once() {
	local alone shared ip0 lent0 lent1
	alone=$(b_own) || return 1
	ip netns exec "$(ns lan)" iperf3 -c 203.0.113.2 -p 5201 -t 14 -J > "$WORKDIR/borrow.json" 2>&1 &
	ip0=$!
	sleep 3
	lent0=$(ip netns exec "$(ns b)" tc -s class show dev b-dsl classid 4d4c:20 | awk '/Sent/ {print $2; exit}')
	shared=$(b_own)
	lent1=$(ip netns exec "$(ns b)" tc -s class show dev b-dsl classid 4d4c:20 | awk '/Sent/ {print $2; exit}')
	wait $ip0 || return 1
	"$PY" -c '
import json, sys
alone, shared, lent = float(sys.argv[1]), float(sys.argv[2]), int(sys.argv[3])
print(json.dumps({"b_alone_mbit_s": alone, "b_while_a_borrows_mbit_s": shared,
                  "ratio": round(shared / alone, 3), "lent_bytes_meanwhile": lent}))
sys.exit(0 if shared >= 0.9 * alone and lent > 0 else 1)' "$alone" "${shared:-0}" $((${lent1:-0} - ${lent0:-0}))
}
yield_check() {
	yield_once || { sleep 1; yield_once; }
}
if [ "${BUILD_KIND:-plain}" = asan ]; then
	log "lender's own upload while lending: measured in the plain build only"
else
	check "B's own upload keeps >= 0.9 of its rate alone while A borrows B's line" yield_check
fi

# A lender forwards nothing from the mesh but TCP to the concentrator:
# tried from A's own mesh address, routed through B (a host route via B's
# mesh address), by TCP, UDP and ICMP. The same probes from B itself (its
# own traffic, not forwarded) must get through: they show the targets answer
# and that a refusal below is the lender's firewall, not a missing route.
reach() {  # reach NS SRC tcp|udp|icmp DST [PORT]: does DST answer SRC?
	local n=$1 src=$2 kind=$3 dst=$4 port=${5:-0}
	if [ "$kind" = icmp ]; then
		ip netns exec "$(ns "$n")" ping -c 2 -W 1 -I "$src" "$dst" > /dev/null 2>&1
		return
	fi
	ip netns exec "$(ns "$n")" timeout 3 "$PY" -c '
import socket, sys
src, kind, dst, port = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
s = socket.socket(type=socket.SOCK_STREAM if kind == "tcp" else socket.SOCK_DGRAM)
s.settimeout(1.5); s.bind((src, 0))
try:
    if kind == "tcp":
        s.connect((dst, port))
    else:
        s.sendto(b"ping", (dst, port))
        assert s.recvfrom(64)[0] == b"ping"
    print("open")
except (OSError, AssertionError) as e:
    print("closed:", e); sys.exit(1)' "$src" "$kind" "$dst" "$port"
}
via_b() {  # via_b KIND DST [PORT]: from A's borrow address for B, through B
	via_b_from 100.64.2.1 "$@"
}
via_b_from() {  # via_b_from SRC KIND DST [PORT]
	via_lender 10.77.0.2 "$@"
}
via_c() {  # via_c KIND DST [PORT]: from A's borrow address for C, through C
	via_lender 10.77.0.3 100.64.3.1 "$@"
}
via_lender() {  # via_lender LENDER SRC KIND DST [PORT]
	local lender=$1 src=$2; shift 2
	ip -n "$(ns a)" route replace "$2/32" via "$lender" dev a-mesh
	reach a "$src" "$@"
	local r=$?
	ip -n "$(ns a)" route del "$2/32" via "$lender" dev a-mesh
	return $r
}
lend_firewall() {
	local rc=0 t
	for t in "tcp 192.168.78.2 9000" "udp 192.168.78.2 443" "icmp 192.168.78.2"; do
		reach b 10.77.0.2 $t > /dev/null || { echo "control: B itself cannot reach $t"; rc=1; }
	done
	reach conc 192.0.2.1 udp 203.0.113.2 443 > /dev/null || { echo "control: the server's UDP echo does not answer"; rc=1; }
	reach b 198.51.100.6 udp 192.0.2.1 443 > /dev/null || { echo "control: the concentrator host's UDP echo does not answer B"; rc=1; }
	via_b tcp 192.0.2.1 5124 > /dev/null || { echo "the concentrator is not reachable through the lender"; rc=1; }
	# Only borrow addresses for B (100.64.2.0/24) are forwarded, not A's
	# mesh address (which B's replies would reach: before the source check
	# this connected).
	via_b_from 10.77.0.1 tcp 192.0.2.1 5124 > /dev/null && { echo "forwarded from a mesh address"; rc=1; }
	# The refused ones at once (each waits out its timeout): routes via B
	# for their destinations first, then every probe in parallel.
	local d t
	for d in 192.0.2.1 203.0.113.2 192.168.78.2; do
		ip -n "$(ns a)" route replace "$d/32" via 10.77.0.2 dev a-mesh
	done
	: > "$WORKDIR/forwarded"
	local probes=()
	for t in "tcp 192.0.2.1 9000" "tcp 203.0.113.2 9000" "tcp 192.168.78.2 9000" \
		 "udp 192.168.78.2 443" "udp 203.0.113.2 443" "udp 192.0.2.1 443" \
		 "icmp 192.168.78.2" "icmp 203.0.113.2"; do
		{ reach a 100.64.2.1 $t > /dev/null && echo "forwarded from the mesh: $t" >> "$WORKDIR/forwarded"; } &
		probes+=($!)
	done
	wait "${probes[@]}"
	for d in 192.0.2.1 203.0.113.2 192.168.78.2; do
		ip -n "$(ns a)" route del "$d/32" via 10.77.0.2 dev a-mesh
	done
	[ -s "$WORKDIR/forwarded" ] && { cat "$WORKDIR/forwarded"; rc=1; }
	return $rc
}
check "a lender forwards only TCP and UDP to the concentrator's port from its borrow addresses (not another port, not ICMP, not the Internet, not its LAN, not other sources)" lend_firewall

M="ip netns exec $(ns c) $PY ./nettool.py meshannounce --dev c-mesh --count 10 --interval 0.01"
# A device on the segment without a key takes a borrow address for B
# itself (100.64.2.9, as a borrower at 10.77.0.9 would have) and routes
# through B: B forwards only the borrow addresses of borrowers that signed
# a borrow request with a key B holds (A's), so this gets nothing. Before
# borrow requests, the source check alone let it connect. Then it takes
# A's own borrow address for B (and answers ARP for it): B forwards that
# address only from the MAC address A's signed requests name, and its
# replies go there (a pinned neighbour entry), so it gets nothing either,
# and A's own traffic through B goes on. From C's namespace, by a rule of
# its own (C's agent and routes are untouched).
steal_from() {  # steal_from ADDR: does ADDR, taken on C's mesh link, get through B?
	ip -n "$(ns c)" addr add "$1/32" dev c-mesh
	ip -n "$(ns c)" route replace default via 10.77.0.2 dev c-mesh table 4097
	ip -n "$(ns c)" rule add from "$1" lookup 4097 priority 90
	# C's ARP request for B then comes from the stolen address (the
	# kernel's choice, arp_announce 0): B learns that address at C's MAC,
	# unless its entry is pinned.
	ip -n "$(ns c)" neigh flush dev c-mesh
	reach c "$1" tcp 192.0.2.1 5124
	local r=$?
	ip -n "$(ns c)" rule del from "$1" lookup 4097 priority 90
	ip -n "$(ns c)" route flush table 4097
	ip -n "$(ns c)" addr del "$1/32" dev c-mesh
	return $r
}
keyless_borrower() {
	local rc=0
	# Forged borrow requests for 10.77.0.9 first: signed with C's key
	# (which B does not hold) and with A's key (B holds it for A's
	# address only). Neither opens 100.64.2.9.
	$M --src 10.77.0.9 --key "6:$S6" --borrow 10.77.0.2 --count 3 > /dev/null &&
		$M --src 10.77.0.9 --key "4:$S4" --borrow 10.77.0.2 --count 3 > /dev/null || return 1
	steal_from 100.64.2.9 && { echo "B forwarded a keyless device's borrow address"; rc=1; }
	steal_from 100.64.2.1 && { echo "B forwarded A's borrow address from another device"; rc=1; }
	via_b tcp 192.0.2.1 5124 > /dev/null || { echo "control: A's own borrow address no longer gets through B"; rc=1; }
	echo "{\"b_log_lending_to\": $(grep -c "lending to" "$WORKDIR/agent-b.log")," \
	     "\"b_log_requests_refused\": $(grep -c "borrow request from" "$WORKDIR/agent-b.log")}"
	return $rc
}
check "a device on the segment without a key that takes a borrow address for B (its own, or A's) gets nothing through B" keyless_borrower

# A key holder (the shared key 8, which B takes from any address of the
# mesh) that names a new MAC address in every request: B takes one change
# in 10 s and refuses the rest (each would run helpers and use the budget
# of new borrowers).
b_req() { metric_at b 127.0.0.1:9191 "gw_agent_mesh_borrow_requests_total{result=\"$1\"}"; }
b_req_over() { [ "$(b_req "$1")" -ge "$2" ]; }
mac_churn() {
	local t0 ok0 i
	t0=$(b_req taken) && ok0=$(b_req ok) || return 1
	for i in 1 2 3 4 5 6; do
		$M --src 10.77.0.9 --key "8:$S8" --borrow 10.77.0.2 --count 1 --mac "02:00:00:00:01:0$i" \
			> /dev/null || return 1
	done
	eventually 5 b_req_over taken $((t0 + 5)) || { echo "taken: $(b_req taken), was $t0"; return 1; }
	# (ok counts A's requests too, one a second.)
	echo "{\"ok_meanwhile\": $(( $(b_req ok) - ok0 )), \"refused_taken\": $(( $(b_req taken) - t0 ))," \
	     "\"borrowers\": $(metric_at b 127.0.0.1:9191 gw_agent_mesh_borrowers)}"
	[ "$(metric_at b 127.0.0.1:9191 gw_agent_mesh_borrowers)" -eq 2 ]  # A, and the first MAC
}
check "a key holder naming a new MAC address in every borrow request: one taken, the rest refused" mac_churn

# A lender forwards to each of its concentrators (B has a second one,
# 192.0.2.3), and to a cluster's join addresses (C's joins=192.0.2.0/29)
# at the concentrators' port, nowhere else (both have listeners).
lend_each() {
	local rc=0
	via_b tcp 192.0.2.3 5124 > /dev/null || { echo "B's second concentrator is not reachable through B"; rc=1; }
	via_c tcp 192.0.2.3 5124 > /dev/null ||
		{ echo "C did not forward to a join address (joins=) at the concentrators' port"; rc=1; }
	via_c tcp 192.0.2.3 5125 > /dev/null && { echo "C forwarded a join address's other port"; rc=1; }
	via_c tcp 192.0.2.1 9000 > /dev/null && { echo "C forwarded another port"; rc=1; }
	return $rc
}
check "a lender forwards to each of its concentrators and to joins= addresses at their port, nothing else" lend_each

# LAN UDP through the neighbours' lines: each lender forwards the carrier to
# the concentrator's port, so A's UDP paths are its line and both
# neighbours' (each answered), and with A's own line down its LAN's UDP
# still gets through.
udp_path_ok() {  # udp_path_ok NAME: A's UDP path NAME is usable with a round trip
	status_a | grep -qE "^  path $1 +usable rtt ([1-9][0-9]*|0\.[0-9]*[1-9])"
}
udp_paths_all() { udp_path_ok a-dsl && udp_path_ok "a-mesh~10\.77\.0\.2" && udp_path_ok "a-mesh~10\.77\.0\.3"; }
a_dsl_out() { status_a | grep -qE "^  path a-dsl +unusable"; }
mesh_udp() {
	local rc=0
	wait_for 10 udp_paths_all || rc=1
	status_a | sed -n '/^udp/,/^  [0-9]/p' | grep -E '^udp|path'
	[ $rc -eq 0 ] || return 1
	ip -n "$(ns a)" link set a-dsl down
	wait_for 5 a_dsl_out || { echo "a-dsl still in UDP use"; rc=1; }
	ip netns exec "$(ns lan)" "$PY" ./udptool.py burst --to 203.0.113.2:7000 --count 20 --size 1200 || rc=1
	status_a | grep -E '^  192\.168\.77\.2:' | head -2
	ip -n "$(ns a)" link set a-dsl up
	ip -n "$(ns a)" route replace default via 198.51.100.1 dev a-dsl
	wait_paths 3 > /dev/null || { echo "A's line not back"; rc=1; }
	return $rc
}
check "UDP through the neighbours: A's UDP paths are its line and both lenders' (each answered); with A's line down its LAN's datagrams are answered" mesh_udp

# C leaves the mesh mid-flow (its mesh link goes down), and comes back.
c_leaves() {
	local out ip0 t0 t1
	ip netns exec "$(ns lan)" iperf3 -c 203.0.113.2 -p 5201 -t 16 -i 1 -J > "$WORKDIR/leave.json" 2>&1 &
	ip0=$!
	sleep 2; ip -n "$(ns c)" link set c-mesh down
	sleep 5; status_a | grep "^a-"
	status_a | grep -q "^a-mesh~10.77.0.3 .* up " && { echo "C still up after leaving"; return 1; }
	ip -n "$(ns c)" link set c-mesh up
	wait_paths 3 > /dev/null || { echo "C not back"; return 1; }
	# From C's return to the end of the flow (about 7 s): C's line carries
	# it again. When it starts is printed: the kernel adds the subflow when
	# the endpoint comes back, usually within a second; once in about ten
	# runs nothing had moved 3 s after (ROADMAP).
	local first="" i c0 c
	c0=$(ip netns exec "$(ns c)" cat /sys/class/net/c-dsl/statistics/tx_bytes)
	t0=$c0
	for i in $(seq 1 60); do
		kill -0 $ip0 2>/dev/null || break
		c=$(ip netns exec "$(ns c)" cat /sys/class/net/c-dsl/statistics/tx_bytes)
		[ -z "$first" ] && [ $((c - c0)) -gt 200000 ] && first=$(( i * 100 ))
		sleep 0.1
	done
	t1=$(ip netns exec "$(ns c)" cat /sys/class/net/c-dsl/statistics/tx_bytes)
	echo "{\"ms_until_c_carries_200kB\": ${first:-null}}"
	wait $ip0 || { tail -5 "$WORKDIR/leave.json"; return 1; }
	"$PY" - "$WORKDIR/leave.json" $((t1 - t0)) "${RATE%mbit}" <<'PY'
import json, sys
d = json.load(open(sys.argv[1])); c_bytes = int(sys.argv[2])
iv = [round(i["sum"]["bits_per_second"] / 1e6, 1) for i in d["intervals"]]
print(json.dumps({"per_second_mbit_s": iv, "c_line_bytes_after_return": c_bytes}))
# C leaves at 2 s: the subflow there stalls until probes call the path
# dead (about 2 s) and its data goes again on the others; over seconds
# 3-9 the flow must carry at least three seconds of one line, and run in
# every one of the last four.
line = float(sys.argv[3])
ok = "error" not in d and sum(iv[3:9]) >= 3 * line and min(iv[-4:]) > 0 and c_bytes > 1000000
sys.exit(0 if ok else 1)
PY
}
check "C leaves the mesh mid-flow: A's flow goes on over the other two; C returns and carries it again" c_leaves

# B's line goes down: B withdraws at once, A drops the path before its
# probes would; the line back, B lends again.
withdraw() {
	local i
	ip -n "$(ns b)" link set b-dsl down
	for i in $(seq 1 20); do
		status_a | grep -q "^a-mesh~10.77.0.2 .* up " || break
		sleep 0.1
	done
	status_a | grep "^a-"
	grep -h "withdrawn\|neighbour gone" "$WORKDIR/agent-b.log" "$WORKDIR/agent-a.log" | tail -2
	status_a | grep -q "^a-mesh~10.77.0.2 .* up " && { ip -n "$(ns b)" link set b-dsl up; return 1; }
	ip -n "$(ns b)" link set b-dsl up
	ip -n "$(ns b)" route replace default via 198.51.100.5 dev b-dsl
	wait_paths 3
}
check "B's line down: B withdraws and A drops it within 2 s; back: lent again" withdraw

# Hostile devices on the segment (C's namespace, besides C's agent, can
# send anything from any address; issue 20). Each kind of announcement, 10
# times: A counts it refused for its own reason, B's path stays up, and no
# other neighbour appears.
mesh_result() { metric_at a 127.0.0.1:9190 "gw_agent_mesh_announcements_total{result=\"$1\"}"; }
at_least() { [ "$(mesh_result "$1")" -ge "$2" ]; }
spoof() {  # spoof RESULT ANNOUNCE-ARGS...
	local want=$1 before after; shift
	before=$(mesh_result "$want") || return 1
	$M "$@" > /dev/null || return 1
	eventually 5 at_least "$want" $((before + 10)) || { status_a | grep "^a-"; return 1; }
	after=$(mesh_result "$want")
	echo "{\"refused_as\": \"$want\", \"counted\": $((after - before))}"
	# B is still a neighbour (a forged withdrawal would turn its path off;
	# its probes may flap on their own), and no other one appeared.
	local st; st=$(status_a)
	echo "$st" | grep "^a-mesh~10.77.0.2 " | grep -qv " off " || { echo "B was withdrawn"; echo "$st"; return 1; }
	[ -z "$(echo "$st" | grep "^a-mesh~" | grep -v "^a-mesh~10.77.0.[23] " | grep -v " off ")" ] ||
		{ echo "another neighbour appeared"; echo "$st"; return 1; }
}
wait_paths 3 > /dev/null  # from where the withdrawal check left it: all three up
check "a lender announcing without a key (version 1): refused" \
	spoof unauthenticated --src 10.77.0.9 --version 1
check "signed with a key A does not hold: refused" spoof unknown_key --src 10.77.0.9 --key "9:$(hex)"
check "B's key id with another secret: refused" spoof bad_tag --src 10.77.0.9 --key "5:$(hex)"
check "B's withdrawal forged from B's address, unsigned: B stays" \
	spoof unauthenticated --src 10.77.0.2 --version 1 --lending 0
check "B's withdrawal forged from B's address with a guessed secret: B stays" \
	spoof bad_tag --src 10.77.0.2 --key "5:$(hex)" --lending 0
check "B's withdrawal forged by C, a key holder, with its own key: B stays (the key is for C's address)" \
	spoof scope --src 10.77.0.2 --key "6:$S6" --lending 0
check "a key holder from off the mesh's subnet: refused" spoof off_link --src 10.99.0.9 --key "8:$S8"
check "a key holder naming another sender than its source: refused" \
	spoof sender --src 10.77.0.9 --sender 10.77.0.10 --key "8:$S8"
check "a key holder's announcement dated 10 min ahead: refused" \
	spoof clock --src 10.77.0.9 --key "8:$S8" --seq-offset 600000
replay_b() {
	ip netns exec "$(ns c)" "$PY" ./nettool.py meshcapture --dev c-mesh --src 10.77.0.2 \
		--out "$WORKDIR/b.announce" || return 1
	spoof replayed --src 10.77.0.2 --replay "$WORKDIR/b.announce"
}
check "B's own signed announcement recorded and replayed: refused" replay_b
# A key holder announcing from 20 addresses of the mesh: A knows 8
# neighbours at most (B, C and 6 of them), the rest are refused, and A's
# flows go on.
many_lenders() {
	local before
	before=$(mesh_result full) || return 1
	$M --src "$(seq -s, -f '10.77.0.%g' 100 119)" --key "8:$S8" --count 2 > /dev/null || return 1
	eventually 5 at_least full $((before + 1)) || return 1
	echo "{\"refused_full\": $(( $(mesh_result full) - before )), \"neighbour_paths\": $(status_a | grep -c '^a-mesh~')}"
	[ "$(status_a | grep -c '^a-mesh~')" -le 8 ] &&
		status_a | grep "^a-mesh~10.77.0.2 " | grep -qv " off " &&
		ip netns exec "$(ns lan)" "$PY" ./nettool.py echo --plain --dst 203.0.113.2:9000 \
			--bytes 1000000 --flows 4
}
check "a key holder announcing from 20 addresses: 8 neighbours at most, A's flows go on" many_lenders

stop_check() {
	kill -TERM "$A" "$B" "$C"
	wait "$A" && wait "$B" && wait "$C" || return 1
	! ip netns exec "$(ns b)" nft list table inet gw_agent_lend > /dev/null 2>&1 &&
	! ip netns exec "$(ns b)" tc qdisc show dev b-dsl | grep -q htb &&
	! ip -n "$(ns a)" addr show dev a-mesh | grep -q "100.64." &&
	[ -z "$(ip -n "$(ns a)" mptcp endpoint show)" ]
}
check "agents exit cleanly: lending table, shaping, borrow addresses and endpoints removed" stop_check
check "concentrator exits cleanly" stop_concentrator "$CONC_PID" conc
finish
