#!/usr/bin/env bash
# repro.sh - the kernel's MPTCP hands a receiver a run of wrong bytes, with
# none of this project's code involved. One command, root, ~2 min a variant:
#
#   sudo tests/kernel/repro.sh                      # plain:0 plain:1 reply:0 syn:0, 100 rounds
#   sudo VARIANTS="plain:0" ROUNDS=250 tests/kernel/repro.sh
#   sudo CAPTURE=1 VARIANTS=plain:0 tests/kernel/repro.sh   # keep both ends' pcaps of damaged rounds
#
# Testbed (tests/netns/lib.sh's two-path one, no daemons): gw = the MPTCP
# client, two veth paths shaped by tbf (RATE each way), a `subflow` endpoint
# and a source rule per path (what gw-agent installs); conc = the MPTCP
# server on 192.0.2.1:7000 (its loopback, reached over either path).
# tests/kernel/mptcp-damage.py is client and server: ROUNDS rounds of FLOWS
# concurrent flows of BYTES each, every byte verified at the server (what
# the kernel delivered to recv()) and again in the client's echo.
#
# Variants MODE:CSUM. MODE: plain (payload right after connect()), reply
# (payload after the server's first byte, as gw-agent does after the
# Convert reply), syn (header + 1,000 bytes in a TFO SYN). CSUM:
# net.mptcp.checksum_enabled on both ends (DSS checksums).
# Knobs: ROUNDS (100) FLOWS (40) BYTES (100000) RATE (50mbit) FULLMESH (0;
# 1 = subflow+fullmesh endpoints) CAPTURE (0) OUT (/tmp/kernel-repro-DATE)
# HOG (0; 1 = the server runs on the last CPU at nice 5 beside a busy loop
# at nice 0 on that CPU, so the scheduler often preempts it in the middle
# of a recv()/send() on an MPTCP socket, i.e. while it owns that socket's
# lock: a passive MP_JOIN that completes then is finalised late)
# HOLD_MS (0; N = after each flow's header the server owns the socket's lock
# for N ms: one recv(MSG_PEEK) into a page userfaultfd keeps missing that
# long, see mptcp-damage.py) SETTLE_MS (0; reply mode: the server waits N
# ms before its answer, so the joins come up while nobody owns the socket).
# Results: $OUT/summary.txt and, per variant, flows (server.jsonl,
# client.jsonl) and the MPTCP MIB counters of both ends before and after.
# Exit 0 when it ran (damage is what it counts, not a failure), 1 if not.
set -u
HERE=$(cd "$(dirname "$0")" && pwd)
cd "$HERE/../netns"
TEST_NAME=kernel-repro
FINISH_NOT_NEEDED=1
NO_DAEMONS=1
. ./lib.sh
require_netns
TOOL=$HERE/mptcp-damage.py
VARIANTS=${VARIANTS:-"plain:0 plain:1 reply:0 syn:0"}
ROUNDS=${ROUNDS:-100}
FLOWS=${FLOWS:-40}
BYTES=${BYTES:-100000}
RATE=${RATE:-50mbit}
FULLMESH=${FULLMESH:-0}
CAPTURE=${CAPTURE:-0}
HOG=${HOG:-0}
HOLD_MS=${HOLD_MS:-0}
SETTLE_MS=${SETTLE_MS:-0}
OUT=${OUT:-/tmp/kernel-repro-$(date +%Y%m%d-%H%M%S)}
mkdir -p "$OUT" || exit 1
[ "$CAPTURE" = 1 ] && ! command -v tcpdump > /dev/null && { log "CAPTURE=1 needs tcpdump"; exit 1; }

two_path_topology "$RATE" || exit 1
ip -n "$(ns gw)" route add default via 198.51.100.1 dev gw-p1 table 101
ip -n "$(ns gw)" route add default via 198.51.100.65 dev gw-p2 table 102
ip -n "$(ns gw)" rule add from 198.51.100.2 table 101 pref 1001
ip -n "$(ns gw)" rule add from 198.51.100.66 table 102 pref 1002
flags=subflow; [ "$FULLMESH" = 1 ] && flags="subflow fullmesh"
ip -n "$(ns gw)" mptcp limits set subflows 4 add_addr_accepted 2
ip -n "$(ns gw)" mptcp endpoint add 198.51.100.2 dev gw-p1 $flags
ip -n "$(ns gw)" mptcp endpoint add 198.51.100.66 dev gw-p2 $flags
ip netns exec "$(ns gw)" sysctl -qw net.ipv4.tcp_fastopen=1

mib() {  # mib NS FILE: the MPTCP and TCP extended counters now
	ip netns exec "$(ns "$1")" cat /proc/net/netstat > "$2"
}

