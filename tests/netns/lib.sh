# Shared helpers for namespace scenarios (sourced, like the kernel's
# selftests/net/mptcp/mptcp_lib.sh). Every namespace gets a unique prefix and
# is deleted on exit, whatever the exit path.
#
# Environment (set by meson): CONCENTRATOR, NETTOOL, BUILD_KIND.

set -u

NS_PREFIX="mh$$x$RANDOM-"
TEST_NAME=${TEST_NAME:-$(basename "$0" .sh)}
WORKDIR=$(mktemp -d "/tmp/$TEST_NAME.XXXXXX")
PY=/usr/bin/python3
NAMESPACES=()
# Helpers a scenario runs outside its namespaces (killed at exit too).
OUTSIDE_PIDS=()
MAIN_PID_LIB=$BASHPID
FAILS=0
CHECKS=0

log() { printf '[%s] %s\n' "$TEST_NAME" "$*"; }

# Under CI a scenario that cannot run is a failure: a lost capability or a
# tool missing from PATH must not turn the whole suite into skips.
skip() {
	if [ "${CI:-}" = true ]; then
		log "FAIL: cannot run under CI: $*"
		exit 1
	fi
	log "SKIP: $*"
	exit 77
}

# wait_for SECONDS CMD [ARGS...]: runs CMD every 0.1 s until it succeeds
# (status 0) or SECONDS pass (status 1): a condition, never a fixed sleep.
wait_for() {
	local deadline=$(( $(date +%s%N) + ${1%.*} * 1000000000 ))
	shift
	while :; do
		"$@" > /dev/null 2>&1 && return 0
		[ "$(date +%s%N)" -ge "$deadline" ] && return 1
		sleep 0.1
	done
}

# eventually SECONDS CMD [ARGS...]: CMD until it succeeds (quietly, every
# 0.1 s), then once more with its output, which is the verdict: a check of
# a state the system reaches, without a fixed sleep before it.
eventually() {
	local t=$1; shift
	wait_for "$t" "$@"
	"$@"
}

# metric_at NS ADDR:PORT NAME{LABELS}: a metric's value as NS scrapes it;
# fails (and prints nothing) when the page is unreachable or lacks the
# series: a missing value is never read as 0.
metric_at() {
	local page
	page=$(ip netns exec "$(ns "$1")" curl -sf --max-time 5 "http://$2/metrics") || return 1
	awk -v k="$3" '$1 == k { print $2; found = 1 } END { exit !found }' <<< "$page"
}

