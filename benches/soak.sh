#!/usr/bin/env bash
# Soak: the concentrator under mixed valid and hostile load for a while,
# with a verdict: no valid flow failed, no upstream connect beyond the
# expected ones, memory flat after the first quarter (30 s at least) and
# descriptors back where they started. Default
# 600 s; exit 0 on pass, 1 on fail.
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
#   future    a second key holder (.4) floods 300 Connect and 300 Info-only
#             cookies dated 89 s ahead (the replay cache is small: 4,096)
#   blackhole 64 keyed connects to a destination that drops SYNs: they hold
#             handshake slots until the connect timeout (3 s)
# The parked heap is bounded at 8 MiB (--max-parked-memory), below what the
# never-reading clients would park.
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
addr cli cli-conc 198.51.100.4/24
ip netns exec "$(ns conc)" sysctl -q -p ../../deploy/sysctl/90-mptcp-concentrator.conf
ip -n "$(ns conc)" mptcp limits set $(sed -n 's/^ExecStartPre=+-\/usr\/bin\/ip mptcp limits set //p' ../../systemd/mptcp-concentrator.service.in)
ip netns exec "$(ns cli)" sysctl -qw net.ipv4.tcp_fastopen=1
# Small send buffers at the concentrator: clients that never read stall its
# sends after 64 KiB (and get them parked), as on a busy box.
ip netns exec "$(ns conc)" sysctl -qw net.ipv4.tcp_wmem="4096 16384 65536"
ip netns exec "$(ns srv)" "$PY" ./nettool.py serve --bind 203.0.113.2 --base 9000 > /dev/null 2>&1 &
ip netns exec "$(ns srv)" nft -f - <<'NFT'
table inet blackhole {
	chain input { type filter hook input priority 0; tcp dport 9009 drop; }
}
NFT
K=$(od -An -tx1 -N32 /dev/urandom | tr -d ' \n')
K8=$(od -An -tx1 -N32 /dev/urandom | tr -d ' \n')
umask 077; printf '7 %s any\n8 %s any\n' "$K" "$K8" > "$WORKDIR/keys"; umask 022
start_concentrator conc soak --allow-client 198.51.100.2/32 --allow-client 198.51.100.4/32 \
	--keys "$WORKDIR/keys" --metrics-listen 198.51.100.1:9190 --handshake-timeout 3 \
	--connect-timeout 3 --replay-cache 4096 --max-parked-memory 8
PID=$CONC_PID
wait_listen srv 9000 && wait_listen conc 5124 || exit 1
sleep 0.5

C="ip netns exec $(ns cli) $PY ./nettool.py"
CK="$C cookie --conc 198.51.100.1:5124 --dst 203.0.113.2:9000 --src 198.51.100.2 --key 7:$K"
valid_ok=0 valid_failed=0 future_ok=0
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
	$C cookieflood --conc 198.51.100.1:5124 --dst 203.0.113.2:9000 --key 8:$K8 --src 198.51.100.4 \
		--count 300 --info > "$WORKDIR/future.json" 2>&1 &
	pids+=($!)
	$C noread --conc 198.51.100.1:5124 --dst 203.0.113.2:9009 --count 64 --bytes 1 --min-bytes 0 \
		--seconds 4 --src 198.51.100.4 --key 8:$K8 > /dev/null 2>&1 &
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
	# The flood's accepted Connect requests are upstream connects too.
	future_ok=$((future_ok + $("$PY" -c 'import json,sys; print(json.load(open(sys.argv[1]))["codes"].get("ok", 0))' "$WORKDIR/future.json" 2>/dev/null || echo 0)))
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
 "upstream_connects_expected_at_most": $((valid_ok + round * (21 + 64) + future_ok)),
 "future_dated_accepted": $future_ok,
 "parked_refused": $(m mptcp_concentrator_parked_refused_total),
 "handshake_evictions": $(m mptcp_concentrator_handshake_evictions_total),
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
# The verdict. Upstream connects: the valid flows, the never-reading and
# blackholed keyed clients, the first of each replayed pair and the
# future-dated flood's accepted ones, nothing more (forged SYNs none).
up=$(m mptcp_concentrator_upstream_connect_seconds_count)
verdict=pass
[ "$valid_failed" -eq 0 ] || { echo "FAIL: $valid_failed valid flows failed"; verdict=fail; }
[ "${up:-0}" -le $((valid_ok + round * (21 + 64) + future_ok)) ] ||
	{ echo "FAIL: $up upstream connects, more than expected"; verdict=fail; }
# Memory: the working set is there within the first minute (buffers, the
# replay cache, the quota tables; 13-14 MiB), so growth is measured from
# the sample at a quarter of the run (30 s at least) to the end.
warm_t=$(( DURATION / 4 > 30 ? DURATION / 4 : 30 ))
rssw=$(awk -F, -v t="$warm_t" 'NR > 1 && $1 >= t { print $2; exit }' "$OUT/samples.csv")
[ "$rss1" -le $(( ${rssw:-$rss0} + 2048 )) ] ||
	{ echo "FAIL: RSS grew from ${rssw:-$rss0} KiB at ${warm_t} s to $rss1 KiB at the end"; verdict=fail; }
[ "$fd1" -le $((fd0 + 2)) ] || { echo "FAIL: descriptors $fd0 -> $fd1"; verdict=fail; }
echo "verdict: $verdict"
[ $verdict = pass ]
