#!/usr/bin/env bash
# What a household sees (issue 22), on DSL (50/10 Mbit/s) and LTE (30/8):
#   - a speed test per line (gw-agent speedtest), served by the
#     concentrator to keyed gateways only: each line's bytes go over that
#     line, the figures are near the line's rates; requests without a
#     valid key, replayed, or over the limits are refused and counted;
#   - the household's page (--web-listen) behind its token: refused
#     without it, and in a real browser (headless Chromium): no errors, the
#     numbers on the page are status --json's of that moment, the graph
#     moves while a download runs; a screenshot.
cd "$(dirname "$0")" || exit 1
. ./lib.sh
require_netns
[ -x "${AGENT:-}" ] || skip "AGENT not built"
command -v iperf3 >/dev/null || skip "needs iperf3"
CHROMIUM=$(command -v chromium || command -v chromium-browser) || skip "needs chromium"

PATH1_PROFILE=dsl PATH2_PROFILE=lte two_path_topology 20mbit || exit 1
hex() { head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n'; }
K=$(hex)
(umask 077; echo "5 $K any" > "$WORKDIR/conc.keys"; echo "5 $K" > "$WORKDIR/gw.keys")
ip netns exec "$(ns srv)" iperf3 -s -p 5201 > /dev/null 2>&1 &
start_concentrator conc conc --allow-client 198.51.100.0/24 --keys "$WORKDIR/conc.keys" \
	--metrics-listen 198.51.100.1:9190 --workers 1
wait_listen conc 5124 && wait_listen srv 5201 || exit 1
ip netns exec "$(ns gw)" "$AGENT" --concentrator 192.0.2.1:5124 --lan gw-lan --workers 1 \
	--path gw-p1,mode=master --path gw-p2,mode=on --key-file "$WORKDIR/gw.keys" \
	--web-listen 192.168.77.1:8125 --state-dir "$WORKDIR/state" \
	--control "$WORKDIR/agent.sock" --metrics-listen 127.0.0.1:9181 --congestion cubic \
	> "$WORKDIR/agent.log" 2>&1 &
AGENT_PID=$!
A() { ip netns exec "$(ns gw)" "$AGENT" "$@" --control "$WORKDIR/agent.sock"; }
both_up() { [ "$(A status | grep -cE '^gw-p[12] .* up ')" -eq 2 ]; }
check "the agent runs with its page, both lines up" wait_for 10 both_up
am() { metric_at gw 127.0.0.1:9181 "$1"; }
cm() { metric_at conc 198.51.100.1:9190 "$1"; }
line_bytes() {
	local d=/sys/class/net/$1/statistics
	ip netns exec "$(ns gw)" sh -c "echo \$((\$(cat $d/rx_bytes) + \$(cat $d/tx_bytes)))"
}

# ---- speed test ----
# speedtest LINE OTHER DOWN UP: the test's bytes on LINE (the other line
# under 2% of them), down and up within 60-110% of the line's rates.
speedtest() {
	local out o0 l0 o1 l1 d u
	l0=$(line_bytes "$1"); o0=$(line_bytes "$2")
	out=$(A speedtest "$1" --seconds 2) || { echo "$out"; return 1; }
	l1=$(line_bytes "$1"); o1=$(line_bytes "$2")
	echo "$out"
	echo "{\"line_bytes\": $((l1 - l0)), \"other_line_bytes\": $((o1 - o0))}"
	d=$(sed -n "s/^$1: \([0-9.]*\) Mbit\/s down, .*/\1/p" <<< "$out")
	u=$(sed -n "s/^$1: .* down, \([0-9.]*\) Mbit\/s up/\1/p" <<< "$out")
	[ -n "$d" ] && [ -n "$u" ] && [ $((o1 - o0)) -lt $(((l1 - l0) / 50)) ] &&
		"$PY" -c 'import sys; d,u,D,U = map(float, sys.argv[1:]); sys.exit(0 if 0.6*D <= d <= 1.1*D and 0.6*U <= u <= 1.1*U else 1)' \
			"$d" "$u" "$3" "$4"
}
check "speed test of LTE (30/8): its bytes on LTE, figures near its rates" speedtest gw-p2 gw-p1 30 8
check "speed test of DSL (50/10): its bytes on DSL, figures near its rates" speedtest gw-p1 gw-p2 50 10
shown() {
	A status | grep '^speedtest' && [ "$(A status | grep -c '^speedtest gw-p[12]: [0-9.]* Mbit/s down')" = 2 ] &&
		[ "$(am 'gw_agent_speedtest_bits_per_second{path="gw-p2",direction="down"}')" -gt 15000000 ] &&
		[ "$(cm 'mptcp_concentrator_speedtests_total{result="down"}')" = 2 ] &&
		[ "$(cm 'mptcp_concentrator_speedtests_total{result="up"}')" = 2 ]
}
check "the results in status and metrics at both ends" shown
# Hostile requests at the concentrator: no cookie, a wrong one, a replayed
# one, two at once for one key.
NT="ip netns exec $(ns gw) $PY ./nettool.py speedtest --conc 192.0.2.1:5124 --src 198.51.100.2 --key 5:$K"
# served_by N: the concentrator has ended N down tests (4 s at most).
served_by() {
	SERVED=$1
	down_served() { [ "$(cm 'mptcp_concentrator_speedtests_total{result="down"}')" -ge "$SERVED" ]; }
	wait_for 4 down_served
}
# Every admitted test ended: what six reset requests held is given back.
none_running() { [ "$(cm mptcp_concentrator_speedtests_running)" = 0 ]; }
hostile() {
	local u0 l0 u1 l1
	u0=$(cm 'mptcp_concentrator_speedtests_total{result="unkeyed"}'); l0=$(cm 'mptcp_concentrator_speedtests_total{result="limit"}')
	# (each served test's end is polled for: the key's one slot is free then)
	$NT --case none --expect 3 && $NT --case badmac --expect 32 && $NT --case replay --expect -1 32 &&
		served_by 3 && $NT --case twice --expect -1 64 && served_by 4 &&
		$NT --case resets && wait_for 4 none_running && $NT --case good --expect -1 || return 1
	u1=$(cm 'mptcp_concentrator_speedtests_total{result="unkeyed"}'); l1=$(cm 'mptcp_concentrator_speedtests_total{result="limit"}')
	echo "{\"unkeyed\": $((u1 - u0)), \"limit\": $((l1 - l0))}"
	[ $((u1 - u0)) = 3 ] && [ $((l1 - l0)) = 1 ]
}
check "speed test requests without a key, with a wrong one, replayed, or two at once: refused (3, 32, 32, 64), counted; six reset at once leave the next served" hostile

# ---- the page ----
TOKEN=$(cat "$WORKDIR/state/web-token")
URL=http://192.168.77.1:8125
C() { ip netns exec "$(ns lan)" curl -s --max-time 5 "$@"; }
token_needed() {
	local r0 r1
	r0=$(am gw_agent_web_refused_total)
	[ "$(C -o /dev/null -w '%{http_code}' $URL/status.json)" = 403 ] &&
		[ "$(C -o /dev/null -w '%{http_code}' "$URL/?token=0123456789abcdef0123456789abcdef")" = 403 ] &&
		[ "$(C -o /dev/null -w '%{http_code}' -H 'Cookie: gwa=0123456789abcdef0123456789abcdef' $URL/status.json)" = 403 ] &&
		[ "$(C -o /dev/null -w '%{http_code}' -X POST "$URL/speedtest?line=gw-p1")" = 403 ] || return 1
	r1=$(am gw_agent_web_refused_total)
	echo "{\"refused\": $((r1 - r0))}"
	[ $((r1 - r0)) = 4 ] && A status | grep -qF "page $URL/?token=$TOKEN"
}
check "the page's data and actions need the token (refused, counted); status prints the page's address" token_needed
with_token() {
	local hdr
	hdr=$(C -D - -o /dev/null "$URL/?token=$TOKEN") || return 1
	grep -qi '^HTTP/1.1 303' <<< "$hdr" && grep -qi "^Set-Cookie: gwa=$TOKEN; Path=/; HttpOnly; SameSite=Strict" <<< "$hdr" &&
		grep -qi '^Location: /' <<< "$hdr" &&
		C -H "Cookie: gwa=$TOKEN" "$URL/status.json" | "$PY" -c 'import json,sys; d=json.load(sys.stdin); sys.exit(0 if [l["name"] for l in d["lines"]] == ["gw-p1","gw-p2"] else 1)'
}
check "with the token: a cookie (HttpOnly, SameSite=Strict), a redirect, then the status as JSON" with_token

# The page in Chromium while a download runs: the DOM after ~8 s of it.
browse() {
	ip netns exec "$(ns lan)" "$CHROMIUM" --headless --no-sandbox --disable-gpu --no-first-run \
		--disable-dev-shm-usage --user-data-dir="$WORKDIR/chromium" --enable-logging=stderr --v=0 \
		"$@" "$URL/?token=$TOKEN" 2> "$WORKDIR/chromium.log"
}
page() {
	local dl
	A status --json > "$WORKDIR/before.json" || return 1
	ip netns exec "$(ns lan)" iperf3 -c 203.0.113.2 -p 5201 -R -t 7 -b 20M > /dev/null 2>&1 &
	dl=$!
	# the download running (DSL carries it) before the browser opens
	D0=$(line_bytes gw-p1)
	dsl_moving() { [ "$(line_bytes gw-p1)" -gt $((D0 + 500000)) ]; }
	wait_for 3 dsl_moving
	browse --virtual-time-budget=6000 --dump-dom > "$WORKDIR/page.html" || { tail "$WORKDIR/chromium.log"; return 1; }
	A status --json > "$WORKDIR/after.json" || return 1
	wait "$dl"
	"$PY" - "$WORKDIR/page.html" "$WORKDIR/before.json" "$WORKDIR/after.json" "$WORKDIR/chromium.log" <<'PYEOF'
import json, sys
from html.parser import HTMLParser

class P(HTMLParser):
    def __init__(self):
        super().__init__()
        self.line = None; self.key = None; self.vals = {}; self.graph = {}
        self.errors_hidden = None; self.errors_text = ""; self.in_errors = False
        self.polls = 0; self.snap = 0
    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "section" and "data-line" in a:
            self.line = a["data-line"]; self.vals[self.line] = {}
        if tag == "body" and "data-polls" in a:
            self.polls = int(a["data-polls"])
        if a.get("id") == "snap":
            self.snap = int(a.get("data-time", "0"))
        if a.get("id") == "errors":
            self.errors_hidden = "hidden" in a; self.in_errors = True
        if self.line and "data-k" in a:
            if tag == "svg":
                self.graph[self.line] = (int(a["data-samples"]), int(a["data-max-bps"]))
            elif "data-v" in a:
                self.vals[self.line][a["data-k"]] = a["data-v"]
            else:
                self.vals[self.line][a["data-k"]] = None
                self.key = a["data-k"]
    def handle_data(self, data):
        if self.key and self.line:
            self.vals[self.line][self.key] = data; self.key = None
        if self.in_errors:
            self.errors_text += data
    def handle_endtag(self, tag):
        if tag == "pre":
            self.in_errors = False

p = P(); p.feed(open(sys.argv[1]).read())
b, a = json.load(open(sys.argv[2])), json.load(open(sys.argv[3]))
log = open(sys.argv[4], errors="replace").read()
bad = []
console = [l for l in log.splitlines() if "CONSOLE" in l or "Uncaught" in l]
if console:
    bad.append("console: " + " | ".join(console[:3]))
if p.errors_hidden is not True or p.errors_text.strip():
    bad.append("page errors: " + p.errors_text.strip())
if p.polls < 3:
    bad.append("polls %d" % p.polls)
if not (b["time_ms"] <= p.snap <= a["time_ms"]):
    bad.append("snapshot time outside status --json's")
for lb, la in zip(b["lines"], a["lines"]):
    n = lb["name"]; v = p.vals.get(n)
    if v is None:
        bad.append("no section for " + n); continue
    if v.get("mode") != la["mode"]:
        bad.append("%s mode %r vs %r" % (n, v.get("mode"), la["mode"]))
    if v.get("state") != la["families"][0]["state"]:
        bad.append("%s state %r" % (n, v.get("state")))
    if v.get("address") != la["families"][0]["address"]:
        bad.append("%s address %r" % (n, v.get("address")))
    for k in ("rx_bytes", "tx_bytes"):
        x = int(v.get(k) or -1)
        if not (lb[k] <= x <= la[k]):
            bad.append("%s %s %d not within status --json's %d..%d" % (n, k, x, lb[k], la[k]))
    st = (a.get("speedtests") or {}).get(n)
    if st and int(v.get("speedtest") or 0) != st["down_bps"]:
        bad.append("%s speed test %r vs %r" % (n, v.get("speedtest"), st["down_bps"]))
samples, mx = p.graph.get("gw-p1", (0, 0))
print(json.dumps({"polls": p.polls, "lines": p.vals, "graph_gw_p1": {"samples": samples, "max_bps": mx},
                  "problems": bad}))
# The download (20 Mbit/s, mostly on DSL) shows in DSL's graph.
if samples < 2 or mx < 5e6:
    bad.append("graph")
sys.exit(1 if bad else 0)
PYEOF
}
check "Chromium: no errors, the page's figures are status --json's of that moment, the graph moves with a download" page
shot() {
	browse --virtual-time-budget=5000 --window-size=1200,1100 --screenshot="$WORKDIR/page.png" > /dev/null 2>&1
	[ "$(stat -c %s "$WORKDIR/page.png" 2>/dev/null || echo 0)" -gt 20000 ] &&
		{ [ -z "${SCREENSHOT_OUT:-}" ] || cp "$WORKDIR/page.png" "$SCREENSHOT_OUT"; }
}
check "a screenshot of the page" shot
button() {
	local code d0
	d0=$(cm 'mptcp_concentrator_speedtests_total{result="down"}') || return 1
	# Without the page's header (a cross-site form would send none): refused.
	code=$(C -o /dev/null -w '%{http_code}' -X POST -H "Cookie: gwa=$TOKEN" "$URL/speedtest?line=gw-p2&seconds=2") || return 1
	[ "$code" = 403 ] || { echo "POST without X-Requested-With: $code"; return 1; }
	code=$(C -o /dev/null -w '%{http_code}' -X POST -H "Cookie: gwa=$TOKEN" -H "X-Requested-With: gw-agent" \
		"$URL/speedtest?line=gw-p2&seconds=2") || return 1
	[ "$code" = 202 ] || { echo "POST: $code"; return 1; }
	wait_for 20 sh -c "! ip netns exec $(ns gw) $AGENT status --control $WORKDIR/agent.sock | grep -q '^speedtest gw-p2: running'" &&
		A status | grep '^speedtest gw-p2' && [ "$(cm 'mptcp_concentrator_speedtests_total{result="down"}')" = $((d0 + 1)) ]
}
check "the page's button runs a speed test (POST with the cookie and its header; refused without the header)" button
# The LuCI app's view (deploy/openwrt/luci-app-gw-agent), in Chromium with
# LuCI's few functions it calls stubbed, on this agent's status --json.
luci() {
	A status --json > "$WORKDIR/luci-status.json" || return 1
	"$PY" - ../../deploy/openwrt/luci-app-gw-agent/htdocs/luci-static/resources/view/gw-agent/status.js \
		"$WORKDIR/luci-status.json" > "$WORKDIR/luci.html" <<'PYEOF' || return 1
import json, sys
src, status = open(sys.argv[1]).read(), json.load(open(sys.argv[2]))
print("""<!DOCTYPE html><html><body><pre id="errors"></pre><script>
const errs = [];
window.onerror = (m) => { errs.push(String(m)); document.getElementById('errors').textContent = errs.join('\\n'); };
function _(s) { return s; }
function E(tag, attrs, kids) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (typeof v === 'function') e.addEventListener(k, v); else e.setAttribute(k, v);
  }
  for (const k of (Array.isArray(kids) ? kids : kids == null ? [] : [kids]))
    if (k != null) e.append(k instanceof Node ? k : String(k));
  return e;
}
const STATUS = %s;
const fs = { exec_direct: () => Promise.resolve(STATUS), exec: () => Promise.resolve({ code: 0 }) };
const poll = { add: () => {} };
const ui = { createHandlerFn: (ctx, fn, ...a) => (ev) => fn.apply(ctx, a.concat([ev])), addNotification: () => {} };
const view = { extend: (o) => o };
try {
  const v = new Function('view', 'fs', 'poll', 'ui', 'E', '_', %s)(view, fs, poll, ui, E, _);
  v.load().then((s) => { document.body.append(v.render(s)); document.body.dataset.ok = '1'; })
    .catch((e) => window.onerror(e));
} catch (e) { window.onerror(e); }
</script></body></html>""" % (json.dumps(status), json.dumps(src)))
PYEOF
	"$CHROMIUM" --headless --no-sandbox --disable-gpu --no-first-run --disable-dev-shm-usage \
		--user-data-dir="$WORKDIR/chromium-luci" --virtual-time-budget=2000 --dump-dom \
		"file://$WORKDIR/luci.html" > "$WORKDIR/luci-dom.html" 2> /dev/null || return 1
	grep -o '<pre id="errors">[^<]*' "$WORKDIR/luci-dom.html"
	grep -q 'data-ok="1"' "$WORKDIR/luci-dom.html" && grep -q '<pre id="errors"></pre>' "$WORKDIR/luci-dom.html" &&
		grep -q 'data-line="gw-p1"' "$WORKDIR/luci-dom.html" && grep -q 'data-line="gw-p2"' "$WORKDIR/luci-dom.html"
}
check "the LuCI app's view renders the agent's status (each line, no errors)" luci
json_ok() {
	local f
	for f in ../../deploy/openwrt/luci-app-gw-agent/root/usr/share/luci/menu.d/*.json \
		 ../../deploy/openwrt/luci-app-gw-agent/root/usr/share/rpcd/acl.d/*.json; do
		"$PY" -c 'import json,sys; json.load(open(sys.argv[1]))' "$f" || { echo "$f"; return 1; }
	done
}
check "the LuCI app's menu and ACL files are JSON" json_ok
check "agent exits cleanly" stop_agent_log "$AGENT_PID" "$WORKDIR/agent.log"
check "concentrator exits cleanly" stop_concentrator "$CONC_PID" conc
finish
