#!/bin/sh
# Soak: REQUESTS requests of a mixed load through real Mongrel2 → m2bridge fastcgi → php-fpm,
# then m2bridge's memory, descriptors, children and the upload temp files, before and after.
#   bulk (SOAK_WRK_PCT, default 90%): wrk, keep-alive GETs of a tiny PHP script
#   the rest, at the same time: bench/soak_driver.py — 1 MiB downloads, streamed replies,
#   100 KiB uploads (Mongrel2's async upload path), pipelined bursts of 20 GETs, clients that
#   disconnect mid-response or mid-upload, and bursts of 40 over --max-requests 8 --queue 16 (503s)
# A warm-up of SOAK_WARMUP_PCT (default 5) % more requests runs first; "before" is taken after it.
# Prints responses by status and a verdict line against the goal (RSS growth < 1 MiB).
# A benchmark, not a test. Usage: bench/soak.sh [REQUESTS]      (default 1000000)
# Knobs: SOAK_REQUESTS (same as the argument), SOAK_WARMUP_PCT (5), SOAK_WRK_PCT (90),
#   SOAK_CONNS (wrk connections, 8), SOAK_WRK_THREADS (2), SOAK_DRIVER_THREADS (4),
#   SOAK_MAX_SECONDS (time bound of each phase, 3600), SOAK_SAMPLE_SECONDS (RSS sampling, 5),
#   SOAK_SETTLE (seconds of quiet before each snapshot, 3), SOAK_KEEP=1 keeps the temp dir,
#   M2BRIDGE (binary; default build-bench/m2bridge, built here).
set -eu
REQUESTS=${1:-${SOAK_REQUESTS:-1000000}}
WARMUP_PCT=${SOAK_WARMUP_PCT:-5}
WRK_PCT=${SOAK_WRK_PCT:-90}
CONNS=${SOAK_CONNS:-8}
WRK_THREADS=${SOAK_WRK_THREADS:-2}
DRIVER_THREADS=${SOAK_DRIVER_THREADS:-4}
export SOAK_MAX_SECONDS=${SOAK_MAX_SECONDS:-3600}
SAMPLE=${SOAK_SAMPLE_SECONDS:-5}
SETTLE=${SOAK_SETTLE:-3}
GOAL_KB=1024
cd "$(dirname "$0")/.."
WITH_BENCH=1 ./scripts/deps.sh
if [ -z "${M2BRIDGE:-}" ]; then
  [ -f build-bench/build.ninja ] || meson setup build-bench --buildtype=release >/dev/null
  ninja -C build-bench >/dev/null || { echo "soak: build failed (ninja -C build-bench); M2BRIDGE=/path/to/m2bridge uses another binary"; exit 1; }
  M2BRIDGE=build-bench/m2bridge
fi
. bench/lib.sh
PY=/usr/bin/python3

