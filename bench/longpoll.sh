#!/bin/sh
# Long-poll at scale (issue 8, goal 5): N clients hold a long-poll through Mongrel2 → m2bridge →
# php-fpm (bench/longpoll/hold.php answers with an empty X-Mongrel2-Deliver), then one request
# (bench/longpoll/speak.php) answers all of them and itself with one X-Mongrel2-Deliver reply.
# Prints m2bridge's RSS per held connection, the time until the speaker and until the last holder
# got the reply (each body checked), and the CPU time each process spent meanwhile.
# The client is bench/longpoll_driver.c (epoll, C: it must not be what limits the times).
# Goal: <= 200 B of m2bridge RSS per held connection, last holder within 120 ms.
# A benchmark, not a test; run it alone on the machine, e.g. under `nice -n 5`.
# Usage: bench/longpoll.sh [N]          (default 10000; LONGPOLL_N also works)
# Knobs: M2BRIDGE (binary; default build-bench/m2bridge, built here), FPM_WORKERS (4),
#        LONGPOLL_PERF=1 (perf record of m2bridge and Mongrel2 around the delivery, self time by
#        symbol; it slows both, so its times are not the benchmark's; keeps the temp dir),
#        LONGPOLL_KEEP=1 (keep the temp dir), LP_WINDOW (holds in flight while opening, 200).
# The 64 KiB limit on a response head in m2bridge caps N near 10,500 (one X-Mongrel2-Deliver
# header lists every id).
set -eu
N=${1:-${LONGPOLL_N:-10000}}
WORKERS=${FPM_WORKERS:-4}
cd "$(dirname "$0")/.."
if [ -z "${M2BRIDGE:-}" ]; then
  [ -f build-bench/build.ninja ] || meson setup build-bench --buildtype=release >/dev/null
  ninja -C build-bench >/dev/null || { echo "longpoll: build failed (ninja -C build-bench); M2BRIDGE=/path/to/m2bridge uses another binary"; exit 1; }
  M2BRIDGE=build-bench/m2bridge
fi
. bench/lib.sh

# Every process started here inherits this: Mongrel2 and the driver each need N + a few descriptors.
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
FDS=$(ulimit -n)
if [ "$FDS" != unlimited ] && [ "$FDS" -lt $((N + 100)) ]; then
  echo "longpoll: $N connections need more than $FDS open files (ulimit -Hn)"; exit 1
fi
[ "$FDS" = unlimited ] && FDS=$((N + 1000))

RUN=$(mktemp -d /tmp/m2b-longpoll-XXXXXX)
chmod 755 "$RUN"
mkdir -p "$RUN/run" "$RUN/logs" "$RUN/tmp" "$RUN/www"
cp bench/longpoll/hold.php bench/longpoll/speak.php bench/longpoll/ping.php "$RUN/www/"
: > "$RUN/holds"
pids=""
running() { [ -r "/proc/$1/stat" ] && ! grep -q '^[0-9]* (.*) Z' "/proc/$1/stat" 2>/dev/null; }
cleanup() {
  for p in $pids; do kill "$p" 2>/dev/null || true; done
  # Mongrel2's graceful stop can wait for client connections to time out: 3 s, then SIGKILL.
  tries=0
  while [ $tries -lt 30 ]; do
    alive=0; for p in $pids; do running "$p" && alive=1; done
    [ $alive = 1 ] || break
    tries=$((tries + 1)); sleep 0.1
  done
  for p in $pids; do running "$p" && kill -KILL "$p" 2>/dev/null; done
  wait 2>/dev/null || true
  if [ "${LONGPOLL_KEEP:-0}" = 1 ]; then echo "longpoll: kept $RUN"; else rm -rf "$RUN"; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

cc -O2 -o "$RUN/longpoll_driver" bench/longpoll_driver.c

start_php_fpm "$WORKERS" "env[LONGPOLL_HOLDS] = $RUN/holds"
FPM_PID=${pids##* }

M2_PORT=$(free_port); SEND=$(free_port); RECV=$(free_port); METRICS=$(free_port)
# superpoll.max_fd: Mongrel2's default (10240) is too few for N clients.
M2_SETTINGS="'superpoll.max_fd': $((FDS - 16))" start_mongrel2 "$(handler h "$SEND" "$RECV")" "'/': h"
M2_PID=${pids##* }

tries=0
while [ ! -S "$RUN/run/php.sock" ]; do
  tries=$((tries + 1)); [ $tries -lt 100 ] || { echo "longpoll: php-fpm did not start; logs in $RUN/logs"; exit 1; }
  sleep 0.1
done
# A queue as long as N: the driver paces itself, but nothing here should be refused for it.
"$M2BRIDGE" fastcgi --send-spec "$(endpoint "$SEND")" --recv-spec "$(endpoint "$RECV")" \
  --document-root "$RUN/www" --max-requests "$WORKERS" --queue "$N" --metrics "127.0.0.1:$METRICS" \
  --log-level warn "unix:$RUN/run/php.sock" > "$RUN/logs/m2bridge.log" 2>&1 &
BR=$!
pids="$pids $BR"
tries=0
until curl -sf -m 5 -o /dev/null "http://127.0.0.1:$M2_PORT/ping.php" && curl -sf -m 5 -o /dev/null "http://127.0.0.1:$METRICS/metrics"; do
  tries=$((tries + 1)); [ $tries -lt 100 ] || { echo "longpoll: servers did not answer; logs in $RUN/logs"; exit 1; }
  sleep 0.2
done
FPM_PIDS=$(echo "$FPM_PID" $(pgrep -P "$FPM_PID") | tr ' ' ',')

if [ "${LONGPOLL_PERF:-0}" = 1 ]; then
  export LP_BEFORE_SPEAK="perf record -q -F 10000 -p $BR,$M2_PID -o $RUN/perf.data > $RUN/logs/perf.out 2>&1 & echo \$! > $RUN/run/perf.pid; sleep 1"
  export LP_AFTER_SPEAK="kill -INT \$(cat $RUN/run/perf.pid); while kill -0 \$(cat $RUN/run/perf.pid) 2>/dev/null; do sleep 0.1; done"
fi

echo "longpoll: $N clients, php-fpm workers $WORKERS, $(nproc) cores, open files $FDS, m2bridge $M2BRIDGE"
status=0
"$RUN/longpoll_driver" "$M2_PORT" "$N" "$RUN/holds" "$METRICS" "$BR" "$M2_PID" "$FPM_PIDS" || status=$?

if [ "${LONGPOLL_PERF:-0}" = 1 ] && [ -s "$RUN/perf.data" ]; then
  perf report -i "$RUN/perf.data" --no-children --stdio --sort comm,dso,sym --percent-limit 1 2>/dev/null > "$RUN/perf.txt" || true
  perf report -i "$RUN/perf.data" --no-children --stdio --sort comm -g none 2>/dev/null > "$RUN/perf-comm.txt" || true
  echo "perf (m2bridge and mongrel2 during the delivery, self time; all in $RUN/perf.txt):"
  grep -E '^ +[0-9.]+%' "$RUN/perf-comm.txt" | head -5
  grep -E '^ +[0-9.]+%' "$RUN/perf.txt" | head -30
  LONGPOLL_KEEP=1
fi
if [ -s "$RUN/logs/m2bridge.log" ]; then
  echo "m2bridge log: $(grep -c '' "$RUN/logs/m2bridge.log") lines, last ones:"
  tail -3 "$RUN/logs/m2bridge.log" | cut -c1-200
fi
exit "$status"
