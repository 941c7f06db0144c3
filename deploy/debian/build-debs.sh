#!/usr/bin/env bash
# Debian packages for both daemons, built with dpkg-deb from a meson
# install (no debhelper: two binaries, their units, sysctl drop-ins and
# default configurations are all there is):
#
#   deploy/debian/build-debs.sh [OUTDIR]     (default build-deb/)
#
# mptcp-concentrator_VERSION_ARCH.deb: /usr/sbin/mptcp-concentrator, its
#   unit (DynamicUser: no system user to create), /usr/lib/sysctl.d drop-in,
#   /etc/mptcp-concentrator/concentrator.json (a conffile, from
#   deploy/examples), docs.
# gw-agent_VERSION_ARCH.deb: the same for the agent, /etc/gw-agent/gw-agent.json.
# Neither starts or enables anything at install: an operator configures
# first (the default files say what to fill in), then enables the unit.
set -euo pipefail
cd "$(dirname "$0")/../.."
OUT=$(realpath -m "${1:-build-deb}")
B=$OUT/meson
STAGE=$OUT/stage
VERSION=$(sed -n "s/^project('[^']*', 'c', version : '\([^']*\)'.*/\1/p" meson.build)
VERSION=${VERSION:-0.1.0}
ARCH=$(dpkg --print-architecture)
rm -rf "$STAGE"
mkdir -p "$OUT"
# Debian's hardening: fortified libc calls, full RELRO and immediate binding.
[ -f "$B/build.ninja" ] || meson setup "$B" --prefix=/usr --sysconfdir=/etc --buildtype=release \
	-Dc_args=-D_FORTIFY_SOURCE=2 -Dc_link_args=-Wl,-z,relro,-z,now \
	-Dsystemd=enabled > "$OUT/meson-setup.log"
# (The units are written at setup, with /usr/sbin in them.)
ninja -C "$B" gw-agent/gw-agent concentrator/mptcp-concentrator > "$OUT/ninja.log"

# pkg NAME DESCRIPTION DEPENDS CONFIG-DIR CONFIG-SOURCE CONFIG-NAME SYSCTL
pkg() {
	local name=$1 desc=$2 deps=$3 cdir=$4 csrc=$5 cname=$6 sysctl=$7
	local root=$STAGE/$name
	install -D -m 755 "$B/${name/mptcp-concentrator/concentrator}/$name" "$root/usr/sbin/$name"
	install -D -m 644 "$B/systemd/$name.service" "$root/usr/lib/systemd/system/$name.service"
	install -D -m 644 "deploy/sysctl/$sysctl" "$root/usr/lib/sysctl.d/$sysctl"
	install -D -m 644 "$csrc" "$root/etc/$cdir/$cname"
	install -D -m 644 README.md "$root/usr/share/doc/$name/README.md"
	gzip -9n "$root/usr/share/doc/$name/README.md"
	gzip -9nc deploy/debian/changelog > "$root/usr/share/doc/$name/changelog.gz"
	install -D -m 644 "docs/man/$name.8" "$root/usr/share/man/man8/$name.8"
	install -D -m 644 "docs/man/$name.conf.5" "$root/usr/share/man/man5/$name.conf.5"
	gzip -9n "$root/usr/share/man/man8/$name.8" "$root/usr/share/man/man5/$name.conf.5"
	install -D -m 644 /dev/stdin "$root/usr/share/doc/$name/copyright" <<COPY
Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/
Upstream-Name: mptcp-hybrid-access
Files: *
Copyright: 2026 mptcp-hybrid-access developers
License: MIT
 Permission is hereby granted, free of charge, to any person obtaining a
 copy of this software and associated documentation files (the "Software"),
 to deal in the Software without restriction, including without limitation
 the rights to use, copy, modify, merge, publish, distribute, sublicense,
 and/or sell copies of the Software, and to permit persons to whom the
 Software is furnished to do so, subject to the following conditions:
 .
 The above copyright notice and this permission notice shall be included
 in all copies or substantial portions of the Software.
 .
 THE SOFTWARE IS PROVIDED "AS IS", WITHOUT WARRANTY OF ANY KIND, EXPRESS OR
 IMPLIED, INCLUDING BUT NOT LIMITED TO THE WARRANTIES OF MERCHANTABILITY,
 FITNESS FOR A PARTICULAR PURPOSE AND NONINFRINGEMENT. IN NO EVENT SHALL THE
 AUTHORS OR COPYRIGHT HOLDERS BE LIABLE FOR ANY CLAIM, DAMAGES OR OTHER
 LIABILITY, WHETHER IN AN ACTION OF CONTRACT, TORT OR OTHERWISE, ARISING
 FROM, OUT OF OR IN CONNECTION WITH THE SOFTWARE OR THE USE OR OTHER
 DEALINGS IN THE SOFTWARE.
COPY
	strip --strip-unneeded --remove-section=.comment --remove-section=.note "$root/usr/sbin/$name"
	mkdir -p "$root/DEBIAN"
	echo "/etc/$cdir/$cname" > "$root/DEBIAN/conffiles"
	cat > "$root/DEBIAN/control" <<CTRL
Package: $name
Version: $VERSION
Architecture: $ARCH
Maintainer: mptcp-hybrid-access developers <maintainers@example.invalid>
Installed-Size: $(du -sk --exclude=DEBIAN "$root" | cut -f1)
Depends: $deps
Section: net
Priority: optional
Homepage: https://www.rfc-editor.org/rfc/rfc8803
Description: $desc
 Part of mptcp-hybrid-access: an RFC 8803 (0-RTT TCP Convert)
 hybrid-access system over the kernel's MPTCP. Configure
 /etc/$cdir/$cname first, then start the service:
 systemctl enable --now $name
CTRL
	# The drop-in takes effect at the next boot or sysctl --system; the
	# unit is known to systemd at once. Nothing is started.
	cat > "$root/DEBIAN/postinst" <<'POST'
#!/bin/sh
set -e
# Not when installed into another root (DPKG_ROOT): that systemd is not ours.
if [ "$1" = configure ] && [ -z "${DPKG_ROOT:-}" ] && [ -d /run/systemd/system ]; then
	systemctl daemon-reload >/dev/null 2>&1 || true
fi
POST
	chmod 755 "$root/DEBIAN/postinst"
	( cd "$root" && find . -path ./DEBIAN -prune -o -type f -printf '%P\0' | sort -z |
		xargs -0 md5sum ) > "$root/DEBIAN/md5sums"
	dpkg-deb --root-owner-group --build "$root" "$OUT/${name}_${VERSION}_${ARCH}.deb" > /dev/null
	echo "$OUT/${name}_${VERSION}_${ARCH}.deb"
}
LIBS="liburing2 (>= 2.3), libmnl0, libjansson4, libssl3, libsystemd0, libc6"
pkg mptcp-concentrator "MPTCP hybrid-access concentrator (RFC 8803)" "$LIBS, iproute2" \
	mptcp-concentrator deploy/examples/concentrator.json concentrator.json 90-mptcp-concentrator.conf
pkg gw-agent "MPTCP hybrid-access gateway agent (RFC 8803 client)" "$LIBS, iproute2, nftables" \
	gw-agent deploy/examples/gw-agent.json gw-agent.json 90-gw-agent.conf
