#!/usr/bin/env bash
# Operations, on the two-path testbed (lib.sh two_path_topology, unshaped):
# both daemons run from JSON config files under a stand-in for systemd's
# notify socket (READY, STATUS, WATCHDOG, RELOADING, STOPPING), serve
# Prometheus metrics that promtool accepts and whose values match the
# traffic this test generated, and reload on SIGHUP: new policy applies to
# new flows while a running flow carries on, a file with errors changes
# nothing, restart-only settings are named; the agent's paths follow its
# file. The sysctl drop-ins in deploy/sysctl load.
cd "$(dirname "$0")"
. ./lib.sh
require_netns
[ -x "${AGENT:-}" ] || skip "AGENT not built"
command -v nft >/dev/null || skip "needs nftables"
command -v curl >/dev/null || skip "needs curl"
PROMTOOL=$(command -v promtool || echo "$PWD/../../.tools/promtool")
[ -x "$PROMTOOL" ] || { log "FAIL: promtool missing (deploy/setup.sh unpacks it into .tools/)"; exit 1; }

two_path_topology 1gbit
ip netns exec "$(ns srv)" "$PY" ./nettool.py serve --bind 203.0.113.2 --base 9000 > /dev/null 2>&1 &

# notify sockets: one listener per daemon, each writing what it received
"$PY" ./notify.py "$WORKDIR/conc.sock" "$WORKDIR/conc.notify" > /dev/null 2>&1 &
OUTSIDE_PIDS+=($!)
"$PY" ./notify.py "$WORKDIR/agent.sock" "$WORKDIR/agent.notify" > /dev/null 2>&1 &
OUTSIDE_PIDS+=($!)
for i in $(seq 1 50); do [ -S "$WORKDIR/conc.sock" ] && [ -S "$WORKDIR/agent.sock" ] && break; sleep 0.05; done

# The file says log_level warning and listen on 5999; the command line says
# info and 5124: the command line wins, and its list replaces the file's.
write_conc_config() {  # write_conc_config EXTRA-POLICY-JSON
	cat > "$WORKDIR/conc.json" <<EOF
{
  // written by tests/netns/ops.sh
  "listen": ["[::]:5999"],
  "log_level": "warning",
  "metrics_listen": "127.0.0.1:9124",
  "workers": 2,
  "policy": { "allow_clients": ["198.51.100.0/24"]$1 }
}
EOF
}
write_conc_config ""
ip netns exec "$(ns conc)" env NOTIFY_SOCKET="$WORKDIR/conc.sock" WATCHDOG_USEC=1000000 \
	"$CONCENTRATOR" --config "$WORKDIR/conc.json" --listen '[::]:5124' --log-level info \
	> "$WORKDIR/conc.log" 2>&1 &
CONC_PID=$!

# join_after 0: each of the 3 short flows below gets its join (counted in
# both daemons' metrics) however fast it ends; paths.sh checks the wait.
write_agent_config() {  # write_agent_config PATHS-JSON
	cat > "$WORKDIR/agent.json" <<EOF
{
  "concentrators": ["192.0.2.1:5124"],
  "lan": ["gw-lan"],
  "paths": $1,
  "join_after": 0,
  "workers": 1,
  "control": "$WORKDIR/control.sock",
  "metrics_listen": "9125"
}
EOF
}
write_agent_config '[{"interface": "gw-p1", "mode": "master"}, "gw-p2"]'
ip netns exec "$(ns gw)" env NOTIFY_SOCKET="$WORKDIR/agent.sock" WATCHDOG_USEC=1000000 \
	"$AGENT" --config "$WORKDIR/agent.json" > "$WORKDIR/agent.log" 2>&1 &
AGENT_PID=$!
wait_listen srv 9000 && wait_listen conc 5124 || exit 1
for i in $(seq 1 100); do grep -q "READY=1" "$WORKDIR/agent.notify" 2>/dev/null && break; sleep 0.05; done
scrape() { ip netns exec "$(ns "$1")" curl -sf "http://127.0.0.1:$2/metrics"; }
# Started: two watchdog rounds from each daemon and a probe answered on
# path 1 (what the checks below read).
settled() {
	[ "$(grep -c " WATCHDOG=1$" "$WORKDIR/conc.notify")" -ge 2 ] &&
	[ "$(grep -c " WATCHDOG=1$" "$WORKDIR/agent.notify")" -ge 2 ] &&
	scrape gw 9125 | grep -q '^gw_agent_path_probe_rtt_seconds{path="gw-p1",family="ipv4"}'
}
wait_for 10 settled || log "the daemons did not settle in 10 s (the checks below say what is missing)"
# metric FILE NAME{LABELS}: the sample's value (empty when absent)
metric() { awk -v k="$2" '$1 == k { print $2 }' "$1"; }

