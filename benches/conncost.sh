#!/usr/bin/env bash
# What a short connection costs through gw-agent and mptcp-concentrator,
# for agent settings side by side (not a test: it asserts nothing). The
# two-path testbed with PATHS (default 100mbit each, no delay), nginx on the
# server with a 1 KiB page, wrk from the LAN with one connection per request
# (Connection: close). Interleaved run by run: each setting (the agent
# restarted with its arguments) and plain routing (the LAN masqueraded out
# of path 1, no proxy), wrk for SECONDS each.
#
#   sudo benches/conncost.sh [RUNS] [SECONDS]        defaults: 4 runs of 5 s
#   SETTINGS="join0=--join-after 0;default=" (name=ARGS;...; the first is
#   the reference of the ratios), CONNS=16 (wrk connections), PATHS="100mbit"
#
# Per run and setting: requests/s, p50 and p99 (wrk), the whole machine's
# CPU per request (every core's non-idle time: both daemons, the kernel's
# MPTCP workers and softirqs, nginx and wrk alike), both daemons' own CPU
# per request, and MP_JOIN SYNs the concentrator received per request.
# Results: $BUILD/bench/conncost.jsonl and a table.
set -u
cd "$(dirname "$0")/.."
RUNS=${1:-4}
SECS=${2:-5}
RATE=${PATHS:-100mbit}
CONNS=${CONNS:-16}
BUILD=${BUILD:-build}
CONCENTRATOR=$PWD/$BUILD/concentrator/mptcp-concentrator
AGENT=$PWD/$BUILD/gw-agent/gw-agent
OUT=$PWD/$BUILD/bench
mkdir -p "$OUT"
TEST_NAME=conncost
. tests/netns/lib.sh
FINISH_NOT_NEEDED=1
require_netns
[ -x "$AGENT" ] || { echo "build first: ninja -C $BUILD"; exit 1; }
for p in wrk nginx; do command -v $p > /dev/null || { echo "needs $p: run deploy/setup.sh --bench"; exit 1; }; done

two_path_topology "$RATE"
X() { local n=$1; shift; ip netns exec "$(ns "$n")" "$@"; }
# The routed reference: a second server address, bypassed by the agent and
# masqueraded out of path 1 (what the router does without us).
addr srv srv-conc 203.0.113.3/24
X gw nft -f - <<'NFT'
table ip routed {
	chain post { type nat hook postrouting priority 100; oifname "gw-p1" ip daddr 203.0.113.3 masquerade; }
}
NFT
ip netns exec "$(ns conc)" sysctl -qw net.ipv4.ip_forward=1 net.ipv4.ip_local_port_range="1024 65535"
# wrk closes a connection once it has the response, often before a proxy
# has passed the server's FIN on: its side keeps the TIME_WAIT, and within
# seconds every local port is in one (connects then spend the machine's
# CPU searching for a port). Reused, as on a client set up for this.
X lan sysctl -qw net.ipv4.ip_local_port_range="1024 65535" net.ipv4.tcp_tw_reuse=1
chmod 755 "$WORKDIR"  # nginx workers run as www-data
mkdir -p "$WORKDIR/www"
head -c 1024 /dev/zero | tr '\0' x > "$WORKDIR/www/index.html"
cat > "$WORKDIR/nginx.conf" <<EOF
worker_processes 1;
pid $WORKDIR/nginx.pid;
error_log $WORKDIR/nginx.err;
events { worker_connections 65536; }
http {
	access_log off;
	client_body_temp_path $WORKDIR/cb; proxy_temp_path $WORKDIR/px;
	fastcgi_temp_path $WORKDIR/fc; uwsgi_temp_path $WORKDIR/uw; scgi_temp_path $WORKDIR/sc;
	server { listen 80 backlog=65535 reuseport; root $WORKDIR/www; }
}
EOF
X srv nginx -c "$WORKDIR/nginx.conf" -g 'daemon off;' > "$WORKDIR/nginx.log" 2>&1 &
start_concentrator conc conc --allow-client 198.51.100.0/24 --max-flows-per-client 0 \
	--idle-timeout 0 --workers 2
