#!/usr/bin/env bash
# suite-repeat.sh - are the namespace suites reliable? Runs them N times in
# a row in the plain and the sanitizer build, and names every failure (the
# test and its failed checks). Not a test: it reports.
#
#   sudo benches/suite-repeat.sh [N]          # default 10; about 12 min a round
#   BUILDS="build build-asan" SUITE=netns
#
# Results: build/repeat/rounds.jsonl (one line per build and round) and a
# summary: rounds, rounds that passed, and each failed check with its count.
set -u
cd "$(dirname "$0")/.."
N=${1:-10}
BUILDS=${BUILDS:-build build-asan}
SUITE=${SUITE:-netns}
OUT=$PWD/build/repeat
mkdir -p "$OUT"
: > "$OUT/rounds.jsonl"
for i in $(seq 1 "$N"); do
	for b in $BUILDS; do
		[ -f "$b/build.ninja" ] || { echo "no $b: run tests/run.sh once first"; exit 1; }
		rm -f "$b/meson-logs/testlog.json"
		t0=$(date +%s)
		ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1 \
			meson test -C "$b" --suite "$SUITE" > "$OUT/last-$b.log" 2>&1
		rc=$?
		/usr/bin/python3 - "$b/meson-logs/testlog.json" "$b" "$i" "$rc" "$(( $(date +%s) - t0 ))" <<'PY' | tee -a "$OUT/rounds.jsonl"
import json, re, sys
path, build, rnd, rc, secs = sys.argv[1:]
tests = []
try:
    tests = [json.loads(l) for l in open(path)]
except OSError:
    pass
failed = {}
for t in tests:
    if t["result"] in ("OK", "EXPECTEDFAIL"):
        continue
    checks = re.findall(r"^\[[^\]]+\] FAIL - (.*)$", t.get("stdout") or "", re.M)
    failed[t["name"].split(" / ")[-1]] = checks or [t["result"]]
print(json.dumps({"round": int(rnd), "build": build, "rc": int(rc), "seconds": int(secs),
                  "tests": len(tests), "failed": failed}))
PY
	done
done
/usr/bin/python3 - "$OUT/rounds.jsonl" <<'PY'
import collections, json, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
ok = [r for r in rows if r["rc"] == 0 and not r["failed"] and r["tests"] > 0]
print(f"\n{len(ok)} of {len(rows)} suite runs passed "
      f"({', '.join(sorted({r['build'] for r in rows}))}; {max((r['round'] for r in rows), default=0)} rounds)")
count = collections.Counter()
for r in rows:
    for t, checks in r["failed"].items():
        for c in checks:
            count[(r["build"], t, c)] += 1
for (b, t, c), n in count.most_common():
    print(f"  {n}x {b} {t}: {c}")
PY