cmdline_wins() {
	local l; l=$(ip netns exec "$(ns conc)" ss -Htln)
	echo "$l"
	echo "$l" | grep -q ":5124 " && ! echo "$l" | grep -q ":5999 " &&
	grep -q "info: listening on \[::\]:5124" "$WORKDIR/conc.log"
}
check "the command line wins over the file (listen list replaced, log level info)" cmdline_wins

notify_start() {
	local f
	for f in conc agent; do
		echo "$f:"; head -3 "$WORKDIR/$f.notify"
		grep -q " READY=1$" "$WORKDIR/$f.notify" &&
		grep -q " STATUS=.*flows active" "$WORKDIR/$f.notify" &&
		[ "$(grep -c " WATCHDOG=1$" "$WORKDIR/$f.notify")" -ge 2 ] || return 1
	done
}
check "notify protocol: READY=1, a STATUS line, WATCHDOG=1 at half the 1 s interval (both daemons)" notify_start

# Traffic the metrics must account for: 3 LAN flows of 4 MiB each way.
FLOW_BYTES=$((4 << 20))
traffic() {
	ip netns exec "$(ns lan)" "$PY" ./nettool.py echo --plain --dst 203.0.113.2:9000 \
		--bytes $FLOW_BYTES --flows 3
}
check "3 LAN flows of 4 MiB each way through agent and concentrator" traffic
# Bytes are counted when a flow closes, which both daemons see a moment
# after the client does: wait for the count, then read it exactly.
accounted() {
	local want=$((3 * FLOW_BYTES))
	scrape conc 9124 | grep -q "^mptcp_concentrator_bytes_total{direction=\"down\"} $want\$" &&
	scrape gw 9125 | grep -q "^gw_agent_bytes_total{direction=\"down\"} $want\$"
}
wait_for 10 accounted || log "the traffic was not accounted within 10 s (the checks below say how)"

metrics_valid() {
	scrape conc 9124 > "$WORKDIR/conc.prom" && scrape gw 9125 > "$WORKDIR/agent.prom" || return 1
	echo "concentrator: $(wc -l < "$WORKDIR/conc.prom") lines, agent: $(wc -l < "$WORKDIR/agent.prom") lines"
	"$PROMTOOL" check metrics < "$WORKDIR/conc.prom" && "$PROMTOOL" check metrics < "$WORKDIR/agent.prom"
}
check "both /metrics pass promtool check metrics" metrics_valid

# A scraper that connects and sends nothing holds the metrics thread (up to
# its 2 s timeout). A flow started meanwhile must not wait for it, and the
# next scrape is answered once the stalled one is dropped. Ordering, not
# timing: the flow must be done while that scrape is still waiting.
stalled_scraper() {
	local hold curl_pid still
	ip netns exec "$(ns conc)" "$PY" -c 'import socket, time
s = socket.create_connection(("127.0.0.1", 9124)); time.sleep(5)' &
	hold=$!
	sleep 0.2
	ip netns exec "$(ns conc)" curl -sf -m 10 -o "$WORKDIR/late.prom" http://127.0.0.1:9124/metrics &
	curl_pid=$!
	sleep 0.1
	ip netns exec "$(ns lan)" "$PY" ./nettool.py echo --plain --dst 203.0.113.2:9000 --bytes $((1 << 20)) || return 1
	kill -0 $curl_pid 2>/dev/null && still=1 || still=0
	echo "{\"scrape_still_waiting_when_flow_done\": $still}"
	wait $curl_pid || return 1
	kill $hold 2>/dev/null
	[ $still = 1 ] && grep -q "^mptcp_concentrator_flows_active " "$WORKDIR/late.prom"
}
check "a stalled scraper holds only the metrics thread: a flow completes meanwhile" stalled_scraper

