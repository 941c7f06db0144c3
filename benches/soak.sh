#!/usr/bin/env bash
# Soak: the concentrator under mixed valid and hostile load for a while
# (not a test; it reports). Default 600 s.
#
#   sudo benches/soak.sh [SECONDS]
#
# cli (198.51.100.2 valid; .3 not allowed; .9 forged) -- conc -- srv, the
# shipped sysctl and unit limits, gateway keys required for .2 (any
# address). Every few seconds, in parallel:
#   valid     20 keyed echo flows of 256 KiB (sha256 checked), counted
#   forged    50 SYNs with a Convert message from a forged source (scapy)
#   refused   200 connections from a source that is not allowed, held 2 s
#   stalled   100 handshakes that never finish
#   noread    20 keyed clients that never read their echo, held 5 s
#   badkeys   replayed, stale and forged cookies
# Sampled every second: the daemon's RSS and open descriptors. Forged SYNs
# must cause no upstream connect: upstream_connects is the valid flows plus
# the keyed never-reading clients and the first of each replayed pair,
# nothing more.
# Output: build/soak/{samples.csv,summary.json,soak.png}.
set -u
cd "$(dirname "$0")/.."
DURATION=${1:-600}
BUILD=${BUILD:-build}
CONCENTRATOR=$PWD/$BUILD/concentrator/mptcp-concentrator
OUT=$PWD/$BUILD/soak
mkdir -p "$OUT"
TEST_NAME=soak
. tests/netns/lib.sh
FINISH_NOT_NEEDED=1
require_netns
"$PY" -c 'import scapy' 2>/dev/null || { echo "needs python3-scapy (deploy/setup.sh)"; exit 1; }
cd tests/netns

cli_conc_srv
addr cli cli-conc 198.51.100.3/24
ip netns exec "$(ns conc)" sysctl -q -p ../../deploy/sysctl/90-mptcp-concentrator.conf
ip -n "$(ns conc)" mptcp limits set $(sed -n 's/^ExecStartPre=+-\/usr\/bin\/ip mptcp limits set //p' ../../systemd/mptcp-concentrator.service.in)
ip netns exec "$(ns cli)" sysctl -qw net.ipv4.tcp_fastopen=1
# Small send buffers at the concentrator: clients that never read stall its
# sends after 64 KiB (and get them parked), as on a busy box.
ip netns exec "$(ns conc)" sysctl -qw net.ipv4.tcp_wmem="4096 16384 65536"
ip netns exec "$(ns srv)" "$PY" ./nettool.py serve --bind 203.0.113.2 --base 9000 > /dev/null 2>&1 &
K=$(od -An -tx1 -N32 /dev/urandom | tr -d ' \n')
umask 077; echo "7 $K any" > "$WORKDIR/keys"; umask 022
start_concentrator conc soak --allow-client 198.51.100.2/32 --keys "$WORKDIR/keys" \
	--metrics-listen 198.51.100.1:9190 --handshake-timeout 3
PID=$CONC_PID
wait_listen srv 9000 && wait_listen conc 5124 || exit 1
sleep 0.5

