#!/usr/bin/env bash
# The README's test command: sets up everything and runs all tests.
#
#   1. installs missing Debian packages (deploy/setup.sh)
#   2. builds three trees: build/ (gcc), build-asan/ (gcc, ASan+UBSan),
#      build-fuzz/ (clang, ASan+UBSan, libFuzzer)
#   3. runs every meson test (unit, config, fuzz corpus, netns) in build/ and
#      build-asan/; tests that need root or namespaces skip (77) without them
#   4. runs each libFuzzer harness for FUZZ_SECONDS (default 5) from the
#      checked-in seed corpus; any crash fails the run
#
# Environment: FUZZ_SECONDS=N (0 skips fuzzing), TEST_SUITES="unit fuzz-corpus"
# to run only some meson suites, JOBS=N for meson test parallelism.
set -euo pipefail
cd "$(dirname "$0")/.."
top=$(pwd)

FUZZ_SECONDS=${FUZZ_SECONDS:-5}
JOBS=${JOBS:-$(nproc)}

deploy/setup.sh

configure() {
	local dir=$1; shift
	if [ ! -f "$dir/build.ninja" ]; then
		meson setup "$dir" "$@" > "$dir.setup.log" 2>&1 ||
			{ cat "$dir.setup.log"; echo "meson setup $dir failed"; exit 1; }
		rm -f "$dir.setup.log"
	fi
	ninja -C "$dir" > "$dir/ninja.log" 2>&1 ||
		{ grep -E "error|warning|FAILED" "$dir/ninja.log" | head -40; echo "build of $dir failed"; exit 1; }
	echo "built $dir"
}

configure build
configure build-asan -Dsanitize=true
CC=clang-14 configure build-fuzz -Dsanitize=true -Dfuzz=true

passed=0; failed=0; skipped=0; cases=0
suite_args=()
for s in ${TEST_SUITES:-}; do suite_args+=(--suite "$s"); done

# Under CI=true a skipped test is a failure unless it is named here, with
# the reason it may skip on CI's machine. Keep this list short.
CI_SKIP_ALLOWED=(
	# (none: every test can run as root on CI's Debian 12 machine)
)

run_meson_tests() {
	local dir=$1 rc=0 log
	log=$dir/meson-logs/testlog.json
	echo "== meson test in $dir"
	# The counts below come from meson's log: never from an earlier run's.
	rm -f "$log"
	# ASan: fail on leaks too; UBSan already aborts (-fno-sanitize-recover).
	ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 \
	UBSAN_OPTIONS=print_stacktrace=1 \
	meson test -C "$dir" --num-processes "$JOBS" --print-errorlogs \
		"${suite_args[@]}" || rc=$?
	if [ ! -s "$log" ]; then
		echo "meson test in $dir wrote no test log (exit $rc): nothing ran"
		failed=$((failed + 1)); return 0
	fi
	# Count from meson's machine-readable log, so the closing line says
	# what ran; meson's own status is a failure of its own when the log
	# shows none (a rebuild failure, an unknown suite).
	read -r p f s c n sk < <(CI="${CI:-}" /usr/bin/python3 - "$log" "${CI_SKIP_ALLOWED[@]}" <<'PY'
import json, os, sys, re
p = f = s = c = n = 0
allowed = set(sys.argv[2:])
bad_skips = []
for line in open(sys.argv[1]):
    t = json.loads(line)
    n += 1
    r = t["result"]
    if r in ("OK", "EXPECTEDFAIL"): p += 1
    elif r == "SKIP":
        if os.environ.get("CI") == "true" and t["name"].split(" / ")[-1] not in allowed:
            f += 1; bad_skips.append(t["name"])
        else:
            s += 1
    else: f += 1
    # TAP tests: count their cases as well.
    c += len(re.findall(r"^(?:not )?ok \d+", t.get("stdout") or "", re.M))
print(p, f, s, c, n, ",".join(bad_skips) or "-")
PY
)
	[ "$sk" != "-" ] && echo "skipped under CI=true and not on CI_SKIP_ALLOWED (a failure): $sk"
	if [ "$n" -eq 0 ]; then
		echo "meson test in $dir ran no test (TEST_SUITES='${TEST_SUITES:-}')"
		f=$((f + 1))
	elif [ "$rc" -ne 0 ] && [ "$f" -eq 0 ]; then
		echo "meson test in $dir exited $rc with no failed test in its log"
		f=$((f + 1))
	fi
	passed=$((passed + p)); failed=$((failed + f)); skipped=$((skipped + s))
	cases=$((cases + c))
	return 0
}

run_meson_tests build
run_meson_tests build-asan

fuzz_failed=0
if [ "$FUZZ_SECONDS" -gt 0 ]; then
	mkdir -p build-fuzz/artifacts
	if ! compgen -G "build-fuzz/tests/fuzz/fuzz-*" > /dev/null; then
		echo "no libFuzzer harness in build-fuzz/tests/fuzz: nothing fuzzed"
		failed=$((failed + 1))
	fi
	# The harnesses run JOBS at a time (each for FUZZ_SECONDS on one core):
	# the same fuzzing, in a fraction of the suite's time.
	names=()
	for fz in build-fuzz/tests/fuzz/fuzz-*; do
		[ -f "$fz" ] && [ -x "$fz" ] || continue
		name=${fz##*/fuzz-}
		while [ "$(jobs -rp | wc -l)" -ge "$JOBS" ]; do wait -n; done
		echo "== fuzzing $name for ${FUZZ_SECONDS}s"
		rm -f "build-fuzz/fuzz-$name.rc"
		(
			work=$(mktemp -d)
			"$fz" -max_total_time="$FUZZ_SECONDS" -print_final_stats=1 \
				-max_len=2048 -artifact_prefix="$top/build-fuzz/artifacts/$name-" \
				"$work" "tests/fuzz/corpus/$name" > "build-fuzz/fuzz-$name.log" 2>&1
			echo $? > "build-fuzz/fuzz-$name.rc"
			rm -rf "$work"
		) &
		names+=("$name")
	done
	wait
	for name in "${names[@]}"; do
		if [ "$(cat "build-fuzz/fuzz-$name.rc" 2>/dev/null)" = 0 ]; then
			execs=$(awk '/stat::number_of_executed_units/ {print $2}' "build-fuzz/fuzz-$name.log")
			rate=$(awk '/stat::average_exec_per_sec/ {print $2}' "build-fuzz/fuzz-$name.log")
			echo "fuzz $name: $execs executions, $rate/s, no findings"
			passed=$((passed + 1))
		else
			echo "fuzz $name: FAILED; reproducer in build-fuzz/artifacts/, log:"
			grep -E "ERROR|SUMMARY|Test unit written" "build-fuzz/fuzz-$name.log" | head -20
			failed=$((failed + 1)); fuzz_failed=1
		fi
	done
fi

echo
echo "($cases TAP cases inside the unit tests; each build counts separately)"
echo "tests: $passed passed, $failed failed, $skipped skipped"
[ "$failed" -eq 0 ]