conc_values() {
	local f=$WORKDIR/conc.prom up down mptcp done_ conn sub_n sub_le1
	up=$(metric "$f" 'mptcp_concentrator_bytes_total{direction="up"}')
	down=$(metric "$f" 'mptcp_concentrator_bytes_total{direction="down"}')
	mptcp=$(metric "$f" 'mptcp_concentrator_connections_accepted_total{kind="mptcp"}')
	done_=$(metric "$f" 'mptcp_concentrator_flows_closed_total{outcome="done"}')
	conn=$(metric "$f" 'mptcp_concentrator_upstream_connect_seconds_count')
	sub_n=$(metric "$f" 'mptcp_concentrator_subflows_per_flow_count')
	sub_le1=$(metric "$f" 'mptcp_concentrator_subflows_per_flow_bucket{le="1"}')
	echo "{\"bytes_up\": $up, \"bytes_down\": $down, \"mptcp\": $mptcp, \"done\": $done_, \"connects\": $conn, \"flows_in_subflow_histogram\": $sub_n, \"with_at_most_1_subflow\": $sub_le1}"
	# the 3 flows' bytes exactly (probes carry no relayed bytes)
	[ "$up" -eq $((3 * FLOW_BYTES)) ] && [ "$down" -eq $((3 * FLOW_BYTES)) ] &&
	[ "$mptcp" -ge 3 ] && [ "$done_" -ge 3 ] && [ "$conn" -eq 3 ] &&
	[ "$sub_n" -eq 3 ] && [ "$sub_le1" -lt 3 ]  # two paths: subflows joined
}
check "concentrator metrics match the traffic (bytes exact, 3 connects, subflows per flow)" conc_values

agent_values() {
	local f=$WORKDIR/agent.prom via up down p1 p2 ep rtt cup joins
	via=$(metric "$f" 'gw_agent_flows_total{via="concentrator"}')
	up=$(metric "$f" 'gw_agent_bytes_total{direction="up"}')
	down=$(metric "$f" 'gw_agent_bytes_total{direction="down"}')
	p1=$(metric "$f" 'gw_agent_path_up{path="gw-p1",family="ipv4",mode="master"}')
	p2=$(metric "$f" 'gw_agent_path_up{path="gw-p2",family="ipv4",mode="on"}')
	ep=$(metric "$f" 'gw_agent_path_endpoint{path="gw-p2",family="ipv4"}')
	rtt=$(metric "$f" 'gw_agent_path_probe_rtt_seconds{path="gw-p1",family="ipv4"}')
	cup=$(metric "$f" 'gw_agent_concentrator_up{concentrator="192.0.2.1:5124"}')
	joins=$(metric "$f" 'gw_agent_path_manager_joins_total{outcome="opened"}')
	echo "{\"via_concentrator\": $via, \"bytes_up\": $up, \"bytes_down\": $down, \"p1_up\": $p1, \"p2_up\": $p2, \"p2_endpoint\": $ep, \"p1_probe_rtt_s\": ${rtt:-null}, \"concentrator_up\": $cup, \"joins_opened\": ${joins:-null}}"
	[ "$via" -eq 3 ] && [ "$up" -eq $((3 * FLOW_BYTES)) ] && [ "$down" -eq $((3 * FLOW_BYTES)) ] &&
	[ "$p1" = 1 ] && [ "$p2" = 1 ] && [ "$ep" = 1 ] && [ -n "$rtt" ] && [ "$cup" = 1 ] &&
	[ "${joins:-0}" -ge 3 ]
}
check "agent metrics match (3 flows via the concentrator, bytes exact, paths up, probe RTT)" agent_values

# Reload under load: a flow paced over 6 s runs while the policy changes.
ip netns exec "$(ns lan)" "$PY" ./nettool.py echo --plain --dst 203.0.113.2:9000 \
	--bytes $((8 << 20)) --pace 6 > "$WORKDIR/long.out" 2>&1 &
