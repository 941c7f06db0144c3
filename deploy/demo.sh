#!/usr/bin/env bash
# The README's demo command: sets up, builds, and runs the two-path testbed.
set -euo pipefail
cd "$(dirname "$0")/.."
deploy/setup.sh
[ -f build/build.ninja ] || meson setup build >/dev/null
ninja -C build >/dev/null
if [ ! -x build/gw-agent/gw-agent ] || [ ! -x build/concentrator/mptcp-concentrator ]; then
	echo "demo: not built yet: the concentrator and gw-agent do not exist in this"
	echo "checkout (see ROADMAP.md). The codec is built and tested: ./tests/run.sh"
	exit 2
fi
export CONCENTRATOR=$PWD/build/concentrator/mptcp-concentrator AGENT=$PWD/build/gw-agent/gw-agent
export OUT=$PWD/build/demo
exec bash tests/netns/demo.sh "$@"
