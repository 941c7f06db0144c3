#!/usr/bin/env bash
# Not part of the suite: a reproducer for the kernel defect in ROADMAP
# ("Kernel bug to report upstream"): the concentrator's kernel delivers a
# joined subflow's bytes under the first subflow's data mapping. paths.sh's
# busy-agent rounds, many times, restarting the agent every RESTART rounds
# (the defect showed early after a start), with a full-payload capture of
# each round on the gateway; stops at the first damaged flow and leaves
#   /tmp/kernel-mapping/round.pcap        the round's upstream packets
#   /tmp/kernel-mapping/dump/ID.sent|.echo what the client sent and got back
#   /tmp/kernel-mapping/dump/*            what the echo server received
#
#   sudo CONCENTRATOR=... AGENT=... ROUNDS=300 RESTART=3 tests/netns/kernel-mapping-repro.sh
#
# Found once in about 8,000 flows here (about 200 rounds of 40).
cd "$(dirname "$0")"
. ./lib.sh
require_netns
[ -x "${AGENT:-}" ] || skip "AGENT not built"
OUT=/tmp/kernel-mapping
export NETTOOL_DUMP=$OUT/dump
rm -rf "$OUT"; mkdir -p "$NETTOOL_DUMP"
two_path_topology "${RATE:-50mbit}"
ip netns exec "$(ns srv)" "$PY" ./nettool.py serve --bind 203.0.113.2 --base 9000 > /dev/null 2>&1 &
start_concentrator conc conc --allow-client 198.51.100.0/24 --workers 1
wait_listen conc 5124 || exit 1
agent() {
	ip netns exec "$(ns gw)" "$AGENT" --concentrator 192.0.2.1:5124 --lan gw-lan --workers 1 \
		--control "$WORKDIR/control.sock" \
		--path gw-p1,mode=master --path gw-p2 > "$WORKDIR/agent.log" 2>&1 &
	A1=$!
	sleep 0.6
}
agent
bad=0
for round in $(seq 1 "${ROUNDS:-300}"); do
	if [ $((round % ${RESTART:-3})) = 0 ]; then kill $A1; wait $A1; agent; fi
	ip netns exec "$(ns gw)" tcpdump -i any --immediate-mode -Z root -U -s 0 -B 65536 \
		-w "$OUT/round.pcap" 'tcp dst port 5124' > "$OUT/cap.log" 2>&1 &
	CP=$!
	sleep 0.5
	kill -STOP "$A1"
	ip netns exec "$(ns lan)" "$PY" ./nettool.py echo --plain --dst 203.0.113.2:9000 \
		--bytes 100000 --flows 40 > "$WORKDIR/busy.out" &
	sleep 0.3
	kill -CONT "$A1"
	wait $! || { bad=1; cat "$WORKDIR/busy.out"; }
	sleep 0.3; kill -INT $CP; wait $CP
	[ $bad = 1 ] && { log "damaged flow in round $round: $OUT"; cat "$OUT/cap.log"; break; }
	rm -f "$NETTOOL_DUMP"/*
done
[ $bad = 0 ] && log "no damaged flow in ${ROUNDS:-300} rounds"
kill $A1; wait $A1
finish
