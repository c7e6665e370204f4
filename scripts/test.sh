#!/bin/sh
# Installs what is needed, builds m2bridge with AddressSanitizer and UBSan,
# and runs every test: doctest unit tests, integration tests against real
# mongrel2 / php-fpm / libfcgi, and each libFuzzer target for a bounded time.
set -u
cd "$(dirname "$0")/.."
./scripts/deps.sh || { echo "dependency install failed"; exit 1; }

BUILD=build-test
if [ ! -f "$BUILD/build.ninja" ]; then
  # -O1: sanitizers stay quick at run time, and the build is a third faster than -O2.
  meson setup "$BUILD" -Db_sanitize=address,undefined -Db_lundef=false --buildtype=debug -Doptimization=1 || exit 1
fi
ninja -C "$BUILD" || exit 1

export ASAN_OPTIONS=detect_leaks=1:abort_on_error=0
export UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1
LOGS=$(mktemp -d)
passed=0
failed=0
status=0
# Adds the passed/failed counts a runner printed in its summary line.
tally() {  # log file, sed pattern giving "P F"
  set -- $(sed -n "$2" "$1" | tail -1)
  passed=$((passed + ${1:-0}))
  failed=$((failed + ${2:-1}))
}

"$BUILD/tests/unit_tests" 2>&1 | tee "$LOGS/unit"
tally "$LOGS/unit" 's/.*test cases: *[0-9]* | *\([0-9]*\) passed | *\([0-9]*\) failed.*/\1 \2/p'

# The fuzz targets build and run on the second core while the integration
# tests, which mostly wait on their servers, run on the first.
tests/fuzz/run.sh "${M2B_FUZZ_SECONDS:-6}" > "$LOGS/fuzz" 2>&1 &
fuzz_pid=$!

M2B_BUILD_DIR="$PWD/$BUILD" /usr/bin/python3 tests/integration/run.py 2>&1 | tee "$LOGS/integration"
tally "$LOGS/integration" 's/^integration: \([0-9]*\) passed, \([0-9]*\) failed.*/\1 \2/p'

fuzz_status=0
wait "$fuzz_pid" || fuzz_status=$?
cat "$LOGS/fuzz"
passed=$((passed + $(grep -c '^fuzz: .* ok' "$LOGS/fuzz")))
failed=$((failed + $(grep -c 'FAILED' "$LOGS/fuzz")))
# A fuzz build that broke before any target ran names no target: still a failure.
if [ "$fuzz_status" -ne 0 ] && ! grep -q 'FAILED' "$LOGS/fuzz"; then
  echo "fuzz: run.sh exited with $fuzz_status before running its targets"
  failed=$((failed + 1))
fi

rm -rf "$LOGS"
echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
