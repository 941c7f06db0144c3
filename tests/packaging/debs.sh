#!/usr/bin/env bash
# Debian packages (deploy/debian/build-debs.sh): build both, install them
# with dpkg into a fresh, empty root (its own dpkg database; dependencies
# are the host's business there), and check that every file is where the
# units expect it, the defaults are conffiles, and the installed binary
# accepts the installed default configuration.
set -uo pipefail
cd "$(dirname "$0")/../.."
command -v dpkg-deb >/dev/null || { echo "SKIP (a failure under CI=true): no dpkg-deb"; [ "${CI:-}" = true ] && exit 1; exit 77; }
T=$(mktemp -d /tmp/debs.XXXXXX)
trap 'rm -rf "$T"' EXIT
CHECKS=0 FAILS=0
ok() { CHECKS=$((CHECKS + 1)); echo "ok   - $1"; }
fail() { CHECKS=$((CHECKS + 1)); FAILS=$((FAILS + 1)); echo "FAIL - $1"; shift; printf '    %s\n' "$@"; }
check() { local what=$1; shift; if out=$("$@" 2>&1); then ok "$what"; else fail "$what" "$out"; fi; }

debs=$(deploy/debian/build-debs.sh "$T/out") || { echo "$debs"; fail "packages build"; exit 1; }
ok "both packages build: $(echo "$debs" | xargs -n1 basename | tr '\n' ' ')"

R=$T/root
mkdir -p "$R/var/lib/dpkg/info" "$R/var/lib/dpkg/updates"
: > "$R/var/lib/dpkg/status"
install_root() {
	# --force-script-chrootless: the empty root has no shell to chroot to;
	# the maintainer scripts see DPKG_ROOT and leave the host alone.
	dpkg --root="$R" --force-depends --force-script-chrootless --log=/dev/null \
		-i $debs && dpkg --root="$R" -l | grep -E '^ii +(gw-agent|mptcp-concentrator) '
}
check "dpkg installs both into a fresh root" install_root

placed() {  # placed NAME CONFIG: unit, binary, sysctl, conffile, docs
	local n=$1 c=$2 exec
	exec=$(sed -n 's/^ExecStart=\([^ ]*\).*/\1/p' "$R/usr/lib/systemd/system/$n.service")
	echo "ExecStart: $exec"
	[ -x "$R$exec" ] && [ "$exec" = "/usr/sbin/$n" ] &&
	[ -f "$R/usr/lib/sysctl.d/90-$n.conf" ] && [ -f "$R$c" ] &&
	grep -qx "$c" "$R/var/lib/dpkg/info/$n.conffiles" &&
	[ -f "$R/usr/share/doc/$n/copyright" ] &&
	[ -f "$R/usr/share/man/man8/$n.8.gz" ] && [ -f "$R/usr/share/man/man5/$n.conf.5.gz" ] &&
	dpkg-deb -f "$T/out/${n}_"*.deb Depends | grep -q liburing2
}
check "mptcp-concentrator: unit, binary, sysctl drop-in, conffile, docs and man pages where expected" \
	placed mptcp-concentrator /etc/mptcp-concentrator/concentrator.json
check "gw-agent: unit, binary, sysctl drop-in, conffile, docs and man pages where expected" \
	placed gw-agent /etc/gw-agent/gw-agent.json
check "the installed mptcp-concentrator accepts its installed default configuration" \
	"$R/usr/sbin/mptcp-concentrator" --check-config --config "$R/etc/mptcp-concentrator/concentrator.json"
check "the installed gw-agent accepts its installed default configuration" \
	"$R/usr/sbin/gw-agent" --check-config --config "$R/etc/gw-agent/gw-agent.json"
check "removing them leaves the conffiles (dpkg -r), purging removes them" \
	bash -c "dpkg --root='$R' --force-script-chrootless --log=/dev/null -r gw-agent mptcp-concentrator >/dev/null &&
		[ -f '$R/etc/gw-agent/gw-agent.json' ] && [ ! -e '$R/usr/sbin/gw-agent' ] &&
		dpkg --root='$R' --force-script-chrootless --log=/dev/null -P gw-agent mptcp-concentrator >/dev/null &&
		[ ! -e '$R/etc/gw-agent/gw-agent.json' ]"
# lintian: no error or warning but those in deploy/debian/lintian-overrides,
# each with the reason it does not apply.
lint() {
	command -v lintian >/dev/null || { echo "lintian not installed (deploy/setup.sh installs it)"; return 1; }
	local tags
	tags=$(grep -v '^#' deploy/debian/lintian-overrides | awk 'NF {print $1}' | paste -sd, -)
	lintian --no-cfg --fail-on error,warning ${tags:+--suppress-tags "$tags"} $debs
}
check "lintian: no errors or warnings beyond the justified overrides" lint
echo "[debs] $CHECKS checks, $FAILS failed"
[ "$FAILS" -eq 0 ]