cleanup() {
	local rc=$? ns pid
	# A backgrounded function runs in a subshell that may run this trap
	# when it is killed: only the main shell tears the namespaces down.
	[ "$BASHPID" = "$MAIN_PID_LIB" ] || return 0
	disown -a 2>/dev/null  # no "Killed" notices for our own background jobs
	for pid in "${OUTSIDE_PIDS[@]}"; do
		kill -KILL "$pid" 2>/dev/null
	done
	for ns in "${NAMESPACES[@]}"; do
		for pid in $(ip netns pids "$ns" 2>/dev/null); do
			kill -KILL "$pid" 2>/dev/null
		done
	done
	for ns in "${NAMESPACES[@]}"; do
		ip netns del "$ns" 2>/dev/null
		# what a test put in the namespace's /etc (hosts, resolv.conf)
		rm -rf "/etc/netns/$ns"
	done
	rm -rf "$WORKDIR"
	# Never a silent pass: status 0 without the verdict line means the
	# script left early (set FINISH_NOT_NEEDED=1 for scripts without checks).
	if [ "$rc" -eq 0 ] && [ "${FINISHED:-0}" != 1 ] && [ "${FINISH_NOT_NEEDED:-0}" != 1 ]; then
		log "FAIL: exited with status 0 before its verdict (after $CHECKS checks)"
		exit 1
	fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

require_netns() {
	[ "$(id -u)" -eq 0 ] || skip "needs root"
	command -v ip >/dev/null || skip "needs iproute2"
	ip netns add "${NS_PREFIX}probe" 2>/dev/null || skip "cannot create network namespaces"
	ip netns del "${NS_PREFIX}probe"
	ip netns exec "${NS_PREFIX}probe" true 2>/dev/null || true
	[ -r /proc/sys/net/mptcp/enabled ] || skip "kernel without MPTCP"
	# tests/kernel/repro.sh runs on this testbed with no daemon at all.
	[ "${NO_DAEMONS:-0}" = 1 ] || [ -x "${CONCENTRATOR:-}" ] || skip "CONCENTRATOR not built"
}

ns_add() {
	local ns="${NS_PREFIX}$1"
	ip netns add "$ns" || return 1
	NAMESPACES+=("$ns")
	ip -n "$ns" link set lo up
	ip netns exec "$ns" sysctl -qw net.mptcp.enabled=1
	# The default (BBR, fq-less veth) is fine; IPv6 DAD only slows setup.
	ip netns exec "$ns" sysctl -qw net.ipv6.conf.all.accept_dad=0 net.ipv6.conf.default.accept_dad=0
	ip netns exec "$ns" sysctl -qw net.ipv4.ip_forward=0
}

ns() { echo "${NS_PREFIX}$1"; }

# link A B: veth pair named a-b / b-a between namespaces A and B.
link() {
	ip link add "$1-$2" netns "$(ns "$1")" type veth peer name "$2-$1" netns "$(ns "$2")"
	ip -n "$(ns "$1")" link set "$1-$2" up
	ip -n "$(ns "$2")" link set "$2-$1" up
}

addr() { ip -n "$(ns "$1")" addr add "$3" dev "$2" nodad 2>/dev/null || ip -n "$(ns "$1")" addr add "$3" dev "$2"; }

check() {
	# check DESCRIPTION COMMAND...: run, count, report.
	local what=$1 t0 took; shift
	CHECKS=$((CHECKS + 1))
	t0=$(date +%s%N)
	if "$@" > "$WORKDIR/check.out" 2>&1; then
		# How long it took, to see where the suite's time goes.
		took=$(( ($(date +%s%N) - t0) / 100000000 ))
		log "ok   - $what [$((took / 10)).$((took % 10)) s]"
		# The JSON a client printed: what was measured, for the record.
		grep -h '^{' "$WORKDIR/check.out" | tail -2 | cut -c1-300 | sed 's/^/    /'
	else
		FAILS=$((FAILS + 1))
		log "FAIL - $what"
		sed 's/^/    /' "$WORKDIR/check.out"
	fi
}

# Wait until something in namespace $1 listens on TCP port $2.
wait_listen() {
	local i
	for i in $(seq 1 100); do
		ip netns exec "$(ns "$1")" ss -Hltn "sport = :$2" | grep -q . && return 0
		sleep 0.05
	done
	log "nothing listens on port $2 in $1"
	return 1
}

# start_concentrator NS LOGNAME ARGS...: runs in the background; pid in CONC_PID.
start_concentrator() {
	local n=$1 name=$2; shift 2
	ip netns exec "$(ns "$n")" "$CONCENTRATOR" "$@" > "$WORKDIR/$name.log" 2>&1 &
	CONC_PID=$!
}

# stop_concentrator PID LOGNAME: SIGTERM, expect a clean exit (under ASan a
# leak or error makes it non-zero).
stop_concentrator() {
	local pid=$1 name=$2 rc=0 i
	kill -TERM "$pid" 2>/dev/null
	for i in $(seq 1 300); do
		kill -0 "$pid" 2>/dev/null || break
		sleep 0.05
	done
	wait "$pid" || rc=$?
	if [ $rc -ne 0 ]; then
		log "concentrator $name exited with $rc; log:"
		tail -40 "$WORKDIR/$name.log" | sed 's/^/    /'
		return 1
	fi
	return 0
}

# capture_start NS IFACE FILE FILTER: tcpdump in the background (pid in
# CAP_PID), returning once it listens. --immediate-mode: no waiting for the
# capture ring's block timeout; -Z root: it may write into WORKDIR.
capture_start() {
	local i
	ip netns exec "$(ns "$1")" tcpdump -i "$2" --immediate-mode -Z root -U -s 256 -w "$3" "$4" \
		> "$3.log" 2>&1 &
	CAP_PID=$!
	for i in $(seq 1 50); do grep -q "listening on" "$3.log" && return 0; sleep 0.1; done
	log "tcpdump did not start: $(cat "$3.log")"
	return 1
}
capture_stop() {
	sleep 0.3
	kill -INT "$CAP_PID" 2>/dev/null
	wait "$CAP_PID" 2>/dev/null
	return 0
}

# reload PID LOG: SIGHUP, then wait (up to 5 s) until the daemon has logged
# the end of that reload, applied or refused. No fixed sleeps.
reload() {
	local pid=$1 logf=$2 n i pat="reloaded|reload: .* has errors"
	n=$(grep -c -E "$pat" "$logf")
	kill -HUP "$pid"
	for i in $(seq 1 100); do
		[ "$(grep -c -E "$pat" "$logf")" -gt "$n" ] && return 0
		sleep 0.05
	done
	log "pid $pid logged no reload in 5 s"
	return 1
}

# agent_paths_up SOCKET: wait (up to 10 s) until gw-agent status says both
# gw-p1 and gw-p2 are up; prints the status when they never are.
agent_paths_up() {
	local i n
	for i in $(seq 1 40); do
		n=$(ip netns exec "$(ns gw)" "$AGENT" status --control "$1" | grep -c "^gw-p[12] .* up ")
		[ "$n" -eq 2 ] && { echo "{\"paths_up\": 2}"; return 0; }
		sleep 0.25
	done
	ip netns exec "$(ns gw)" "$AGENT" status --control "$1" | head -8
	return 1
}

# The benches' agent on the two-path testbed (gw-lan, gw-p1, gw-p2, the
# concentrator at 192.0.2.1:5124): bench_agent ARGS... (re)starts it with
# its paths up; APID is the agent, ASH the shell that waits for it.
bench_agent() {
	if [ -n "${APID:-}" ]; then kill -TERM "$APID"; wait "$ASH"; fi
	ip netns exec "$(ns gw)" "$AGENT" --concentrator 192.0.2.1:5124 --lan gw-lan \
		--path gw-p1 --path gw-p2 --workers 2 --max-flows-per-host 0 \
		--control "$WORKDIR/ctl.sock" "$@" > "$WORKDIR/agent.log" 2>&1 &
	ASH=$!
	wait_for 10 grep -q "intercepting TCP" "$WORKDIR/agent.log" &&
		agent_paths_up "$WORKDIR/ctl.sock" > /dev/null || { tail "$WORKDIR/agent.log"; exit 1; }
	APID=$(leaf "$ASH")
}

# rss_kib PID, fds PID: a daemon's resident memory and open descriptors.
rss_kib() { awk '/^VmRSS/ { print $2 }' "/proc/$1/status"; }
fds() { ls "/proc/$1/fd" | wc -l; }
# back_to_start PID RSS0 FDS0 SLACK_KIB: wait (up to 20 s: buffers go back
# to the kernel in steps once load stops) until the daemon's RSS is within
# SLACK_KIB of RSS0 and its descriptors at FDS0 (+2 for a scrape). Under
# ASan the RSS is reported, not checked: its quarantine keeps freed memory
# on purpose, and leaks are LeakSanitizer's to find at exit.
back_to_start() {
	local pid=$1 rss0=$2 fd0=$3 slack=$4 i r f rss_ok
	for i in $(seq 1 80); do
		r=$(rss_kib "$pid"); f=$(fds "$pid")
		rss_ok=0
		{ [ "$r" -le $((rss0 + slack)) ] || [ "${BUILD_KIND:-plain}" = asan ]; } && rss_ok=1
		[ $rss_ok = 1 ] && [ "$f" -le $((fd0 + 2)) ] && break
		sleep 0.25
	done
	echo "{\"rss_kib_start\": $rss0, \"rss_kib_now\": $r, \"fds_start\": $fd0, \"fds_now\": $f, \"build\": \"${BUILD_KIND:-plain}\"}"
	[ $rss_ok = 1 ] && [ "$f" -le $((fd0 + 2)) ]
}

# stop_agent_log PID LOG: SIGTERM, expect a clean exit.
stop_agent_log() { kill -TERM "$1"; wait "$1" || { echo "exit $?"; tail "$2"; return 1; }; }

# check_0rtt DESCRIPTION COMMAND...: a check of 0-RTT, which needs TCP Fast
# Open over MPTCP (Linux 6.2+). On an older kernel (Debian 12's 6.1) it is
# skipped, saying why; everything else still runs. MPTCP_TFO=no forces it.
check_0rtt() {
	[ -n "${MPTCP_TFO:-}" ] || MPTCP_TFO=$("$PY" -c '
import socket
s = socket.socket(socket.AF_INET, socket.SOCK_STREAM, 262)
try:
    s.setsockopt(socket.IPPROTO_TCP, 30, 1)  # TCP_FASTOPEN_CONNECT: with MPTCP TFO, 6.2
    print("yes")
except OSError:
    print("no")')
	if [ "$MPTCP_TFO" = no ]; then
		# CI's machine has TFO for MPTCP: there a check that cannot run
		# is a failure, not a skip.
		if [ "${CI:-}" = true ]; then
			FAILS=$((FAILS + 1)); CHECKS=$((CHECKS + 1))
			log "FAIL - $1: cannot run under CI: this kernel ($(uname -r)) has no TCP Fast Open for MPTCP"
			return 0
		fi
		SKIPS=$((${SKIPS:-0} + 1))
		log "SKIP - $1: this kernel ($(uname -r)) has no TCP Fast Open for MPTCP (6.2+)"
		return 0
	fi
	check "$@"
}

finish() {
	FINISHED=1
	log "$CHECKS checks, $FAILS failed${SKIPS:+, $SKIPS skipped (0-RTT: no TCP Fast Open for MPTCP)}"
	[ "$FAILS" -eq 0 ]
}

# cli (198.51.100.2) -- conc (198.51.100.1 / 203.0.113.1) -- srv (203.0.113.2)
cli_conc_srv() {
	ns_add cli; ns_add conc; ns_add srv
	link cli conc; link conc srv
	addr cli cli-conc 198.51.100.2/24
	addr conc conc-cli 198.51.100.1/24
	addr conc conc-srv 203.0.113.1/24
	addr srv srv-conc 203.0.113.2/24
	ip -n "$(ns srv)" route add default via 203.0.113.1
}

# emu_link NS1 IF1 NS2 IF2 PATHEMU-ARGS...: a link like `link` (a veth
# named IF1 in NS1, IF2 in NS2, addresses and routes as usual) but with a
# tests/pathemu delay line inside it: each end is bridged to a TAP device of
# pathemu in a namespace of its own. Invisible to routing; --delay-ab etc.
# apply from NS1 to NS2 ("ab") and back ("ba"). Needs PATHEMU.
EMU_N=0
emu_link() {
	local n1=$1 i1=$2 n2=$3 i2=$4 e i; shift 4
	EMU_N=$((EMU_N + 1)); e="emu$EMU_N"
	ns_add "$e"
	ip link add "$i1" netns "$(ns "$n1")" type veth peer name x1 netns "$(ns "$e")"
	ip link add "$i2" netns "$(ns "$n2")" type veth peer name x2 netns "$(ns "$e")"
	ip netns exec "$(ns "$e")" "$PATHEMU" --tap --a tapa --b tapb "$@" > "$WORKDIR/$e.log" 2>&1 &
	for i in $(seq 1 100); do grep -q ready "$WORKDIR/$e.log" && break; sleep 0.02; done
	for b in 1 2; do
		ip -n "$(ns "$e")" link add "br$b" type bridge forward_delay 0
		ip -n "$(ns "$e")" link set "x$b" master "br$b" up
	done
	ip -n "$(ns "$e")" link set tapa master br1 up
	ip -n "$(ns "$e")" link set tapb master br2 up
	ip -n "$(ns "$e")" link set br1 up
	ip -n "$(ns "$e")" link set br2 up
	ip -n "$(ns "$n1")" link set "$i1" up
	ip -n "$(ns "$n2")" link set "$i2" up
}

# Named path profiles for tests/pathemu (design.md's path profiles):
# "DOWN_RATE UP_RATE ONE_WAY_DELAY_MS JITTER_MS LOSS". Any other path is
# given the same way.
path_profile() {
	case "$1" in
	dsl)  echo "50mbit 10mbit 6 0 0" ;;
	vdsl) echo "100mbit 40mbit 5 0 0" ;;
	lte)  echo "30mbit 8mbit 22 10 0" ;;
	mesh) echo "20mbit 20mbit 2 1 0.01" ;;
	*) return 1 ;;
	esac
}

