#!/usr/bin/env bash
# Installs every Debian package this project needs to build, test and run the
# demo. It is the only place packages are listed. Idempotent: it asks apt only
# for what is missing, and runs `apt-get update` only when something is.
#
#   deploy/setup.sh            build + test + demo packages
#   deploy/setup.sh --check    list what is missing, install nothing (exit 1 if any)
#   deploy/setup.sh --bench    also the reference proxies benches/compare.sh runs
#                              (haproxy, shadowsocks-libev); their system
#                              services are disabled, never left running
set -euo pipefail

# Build: compiler, meson, the libraries the daemons link, clang for libFuzzer.
build_pkgs=(
  gcc meson ninja-build pkg-config
  liburing-dev libmnl-dev libssl-dev libjansson-dev libsystemd-dev
  clang-14 libclang-rt-14-dev
)
# Tests and demo: namespaces, nftables, MPTCP tooling, traffic and capture.
test_pkgs=(
  iproute2 iputils-ping nftables mptcpd mptcpize iperf3 curl nginx-light tcpdump python3 procps
  gnuplot-nox systemd python3-scapy dnsmasq-base lintian file bird2
  chromium fonts-dejavu-core
)
# Cross builds (tests/cross/cross.sh): toolchains, qemu-user, and Debian's
# arm64 libraries beside the host's (multiarch: dpkg --add-architecture).
cross_pkgs=(
  gcc-aarch64-linux-gnu gcc-mips-linux-gnu libc6-dev-arm64-cross libc6-dev-mips-cross qemu-user-static
  liburing-dev:arm64 libmnl-dev:arm64 libssl-dev:arm64 libjansson-dev:arm64
)

# promtool, Prometheus' own checker for the metrics exposition, ships in the
# prometheus package, which would also install and enable a Prometheus
# server. The tests need only the checker: it is unpacked from the package
# into .tools/ (gitignored), not installed.
TOOLS="$(cd "$(dirname "$0")/.." && pwd)/.tools"
promtool_setup() {
  [ -x "$TOOLS/promtool" ] && return 0
  command -v promtool >/dev/null && return 0
  local d; d=$(mktemp -d); chmod 755 "$d"
  echo "setup: unpacking promtool from the prometheus package into $TOOLS"
  ( cd "$d" && apt-get download -qq prometheus 2>/dev/null ) ||
    { apt-get update -qq && ( cd "$d" && apt-get download -qq prometheus ); }
  dpkg-deb -x "$d"/prometheus_*.deb "$d/x"
  mkdir -p "$TOOLS"
  cp "$d/x/usr/bin/promtool" "$TOOLS/promtool"
  rm -rf "$d"
}

# Benchmarks only (--bench): the proxies we are compared with, perf (benches/profile.sh).
bench_pkgs=(haproxy shadowsocks-libev wrk linux-perf)
bench=0
[ "${1:-}" = "--bench" ] && { bench=1; test_pkgs+=("${bench_pkgs[@]}"); }

missing=()
for p in "${build_pkgs[@]}" "${test_pkgs[@]}" "${cross_pkgs[@]}"; do
  # dpkg-query prints "install ok installed" only for a fully installed package.
  st=$(dpkg-query -W -f='${Status}' "$p" 2>/dev/null || true)
  [ "$st" = "install ok installed" ] || missing+=("$p")
done

if [ "${1:-}" = "--check" ]; then
  [ -x "$TOOLS/promtool" ] || command -v promtool >/dev/null || missing+=("promtool (from prometheus)")
  if [ ${#missing[@]} -gt 0 ]; then echo "missing: ${missing[*]}"; exit 1; fi
  echo "all packages present"; exit 0
fi

if [ ${#missing[@]} -eq 0 ]; then
  echo "setup: all ${#build_pkgs[@]}+${#test_pkgs[@]}+${#cross_pkgs[@]} packages present"
  if [ "$(id -u)" -eq 0 ]; then promtool_setup; fi
  exit 0
fi

if [ "$(id -u)" -ne 0 ]; then
  echo "setup: missing packages (${missing[*]}) and not root: run as root" >&2
  exit 1
fi

echo "setup: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
dpkg --print-foreign-architectures | grep -qx arm64 || dpkg --add-architecture arm64
apt-get update -qq
# nginx-light's postinst starts the system nginx on port 80; the tests run their
# own nginx in namespaces, so keep the package's service from starting.
printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d.mptcp-setup
had_policy=0; [ -e /usr/sbin/policy-rc.d ] && had_policy=1
[ $had_policy -eq 1 ] || cp /usr/sbin/policy-rc.d.mptcp-setup /usr/sbin/policy-rc.d
chmod +x /usr/sbin/policy-rc.d 2>/dev/null || true
trap '[ $had_policy -eq 1 ] || rm -f /usr/sbin/policy-rc.d; rm -f /usr/sbin/policy-rc.d.mptcp-setup' EXIT
apt-get install -y -qq --no-install-recommends "${missing[@]}"
if [ $bench -eq 1 ]; then
  # Their packages enable a system service (shadowsocks-libev with a default
  # password on port 8388): benches start their own copies in namespaces.
  for u in haproxy shadowsocks-libev; do
    systemctl disable --now "$u" >/dev/null 2>&1 || true
    deb-systemd-helper disable "$u.service" >/dev/null 2>&1 || true
  done
fi
# bird2 enables its system service: the tests start their own BIRD in
# namespaces, none should run on the host.
systemctl stop bird >/dev/null 2>&1 || true
systemctl disable bird >/dev/null 2>&1 || true
promtool_setup
echo "setup: done"