CPID=$CONC_PID
wait_listen srv 80 && wait_listen conc 5124 || exit 1
APID= ASH=
cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
busy() { awk '/^cpu / {print $2 + $3 + $4 + $7 + $8 + $9}' /proc/stat; }
joins() { ip netns exec "$(ns conc)" nstat -az MPTcpExtMPJoinSynRx | awk '$1 == "MPTcpExtMPJoinSynRx" {print $2}'; }
HZ=$(getconf CLK_TCK)
wrk_json() {  # wrk output -> "rps": .., "p50_ms": .., "p99_ms": .., "errors": ..
	"$PY" -c '
import re, sys
t = sys.stdin.read()
def ms(v):
    n, u = float(re.match(r"[\d.]+", v).group()), re.sub(r"[\d.]+", "", v)
    return n * {"us": 1e-3, "ms": 1, "s": 1e3, "m": 6e4}[u]
rps = float(re.search(r"Requests/sec:\s+([\d.]+)", t).group(1))
q = {k: ms(re.search(rf"^\s+{k}%\s+(\S+)", t, re.M).group(1)) for k in ("50", "99")}
m = re.search(r"Socket errors: connect (\d+), read \d+, write (\d+), timeout (\d+)", t)
err = sum(int(x) for x in m.groups()) if m else 0
m = re.search(r"Non-2xx or 3xx responses: (\d+)", t)
err += int(m.group(1)) if m else 0
p50, p99 = q["50"], q["99"]
print(f"\"rps\": {rps}, \"p50_ms\": {p50:.2f}, \"p99_ms\": {p99:.2f}, \"errors\": {err}")'
}
measure() {  # measure NAME HOST: one wrk run, one JSON line
	local name=$1 host=$2 a0 c0 b0 j0 a1 c1 b1 j1 out
	a0=$(cpu_ticks "$APID"); c0=$(cpu_ticks "$CPID"); b0=$(busy); j0=$(joins)
	out=$(X lan wrk -t 2 -c "$CONNS" -d "${SECS}s" --latency -H "Connection: close" "http://$host/" | wrk_json) || return
	a1=$(cpu_ticks "$APID"); c1=$(cpu_ticks "$CPID"); b1=$(busy); j1=$(joins)
	echo "{\"run\": $run, \"setting\": \"$name\", $out, \"machine_cpu_s\": $(awk -v a=$b0 -v b=$b1 -v h=$HZ 'BEGIN {print (b - a) / h}'), \"daemons_cpu_s\": $(awk -v a=$((a0 + c0)) -v b=$((a1 + c1)) -v h=$HZ 'BEGIN {print (b - a) / h}'), \"joins\": $((j1 - j0)), \"seconds\": $SECS}" |
		tee -a "$OUT/conncost.jsonl"
}
SETTINGS=${SETTINGS:-join0=--join-after 0;default=}
IFS=';' read -r -a SETS <<< "$SETTINGS"
: > "$OUT/conncost.jsonl"
for run in $(seq 1 "$RUNS"); do
	for set in "${SETS[@]}"; do
		# shellcheck disable=SC2086 # the setting's arguments, split
		bench_agent --bypass 203.0.113.3/32 ${set#*=}
		measure "${set%%=*}" 203.0.113.2
	done
	measure routed 203.0.113.3
done
"$PY" - "$OUT/conncost.jsonl" <<'PY'
import json, statistics, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
sets = list(dict.fromkeys(r["setting"] for r in rows))
med = lambda xs: statistics.median(xs) if xs else float("nan")
routed = med([r["rps"] for r in rows if r["setting"] == "routed"])
print("| setting | requests/s | vs routing | p50 ms | p99 ms | machine CPU us/request | daemons' CPU us/request | joins/request | errors |")
print("|---|---|---|---|---|---|---|---|---|")
for s in sets:
    rs = [r for r in rows if r["setting"] == s]
    n = [r["rps"] * r["seconds"] for r in rs]
    print(f"| {s} | {med([r['rps'] for r in rs]):.0f} [{min(r['rps'] for r in rs):.0f}-{max(r['rps'] for r in rs):.0f}] | "
          f"{med([r['rps'] for r in rs]) / routed:.2f} | {med([r['p50_ms'] for r in rs]):.2f} | "
          f"{med([r['p99_ms'] for r in rs]):.2f} [{min(r['p99_ms'] for r in rs):.2f}-{max(r['p99_ms'] for r in rs):.2f}] | "
          f"{med([1e6 * r['machine_cpu_s'] / k for r, k in zip(rs, n) if k]):.0f} | "
          f"{med([1e6 * r['daemons_cpu_s'] / k for r, k in zip(rs, n) if k]):.0f} | "
          f"{med([r['joins'] / k for r, k in zip(rs, n) if k]):.2f} | {sum(r['errors'] for r in rs)} |")
PY
kill -TERM "$APID"; wait "$ASH" 2>/dev/null
stop_concentrator "$CPID" conc