C="ip netns exec $(ns cli) $PY ./nettool.py"
CK="$C cookie --conc 198.51.100.1:5124 --dst 203.0.113.2:9000 --src 198.51.100.2 --key 7:$K"
valid_ok=0 valid_failed=0
echo "t,rss_kib,fds" > "$OUT/samples.csv"
t0=$(date +%s)
sampler() {
	while kill -0 $PID 2>/dev/null; do
		echo "$(( $(date +%s) - t0 )),$(awk '/VmRSS/ {print $2}' /proc/$PID/status),$(ls /proc/$PID/fd | wc -l)" >> "$OUT/samples.csv"
		sleep 1
	done
}
sampler & SAMPLER=$!
round=0
while [ $(( $(date +%s) - t0 )) -lt "$DURATION" ]; do
	round=$((round + 1))
	pids=()
	ip netns exec "$(ns cli)" "$PY" ./forge.py syn-data --src 198.51.100.9 --dst 198.51.100.1:5124 \
		--to 203.0.113.2:9000 --count 50 > /dev/null 2>&1 &
	pids+=($!)
	$C hold --dst 198.51.100.1:5124 --src 198.51.100.3 --count 200 --seconds 2 > /dev/null 2>&1 &
	pids+=($!)
	$C stall --conc 198.51.100.1:5124 --dst 203.0.113.2:9000 --count 100 --timeout 3 > /dev/null 2>&1 &
	pids+=($!)
	$C noread --conc 198.51.100.1:5124 --dst 203.0.113.2:9000 --count 20 --bytes $((1 << 20)) \
		--seconds 5 --src 198.51.100.2 --key 7:$K > /dev/null 2>&1 &
	pids+=($!)
	for c in replay stale badmac; do $CK --case $c --expect 32 > /dev/null 2>&1; done
	for i in $(seq 1 20); do
		if $CK --case good --expect=-1 > /dev/null 2>&1; then
			valid_ok=$((valid_ok + 1))
		else
			valid_failed=$((valid_failed + 1))
		fi
	done
	wait "${pids[@]}" 2>/dev/null
done
sleep 15  # refusals and stalls drain; buffers go back to the kernel after 10 s quiet
metrics=$(ip netns exec "$(ns cli)" curl -s http://198.51.100.1:9190/metrics)
kill $SAMPLER 2>/dev/null
stop_concentrator $PID soak
m() { echo "$metrics" | awk -v k="$1" '$1 == k { print $2 }'; }
refusals=$(echo "$metrics" | awk '/^mptcp_concentrator_refusals_total/ && $2 > 0 { match($1, /code="[0-9]+"/); printf "%s\"%s\": %s", (n++ ? ", " : ""), substr($1, RSTART + 6, RLENGTH - 7), $2 }')
rss0=$(sed -n 2p "$OUT/samples.csv" | cut -d, -f2); fd0=$(sed -n 2p "$OUT/samples.csv" | cut -d, -f3)
rssmax=$(tail -n +2 "$OUT/samples.csv" | cut -d, -f2 | sort -n | tail -1)
fdmax=$(tail -n +2 "$OUT/samples.csv" | cut -d, -f3 | sort -n | tail -1)
rss1=$(tail -1 "$OUT/samples.csv" | cut -d, -f2); fd1=$(tail -1 "$OUT/samples.csv" | cut -d, -f3)
cat > "$OUT/summary.json" <<JSON
{"seconds": $DURATION, "rounds": $round, "valid_flows_ok": $valid_ok, "valid_flows_failed": $valid_failed,
 "refusals_by_code": {$refusals},
 "cookies_ok": $(m 'mptcp_concentrator_cookies_total{result="ok"}'),
 "forged_syns_sent": $((round * 50)),
 "upstream_connects": $(m mptcp_concentrator_upstream_connect_seconds_count),
 "upstream_connects_expected": $((valid_ok + round * 21)),
 "handshake_limit_resets": $(m 'mptcp_concentrator_limit_hits_total{limit="handshakes"}'),
 "parked_sends": $(m mptcp_concentrator_parked_sends_total),
 "rss_kib": {"start": $rss0, "max": $rssmax, "end": $rss1},
 "fds": {"start": $fd0, "max": $fdmax, "end": $fd1}}
JSON
cat "$OUT/summary.json"
if command -v gnuplot >/dev/null; then
	gnuplot <<GP
set terminal pngcairo size 900,420
set output "$OUT/soak.png"
set datafile separator ","
set title "mptcp-concentrator under mixed valid and hostile load"
set xlabel "seconds"
set ylabel "RSS (MiB)"
set y2label "open descriptors"
set y2tics
set key top left
plot "$OUT/samples.csv" using 1:(\$2/1024) every ::1 with lines title "RSS", \
     "" using 1:3 every ::1 axes x1y2 with lines title "descriptors"
GP
	echo "plot: $OUT/soak.png"
fi