run_variant() {
	local mode=$1 csum=$2 vd r srvpid cap1 cap2 line bad hogpid= pin=() cpu
	vd=$OUT/$mode-csum$csum$([ "$FULLMESH" = 1 ] && echo -fullmesh)$([ "$HOG" = 1 ] && echo -hog)$([ "$HOLD_MS" != 0 ] && echo "-hold$HOLD_MS")$([ "$SETTLE_MS" != 0 ] && echo "-settle$SETTLE_MS")
	mkdir -p "$vd"
	for n in gw conc; do ip netns exec "$(ns "$n")" sysctl -qw net.mptcp.checksum_enabled="$csum"; done
	if [ "$HOG" = 1 ]; then
		cpu=$(($(nproc) - 1))
		pin=(taskset -c "$cpu" nice -n 5)
		# Bounded: killed at the variant's end, and by timeout in any case.
		timeout 3600 taskset -c "$cpu" sh -c 'while :; do :; done' &
		hogpid=$!
	fi
	ip netns exec "$(ns conc)" "${pin[@]}" "$PY" "$TOOL" serve --bind 192.0.2.1:7000 --mode "$mode" \
		--hold-ms "$HOLD_MS" --settle-ms "$SETTLE_MS" --log "$vd/server.jsonl" > "$vd/server.out" 2>&1 &
	srvpid=$!
	wait_for 10 grep -q listening "$vd/server.out" || { log "server did not start"; cat "$vd/server.out"; [ -n "$hogpid" ] && kill "$hogpid"; return 1; }
	mib gw "$vd/mib-client-before.txt"; mib conc "$vd/mib-server-before.txt"
	log "$(basename "$vd"): $ROUNDS rounds x $FLOWS flows x $BYTES bytes, two paths of $RATE"
	for r in $(seq 1 "$ROUNDS"); do
		if [ "$CAPTURE" = 1 ]; then
			capture_start conc any "$vd/cur-server.pcap" 'tcp port 7000' || return 1; cap1=$CAP_PID
			capture_start gw any "$vd/cur-client.pcap" 'tcp port 7000' || return 1; cap2=$CAP_PID
		fi
		line=$(timeout 300 ip netns exec "$(ns gw)" "$PY" "$TOOL" client --dst 192.0.2.1:7000 \
			--src 198.51.100.2 --mode "$mode" --flows "$FLOWS" --bytes "$BYTES" --log "$vd/client.jsonl") ||
			log "round $r: client exit $?"
		bad=$(echo "$line" | "$PY" -c 'import json,sys
try: print(json.load(sys.stdin)["damaged"])
except Exception: print("?")')
		[ "$bad" != 0 ] && log "round $r: $line"
		if [ "$CAPTURE" = 1 ]; then
			CAP_PID=$cap1 capture_stop; CAP_PID=$cap2 capture_stop
			if [ "$bad" != 0 ]; then
				mv "$vd/cur-server.pcap" "$vd/round-$r-server.pcap"
				mv "$vd/cur-client.pcap" "$vd/round-$r-client.pcap"
			else
				rm -f "$vd"/cur-*.pcap
			fi
		fi
	done
	# Every flow's server line is in before the counters are read.
	wait_for 20 test "$(wc -l < "$vd/server.jsonl")" -ge $((ROUNDS * FLOWS))
	mib gw "$vd/mib-client-after.txt"; mib conc "$vd/mib-server-after.txt"
	kill "$srvpid"; wait "$srvpid" 2>/dev/null
	[ -n "$hogpid" ] && { kill "$hogpid"; wait "$hogpid" 2>/dev/null; }
	"$PY" - "$vd" <<'PY' | tee -a "$OUT/summary.txt"
import json, os, sys
vd = sys.argv[1]
def mib(path):
    rows = [l.split() for l in open(path)]
    out = {}
    for a, b in zip(rows[::2], rows[1::2]):
        if a[0] in ("MPTcpExt:", "TcpExt:"):
            out.update({a[0][:-4] + "." + k: int(v) for k, v in zip(a[1:], b[1:])})
    return out
def delta(side):
    a, b = mib(f"{vd}/mib-{side}-before.txt"), mib(f"{vd}/mib-{side}-after.txt")
    return {k.split(".", 1)[1]: b[k] - a.get(k, 0) for k in b
            if (k.startswith("MPTcp") or k.startswith("Tcp.TCPFastOpen")) and b[k] != a.get(k, 0)}
srv = [json.loads(l) for l in open(f"{vd}/server.jsonl")]
cli = [json.loads(l) for l in open(f"{vd}/client.jsonl")]
up = {s["seed"]: s for s in srv if s.get("verdict") == "damaged"}
down = [c for c in cli if c["echo"] == "damaged" and c["seed"] not in up]
failed = [c for c in cli if c["echo"] == "failed"] + [s for s in srv if s.get("verdict") in ("failed", "bad_header")]
sig = [f for f in list(up.values()) + down
       if f["where"].get("one_run") and f["where"].get("displacement", 0) > 0]
joined = sum(1 for s in srv if (s.get("joins") or 0) > 0)
print(f"{os.path.basename(vd)}: flows {len(cli)}, damaged {len(up) + len(down)} "
      f"(to the server {len(up)}, in the echo {len(down)}; one run from later in the stream: {len(sig)}), "
      f"failed {len(failed)}; server connections with a join at the end {joined}/{len(srv)}")
for side in ("server", "client"):
    d = delta(side)
    print(f"  {side} counters: " + ", ".join(f"{k}={v}" for k, v in sorted(d.items())))
for f in (list(up.values()) + down)[:6]:
    print("  damaged: " + json.dumps({k: f.get(k) for k in ("seed", "joins", "where")}))
for f in failed[:3]:
    print("  failed: " + json.dumps(f)[:300])
PY
}

{
	echo "# tests/kernel/repro.sh on $(uname -r), $(date -Is)"
	echo "# ROUNDS=$ROUNDS FLOWS=$FLOWS BYTES=$BYTES RATE=$RATE FULLMESH=$FULLMESH HOG=$HOG HOLD_MS=$HOLD_MS SETTLE_MS=$SETTLE_MS"
} > "$OUT/summary.txt"
log "kernel $(uname -r); results in $OUT"
for v in $VARIANTS; do
	case "$v" in
	plain:[01]|reply:[01]|syn:[01]) run_variant "${v%:*}" "${v#*:}" || exit 1 ;;
	*) log "unknown variant $v (MODE:CSUM, MODE plain, reply or syn)"; exit 1 ;;
	esac
done
log "summary: $OUT/summary.txt"