# profiled_link NEAR_NS NEAR_IF FAR_NS FAR_IF PROFILE [PATHEMU-ARGS...]: one
# path between a gateway (near) and the far side, up NEAR_IF: PROFILE is a
# path_profile name (a delay line inside the link, emu_link, with that
# profile's rates, delay, jitter and loss) or a bare rate (a plain veth).
# tbf both ways: the up rate leaving NEAR_IF, the down rate leaving FAR_IF.
# The delay line's namespace, if any, is left in LINK_EMU ("" for none).
profiled_link() {
	local n1=$1 i1=$2 n2=$3 i2=$4 prof=$5 up down; shift 5
	LINK_EMU=""
	if [[ $prof =~ ^[0-9]+[kmg]bit$ ]]; then
		ip link add "$i1" netns "$(ns "$n1")" type veth peer name "$i2" netns "$(ns "$n2")"
		ip -n "$(ns "$n1")" link set "$i1" up
		ip -n "$(ns "$n2")" link set "$i2" up
		up=$prof; down=$prof
	else
		local spec
		spec=$(path_profile "$prof") || { log "no path profile $prof"; return 1; }
		set -- $spec "$@"
		down=$1; up=$2
		local d=$3 j=$4 l=$5; shift 5
		emu_link "$n1" "$i1" "$n2" "$i2" --delay-ab "$d" --delay-ba "$d" \
			--jitter-ab "$j" --jitter-ba "$j" --loss-ab "$l" --loss-ba "$l" "$@"
		LINK_EMU=emu$EMU_N
	fi
	ip netns exec "$(ns "$n1")" tc qdisc replace dev "$i1" root tbf rate "$up" burst 64kb latency 50ms
	ip netns exec "$(ns "$n2")" tc qdisc replace dev "$i2" root tbf rate "$down" burst 64kb latency 50ms
}