LONG=$!
# The flow is running (its upstream connection open) before the reload.
upstream_open() { [ "$(ip netns exec "$(ns conc)" ss -Htn state established '( dport = :9000 )' | wc -l)" -ge 1 ]; }
wait_for 10 upstream_open || log "the long flow never reached the server"
write_conc_config ', "deny_destinations": ["203.0.113.0/24"], "max_flows_per_client": 100'
reload "$CONC_PID" "$WORKDIR/conc.log"
reload_applies() {
	local out rc=0
	grep "reloaded" "$WORKDIR/conc.log" | tail -1
	out=$(ip netns exec "$(ns lan)" timeout 10 "$PY" ./nettool.py echo --plain \
		--dst 203.0.113.2:9000 --bytes 1000 2>&1) || rc=$?
	echo "$out" | head -1
	scrape conc 9124 > "$WORKDIR/conc2.prom"
	scrape gw 9125 > "$WORKDIR/agent2.prom"
	echo "refusals code 32: $(metric "$WORKDIR/conc2.prom" 'mptcp_concentrator_refusals_total{code="32",reason="not_authorized"}'), agent saw error 32: $(metric "$WORKDIR/agent2.prom" 'gw_agent_concentrator_errors_total{code="32",reason="not_authorized"}')"
	grep -q "reloaded $WORKDIR/conc.json" "$WORKDIR/conc.log" &&
	[ "$(metric "$WORKDIR/conc2.prom" 'mptcp_concentrator_refusals_total{code="32",reason="not_authorized"}')" -ge 1 ] &&
	[ "$(metric "$WORKDIR/agent2.prom" 'gw_agent_concentrator_errors_total{code="32",reason="not_authorized"}')" -ge 1 ] &&
	[ "$rc" -ne 0 ]  # the LAN client was reset
}
check "SIGHUP: a new destination deny applies to new flows (Error 32, counted by both daemons)" reload_applies

printf '{"policy": {"allow_clients": ["198.51.100.0/33"]}, "workers": 2}\n' > "$WORKDIR/conc.json"
reload "$CONC_PID" "$WORKDIR/conc.log"
bad_reload() {
	grep -E "conc.json: policy.allow_clients\[0\]|reload: .* has errors" "$WORKDIR/conc.log" | cut -c14-
	grep -q "$WORKDIR/conc.json: policy.allow_clients\[0\]: \"198.51.100.0/33\" is not a prefix" "$WORKDIR/conc.log" &&
	grep -q "reload: $WORKDIR/conc.json has errors (above); still running with the previous configuration" "$WORKDIR/conc.log" &&
	# still the previous policy: the deny is still there
	! ip netns exec "$(ns lan)" timeout 10 "$PY" ./nettool.py echo --plain --dst 203.0.113.2:9000 --bytes 1000 >/dev/null 2>&1
}
check "SIGHUP with errors in the file: each error named, the running configuration kept" bad_reload

write_conc_config ""
sed -i 's/"workers": 2/"workers": 1/' "$WORKDIR/conc.json"
reload "$CONC_PID" "$WORKDIR/conc.log"
good_again() {
	grep "restart" "$WORKDIR/conc.log" | cut -c14-
	grep -q "reload: workers changed but takes effect only after a restart" "$WORKDIR/conc.log" &&
	ip netns exec "$(ns lan)" "$PY" ./nettool.py echo --plain --dst 203.0.113.2:9000 --bytes $((1 << 20))
}
check "SIGHUP back to the open policy: flows work again; a changed worker count is named as needing a restart" good_again
long_flow() {
	wait $LONG; local rc=$?
	cat "$WORKDIR/long.out"
	[ $rc -eq 0 ]
}
check "the flow that ran across three reloads completed (8 MiB each way, hashes equal)" long_flow
notify_reload() {
	grep -E "RELOADING=1|READY=1|MONOTONIC" "$WORKDIR/conc.notify" | tail -4
	[ "$(grep -c " RELOADING=1$" "$WORKDIR/conc.notify")" -eq 3 ] &&
	[ "$(grep -c " READY=1$" "$WORKDIR/conc.notify")" -eq 4 ] &&
	grep -q " MONOTONIC_USEC=[0-9]" "$WORKDIR/conc.notify" &&
	[ "$(metric <(scrape conc 9124) 'mptcp_concentrator_config_reloads_total{result="ok"}')" -eq 2 ] &&
	[ "$(metric <(scrape conc 9124) 'mptcp_concentrator_config_reloads_total{result="failed"}')" -eq 1 ]
}
check "each reload: RELOADING=1 then READY=1; reloads counted by result (2 ok, 1 failed)" notify_reload