RUN=$(mktemp -d /tmp/m2b-soak-XXXXXX)
chmod 755 "$RUN"
mkdir -p "$RUN/run" "$RUN/logs" "$RUN/tmp" "$RUN/www"
pids=""
cleanup() {
  for p in $pids; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  if [ "${SOAK_KEEP:-0}" = 1 ]; then echo "soak: kept $RUN"; else rm -rf "$RUN"; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

kb() { awk -v k="$2:" '$1 == k {print $2}' "/proc/$1/status" 2>/dev/null || echo 0; }

# The scripts (bench/soak_driver.py checks their bodies).
cat > "$RUN/www/hello.php" <<'PHP'
<?php
header('Content-Type: text/plain');
echo "Hello, world\n";
PHP
cat > "$RUN/www/big.php" <<'PHP'
<?php
header('Content-Type: application/octet-stream');
echo str_repeat('0123456789abcdef', 65536);
PHP
cat > "$RUN/www/stream.php" <<'PHP'
<?php
header('Content-Type: text/plain');
$n = min(intval($_GET['n'] ?? 8), 100);
for ($i = 0; $i < $n; $i++) {
    echo sprintf('piece %04d ', $i), str_repeat('x', 1000), "\n";
    flush();
    usleep(3000);
}
PHP
cp bench/upload.php "$RUN/www/upload.php"

start_php_fpm 4

M2_PORT=$(free_port); SEND=$(free_port); RECV=$(free_port)
start_mongrel2 "$(handler h "$SEND" "$RECV")" "'/': h"   # lib.sh: upload.temp_store = tmp/upload.XXXXXX
tries=0
while [ ! -S "$RUN/run/php.sock" ]; do
  tries=$((tries + 1)); [ $tries -lt 100 ] || { echo "soak: php-fpm did not start; logs in $RUN/logs"; exit 1; }
  sleep 0.1
done
"$M2BRIDGE" fastcgi --send-spec "$(endpoint "$SEND")" --recv-spec "$(endpoint "$RECV")" \
  --document-root "$RUN/www" --upload-store "$RUN/tmp/upload.XXXXXX" --max-requests 8 --queue 16 \
  --log-level warn "unix:$RUN/run/php.sock" >> "$RUN/logs/m2bridge.log" 2>&1 &
BR=$!
pids="$pids $BR"
tries=0
until curl -sf -m 5 -o /dev/null "http://127.0.0.1:$M2_PORT/hello.php"; do
  tries=$((tries + 1)); [ $tries -lt 100 ] || { echo "soak: servers did not answer; logs in $RUN/logs"; exit 1; }
  sleep 0.2
done

snapshot() {  # NAME: prints and sets RSS_<NAME> HWM_<NAME> FDS_<NAME> KIDS_<NAME> TMP_<NAME>
  rss=$(kb "$BR" VmRSS); hwm=$(kb "$BR" VmHWM); threads=$(kb "$BR" Threads)
  fds=$(ls "/proc/$BR/fd" 2>/dev/null | wc -l)
  kids=$(ps -o pid= --ppid "$BR" | wc -l)
  tmpf=$(ls "$RUN/tmp" | wc -l)
  printf '%-7s m2bridge VmRSS %6s kB  VmHWM %6s kB  fds %4s  threads %s  children %s  upload temp files %s\n' \
    "$1:" "$rss" "$hwm" "$fds" "$threads" "$kids" "$tmpf"
  eval "RSS_$1=$rss HWM_$1=$hwm FDS_$1=$fds KIDS_$1=$kids TMP_$1=$tmpf"
}

# One phase: wrk and the driver at the same time. phase NAME TOTAL_REQUESTS DRIVER_SECONDS
# (the driver spreads its requests over about DRIVER_SECONDS, or until wrk is done; 0: no pacing)
phase() {
  n_wrk=$(($2 * WRK_PCT / 100)); n_drv=$(($2 - n_wrk))
  per_thread=$(( (n_wrk + WRK_THREADS - 1) / WRK_THREADS )); [ "$per_thread" -ge 1 ] || per_thread=1
  echo "-- $1: $2 requests: wrk $n_wrk (keep-alive GET /hello.php, $WRK_THREADS threads, $CONNS connections), driver $n_drv ($DRIVER_THREADS threads, spread over ~${3}s)"
  start=$(date +%s.%N)
  wrk -t "$WRK_THREADS" -c "$CONNS" -d "${SOAK_MAX_SECONDS}s" --timeout 30s -s bench/soak_wrk.lua \
    "http://127.0.0.1:$M2_PORT/hello.php" -- "$per_thread" "$RUN/run" > "$RUN/logs/wrk-$1.out" 2>&1 &
  wrk_pid=$!
  SOAK_DRIVER_SECONDS=$3 $PY bench/soak_driver.py "$M2_PORT" "$n_drv" "$DRIVER_THREADS" "$(date +%s)" > "$RUN/logs/driver-$1.out" 2>&1 &
  drv_pid=$!
  pids="$pids $wrk_pid $drv_pid"
  # wrk's threads stop after their share (bench/soak_wrk.lua leaves run/wrk-done-N); its main
  # thread then needs SIGINT to print the results. Bounded by SOAK_MAX_SECONDS through wrk -d.
  while kill -0 "$wrk_pid" 2>/dev/null; do
    if [ "$(ls "$RUN/run" | grep -c '^wrk-done-')" -ge "$WRK_THREADS" ]; then kill -INT "$wrk_pid" 2>/dev/null || true; break; fi
    sleep 0.2
  done
  wait "$wrk_pid" || echo "soak: wrk exited with status $?"
  rm -f "$RUN/run"/wrk-done-*
  kill -USR1 "$drv_pid" 2>/dev/null || true   # wrk is done: the driver stops pacing itself
  wait "$drv_pid" || echo "soak: driver exited with status $?"
  secs=$(echo "$start $(date +%s.%N)" | awk '{printf "%.1f", $2 - $1}')
  echo "   $secs s; wrk: $(awk '/^Requests\/sec/ {print $2 " req/s"} /Latency/ && !/Distribution/ {print "latency avg " $2 ", max " $4}' "$RUN/logs/wrk-$1.out" | paste -sd ' ' -)"
  echo "   wrk responses: $(awk '$1 == "wrk-status" {printf "%s: %s  ", $2, $3}' "$RUN/logs/wrk-$1.out")$(grep '^wrk-errors' "$RUN/logs/wrk-$1.out" | cut -d' ' -f2-)"
  grep -v '^driver-status' "$RUN/logs/driver-$1.out" | sed 's/^/   /'
  awk '$1 == "wrk-status" {print $2, $3} $1 == "driver-status" {print $2, $3}' \
    "$RUN/logs/wrk-$1.out" "$RUN/logs/driver-$1.out" > "$RUN/logs/status-$1"
}

echo "soak: $REQUESTS requests after a warm-up of $WARMUP_PCT%; m2bridge --max-requests 8 --queue 16; php-fpm 4 workers; $(nproc) cores"
WARM=$((REQUESTS * WARMUP_PCT / 100))
[ "$WARM" -ge 100 ] || WARM=100
phase warmup "$WARM" 0
sleep "$SETTLE"
snapshot before

( t=0; while kill -0 "$BR" 2>/dev/null && [ "$t" -le "$SOAK_MAX_SECONDS" ]; do
    echo "$t $(kb "$BR" VmRSS) $(ls "/proc/$BR/fd" 2>/dev/null | wc -l)"; sleep "$SAMPLE"; t=$((t + SAMPLE)); done
) > "$RUN/logs/samples" 2>/dev/null &
sampler=$!
pids="$pids $sampler"
# Spread the driver's part over the time wrk should take, from wrk's rate in the warm-up (x 0.8).
pace=$(awk -v n="$((REQUESTS * WRK_PCT / 100))" '/^Requests\/sec/ {if ($2 > 0) printf "%d", 0.8 * n / $2; exit}' "$RUN/logs/wrk-warmup.out")
phase soak "$REQUESTS" "${pace:-0}"
kill "$sampler" 2>/dev/null || true
sleep "$SETTLE"
if ! kill -0 "$BR" 2>/dev/null; then
  echo "soak: m2bridge DIED during the run; its log:"; tail -20 "$RUN/logs/m2bridge.log"
  echo "soak: RSS growth ? KB (goal < $GOAL_KB KB), m2bridge died"
  exit 1
fi
snapshot after

lines=$(grep -c '' "$RUN/logs/samples" || true)
step=$(( (lines + 11) / 12 )); [ "$step" -ge 1 ] || step=1
echo "m2bridge VmRSS during the run (s: kB, fds): $(awk -v s="$step" 'NR % s == 1 || s == 1 {printf "%s: %s %s, ", $1, $2, $3}' "$RUN/logs/samples" | sed 's/, $//')"
echo "responses in the measured part, by status: $(awk '{n[$1] += $2} END {for (k in n) print k ": " n[k]}' "$RUN/logs/status-soak" | sort -n | paste -sd ' ' - | sed 's/ \([^ ]*:\)/, \1/g')"
bad=$(awk '$1 == "bad-body" || $1 ~ /^error/ || $1 == "timeout" || ($1 ~ /^[0-9]+$/ && $1 >= 500 && $1 != 503) {n += $2} END {print n + 0}' "$RUN/logs/status-soak")
echo "m2bridge log: $(grep -c '' "$RUN/logs/m2bridge.log" || true) lines ($(grep -ci 'error' "$RUN/logs/m2bridge.log" || true) with 'error'); bad bodies, timeouts, errors, 5xx other than 503: $bad"
growth=$((RSS_after - RSS_before))
verdict="met"
[ "$growth" -lt "$GOAL_KB" ] && [ "$FDS_after" -le "$FDS_before" ] && [ "$KIDS_after" = 0 ] && [ "$TMP_after" = 0 ] || verdict="NOT met"
printf 'soak: RSS growth %d KB (goal < %d KB), fds %+d, children %d, temp files %d: goal %s\n' \
  "$growth" "$GOAL_KB" $((FDS_after - FDS_before)) "$KIDS_after" "$TMP_after" "$verdict"