# leaf PID: the deepest first descendant of PID. mptcpize runs its command
# as a child, and a function run in the background is a subshell: this is
# the daemon itself, for its CPU and memory.
leaf() { local p=$1 c; while c=$(pgrep -P "$p" | head -1) && [ -n "$c" ]; do p=$c; done; echo "$p"; }

# The two-path testbed of paths.sh and the demo:
#
#   lan -- gw --(gw-p1: 198.51.100.2/26 ; gw-p2: 198.51.100.66/26)-- conc (service 192.0.2.1) -- srv (203.0.113.2)
#
# Each path is shaped to RATE with tbf in both directions, or, with
# PATH1_PROFILE / PATH2_PROFILE set to a path_profile name (dsl, lte, ...),
# has that profile's rates, delay, jitter and loss (a tests/pathemu delay
# line inside the link). gw has two default
# routes in its main table, as two DHCP clients would leave them (p1 metric
# 100, p2 metric 200). conc accepts up to 8 subflows per connection.
two_path_topology() {
	local RATE=$1
	ns_add lan; ns_add gw; ns_add conc; ns_add srv
	link lan gw; link conc srv
	local n prof
	for n in 1 2; do
		prof=$(eval echo "\${PATH${n}_PROFILE:-$RATE}")
		profiled_link gw "gw-p$n" conc "conc-p$n" "$prof" || return 1
	done
	addr lan lan-gw 192.168.77.2/24
	addr gw gw-lan 192.168.77.1/24
	addr gw gw-p1 198.51.100.2/26; addr gw gw-p2 198.51.100.66/26
	addr conc conc-p1 198.51.100.1/26; addr conc conc-p2 198.51.100.65/26
	addr conc lo 192.0.2.1/32
	addr conc conc-srv 203.0.113.1/24; addr srv srv-conc 203.0.113.2/24
	ip -n "$(ns lan)" route add default via 192.168.77.1
	ip -n "$(ns gw)" route add default via 198.51.100.1 dev gw-p1 metric 100
	ip -n "$(ns gw)" route add default via 198.51.100.65 dev gw-p2 metric 200
	ip -n "$(ns srv)" route add default via 203.0.113.1
	ip netns exec "$(ns gw)" sysctl -qw net.ipv4.ip_forward=1 net.ipv4.tcp_fastopen=1
	ip netns exec "$(ns conc)" sysctl -qw net.ipv4.tcp_fastopen=3
	ip -n "$(ns conc)" mptcp limits set subflows 8 add_addr_accepted 0
}

