#!/usr/bin/env bash
# One topology of the fleet testbed (benches/fleet.sh runs these; not a
# test: it asserts nothing). Builds G gateways with the given paths, starts
# every system on them, runs one scenario with the systems interleaved run
# by run, appends JSON lines to OUT, and tears everything down on exit.
#
#   benches/fleet-phase.sh SCENARIO G "PROFILE..." OUT.jsonl
#
# SCENARIO: agg (each path alone, then one flow through each system, up and
# down), failover (a path goes silent, comes back, the other goes silent),
# fleet (every gateway uploads at once), rate (wrk, Connection: close),
# lul (request latency while the paths are saturated), mem (idle flows).
# PROFILE: a lib.sh path_profile name (dsl, vdsl, lte, mesh) or a bare rate
# (100mbit: tbf only, no delay line). Environment: RUNS, SECS, BUILD,
# WRK_CONNS (per gateway), IDLE_FLOWS (mem: in all), CONC_WORKERS,
# CONC_ARGS / AGENT_ARGS, CONC_SYSCTL / GW_SYSCTL (tuning runs), DIRS
# (failover: "up down"),
# SYSTEMS (default "kernel ours haproxy shadowsocks"; rate also "routed").
#
#   lan_g -- gw_g ==(paths p: gw 10.p.g.2/24, concentrator 10.p.g.1/24)== conc (192.0.2.1) -- srv (203.0.113.2, .3)
#
# Per gateway g: the LAN client namespace l<g> (192.168.77.2, the same
# private LAN in every home), the gateway g<g> running gw-agent, HAProxy and
# ss-tunnel (one per destination), each path a veth with tbf both ways and,
# for a profile, a tests/pathemu delay line inside it. conc runs the
# concentrator, HAProxy and ss-server; srv the servers. The kernel reference
# runs its clients on the gateway itself, under mptcpize, straight to MPTCP
# servers on srv (no proxy). "routed" is plain routing: the LAN client's TCP
# masqueraded over path 1 (the agent bypasses 203.0.113.3 for it).
set -u
cd "$(dirname "$0")/.."
SCEN=$1 G=$2 PROFILES=$3 OUTF=$4
RUNS=${RUNS:-3}
SECS=${SECS:-8}
BUILD=${BUILD:-build}
CONC_WORKERS=${CONC_WORKERS:-2}
SYSTEMS=${SYSTEMS:-kernel ours haproxy shadowsocks}
ROOT=$PWD
CONCENTRATOR=$ROOT/$BUILD/concentrator/mptcp-concentrator
AGENT=$ROOT/$BUILD/gw-agent/gw-agent
PATHEMU=$ROOT/$BUILD/tests/pathemu/pathemu
LOADGEN=$ROOT/$BUILD/benches/loadgen
NETTOOL=$ROOT/tests/netns/nettool.py
TEST_NAME=fleet-$SCEN
. tests/netns/lib.sh
FINISH_NOT_NEEDED=1
require_netns
# The memory scenario opens as many flows as the descriptor limit allows:
# raise the soft limit to the hard one (20,000 on the machine of the
# committed results, which cannot raise its hard limit).
ulimit -n "$(ulimit -Hn)"
NOFILE=$(ulimit -n)
MAXCONN=$(((NOFILE - 200) / 2))  # HAProxy's: two descriptors per connection

X() { local n=$1; shift; ip netns exec "$(ns "$n")" "$@"; }
NP=0
for prof in $PROFILES; do NP=$((NP + 1)); done
PATHS_LABEL=$(echo "$PROFILES" | tr ' ' '+')

# ---------------------------------------------------------------- topology
ns_add conc; ns_add srv
link conc srv
addr conc conc-srv 203.0.113.1/24
addr srv srv-conc 203.0.113.2/24; addr srv srv-conc 203.0.113.3/24
addr conc lo 192.0.2.1/32
ip -n "$(ns srv)" route add default via 203.0.113.1
X conc sysctl -qw net.ipv4.ip_forward=1 net.ipv4.tcp_fastopen=3 \
	net.ipv4.ip_local_port_range="1024 65535" net.core.somaxconn=65535 net.ipv4.tcp_max_syn_backlog=65535
