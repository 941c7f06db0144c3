#!/usr/bin/env bash
# damage.sh - the product's byte damage rate at scale: verified echo flows
# through gw-agent and mptcp-concentrator on the two-path testbed, under the
# patterns that met the kernel's MPTCP data damage (docs/kernel-defects.md):
#
#   busy     the agent stopped (SIGSTOP) while 40 LAN clients connect and
#            send, then let go: every first byte waits at accept (paths.sh)
#   reload   40 flows running while the gateway key rotates (keys.sh's
#            rotation under load): the concentrator learns a new key, the
#            agent switches to it, the concentrator drops the old one
#
#   sudo benches/damage.sh                         # both patterns, 250 rounds each (10,000 flows each)
#   sudo BUILD=build-asan ROUNDS=100 benches/damage.sh busy
#
# Every flow is 100,000 random bytes each way, sha256-checked by the client
# (nettool echo). A flow is damaged when wrong bytes reached the client (its
# echo differs), caught when the verified stream found wrong bytes and
# reset it (the daemons' *_stream_integrity_failures_total), failed when it
# did not complete otherwise. Knobs: BUILD (build), ROUNDS (250), FLOWS
# (40), RATE (50mbit), AGENT_ARGS (e.g. --no-verify-stream: the plain
# stream). Prints one line per pattern, writes $OUT/damage.jsonl (OUT:
# $BUILD/damage); exit 1 when any flow was damaged, caught or failed.
set -u
cd "$(dirname "$0")/.."
BUILD=${BUILD:-build}
ROUNDS=${ROUNDS:-250}
FLOWS=${FLOWS:-40}
RATE=${RATE:-50mbit}
PATTERNS=${*:-busy reload}
CONCENTRATOR=$PWD/$BUILD/concentrator/mptcp-concentrator
AGENT=$PWD/$BUILD/gw-agent/gw-agent
OUT=${OUT:-$PWD/$BUILD/damage}
mkdir -p "$OUT"
TEST_NAME=damage
FINISH_NOT_NEEDED=1
cd tests/netns
. ./lib.sh
require_netns
[ -x "$AGENT" ] || { log "no $AGENT: build first"; exit 1; }
export ASAN_OPTIONS=detect_leaks=1:abort_on_error=1

two_path_topology "$RATE" || exit 1
ip netns exec "$(ns srv)" "$PY" ./nettool.py serve --bind 203.0.113.2 --base 9000 > /dev/null 2>&1 &
hex() { od -An -tx1 -N32 /dev/urandom | tr -d ' \n'; }
umask 077
KID=100; KEY=$(hex)
echo "$KID $KEY any" > "$WORKDIR/conc.keys"
echo "$KID $KEY" > "$WORKDIR/gw.keys"
umask 022
start_concentrator conc conc --listen 192.0.2.1:5124 --allow-any-client --keys "$WORKDIR/conc.keys" \
	--workers 1 --metrics-listen 198.51.100.1:9190
CONC=$CONC_PID
wait_listen srv 9000 && wait_listen conc 5124 || exit 1
ip netns exec "$(ns gw)" "$AGENT" --concentrator 192.0.2.1:5124 --lan gw-lan --workers 1 \
	--path gw-p1 --path gw-p2 --probe-interval 0.5 --control "$WORKDIR/control.sock" --key-file "$WORKDIR/gw.keys" \
	--metrics-listen 127.0.0.1:9125 ${AGENT_ARGS:-} > "$WORKDIR/agent.log" 2>&1 &
AGENT_PID=$!
wait_for 10 grep -q "intercepting TCP" "$WORKDIR/agent.log" || { cat "$WORKDIR/agent.log"; exit 1; }
agent_paths_up "$WORKDIR/control.sock" > /dev/null || { log "paths not up"; exit 1; }

L="ip netns exec $(ns lan) $PY ./nettool.py"
# TAP=1: a tcpdump on the gateway (all interfaces, SYNs to the concentrator
# only) while the flows run, as paths.sh's busy-agent check has: the
# packet tap clones every transmitted skb.
if [ "${TAP:-0}" = 1 ]; then
	capture_start gw any "$WORKDIR/tap.pcap" 'tcp dst port 5124 and tcp[tcpflags] & (tcp-syn|tcp-ack) == tcp-syn' || exit 1