# What a DHCP client does after path 1's link comes back: its default route.
dhcp_default() {
	ip -n "$(ns gw)" route replace default via 198.51.100.1 dev gw-p1 metric 100
}

# IPv6 on the same testbed (after two_path_topology): each path gets a /64,
# the service 2001:db8:ff::1 sits on conc's loopback, the server is
# 2001:db8:3::2, and gw has two IPv6 defaults (metrics 100, 200), as router
# advertisements would leave them.
two_path_v6() {
	addr lan lan-gw 2001:db8:77::2/64; addr gw gw-lan 2001:db8:77::1/64
	addr gw gw-p1 2001:db8:1::2/64; addr conc conc-p1 2001:db8:1::1/64
	addr gw gw-p2 2001:db8:2::2/64; addr conc conc-p2 2001:db8:2::1/64
	addr conc lo 2001:db8:ff::1/128
	addr conc conc-srv 2001:db8:3::1/64; addr srv srv-conc 2001:db8:3::2/64
	ip -n "$(ns lan)" -6 route add default via 2001:db8:77::1
	ip -n "$(ns srv)" -6 route add default via 2001:db8:3::1
	ip netns exec "$(ns gw)" sysctl -qw net.ipv6.conf.all.forwarding=1
	dhcp_default6
}
dhcp_default6() {
	ip -n "$(ns gw)" -6 route replace default via 2001:db8:1::1 dev gw-p1 metric 100
	ip -n "$(ns gw)" -6 route replace default via 2001:db8:2::1 dev gw-p2 metric 200
}