X srv sysctl -qw net.core.somaxconn=65535 net.ipv4.tcp_max_syn_backlog=65535
ip -n "$(ns conc)" mptcp limits set subflows 8 add_addr_accepted 0
[ -n "${CONC_SYSCTL:-}" ] && X conc sysctl -qw $CONC_SYSCTL
ip -n "$(ns srv)" mptcp limits set subflows 8 add_addr_accepted 0
# The kernel reference's clients reach the servers through the
# concentrator's address (forwarded here, NAT to srv), so that the agent's
# path manager, which manages MPTCP connections to that address, gives
# them the joins it gives every system's (HAProxy's and ss-tunnel's go to
# that address too). Ports no proxy listens on there: the sink's 9100 is
# HAProxy's, so the reference's is 19100.
X conc nft -f - <<'NFT'
table ip kref {
	chain pre {
		type nat hook prerouting priority dstnat;
		ip daddr 192.0.2.1 tcp dport { 81, 9010, 6201-6456 } dnat to 203.0.113.2
		ip daddr 192.0.2.1 tcp dport 19100 dnat to 203.0.113.2:9100
	}
}
NFT
declare -A EMU  # EMU[g,p]: the delay line's namespace of gateway g's path p
for g in $(seq 1 "$G"); do
	ns_add "l$g"; ns_add "g$g"
	ip link add lan netns "$(ns "g$g")" type veth peer name eth0 netns "$(ns "l$g")"
	ip -n "$(ns "g$g")" link set lan up; ip -n "$(ns "l$g")" link set eth0 up
	addr "g$g" lan 192.168.77.1/24; addr "l$g" eth0 192.168.77.2/24
	ip -n "$(ns "l$g")" route add default via 192.168.77.1
	X "g$g" sysctl -qw net.ipv4.ip_forward=1 net.ipv4.tcp_fastopen=1 net.ipv4.ip_local_port_range="1024 65535"
	# wrk closes a connection once it has the response, often before the
	# server's FIN has come through a proxy: its side keeps the TIME_WAIT,
	# and at thousands of requests a second every local port is in one
	# within seconds (connects then spend the CPU searching for a port:
	# a rate run collapsed for every system). Reusing them, as a client
	# machine would be set up for this, keeps the load generator out of
	# the figures.
	X "l$g" sysctl -qw net.ipv4.ip_local_port_range="1024 65535" net.ipv4.tcp_tw_reuse=1
	X "g$g" sysctl -qw net.ipv4.tcp_tw_reuse=1
	[ -n "${GW_SYSCTL:-}" ] && X "g$g" sysctl -qw $GW_SYSCTL
	p=0
	for prof in $PROFILES; do
		p=$((p + 1))
		profiled_link "g$g" "p$p" conc "c${g}p$p" "$prof" --seed $((g * 10 + p)) || exit 1
		EMU[$g,$p]=$LINK_EMU
		addr "g$g" "p$p" "10.$p.$g.2/24"; addr conc "c${g}p$p" "10.$p.$g.1/24"
		ip -n "$(ns "g$g")" route add default via "10.$p.$g.1" dev "p$p" metric $((100 * p))
	done
	# Plain routing, the reference for connection rates: a home router
	# masquerading its LAN onto its first line.
	X "g$g" nft -f - <<EOF
table ip routed {
	chain post { type nat hook postrouting priority 100; oifname "p1" ip daddr 203.0.113.3 masquerade; }
}
EOF
done
log "topology: $G gateway(s), paths $PATHS_LABEL"

# ---------------------------------------------------------------- servers
# iperf3 serves one test at a time: one server per gateway, plain TCP for
# the proxies (5200+g) and MPTCP for the kernel reference (6200+g); every
# 0.1 s a report, which the failover timeline of an upload reads.
for g in $(seq 1 "$G"); do
	X srv iperf3 -s -J -i 0.1 -p $((5200 + g)) > /dev/null 2>&1 &
	X srv mptcpize run iperf3 -s -J -i 0.1 -p $((6200 + g)) > /dev/null 2>&1 &
done
X srv "$PY" "$NETTOOL" serve --bind 203.0.113.2 --base 9000 > "$WORKDIR/echo.log" 2>&1 &
X srv "$PY" "$NETTOOL" serve --bind 203.0.113.2 --base 9010 --mptcp > "$WORKDIR/echo-mptcp.log" 2>&1 &
X srv "$LOADGEN" sink --listen 203.0.113.2:9100 > "$WORKDIR/sink.log" 2>&1 &
for p in $(seq 1 $NP); do  # each path alone ends here
	X conc iperf3 -s -p $((5190 + p)) > /dev/null 2>&1 &
