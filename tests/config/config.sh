#!/usr/bin/env bash
# Configuration files of both daemons, through the real binaries'
# --check-config: the commented examples in deploy/examples are valid, and
# each kind of mistake gets its own message naming the file, the key path
# and the reason, with exit status 2. No root needed.
#
# Environment (meson): CONCENTRATOR, AGENT (absolute paths).
set -u
cd "$(dirname "$0")"
EX=$(cd ../../deploy/examples && pwd)
T=$(mktemp -d /tmp/config-test.XXXXXX)
trap 'rm -rf "$T"' EXIT
CHECKS=0 FAILS=0

ok() { CHECKS=$((CHECKS + 1)); echo "ok   - $1"; }
fail() { CHECKS=$((CHECKS + 1)); FAILS=$((FAILS + 1)); echo "FAIL - $1"; shift; printf '    %s\n' "$@"; }

# expect DESCRIPTION STATUS PROGRAM ARGS... (expected lines on stdin): each
# expected line must appear whole in the output, and the status must match.
expect() {
	local what=$1 want=$2; shift 2
	local out rc=0 line missing=()
	out=$("$@" 2>&1) || rc=$?
	while IFS= read -r line; do
		[ -z "$line" ] && continue
		grep -qxF -- "$line" <<< "$out" || missing+=("missing: $line")
	done
	if [ "$rc" -eq "$want" ] && [ ${#missing[@]} -eq 0 ]; then
		ok "$what"
	else
		fail "$what" "exit $rc (wanted $want)" "${missing[@]}" "output:" "$out"
	fi
}

C=$CONCENTRATOR
A=$AGENT
[ -x "$C" ] && [ -x "$A" ] || { echo "SKIP (a failure under CI=true): daemons not built"; [ "${CI:-}" = true ] && exit 1; exit 77; }

expect "concentrator example (deploy/examples/concentrator.json) is valid" 0 \
	"$C" --check-config --config "$EX/concentrator.json" \
	<<< "mptcp-concentrator: configuration OK ($EX/concentrator.json and the command line)"
expect "agent example (deploy/examples/gw-agent.json) is valid" 0 \
	"$A" --check-config --config "$EX/gw-agent.json" \
	<<< "gw-agent: configuration OK ($EX/gw-agent.json and the command line)"

cat > "$T/conc.json" <<'J'
{
  "listen": ["127.0.0.1:15124"],
  "policy": {
    "allow_clients": ["10.0.0.0/8", "192.168.0.0/16", "10.0.0.0/33"],
    "allow_client": ["1.2.3.4"],
    "max_flows_per_client": "12"
  },
  "timeouts": {"handshake": 0, "conect": 3},
  "workers": 2.5,
  "buffers": 4,
  "metrics_listen": "localhost:x"
}
J
expect "concentrator: every error in a file, each with file, key path and reason" 2 \
	"$C" --check-config --config "$T/conc.json" <<END
$T/conc.json: policy.allow_clients[2]: "10.0.0.0/33" is not a prefix (length over 32 for IPv4, 128 for IPv6)
$T/conc.json: policy.allow_client: unknown key (did you mean policy.allow_clients?)
$T/conc.json: policy.max_flows_per_client: is a string, expected a number
$T/conc.json: timeouts.handshake: "0" must be more than 0
$T/conc.json: timeouts.conect: unknown key (did you mean timeouts.connect?)
$T/conc.json: workers: "2.5" is not a whole number
$T/conc.json: buffers: is a number, expected an object
$T/conc.json: metrics_listen: "localhost:x" is not PORT, ADDR:PORT or [ADDR6]:PORT
END

printf '{\n  "listen": ["[::]:5124"],\n  "workers": 2,\n}\n' > "$T/syntax.json"
expect "syntax error: file, line and column" 2 "$C" --check-config --config "$T/syntax.json" \
	<<< "$T/syntax.json: line 4, column 1: string or '}' expected near '}'"
printf '{"workers": 1, "workers": 2}\n' > "$T/dup.json"
expect "a key given twice is an error" 2 "$C" --check-config --allow-any-client --config "$T/dup.json" \
	<<< "$T/dup.json: line 1, column 24: duplicate object key near '\"workers\"'"
printf '[1, 2]\n' > "$T/array.json"
expect "a file that is not an object" 2 "$C" --check-config --allow-any-client --config "$T/array.json" \
	<<< "$T/array.json: is an array, expected an object of settings"
expect "an explicit --config that does not exist is an error" 2 \
	"$C" --check-config --allow-any-client --config "$T/none.json" \
	<<< "mptcp-concentrator: cannot read $T/none.json: No such file or directory"
printf '{"policy": {"allow_clients": ["10.0.0.0/8"]}}\n' > "$T/ok.json"
expect "the command line is checked the same way, over the file" 2 \
	"$C" --check-config --config "$T/ok.json" --allow-client 10.0.0.0/33 \
	<<< 'mptcp-concentrator: --allow-client: "10.0.0.0/33" is not a prefix (length over 32 for IPv4, 128 for IPv6)'
printf '{"policy": {"allow_any_client": false}}\n' > "$T/open.json"
expect "no client allowed: refuses, naming both ways to allow some" 2 \
	"$C" --check-config --config "$T/open.json" \
	<<< "mptcp-concentrator: no client allowed (--allow-client, or policy.allow_clients"
expect "any client without keys (an open proxy): refused, naming keys, prefixes and --open-proxy" 2 \
	"$C" --check-config --allow-any-client <<'E'
mptcp-concentrator: allow-any-client without gateway keys (--keys, or
refusing to start. Give the gateways keys, or name their prefixes
(--allow-client), or set --open-proxy / policy.open_proxy as well if
E
printf '{"policy": {"allow_any_client": true, "open_proxy": true}}\n' > "$T/openproxy.json"
expect "any client without keys, with policy.open_proxy: accepted" 0 \
	"$C" --check-config --config "$T/openproxy.json" \
	<<< "mptcp-concentrator: configuration OK ($T/openproxy.json and the command line)"
# Cookies shared between boxes (--replay-peer): each setting the sharing
# depends on is named when missing or wrong.
RP="$C --check-config --allow-client 192.0.2.0/24"
expect "replay-peer without replay-listen: refused, naming it" 2 \
	$RP --replay-peer 10.0.2.2:5127 \
	<<< "mptcp-concentrator: cluster.replay_peers (--replay-peer) needs cluster.replay_listen (--replay-listen): where the other boxes' messages come"
expect "replay-peer without a TFO key file of the operator's: refused, naming it" 2 \
	env STATE_DIRECTORY="$T" $RP --replay-peer 10.0.2.2:5127 --replay-listen 10.0.1.2:5127 \
	<<< "mptcp-concentrator: cluster.replay_peers (--replay-peer) needs tfo_key_file (--tfo-key-file), the same file on every box: the key the boxes share authenticates their messages"
echo 00112233445566778899aabbccddeeff > "$T/rp.key"; chmod 600 "$T/rp.key"
expect "replay-listen on a wildcard: refused" 2 \
	$RP --tfo-key-file "$T/rp.key" --replay-peer 10.0.2.2:5127 --replay-listen 0.0.0.0:5127 \
	<<< "mptcp-concentrator: cluster.replay_listen must be this box's own address, not a wildcard: the other boxes take messages from that address alone"
expect "a box listed as its own peer: refused" 2 \
	$RP --tfo-key-file "$T/rp.key" --replay-peer 10.0.1.2:5127 --replay-listen 10.0.1.2:5127 \
	<<< "mptcp-concentrator: cluster.replay_peers: peer 1 is this box's own replay_listen"
expect "a peer of another address family than replay-listen: refused" 2 \
	$RP --tfo-key-file "$T/rp.key" --replay-peer '[2001:db8::2]:5127' --replay-listen 10.0.1.2:5127 \
	<<< "mptcp-concentrator: cluster.replay_peers: peer 1 is not of the address family of cluster.replay_listen"
expect "replay-listen without peers: refused" 2 \
	$RP --tfo-key-file "$T/rp.key" --replay-listen 10.0.1.2:5127 \
	<<< "mptcp-concentrator: cluster.replay_listen (--replay-listen) without cluster.replay_peers (--replay-peer): no box to share cookies with"
expect "replay-peer with a TFO key file that does not exist: refused (not made: the boxes share one)" 2 \
	$RP --tfo-key-file "$T/none.key" --replay-peer 10.0.2.2:5127 --replay-listen 10.0.1.2:5127 \
	<<< "mptcp-concentrator: $T/none.key: No such file or directory; with cluster.replay_peers the boxes share one TFO key file: copy it from another box"
expect "a complete replay-peer setting: accepted" 0 \
	$RP --tfo-key-file "$T/rp.key" --replay-peer 10.0.2.2:5127 --replay-listen 10.0.1.2:5127 \
	<<< "mptcp-concentrator: configuration OK (no config file, command line only)"
# TCP Fast Open key files: 32 hex digits a line, nothing else (sscanf's %2x
# took a sign, spaces and 0x as digits).
tfo_bad() {  # tfo_bad NAME LINE: the key file is refused
	printf '%s\n' "$2" > "$T/tfo-$1"
	chmod 600 "$T/tfo-$1"
	expect "a TFO key file with $1 is refused" 2 \
		"$C" --check-config --allow-client 10.0.0.0/8 --tfo-key-file "$T/tfo-$1" \
		<<< "$T/tfo-$1: a TCP Fast Open key is a line of 32 hex digits (16 random bytes), optionally a second line with the previous key"
}
tfo_bad "a minus sign" "-1$(printf '0%.0s' $(seq 1 30))"
tfo_bad "spaces" " 1 2$(printf '0%.0s' $(seq 1 28))"
tfo_bad "0x" "0x0x$(printf '0%.0s' $(seq 1 28))"
tfo_bad "31 digits" "$(printf 'a%.0s' $(seq 1 31))"
printf '%s\n' "$(printf 'aB%.0s' $(seq 1 16))" > "$T/tfo-good"
chmod 600 "$T/tfo-good"
expect "a TFO key file of 32 hex digits is accepted" 0 \
	"$C" --check-config --allow-client 10.0.0.0/8 --tfo-key-file "$T/tfo-good" \
	<<< "mptcp-concentrator: configuration OK (no config file, command line only)"

cat > "$T/agent.json" <<'J'
{
  // a comment line, and comments after values:
  "concentrators": ["198.51.100.1:5124", "[2001:db8::1]:99999"], // backup
  "lan": ["br-lan"],
  "paths": [
    {"interface": "wan", "mode": "master"},
    "dsl,mode=backup",
    {"interface": "mesh", "mode": "sometimes", "weight": "2"},
    {"mode": "on"},
    42
  ],
  "fallback": "maybe",
  "block_quic": "yes",
  "timeouts": {"reply": 15, "connect": -1, "keepalive": 7201},
  "endpoints": "networkmanager"
}
J
expect "agent: errors in lists, path objects, choices and booleans" 2 \
	"$A" --check-config --config "$T/agent.json" <<END
$T/agent.json: concentrators[1]: "[2001:db8::1]:99999" is not ADDR[:PORT] or [ADDR6][:PORT]
$T/agent.json: paths[2].weight: unknown key (this object takes interface, mode, gateway, down, up, cap, cycle, at)
$T/agent.json: paths[2]: "mesh,mode=sometimes" has a mode other than on, master, backup, handover, overflow, off
$T/agent.json: paths[3]: has no "interface"
$T/agent.json: paths[4]: is a number, expected a string or an object
$T/agent.json: fallback: "maybe" is not direct or reset
$T/agent.json: block_quic: is a string, expected true or false
$T/agent.json: timeouts.connect: "-1" is out of range (0..3600 seconds)
$T/agent.json: timeouts.keepalive: "7201" is out of range (0..7200)
$T/agent.json: endpoints: "networkmanager" is not agent, kernel or mptcpd
END
cat > "$T/agent-ok.json" <<'J'
{
  "concentrators": ["198.51.100.1"],  // port 5124 by default
  "lan": ["br-lan"],
  "control": "/run//gw-agent.sock",   // "//" inside a string is not a comment
  "paths": ["wan,mode=master,gateway=192.0.2.1", {"interface": "lte", "mode": "handover"}]
}
J
expect "agent: comments outside strings only; paths as strings or objects" 0 \
	"$A" --check-config --config "$T/agent-ok.json" \
	<<< "gw-agent: configuration OK ($T/agent-ok.json and the command line)"
# Overflow lines: a capacity on an on/master line, rates as tc writes them.
cat > "$T/agent-ovf.json" <<'J'
{
  "concentrators": ["198.51.100.1"],
  "lan": ["br-lan"],
  "paths": [{"interface": "wan", "mode": "master", "down": "50mbit", "up": "10mbit"},
            "lte,mode=overflow"],
  "overflow_share": 80
}
J
expect "agent: an overflow line with the on/master line's capacity" 0 \
	"$A" --check-config --config "$T/agent-ovf.json" \
	<<< "gw-agent: configuration OK ($T/agent-ovf.json and the command line)"
expect "agent: an overflow line without any capacity given: said (a speed test gives one)" 0 \
	"$A" --check-config --concentrator 198.51.100.1 --lan br-lan --path wan --path lte,mode=overflow \
	<<< "gw-agent: warning: paths (--path, or \"paths\" in /etc/gw-agent/gw-agent.json): mode=overflow (or a cap's at=...:overflow) with no down= or up= on an on or master path: the overflow lines stay backup until a speed test (gw-agent speedtest) has measured the on and master lines"
expect "agent: data caps: a size without a unit, falling thresholds, a cycle without a cap" 2 \
	"$A" --check-config --concentrator 198.51.100.1 --lan br-lan --path wan,cap=10 \
	--path lte,cap=10G,at=100:off/80:backup --path wwan,cycle=15 <<END
gw-agent: --path: "wan,cap=10" has a cap= that is not a size (10G, 500M: bytes, decimal)
gw-agent: --path: "lte,cap=10G,at=100:off/80:backup" has an at= that is not PERCENT:ACTION[/PERCENT:ACTION] with rising percents (1-100) and actions overflow, backup or off
gw-agent: --path: "wwan,cycle=15" has cycle= or at= without cap=
END
expect "agent: a capacity that is not a rate" 2 \
	"$A" --check-config --concentrator 198.51.100.1 --lan br-lan --path wan,down=50mb <<END
gw-agent: --path: "wan,down=50mb" has a down= or up= that is not NUMBER followed by kbit, mbit or gbit
END
printf '{"lan": ["br-lan"]}\n' > "$T/noconc.json"
expect "agent: no concentrator is an error naming the option and the key" 2 \
	"$A" --check-config --config "$T/noconc.json" \
	<<< "gw-agent: no concentrator: --concentrator ADDR:PORT or \"concentrators\" in $T/noconc.json"

# Logging: under systemd (JOURNAL_STREAM set) every line starts with a
# <N> priority for journald and carries no timestamp of its own; otherwise
# lines read "HH:MM:SS.mmm program level: message".
JOURNAL_STREAM=8:12345 "$C" --check-config --config "$T/conc.json" > "$T/j.out" 2>&1
journal_errors() {
	cat "$T/j.out"
	[ -s "$T/j.out" ] && ! grep -qv '^<3>' "$T/j.out"
}
if journal_errors > "$T/j.log"; then ok "config errors under systemd carry <3> (error) priorities"; else
	fail "config errors under systemd carry <3> (error) priorities" "$(cat "$T/j.log")"; fi
daemon_log() {  # daemon_log JOURNAL(0|1): run the concentrator briefly on loopback
	local port=$((20000 + RANDOM % 20000)) pid
	if [ "$1" = 1 ]; then
		JOURNAL_STREAM=8:12345 "$C" --allow-any-client --open-proxy --listen "127.0.0.1:$port" --workers 1 > "$T/d.out" 2>&1 &
	else
		env -u JOURNAL_STREAM "$C" --allow-any-client --open-proxy --listen "127.0.0.1:$port" --workers 1 > "$T/d.out" 2>&1 &
	fi
	pid=$!
	for i in $(seq 1 100); do grep -q "listening on" "$T/d.out" && break; sleep 0.05; done
	# Its exit status counts: under ASan a leak or error makes it non-zero.
	kill -TERM $pid; wait $pid
}
daemon_log 1; rc=$?
if [ $rc -eq 0 ] && grep -q "^<6>listening on 127.0.0.1:" "$T/d.out" && grep -q "^<6>SIGTERM: stopping" "$T/d.out" &&
   ! grep -qv '^<[0-7]>' "$T/d.out"; then
	ok "daemon log under systemd: <6> for info, every line prioritised"
else
	fail "daemon log under systemd: <6> for info, every line prioritised" "exit $rc" "$(cat "$T/d.out")"
fi
daemon_log 0; rc=$?
if [ $rc -eq 0 ] && grep -qE "^[0-9]{2}:[0-9]{2}:[0-9]{2}\.[0-9]{3} mptcp-concentrator info: listening on 127.0.0.1:" "$T/d.out"; then
	ok "daemon log on a terminal: time, program, level, message"
else
	fail "daemon log on a terminal: time, program, level, message" "exit $rc" "$(cat "$T/d.out")"
fi

# OpenWrt: the agent reads uci files itself (/etc/config/gw-agent, and the
# network file beside it for the historic per-interface multipath option).
mkdir -p "$T/uci" "$T/uci-bad" "$T/uci-dup"
cat > "$T/uci/gw-agent" <<'U'
# /etc/config/gw-agent
config agent 'main'
	list concentrator '192.0.2.1:5124'
	list concentrator "192.0.2.2"
	option lan 'br-lan'
	list bypass '10.0.0.0/8'
	option fallback 'reset'
	option block_quic '0'
	option timeouts_connect '2'
	option probe_interval '0.5'
	option mesh 'mesh0,neighbour=10.77.0.2'
U
cat > "$T/uci/network" <<'U'
config interface 'loopback'
	option device 'lo'
	option proto 'static'

config interface 'wan1'
	option device 'eth1'
	option proto 'dhcp'
	option multipath 'master'

config interface 'lte'
	option ifname 'wwan0'   # an older file
	option multipath "backup"
U
expect "agent: a uci file with lists, booleans, timeouts and OpenWrt's network multipath" 0 \
	"$A" --check-config --config "$T/uci/gw-agent" <<END
gw-agent: configuration OK ($T/uci/gw-agent and the command line)
END
cat > "$T/uci-bad/gw-agent" <<'U'
config agent 'main'
	list concentrator '192.0.2.1:5124'
	option lan 'br-lan'
	option fallback 'maybe'
	option block_quic 'sure'
	option colour 'blue'
	list fallback_mode 'x'
U
cat > "$T/uci-bad/network" <<'U'
config interface 'wan1'
	option device 'eth1'
	option multipath 'sometimes'
config interface 'wan2'
	option multipath 'on'
U
expect "agent: uci errors name the file, line, option and reason (network file too)" 2 \
	"$A" --check-config --config "$T/uci-bad/gw-agent" <<END
$T/uci-bad/gw-agent:4: option 'fallback': "maybe" is not direct or reset
$T/uci-bad/gw-agent:5: option 'block_quic': "sure" is not 1/0, true/false, yes/no or on/off
$T/uci-bad/gw-agent:6: option 'colour': unknown option
$T/uci-bad/gw-agent:7: option 'fallback_mode': unknown option
$T/uci-bad/network:3: option 'multipath': "eth1,mode=sometimes" has a mode other than on, master, backup, handover, overflow, off
$T/uci-bad/network:5: option 'multipath': interface 'wan2' has no device (or ifname) option
END
printf "config agent main\n\tlist concentrator '192.0.2.1\n" > "$T/uci-bad/quote"
expect "agent: a uci syntax error names the line" 2 "$A" --check-config --config "$T/uci-bad/quote" <<END
$T/uci-bad/quote:2: unterminated quote
END
# Each interface with multipath becomes a path: two on one device say so.
printf "config agent main\n\tlist concentrator '192.0.2.1'\n\tlist lan br-lan\n" > "$T/uci-dup/gw-agent"
printf "config interface a\n\toption device eth1\n\toption multipath on\nconfig interface b\n\toption device eth1\n\toption multipath backup\n" > "$T/uci-dup/network"
expect "agent: network multipath interfaces become paths (the same device twice is refused)" 2 \
	"$A" --check-config --config "$T/uci-dup/gw-agent" <<END
$T/uci-dup/network:6: option 'multipath': "eth1,mode=backup" names an interface given twice
END

# Sections for lines and classes (issue 22): "config path" and "config
# class", one item each, named by the section (or its first field), a
# list's values joined; their errors name the line and the section.
mkdir -p "$T/uci-sec" "$T/uci-sec-bad"
cat > "$T/uci-sec/gw-agent" <<'U'
config agent 'main'
	list concentrator '192.0.2.1:5124'
	option lan 'br-lan'

config path 'eth1'
	option mode 'master'
	option down '50mbit'

config path 'lte'
	option interface 'wwan0'
	option mode 'overflow'
	option cap '20G'
	option cycle '15'
	list at '90:backup'
	list at '100:off'

config class 'tv'
	list device 'aa:bb:cc:dd:ee:ff'
	list device '192.168.1.20'
	option action 'bypass'
	option line 'wwan0'

config class 'streaming'
	list domain 'netflix.com'
	list domain 'nflxvideo.net'
	option action 'bypass'
	option line 'eth1'
U
expect "agent: uci sections for lines (config path) and classes (config class)" 0 \
	"$A" --check-config --config "$T/uci-sec/gw-agent" <<END
gw-agent: configuration OK ($T/uci-sec/gw-agent and the command line)
END
cat > "$T/uci-sec-bad/gw-agent" <<'U'
config agent 'main'
	list concentrator '192.0.2.1:5124'
	option lan 'br-lan'

config class 'tv'
	option device 'aa:bb:cc:dd:ee:fg'
	option action 'bypass'

config class
	option action 'bypass'

config class 'x'
	option colour 'red'
	option port '80,443'
U
expect "agent: a bad class section: file, line, section and reason" 2 \
	"$A" --check-config --config "$T/uci-sec-bad/gw-agent" <<END
$T/uci-sec-bad/gw-agent:5: config class 'tv': "tv,device=aa:bb:cc:dd:ee:fg,action=bypass" has a device that is not a MAC address (aa:bb:cc:dd:ee:ff)
$T/uci-sec-bad/gw-agent:9: config class: has neither a name nor option 'name'
$T/uci-sec-bad/gw-agent:13: option 'colour': unknown in a class section (it takes name, device, dst, port, domain, action, line, rtt, udp)
$T/uci-sec-bad/gw-agent:14: option 'port': "80,443" has a comma (a list: one value per list line)
END
expect "agent: a class's line must be a path" 2 \
	"$A" --check-config --concentrator 192.0.2.1 --lan br-lan --path eth1 \
	--class "tv,device=192.168.1.20,action=bypass,line=eth9" <<END
gw-agent: classes (--class, or "classes" in /etc/gw-agent/gw-agent.json): class tv: line=eth9 is not one of the paths (--path)
END
expect "agent: bad class values say what is wrong" 2 "$A" --check-config --concentrator 192.0.2.1 \
	--lan br-lan --class "a,port=0,action=bypass" --class "b,action=bypass" \
	--class "c,domain=-x..y,action=bypass" --class "d,dst=10.0.0.1/8,action=pin" \
	--class "e,port=53,rtt=0" --class "f,port=53,action=bypass,rtt=20" --class "g,port=1,action=pin" \
	--class "h,port=1,udp=fast" <<END
gw-agent: --class: "a,port=0,action=bypass" has a port that is not 1-65535 or a range N-M
gw-agent: --class: "b,action=bypass" matches everything: give device=, dst=, port= or domain=
gw-agent: --class: "c,domain=-x..y,action=bypass" has a domain that is not a host name (letters, digits, '-', dots)
gw-agent: --class: "d,dst=10.0.0.1/8,action=pin" has a destination that is not an address or prefix (host bits zero)
gw-agent: --class: "e,port=53,rtt=0" has an rtt= that is not 1-1000 (milliseconds over the best line's delay)
gw-agent: --class: "f,port=53,action=bypass,rtt=20" has rtt= with bypass (out of one line: no lines to choose from)
gw-agent: --class: "g,port=1,action=pin" pins to no line: give line=IFACE[+IFACE]
gw-agent: --class: "h,port=1,udp=fast" has a udp= that is not failover, lowest-delay or redundant
END

# The OpenWrt package (deploy/openwrt): what can be checked without the
# OpenWrt build system and procd. Its default /etc/config/gw-agent is valid
# as shipped (with a network file naming one WAN path).
OW=../../deploy/openwrt
mkdir -p "$T/owrt"
cp "$OW/files/gw-agent.config" "$T/owrt/gw-agent"
printf "config interface 'wan'\n\toption device 'eth1'\n\toption multipath 'master'\n" > "$T/owrt/network"
expect "openwrt: the package's default /etc/config/gw-agent is valid" 0 \
	"$A" --check-config --config "$T/owrt/gw-agent" <<END
gw-agent: configuration OK ($T/owrt/gw-agent and the command line)
END
owrt_files() {
	local f
	sh -n "$OW/files/gw-agent.init" || return 1
	grep -q '^USE_PROCD=1' "$OW/files/gw-agent.init" &&
	grep -q "procd_send_signal gw-agent '\*' HUP" "$OW/files/gw-agent.init" &&
	grep -q 'procd_add_reload_trigger "gw-agent" "network"' "$OW/files/gw-agent.init" || return 1
	for f in PKG_NAME PKG_VERSION PKG_RELEASE PKG_LICENSE; do
		grep -q "^$f:=" "$OW/Makefile" || { echo "no $f"; return 1; }
	done
	grep -q '^  DEPENDS:=' "$OW/Makefile" && grep -q '+kmod-nft-tproxy' "$OW/Makefile" && grep -q -- '-Dsystemd=disabled' "$OW/Makefile" &&
	grep -q '^/etc/config/gw-agent$' "$OW/Makefile" || return 1
	# Every file the install step copies exists.
	for f in $(grep -o '\./files/[a-z.-]*' "$OW/Makefile"); do [ -f "$OW/$f" ] || { echo "missing $f"; return 1; }; done
	[ -f ../../deploy/sysctl/90-gw-agent.conf ]
}
if owrt_files > "$T/owrt.out" 2>&1; then ok "openwrt: init script (procd, reload on config change), package Makefile fields and files"
else fail "openwrt: init script (procd, reload on config change), package Makefile fields and files" "$(cat "$T/owrt.out")"; fi

# Operations: the sample Prometheus configuration and alert rules are what
# promtool accepts, and every metric they name is one the daemons export.
PROMTOOL=$(command -v promtool || echo "../../.tools/promtool")
prom_check() {
	"$PROMTOOL" check config ../../deploy/prometheus/prometheus.yml || return 1
	local m missing=0
	/usr/bin/python3 -c 'import json, sys; d = json.load(open(sys.argv[1])); assert d["panels"] and all(t["expr"] for p in d["panels"] for t in p["targets"])' \
		../../deploy/grafana/mptcp-hybrid-access.json || { echo "the Grafana dashboard is not valid"; return 1; }
	for m in $(grep -ohE '(mptcp_concentrator|gw_agent)_[a-z_]+' ../../deploy/prometheus/alerts.yml \
			../../deploy/grafana/mptcp-hybrid-access.json | sed 's/_bucket$//' | sort -u); do
		grep -q "\"$m\"" ../../concentrator/*.c ../../gw-agent/*.c || { echo "not exported: $m"; missing=1; }
	done
	return $missing
}
if [ ! -x "$PROMTOOL" ]; then
	fail "prometheus: sample config and alert rules" "promtool missing (deploy/setup.sh unpacks it into .tools/)"
elif prom_check > "$T/prom.out" 2>&1; then ok "prometheus and grafana: sample config and alert rules pass promtool, the dashboard parses, every metric named is exported"
else fail "prometheus and grafana: sample config and alert rules pass promtool, the dashboard parses, every metric named is exported" "$(cat "$T/prom.out")"; fi

echo "[config] $CHECKS checks, $FAILS failed"
[ "$FAILS" -eq 0 ] && [ "$CHECKS" -gt 0 ]