# The agent follows its file: path 2 to backup, then removed.
write_agent_config '[{"interface": "gw-p1", "mode": "master"}, {"interface": "gw-p2", "mode": "backup"}]'
reload "$AGENT_PID" "$WORKDIR/agent.log"
# The status' last column: the path's local id while the agent (the path
# manager) opens joins from it, "backup" when they stay backup.
agent_paths() { ip netns exec "$(ns gw)" "$AGENT" status --control "$WORKDIR/control.sock" | grep "^gw-p"; }
agent_backup() {
	local s; s=$(agent_paths); echo "$s"
	echo "$s" | grep -qE "^gw-p2 .* 2 backup$" && echo "$s" | grep -qE "^gw-p1 .* 1$" &&
	grep -q "reload: path gw-p2: mode on -> backup" "$WORKDIR/agent.log"
}
check "agent SIGHUP: path 2 switched to backup (its joins' flag follows)" eventually 5 agent_backup
write_agent_config '[{"interface": "gw-p1", "mode": "master"}]'
reload "$AGENT_PID" "$WORKDIR/agent.log"
agent_removed() {
	local s; s=$(agent_paths); echo "$s"
	! ip -n "$(ns gw)" rule show | grep -q "198.51.100.66" &&
	echo "$s" | grep -qE "^gw-p2 +off +off" &&
	ip netns exec "$(ns lan)" "$PY" ./nettool.py echo --plain --dst 203.0.113.2:9000 --bytes $((1 << 20))
}
check "agent SIGHUP: path 2 removed from the file is turned off (joins and rule gone); flows go on" agent_removed
printf '{"concentrators": ["192.0.2.1:5124"], "lan": ["gw-lan"], "port": 6000, "paths": [{"interface": "gw-p1", "colour": "red"}]}\n' > "$WORKDIR/agent.json"
reload "$AGENT_PID" "$WORKDIR/agent.log"
agent_bad_reload() {
	grep -E "agent.json: |reload:" "$WORKDIR/agent.log" | tail -3 | cut -c14-
	grep -q "$WORKDIR/agent.json: paths\[0\].colour: unknown key" "$WORKDIR/agent.log" &&
	grep -q "reload: $WORKDIR/agent.json has errors (above); still running" "$WORKDIR/agent.log" &&
	agent_paths | grep -qE "^gw-p1 .* 1$"
}
check "agent SIGHUP with a bad file: named, nothing changed" agent_bad_reload

# Its concentrators and bypass list follow the file too: a reload puts a
# concentrator that refuses (nothing listens on 5999) first, and bypasses
# 192.0.2.1, where a whoami server runs. Before the reload that address is
# intercepted, and the concentrator refuses its own address; after it the
# LAN client reaches the server around the agent (the server sees the
# client's own address), and flows go through the second concentrator.
ip netns exec "$(ns conc)" "$PY" ./nettool.py serve --bind 192.0.2.1 --base 9100 > /dev/null 2>&1 &
ip -n "$(ns conc)" route add 192.168.77.0/24 via 198.51.100.2
wait_listen conc 9103 || exit 1
W="ip netns exec $(ns lan) $PY ./nettool.py whoami --dst 192.0.2.1:9103"
agent_reload_lists() {
	local out failed
	$W > /dev/null 2>&1 && { echo "192.0.2.1 reached before the bypass: not intercepted?"; return 1; }
	cat > "$WORKDIR/agent.json" <<EOF
{
  "concentrators": ["192.0.2.1:5999", "192.0.2.1:5124"],
  "lan": ["gw-lan"],
  "bypass": ["192.0.2.1/32"],
  "paths": [{"interface": "gw-p1", "mode": "master"}],
  "workers": 1,
  "control": "$WORKDIR/control.sock",
  "metrics_listen": "9125"
}
EOF
	reload "$AGENT_PID" "$WORKDIR/agent.log" || return 1
	out=$($W) || { echo "the bypassed address is not reached"; return 1; }
	echo "$out"
	echo "$out" | grep -q '"server_saw": "192.168.77.2"' || return 1
	ip netns exec "$(ns lan)" "$PY" ./nettool.py echo --plain --dst 203.0.113.2:9000 --bytes 100000 ||
		return 1
	failed=$(metric_at gw 127.0.0.1:9125 \
		'gw_agent_concentrator_connects_total{concentrator="192.0.2.1:5999",result="failed"}') || return 1
	echo "{\"connects_to_the_refusing_first\": $failed}"
	[ "$failed" -ge 1 ]
}
check "agent SIGHUP: a new concentrator list and bypass list apply to new flows" agent_reload_lists