done
if [ "$SCEN" = rate ]; then
	chmod 755 "$WORKDIR"  # nginx workers run as www-data
	mkdir -p "$WORKDIR/www"
	head -c 1024 /dev/zero | tr '\0' x > "$WORKDIR/www/index.html"
	for v in plain mptcp; do
		port=80; pre=""; [ $v = mptcp ] && { port=81; pre="mptcpize run"; }
		cat > "$WORKDIR/nginx-$v.conf" <<EOF
worker_processes 2;
pid $WORKDIR/nginx-$v.pid;
error_log $WORKDIR/nginx-$v.err;
events { worker_connections 65536; }
http {
	access_log off;
	client_body_temp_path $WORKDIR/cb-$v; proxy_temp_path $WORKDIR/px-$v;
	fastcgi_temp_path $WORKDIR/fc-$v; uwsgi_temp_path $WORKDIR/uw-$v; scgi_temp_path $WORKDIR/sc-$v;
	server { listen $port backlog=65535 reuseport; root $WORKDIR/www; }
}
EOF
		X srv $pre nginx -c "$WORKDIR/nginx-$v.conf" -g 'daemon off;' > "$WORKDIR/nginx-$v.log" 2>&1 &
	done
fi

# ---------------------------------------------------------------- systems
# Our concentrator, HAProxy and ss-server on conc; for each gateway its
# agent, HAProxy and ss-tunnels. Destinations through HAProxy and
# shadowsocks (fixed tunnels): iperf3 (7001/7101), HTTP (7003/7103),
# echo (7004/7104), the loadgen sink (7005/7105).
start_concentrator conc conc --listen 192.0.2.1:5124 --allow-client 10.0.0.0/8 \
	--max-flows-per-client 0 --max-handshakes-per-client 0 --idle-timeout 0 --workers "$CONC_WORKERS" \
	--metrics-listen 127.0.0.1:9101 ${CONC_ARGS:-}
CPID=$CONC_PID
{
	printf 'global\n\tmaxconn %s\n\tnbthread %s\ndefaults\n\tmode tcp\n\ttimeout connect 5s\n\ttimeout client 1h\n\ttimeout server 1h\n' "$MAXCONN" "$CONC_WORKERS"
	for g in $(seq 1 "$G"); do
		printf 'listen i%s\n\tbind 192.0.2.1:%s\n\tserver s 203.0.113.2:%s\n' $g $((10000 + g)) $((5200 + g))
	done
	printf 'listen http\n\tbind 192.0.2.1:9080\n\tserver s 203.0.113.2:80\n'
	printf 'listen echo\n\tbind 192.0.2.1:9007\n\tserver s 203.0.113.2:9000\n'
	printf 'listen sink\n\tbind 192.0.2.1:9100\n\tserver s 203.0.113.2:9100\n'
} > "$WORKDIR/hp-conc.cfg"
X conc mptcpize run haproxy -db -f "$WORKDIR/hp-conc.cfg" > "$WORKDIR/hp-conc.log" 2>&1 &
HC=$!
SS_OPTS=(-k bench-password -m chacha20-ietf-poly1305 -n "$NOFILE" -t 3600)
X conc mptcpize run ss-server -s 192.0.2.1 -p 7102 "${SS_OPTS[@]}" > "$WORKDIR/ss-server.log" 2>&1 &
SC=$!
declare -A AG HG SG
for g in $(seq 1 "$G"); do
	paths=(); for p in $(seq 1 $NP); do paths+=(--path "p$p"); done
	X "g$g" "$AGENT" --concentrator 192.0.2.1:5124 --lan lan "${paths[@]}" --workers 1 \
		--idle-timeout 0 --max-flows-per-host 0 --bypass 203.0.113.3/32 \
		--control "$WORKDIR/ctl$g.sock" ${AGENT_ARGS:-} > "$WORKDIR/agent$g.log" 2>&1 &
	AG[$g]=$!  # X's subshell: the agent is its child (leaf, below)
	{
		printf 'global\n\tmaxconn %s\n\tnbthread 1\ndefaults\n\tmode tcp\n\ttimeout connect 5s\n\ttimeout client 1h\n\ttimeout server 1h\n' "$MAXCONN"
		printf 'listen i\n\tbind 192.168.77.1:7001\n\tserver c 192.0.2.1:%s\n' $((10000 + g))
		printf 'listen http\n\tbind 192.168.77.1:7003\n\tserver c 192.0.2.1:9080\n'
		printf 'listen echo\n\tbind 192.168.77.1:7004\n\tserver c 192.0.2.1:9007\n'
		printf 'listen sink\n\tbind 192.168.77.1:7005\n\tserver c 192.0.2.1:9100\n'
	} > "$WORKDIR/hp-gw$g.cfg"
	X "g$g" mptcpize run haproxy -db -f "$WORKDIR/hp-gw$g.cfg" > "$WORKDIR/hp-gw$g.log" 2>&1 &
	HG[$g]=$!
	for t in "7101 203.0.113.2:$((5200 + g))" "7103 203.0.113.2:80" "7104 203.0.113.2:9000" "7105 203.0.113.2:9100"; do
		set -- $t
		X "g$g" mptcpize run ss-tunnel -s 192.0.2.1 -p 7102 -b 192.168.77.1 -l "$1" -L "$2" \
			"${SS_OPTS[@]}" > "$WORKDIR/ss-tunnel$g-$1.log" 2>&1 &
		[ "$1" = 7101 ] && SG[$g]=$!
		[ "$1" = 7105 ] && SG[$g,sink]=$!
	done
