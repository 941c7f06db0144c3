#!/usr/bin/env bash
# Cross builds, so byte-order and word-size bugs surface here rather than on
# a router:
#   - aarch64 (little-endian, 64-bit): the whole project against Debian's
#     arm64 libraries, -Dsystemd=disabled as on OpenWrt; the unit tests and
#     corpus replays run under qemu-user (test-ring is left out: qemu-user
#     has no io_uring).
#   - big-endian 32-bit MIPS: the library-free parts (-Dpure=true: the RFC
#     8803 codec, addresses, the uci parser, the mesh announcement codec;
#     Debian has no big-endian MIPS libraries for the rest) and their tests
#     and corpus replays under qemu-user.
# Each binary is checked to be what it claims (file(1)).
set -u
cd "$(dirname "$0")/../.."
name=cross
log() { printf '[%s] %s\n' "$name" "$*"; }
skip() {
	if [ "${CI:-}" = true ]; then log "FAIL: cannot run under CI: $*"; exit 1; fi
	log "SKIP: $*"; exit 77
}
for t in aarch64-linux-gnu-gcc mips-linux-gnu-gcc qemu-aarch64-static qemu-mips-static file; do
	command -v $t >/dev/null || skip "needs $t (deploy/setup.sh installs it)"
done
[ -f /usr/lib/aarch64-linux-gnu/pkgconfig/liburing.pc ] ||
	skip "needs Debian's arm64 libraries (deploy/setup.sh installs them)"
OUT=$(mktemp -d)
trap 'rm -rf "$OUT"' EXIT
checks=0 fails=0
check() {  # check DESCRIPTION COMMAND...
	local what=$1; shift
	checks=$((checks + 1))
	if "$@" > "$OUT/check.log" 2>&1; then
		log "ok   - $what"
		grep -h '^{' "$OUT/check.log" | tail -2 | sed 's/^/    /'
	else
		fails=$((fails + 1))
		log "FAIL - $what"
		tail -30 "$OUT/check.log" | sed 's/^/    /'
	fi
}
# tests DIR NAMES...: run these meson tests under qemu; every name must
# have run and passed (meson runs what matches and drops a name that
# matches nothing, so its status alone would pass a misspelt list).
tests() {
	local dir=$1 r ok; shift
	rm -f "$dir/meson-logs/testlog.json"
	meson test -C "$dir" --print-errorlogs "$@" > "$dir/test.log" 2>&1
	r=$?
	grep -E "^ *[0-9]+/[0-9]+ " "$dir/test.log"
	ok=$(/usr/bin/python3 - "$dir/meson-logs/testlog.json" "$@" <<'PY'
import json, sys
try:
    ran = {json.loads(l)["name"].split(" / ")[-1]: json.loads(l)["result"] for l in open(sys.argv[1])}
except OSError:
    ran = {}
want = sys.argv[2:]
missing = [n for n in want if n not in ran]
bad = [n for n in want if n in ran and ran[n] != "OK"]
print(json.dumps({"ok": sum(1 for n in want if ran.get(n) == "OK"), "tests": len(want),
                  "did_not_run": missing, "not_ok": bad}))
PY
)
	echo "$ok"
	[ $r -eq 0 ] && echo "$ok" | grep -q '"did_not_run": \[\], "not_ok": \[\]'
}
is_arch() {  # is_arch FILE PATTERN: file(1) says so
	file -L "$1" | tee /dev/stderr | grep -q "$2"
}

mips() {
	meson setup --cross-file deploy/cross/mips-linux-gnu.ini -Dpure=true "$OUT/mips" > "$OUT/mips-setup.log" 2>&1 || { tail -20 "$OUT/mips-setup.log"; return 1; }
	ninja -C "$OUT/mips" > "$OUT/mips-build.log" 2>&1 || { tail -20 "$OUT/mips-build.log"; return 1; }
	is_arch "$OUT/mips/test-convert" "32-bit MSB.*MIPS" &&
	tests "$OUT/mips" convert addr uci vstream hash corpus-convert corpus-uci corpus-mesh
}
check "big-endian MIPS: codec, addresses, uci and mesh announcements built; unit tests and corpus replays pass under qemu" mips

arm64() {
	meson setup --cross-file deploy/cross/aarch64-linux-gnu.ini -Dsystemd=disabled \
		--buildtype=release "$OUT/arm64" > "$OUT/arm64-setup.log" 2>&1 || { tail -20 "$OUT/arm64-setup.log"; return 1; }
	ninja -C "$OUT/arm64" > "$OUT/arm64-build.log" 2>&1 || { tail -20 "$OUT/arm64-build.log"; return 1; }
	is_arch "$OUT/arm64/gw-agent/gw-agent" "64-bit LSB.*ARM aarch64" &&
	is_arch "$OUT/arm64/concentrator/mptcp-concentrator" "64-bit LSB.*ARM aarch64" &&
	tests "$OUT/arm64" convert addr uci policy vstream corpus-convert corpus-uci corpus-mesh \
		corpus-http corpus-handshake &&
	qemu-aarch64-static -L /usr/aarch64-linux-gnu "$OUT/arm64/gw-agent/gw-agent" \
		--concentrator 192.0.2.1 --lan br-lan --path wan,mode=master --check-config
}
check "aarch64: both daemons (without libsystemd, as on OpenWrt) and the tests built; unit tests, corpus replays and gw-agent --check-config pass under qemu" arm64
log "$checks checks, $fails failed"
[ $fails -eq 0 ]