# The mesh testbed of mesh.sh and the mesh demo: three home routers a, b, c
# on one mesh segment (bridge br0 in "air", 10.77.0.1-3/24), each with its
# own line of RATE both ways to conc (service 192.0.2.1; srv 203.0.113.2
# behind it). b's line is behind a modem (mb, where the line's tbf is), so
# b can shape its own upload just under it. LAN clients: lan behind a
# (192.168.77.2), lanb behind b (192.168.78.2); c has an empty LAN.
mesh_topology() {
	local RATE=$1 n g
	ns_add lan; ns_add lanb; ns_add a; ns_add b; ns_add c; ns_add mb; ns_add air; ns_add conc; ns_add srv
	link lan a; link lanb b; link conc srv
	ip -n "$(ns air)" link add br0 type bridge
	ip -n "$(ns air)" link set br0 up
	n=1
	for g in a b c; do
		# The line: shaped both ways, as the DSL would.
		if [ $g = b ]; then
			ip link add b-dsl netns "$(ns b)" type veth peer name mb-b netns "$(ns mb)"
			ip -n "$(ns b)" link set b-dsl up; ip -n "$(ns mb)" link set mb-b up
			addr mb mb-b 198.51.100.5/30
			profiled_link mb mb-conc conc conc-b "$RATE"
			addr mb mb-conc 198.51.100.130/30; addr conc conc-b 198.51.100.129/30
			ip -n "$(ns mb)" route add default via 198.51.100.129
			ip -n "$(ns conc)" route add 198.51.100.4/30 via 198.51.100.130
			ip netns exec "$(ns mb)" sysctl -qw net.ipv4.ip_forward=1
		else
			profiled_link "$g" "$g-dsl" conc "conc-$g" "$RATE"
			addr conc "conc-$g" "198.51.100.$((4 * n - 3))/30"
		fi
		addr "$g" "$g-dsl" "198.51.100.$((4 * n - 2))/30"
		ip -n "$(ns "$g")" route add default via "198.51.100.$((4 * n - 3))" dev "$g-dsl"
		# The mesh: a port on the shared segment.
		ip link add "$g-mesh" netns "$(ns "$g")" type veth peer name "air-$g" netns "$(ns air)"
		ip -n "$(ns air)" link set "air-$g" master br0 up
		ip -n "$(ns "$g")" link set "$g-mesh" up
		addr "$g" "$g-mesh" "10.77.0.$n/24"
		ip netns exec "$(ns "$g")" sysctl -qw net.ipv4.ip_forward=1 net.ipv4.tcp_fastopen=1
		n=$((n + 1))
	done
	# C has no LAN client here; its agent still needs a LAN interface.
	ip -n "$(ns c)" link add c-lan type veth peer name c-lan1 && ip -n "$(ns c)" link set c-lan up
	addr lan lan-a 192.168.77.2/24; addr a a-lan 192.168.77.1/24
	addr lanb lanb-b 192.168.78.2/24; addr b b-lanb 192.168.78.1/24
	ip -n "$(ns lan)" route add default via 192.168.77.1
	ip -n "$(ns lanb)" route add default via 192.168.78.1
	addr conc lo 192.0.2.1/32
	addr conc conc-srv 203.0.113.1/24; addr srv srv-conc 203.0.113.2/24
	ip -n "$(ns srv)" route add default via 203.0.113.1
	ip netns exec "$(ns conc)" sysctl -qw net.ipv4.ip_forward=1 net.ipv4.tcp_fastopen=3
	ip -n "$(ns conc)" mptcp limits set subflows 8 add_addr_accepted 0
	# The mesh key the households share (--mesh-key): key 5, any address.
	MESH_SECRET=$(od -An -tx1 -N32 /dev/urandom | tr -d ' \n')
	MESH_KEYS=$WORKDIR/mesh.keys
	(umask 077; echo "5 $MESH_SECRET any" > "$MESH_KEYS")
}
# mesh_agent NS LOGNAME ARGS...: a gw-agent on a mesh_topology router, with
# the mesh key ($MESH_KEYS, unless empty), status socket
# $WORKDIR/LOGNAME.sock; AGENT_PID.
mesh_agent() {
	local g=$1 name=$2 i; shift 2
	ip netns exec "$(ns "$g")" "$AGENT" --concentrator 192.0.2.1:5124 --workers 1 \
		--control "$WORKDIR/$name.sock" ${MESH_KEYS:+--mesh-key "$MESH_KEYS"} "$@" \
		> "$WORKDIR/$name.log" 2>&1 &
	AGENT_PID=$!
	for i in $(seq 1 100); do
		grep -q "intercepting TCP" "$WORKDIR/$name.log" && return 0
		kill -0 $AGENT_PID 2>/dev/null || break
		sleep 0.05
	done
	cat "$WORKDIR/$name.log"; return 1
}