done
wait_listen conc 5124 && wait_listen conc 7102 && wait_listen conc 9080 && wait_listen srv 9000 &&
	wait_listen srv 9100 ||
	{ tail -n 5 "$WORKDIR"/*.log; exit 1; }
for g in $(seq 1 "$G"); do
	wait_listen "g$g" 7001 && wait_listen "g$g" 7105 || { tail -n 5 "$WORKDIR"/*.log; exit 1; }
	for i in $(seq 1 100); do grep -q "intercepting TCP" "$WORKDIR/agent$g.log" && break; sleep 0.05; done
done
# mptcpize runs its command as a child, and X in the background runs in a
# subshell: measure the daemons themselves.
HC=$(leaf $HC); SC=$(leaf $SC)
for g in $(seq 1 "$G"); do
	AG[$g]=$(leaf ${AG[$g]}); HG[$g]=$(leaf ${HG[$g]}); SG[$g]=$(leaf ${SG[$g]}); SG[$g,sink]=$(leaf ${SG[$g,sink]})
done
# every path up at every agent (its probes have answered)
for i in $(seq 1 80); do
	down=0
	for g in $(seq 1 "$G"); do
		n=$(X "g$g" "$AGENT" status --control "$WORKDIR/ctl$g.sock" 2>/dev/null | grep -c "^p[0-9] .* up ")
		[ "$n" -eq "$NP" ] || down=$((down + 1))
	done
	[ $down -eq 0 ] && break
	sleep 0.25
done
[ $down -eq 0 ] || log "warning: $down gateway(s) without every path up"
sleep 1

# ---------------------------------------------------------------- helpers
HZ=$(getconf CLK_TCK)
cpu_ticks() { local t=0 p; for p in "$@"; do t=$((t + $(awk '{print $14 + $15}' "/proc/$p/stat"))); done; echo $t; }
rss_sum() { local t=0 p; for p in "$@"; do t=$((t + $(rss_kib "$p"))); done; echo $t; }
# private memory (USS): what a process costs beyond the libraries it shares
uss_sum() { local t=0 p; for p in "$@"; do t=$((t + $(awk '/^Private_(Clean|Dirty):/ {s += $2} END {print s}' "/proc/$p/smaps_rollup"))); done; echo $t; }
now() { date +%s.%N; }
# conc_pids SYSTEM / gw_pids SYSTEM: the processes that carry it
conc_pids() { case $1 in ours) echo "$CPID" ;; haproxy) echo "$HC" ;; shadowsocks) echo "$SC" ;; esac; }
gw_pids() {
	local g
	case $1 in
	ours) for g in $(seq 1 "$G"); do echo "${AG[$g]}"; done ;;
	haproxy) for g in $(seq 1 "$G"); do echo "${HG[$g]}"; done ;;
	shadowsocks) for g in $(seq 1 "$G"); do echo "${SG[$g]}"; done ;;
	esac
}
# client SYSTEM G KIND: "NAMESPACE PREFIX HOST PORT" for a client of
# gateway g reaching destination KIND (iperf, http, echo, sink)
client() {
	local s=$1 g=$2 k=$3
	case $s in
	kernel) case $k in iperf) echo "g$g mptcpize 192.0.2.1 $((6200 + g))" ;; http) echo "g$g mptcpize 192.0.2.1 81" ;;
		echo) echo "g$g - 192.0.2.1 9010" ;; sink) echo "g$g - 192.0.2.1 19100" ;; esac ;;
	ours) case $k in iperf) echo "l$g - 203.0.113.2 $((5200 + g))" ;; http) echo "l$g - 203.0.113.2 80" ;;
		echo) echo "l$g - 203.0.113.2 9000" ;; sink) echo "l$g - 203.0.113.2 9100" ;; esac ;;
	routed) case $k in iperf) echo "l$g - 203.0.113.3 $((5200 + g))" ;; http) echo "l$g - 203.0.113.3 80" ;;
		echo) echo "l$g - 203.0.113.3 9000" ;; sink) echo "l$g - 203.0.113.3 9100" ;; esac ;;
	haproxy) case $k in iperf) echo "l$g - 192.168.77.1 7001" ;; http) echo "l$g - 192.168.77.1 7003" ;;
		echo) echo "l$g - 192.168.77.1 7004" ;; sink) echo "l$g - 192.168.77.1 7005" ;; esac ;;
	shadowsocks) case $k in iperf) echo "l$g - 192.168.77.1 7101" ;; http) echo "l$g - 192.168.77.1 7103" ;;
		echo) echo "l$g - 192.168.77.1 7104" ;; sink) echo "l$g - 192.168.77.1 7105" ;; esac ;;
	esac
}
# run_client SYSTEM G KIND CMD...: CMD with {H} and {P} replaced, in the
# client's namespace, under mptcpize for the kernel reference
run_client() {
	local s=$1 g=$2 k=$3 n pre h port a args=(); shift 3
	read -r n pre h port <<< "$(client "$s" "$g" "$k")"
	for a in "$@"; do a=${a//\{H\}/$h}; args+=("${a//\{P\}/$port}"); done
	[ "$pre" = mptcpize ] && args=(mptcpize run "${args[@]}")
	if [[ " ${args[*]} " != *" iperf3 "* ]]; then
		X "$n" "${args[@]}"
		return
	fi
	# iperf3 serves one test at a time and needs a moment after one ends
	local try out
	for try in 1 2 3 4 5 6; do
		out=$(X "$n" "${args[@]}")
		case $out in *"server is busy"*) sleep 0.5 ;; *) break ;; esac
	done
	printf '%s\n' "$out"
}
emit() { echo "$1" >> "$OUTF"; echo "$1" | cut -c1-200; }
j_mbit() {  # iperf3 -J on stdin: received Mbit/s
	"$PY" -c 'import json, sys
try: print(round(json.load(sys.stdin)["end"]["sum_received"]["bits_per_second"] / 1e6, 3))
except Exception: print(0)'
}
silence() {  # silence G P on|off: the path's delay line drops everything
	local e=${EMU[$1,$2]} st=down
	[ "$3" = off ] && st=up
	ip -n "$(ns "$e")" link set tapa "$st"; ip -n "$(ns "$e")" link set tapb "$st"
}
HEAD="\"scenario\": \"$SCEN\", \"gateways\": $G, \"paths\": \"$PATHS_LABEL\""

# ---------------------------------------------------------------- scenarios
case $SCEN in
agg)
	for run in $(seq 1 "$RUNS"); do
		for dir in up down; do
			rev=""; [ $dir = down ] && rev=-R
			sum=0
			for p in $(seq 1 $NP); do
				a=$(X g1 iperf3 -c "10.$p.1.1" -B "10.$p.1.2" -p $((5190 + p)) -t "$SECS" -O 1 $rev -J 2>/dev/null | j_mbit)
				emit "{$HEAD, \"run\": $run, \"dir\": \"$dir\", \"system\": \"path$p\", \"mbit\": $a}"
			done
			for s in $SYSTEMS; do
				m=$(run_client "$s" 1 iperf iperf3 -c {H} -p {P} -t "$SECS" -O 1 $rev -J 2>/dev/null | j_mbit)
				emit "{$HEAD, \"run\": $run, \"dir\": \"$dir\", \"system\": \"$s\", \"mbit\": $m}"
			done
		done
	done
	;;
failover)
	# 0-3.2 s every path, 3.2 s: the last path (the slow or lossy one) goes
	# silent, 6.2 s: it comes back, 9.2 s: path 1 (the fast one) goes
	# silent, 13 s: end. Throughput every 0.1 s as the receiver saw it.
	for run in $(seq 1 "$RUNS"); do
		for dir in ${DIRS:-up down}; do
			for s in $SYSTEMS; do
				rev="--get-server-output"; [ $dir = down ] && rev=-R
				run_client "$s" 1 iperf iperf3 -c {H} -p {P} -t 13 -i 0.1 $rev -J > "$WORKDIR/fo.json" 2>/dev/null &
				ip=$!
				sleep 3.2; silence 1 $NP on
				sleep 3; silence 1 $NP off
				sleep 3; silence 1 1 on
				wait $ip
				silence 1 1 off
				tl=$("$PY" - "$WORKDIR/fo.json" "$dir" <<'PY'
import json, sys
try:
    d = json.load(open(sys.argv[1]))
    iv = d["intervals"] if sys.argv[2] == "down" else d["server_output_json"]["intervals"]
    print(json.dumps([round(i["sum"]["bits_per_second"] / 1e6, 2) for i in iv]))
except Exception:
    print("[]")
PY
)
				emit "{$HEAD, \"run\": $run, \"dir\": \"$dir\", \"system\": \"$s\", \"events\": [3.2, 6.2, 9.2], \"interval_s\": 0.1, \"mbit\": $tl}"
				# the paths come back up at the agent before the next system
				sleep 3
			done
		done
	done
	;;
fleet)
	for run in $(seq 1 "$RUNS"); do
		for s in $SYSTEMS; do
			cp=$(conc_pids "$s"); gp=$(gw_pids "$s")
			c0=$(cpu_ticks $cp); g0=$(cpu_ticks $gp); t0=$(now)
			cl=()
			for g in $(seq 1 "$G"); do
				# bounded: on an overloaded machine a client can hang
				run_client "$s" "$g" iperf timeout -k 2 $((SECS + 30)) iperf3 -c {H} -p {P} -P 2 -t "$SECS" -O 1 -J \
					> "$WORKDIR/f$g.json" 2>/dev/null &
				cl+=($!)
			done
			wait "${cl[@]}"
			sleep 0.2
			c1=$(cpu_ticks $cp); g1=$(cpu_ticks $gp); t1=$(now)
			per=$(for g in $(seq 1 "$G"); do j_mbit < "$WORKDIR/f$g.json"; done | paste -sd, -)
			emit "{$HEAD, \"run\": $run, \"dir\": \"up\", \"system\": \"$s\", \"per_gateway_mbit\": [$per], \"conc_cpu_s\": $(awk -v a=$c0 -v b=$c1 -v h=$HZ 'BEGIN {print (b - a) / h}'), \"gw_cpu_s\": $(awk -v a=$g0 -v b=$g1 -v h=$HZ 'BEGIN {print (b - a) / h}'), \"wall_s\": $(awk -v a=$t0 -v b=$t1 'BEGIN {print b - a}'), \"secs\": $SECS, \"conc_workers\": $CONC_WORKERS}"
		done
	done
	;;
rate)
	CONNS=${WRK_CONNS:-8}
	for run in $(seq 1 "$RUNS"); do
		for s in $SYSTEMS; do
			cl=()
			for g in $(seq 1 "$G"); do
				run_client "$s" "$g" http wrk -t 1 -c "$CONNS" -d "${SECS}s" --latency -H "Connection: close" \
					"http://{H}:{P}/" > "$WORKDIR/w$g.out" 2>&1 &
				cl+=($!)
			done
			wait "${cl[@]}"
			r=$("$PY" - "$WORKDIR" "$G" <<'PY'
import json, re, statistics, sys
def ms(v):
    n, u = float(re.match(r"[\d.]+", v).group()), re.sub(r"[\d.]+", "", v)
    return n * {"us": 1e-3, "ms": 1, "s": 1e3, "m": 6e4}[u]
rps, p50, p99, errs, reads = [], [], [], 0, 0
for g in range(1, int(sys.argv[2]) + 1):
    t = open(f"{sys.argv[1]}/w{g}.out").read()
    m = re.search(r"Requests/sec:\s+([\d.]+)", t)
    rps.append(float(m.group(1)) if m else 0)
    for q, lst in (("50", p50), ("99", p99)):
        m = re.search(rf"^\s+{q}%\s+(\S+)", t, re.M)
        if m: lst.append(ms(m.group(1)))
    # wrk counts the server's close after each response as a read error
    # under "Connection: close": failures are the other kinds.
    m = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", t)
    if m: errs += int(m.group(1)) + int(m.group(3)) + int(m.group(4)); reads += int(m.group(2))
    m = re.search(r"Non-2xx or 3xx responses: (\d+)", t)
    if m: errs += int(m.group(1))
print(json.dumps({"rps": round(sum(rps), 1), "per_gateway_rps": rps,
                  "p50_ms": round(statistics.median(p50), 2) if p50 else None,
                  "p99_ms": round(statistics.median(p99), 2) if p99 else None, "errors": errs,
                  "read_errors": reads})[1:-1])
PY
)
			emit "{$HEAD, \"run\": $run, \"system\": \"$s\", \"conns_per_gateway\": $CONNS, $r}"
		done
	done
	;;
lul)
	for run in $(seq 1 "$RUNS"); do
		for s in $SYSTEMS; do
			m=""; [ $s = kernel ] && m=--mptcp
			for load in idle up down; do
				ip=""
				if [ $load != idle ]; then
					rev=""; [ $load = down ] && rev=-R
					run_client "$s" 1 iperf iperf3 -c {H} -p {P} -P 2 -t $((SECS + 2)) $rev -J > /dev/null 2>&1 &
					ip=$!; sleep 2
				fi
				r=$(run_client "$s" 1 echo "$PY" "$NETTOOL" tcpping --dst "{H}:{P}" --count $((SECS * 10)) --interval 0.1 $m)
				[ -n "$ip" ] && wait $ip
				emit "{$HEAD, \"run\": $run, \"system\": \"$s\", \"load\": \"$load\", \"ping\": ${r:-null}}"
			done
		done
	done
	;;
mem)
	# Fresh processes per system (this phase runs once per system), idle
	# flows spread over the gateways, RSS of the proxies at rest and with
	# the flows, past their heap trim and buffer shrinking.
	N=${IDLE_FLOWS:-32000}
	for s in $SYSTEMS; do
		[ $s = kernel ] && continue
		cp=$(conc_pids "$s")
		case $s in ours) gp=$(gw_pids ours) ;; haproxy) gp=$(gw_pids haproxy) ;;
			shadowsocks) gp=$(for g in $(seq 1 "$G"); do echo "${SG[$g,sink]}"; done) ;; esac
		cr0=$(rss_sum $cp); gr0=$(rss_sum $gp); gu0=$(uss_sum $gp)
		cl=()
		for g in $(seq 1 "$G"); do
			run_client "$s" "$g" sink "$LOADGEN" idle --to "{H}:{P}" --flows $((N / G)) --tcp > "$WORKDIR/idle$g.out" 2>&1 &
			cl+=($!)
		done
		opened=0
		for g in $(seq 1 "$G"); do
			for i in $(seq 1 900); do grep -q ready "$WORKDIR/idle$g.out" && break; sleep 0.1; done
			opened=$((opened + $(awk '/ready/ {print $2}' "$WORKDIR/idle$g.out")))
		done
		sleep 12
		cr1=$(rss_sum $cp); gr1=$(rss_sum $gp)
		cfd=$(ls /proc/$cp/fd | wc -l)
		emit "{$HEAD, \"system\": \"$s\", \"flows\": $opened, \"conc_rss_kib_rest\": $cr0, \"conc_rss_kib_idle\": $cr1, \"gw_rss_kib_rest\": $gr0, \"gw_rss_kib_idle\": $gr1, \"gw_uss_kib_rest\": $gu0, \"conc_fds\": $cfd}"
		# the loadgens themselves (run_client's subshells would not pass it on)
		pkill -TERM -f "loadgen idle --to"
		wait "${cl[@]}" 2>/dev/null
		sleep 3
	done
	;;
*) log "unknown scenario $SCEN"; exit 1 ;;
esac
# KEEP=DIR: the daemons' logs, for a closer look
[ -n "${KEEP:-}" ] && mkdir -p "$KEEP" && cp "$WORKDIR"/*.log "$KEEP"/
exit 0