fi
caught() {  # integrity failures counted by both daemons so far
	local n=0 k v
	for k in damaged broken; do
		v=$(metric_at gw 127.0.0.1:9125 "gw_agent_stream_integrity_failures_total{kind=\"$k\"}") || return 1
		n=$((n + v))
		v=$(metric_at gw 198.51.100.1:9190 "mptcp_concentrator_stream_integrity_failures_total{kind=\"$k\"}") || return 1
		n=$((n + v))
	done
	echo $n
}
rc=0
for pat in $PATTERNS; do
	: > "$OUT/$pat.jsonl"
	t0=$(date +%s)
	c0=$(caught) || { log "metrics unreachable"; exit 1; }
	for r in $(seq 1 "$ROUNDS"); do
		case $pat in
		busy)
			kill -STOP "$AGENT_PID"
			$L echo --plain --dst 203.0.113.2:9000 --bytes 100000 --flows "$FLOWS" >> "$OUT/$pat.jsonl" &
			sleep 0.3  # the clients connect and send while the agent is stopped
			kill -CONT "$AGENT_PID"
			wait $! ;;
		reload)
			$L echo --plain --dst 203.0.113.2:9000 --bytes 100000 --flows "$FLOWS" --pace 0.5 >> "$OUT/$pat.jsonl" &
			NKEY=$(hex)
			umask 077
			printf '%s %s any\n%s %s any\n' "$KID" "$KEY" $((KID + 1)) "$NKEY" > "$WORKDIR/conc.keys"
			reload "$CONC" "$WORKDIR/conc.log" > /dev/null
			KID=$((KID + 1)); KEY=$NKEY
			echo "$KID $KEY" > "$WORKDIR/gw.keys"
			reload "$AGENT_PID" "$WORKDIR/agent.log" > /dev/null
			echo "$KID $KEY any" > "$WORKDIR/conc.keys"
			reload "$CONC" "$WORKDIR/conc.log" > /dev/null
			umask 022
			wait $! ;;
		*) log "unknown pattern $pat (busy, reload)"; exit 1 ;;
		esac
	done
	c1=$(caught) || { log "metrics unreachable"; exit 1; }
	"$PY" - "$OUT/$pat.jsonl" "$pat" "$BUILD" "$(( $(date +%s) - t0 ))" "$((c1 - c0))" "${AGENT_ARGS:-}" <<'PY' | tee -a "$OUT/damage.jsonl"
import json, re, sys
rounds = [json.loads(l) for l in open(sys.argv[1]) if l.startswith("{")]
fails = [f for r in rounds for f in r["failures"]]
damaged = [f for f in fails if "hash DIFFERENT" in f or "NOT a prefix" in f]
caught = int(sys.argv[5])
print(json.dumps({"pattern": sys.argv[2], "build": sys.argv[3], "agent_args": sys.argv[6],
                  "seconds": int(sys.argv[4]), "flows": sum(r["flows"] for r in rounds),
                  "intact": sum(r["ok"] for r in rounds), "damaged": len(damaged),
                  "caught": caught, "failed": len(fails) - len(damaged) - caught,
                  "examples": fails[:3]}))
PY
	tail -1 "$OUT/damage.jsonl" | grep -q '"damaged": 0, "caught": 0, "failed": 0' || rc=1
done
for k in ok unknown_key stale replayed bad_mac; do
	echo "concentrator cookies $k $(metric_at gw 198.51.100.1:9190 "mptcp_concentrator_cookies_total{result=\"$k\"}")"
done
ip netns exec "$(ns conc)" nstat -az | grep -E "MPTcpExt(DSSNotMatching|DataCsumErr|MPFailTx|MPRstTx|MPJoinSynRx|MPJoinAckRx) " | awk '{print "concentrator", $1, $2}'
kill -TERM "$AGENT_PID"; wait "$AGENT_PID" || { log "agent exit $?"; rc=1; }
stop_concentrator "$CONC" conc || rc=1
exit $rc
