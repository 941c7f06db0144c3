#!/usr/bin/env bash
# The systemd units in systemd/, as meson configured them (UNIT_DIR), pass
# `systemd-analyze verify` with no message at all, with ExecStart pointing
# at the binaries just built (verify checks that they exist). Their
# hardening is checked for what the daemons need to keep: the concentrator
# unprivileged with no capabilities, the agent with CAP_NET_ADMIN and
# CAP_NET_RAW only; both Type=notify with a watchdog and SIGHUP reload.
set -u
command -v systemd-analyze >/dev/null || { echo "SKIP (a failure under CI=true): no systemd-analyze"; [ "${CI:-}" = true ] && exit 1; exit 77; }
T=$(mktemp -d /tmp/units-test.XXXXXX)
trap 'rm -rf "$T"' EXIT
FAILS=0 CHECKS=0
check() {
	local what=$1; shift
	CHECKS=$((CHECKS + 1))
	if out=$("$@" 2>&1); then echo "ok   - $what"; else FAILS=$((FAILS + 1)); echo "FAIL - $what"; echo "$out" | sed 's/^/    /'; fi
}
sed "s|^\(ExecStart[A-Za-z]*=\)[^ ]*/mptcp-concentrator|\1$CONCENTRATOR|" \
	"$UNIT_DIR/mptcp-concentrator.service" > "$T/mptcp-concentrator.service"
sed "s|^\(ExecStart[A-Za-z]*=\)[^ ]*/gw-agent|\1$AGENT|" "$UNIT_DIR/gw-agent.service" > "$T/gw-agent.service"
verify() {
	local out rc=0
	out=$(cd "$T" && systemd-analyze verify "./$1" 2>&1) || rc=$?
	echo "$out"
	[ $rc -eq 0 ] && [ -z "$out" ]
}
check "mptcp-concentrator.service: systemd-analyze verify, no warnings" verify mptcp-concentrator.service
check "gw-agent.service: systemd-analyze verify, no warnings" verify gw-agent.service
has() { grep -qx -- "$2" "$T/$1" || { echo "$1 lacks: $2"; return 1; }; }
conc_hardening() {
	for l in "Type=notify" "WatchdogSec=30s" 'ExecReload=/bin/kill -HUP $MAINPID' "Restart=on-failure" \
		"DynamicUser=yes" "CapabilityBoundingSet=" "NoNewPrivileges=yes" "ProtectSystem=strict" \
		"PrivateTmp=yes" "RestrictAddressFamilies=AF_INET AF_INET6 AF_UNIX AF_NETLINK" \
		"SystemCallFilter=@system-service" "StateDirectory=mptcp-concentrator" \
		"ExecStartPre=+-/usr/bin/ip mptcp limits set subflows 8 add_addr_accepted 0"; do
		has mptcp-concentrator.service "$l" || return 1
	done
}
check "concentrator unit: notify, watchdog, reload, unprivileged and hardened; TFO key kept; no ADD_ADDR accepted" conc_hardening
agent_hardening() {
	for l in "Type=notify" "WatchdogSec=30s" 'ExecReload=/bin/kill -HUP $MAINPID' \
		"CapabilityBoundingSet=CAP_NET_ADMIN CAP_NET_RAW" "NoNewPrivileges=yes" \
		"ProtectSystem=strict" "RuntimeDirectory=gw-agent"; do
		has gw-agent.service "$l" || return 1
	done
}
check "agent unit: notify, watchdog, reload, only CAP_NET_ADMIN and CAP_NET_RAW" agent_hardening
echo "[units] $CHECKS checks, $FAILS failed"
[ $FAILS -eq 0 ]