sysctl_files() {
	local f
	for f in ../../deploy/sysctl/*.conf; do
		ip netns exec "$(ns srv)" sysctl -q -p "$f" || { echo "$f does not load"; return 1; }
	done
	ip netns exec "$(ns srv)" sysctl net.ipv4.tcp_fastopen net.mptcp.enabled
}
check "deploy/sysctl drop-ins load (in a test namespace)" sysctl_files

# Socket activation: a listener passed as systemd passes it (fd 3,
# LISTEN_FDS/LISTEN_PID; activate.py stands in for systemd) is used instead
# of --listen, and survives a restart: the daemon cancels its accepts but
# leaves the socket listening for the next start.
activated() {
	local pid i
	rm -f "$WORKDIR/act.pid"
	ip netns exec "$(ns conc)" timeout 60 "$PY" ./activate.py --listen 192.0.2.1:5200 --proto mptcp --runs 2 \
		--pidfile "$WORKDIR/act.pid" -- "$CONCENTRATOR" --allow-client 198.51.100.0/24 \
		--workers 2 --listen '[::]:5998' > "$WORKDIR/act.log" 2>&1 &
	local act=$!
	for run in 1 2; do
		for i in $(seq 1 100); do
			[ -s "$WORKDIR/act.pid" ] && [ "$(cat "$WORKDIR/act.pid")" != "${pid:-}" ] &&
				grep -c "socket activation: 1 listener" "$WORKDIR/act.log" | grep -qx "$run" && break
			sleep 0.05
		done
		pid=$(cat "$WORKDIR/act.pid")
		ip netns exec "$(ns gw)" "$PY" ./nettool.py echo --conc 192.0.2.1:5200 \
			--dst 203.0.113.2:9000 --bytes $((1 << 20)) || { cat "$WORKDIR/act.log"; return 1; }
		ip netns exec "$(ns conc)" ss -Htln | grep -q ":5998 " && { echo "--listen was not ignored"; return 1; }
		kill -TERM "$pid"
		for i in $(seq 1 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.05; done
		if [ $run = 1 ]; then
			ip netns exec "$(ns conc)" ss -Htln | grep -q "192.0.2.1:5200 " ||
				{ echo "the socket stopped listening when the daemon stopped"; return 1; }
		fi
	done
	wait $act || { cat "$WORKDIR/act.log"; return 1; }
	grep -E "socket activation|accepted" "$WORKDIR/act.log" | cut -c14-
	[ "$(grep -c "accepted 1 (mptcp 1, tcp fallback 0)" "$WORKDIR/act.log")" -eq 2 ]
}
check "socket activation: an MPTCP listener from the service manager, kept listening across a restart" activated
activated_tcp() {
	ip netns exec "$(ns conc)" timeout 30 "$PY" ./activate.py --listen 192.0.2.1:5201 --proto tcp --runs 1 \
		--pidfile "$WORKDIR/act2.pid" -- "$CONCENTRATOR" --allow-client 198.51.100.0/24 \
		--workers 1 > "$WORKDIR/act2.log" 2>&1 &
	local act=$! i
	for i in $(seq 1 100); do grep -q "socket activation: 1 listener" "$WORKDIR/act2.log" && break; sleep 0.05; done
	for i in $(seq 1 100); do [ -s "$WORKDIR/act2.pid" ] && break; sleep 0.05; done
	# Served: a flow through it (an MPTCP client falls back to TCP there).
	ip netns exec "$(ns gw)" "$PY" ./nettool.py echo --conc 192.0.2.1:5201 \
		--dst 203.0.113.2:9000 --bytes $((1 << 20)) || { cat "$WORKDIR/act2.log"; return 1; }
	kill -TERM "$(cat "$WORKDIR/act2.pid")"
	wait $act || { echo "the daemon exited badly"; cat "$WORKDIR/act2.log"; return 1; }
	grep "plain TCP socket" "$WORKDIR/act2.log" | cut -c14-
	grep -q "socket activation: 192.0.2.1:5201 is a plain TCP socket: gateways will fall back to TCP" "$WORKDIR/act2.log" &&
		grep -q "accepted 1 (mptcp 0, tcp fallback 1)" "$WORKDIR/act2.log"
}
check "socket activation with a plain TCP socket (systemd before 257) serves a flow, with a warning" activated_tcp

stop_both() {
	stop_concentrator "$CONC_PID" conc || return 1
	kill -TERM "$AGENT_PID"; wait "$AGENT_PID" || { tail -20 "$WORKDIR/agent.log"; return 1; }
	grep -q " STOPPING=1$" "$WORKDIR/conc.notify" && grep -q " STOPPING=1$" "$WORKDIR/agent.notify"
}
check "both stop cleanly on SIGTERM and say STOPPING=1" stop_both
finish
