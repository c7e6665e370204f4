#!/bin/sh
# Where CPU per request goes, by thread: m2bridge (one loop thread since it speaks ZMTP itself;
# a build from before has libzmq's I/O thread as well) beside the null handler's, with context
# switches per request (issue 8, goal 1), and the same for the floor relay (bench/fcgi_floor.c: the
# null handler plus one fixed FastCGI exchange, on a php-fpm pool of its own). One Mongrel2, php-fpm
# (4 workers) and the libfcgi C example; wrk -t2 -c CONNS (-t1 at one connection) for SECONDS per path.
# CPU is each thread's schedstat (ns on CPU) over the run, divided by the requests wrk completed.
# A benchmark, not a test. Usage: bench/threads.sh [SECONDS] [CONNECTIONS]
# Knobs: M2BRIDGE (binary; default build-bench/m2bridge, built here), BENCH_TRANSPORT=ipc.
set -eu
DURATION=${1:-5}
CONNS=${2:-16}
cd "$(dirname "$0")/.."
if [ -z "${M2BRIDGE:-}" ]; then
  [ -f build-bench/build.ninja ] || meson setup build-bench --buildtype=release >/dev/null
  ninja -C build-bench >/dev/null
  M2BRIDGE=build-bench/m2bridge
fi
RUN=$(mktemp -d /tmp/m2b-threads-XXXXXX)
mkdir -p "$RUN/run" "$RUN/logs" "$RUN/tmp" "$RUN/www"
cp bench/hello.php "$RUN/www/"
. bench/lib.sh
M2_PORT=$(free_port); SEND=$(free_port); RECV=$(free_port); SEND2=$(free_port); RECV2=$(free_port)
SEND3=$(free_port); RECV3=$(free_port); SEND4=$(free_port); RECV4=$(free_port)
cc -O2 -o "$RUN/null_handler" bench/null_handler.c -lzmq
cc -O2 -o "$RUN/fcgi_floor" bench/fcgi_floor.c -lzmq
pids=""
cleanup() { for p in $pids; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; rm -rf "$RUN"; }
trap cleanup EXIT INT TERM
start_php_fpm 4
start_php_fpm 4 "" floor
start_mongrel2 "$(handler h "$SEND" "$RECV")
$(handler c "$SEND2" "$RECV2")
$(handler n "$SEND3" "$RECV3")
$(handler f "$SEND4" "$RECV4")" "'/': h, '/c/': c, '/null/': n, '/floor/': f"
M2_PID=${pids##* }
"$RUN/null_handler" "$(endpoint "$SEND3")" "$(endpoint "$RECV3")" &
NULL_PID=$!; pids="$pids $!"
build-bench/examples/fcgi-hello "unix:$RUN/run/c.sock" > "$RUN/logs/c.out" 2>&1 &
pids="$pids $!"
while [ ! -S "$RUN/run/php.sock" ] || [ ! -S "$RUN/run/c.sock" ]; do sleep 0.1; done
# The floor relay (bench/fcgi_floor.c) on a php-fpm pool of its own, with one kept connection
# per worker, as m2bridge --max-requests 4 has.
"$RUN/fcgi_floor" "$(endpoint "$SEND4")" "$(endpoint "$RECV4")" "$RUN/run/floor.sock" 4 "$RUN/www/hello.php" &
FLOOR_PID=$!; pids="$pids $!"
"$M2BRIDGE" fastcgi --send-spec "$(endpoint "$SEND")" --recv-spec "$(endpoint "$RECV")" \
  --document-root "$RUN/www" --max-requests 4 --log-level warn "unix:$RUN/run/php.sock" &
PHP_BRIDGE=$!; pids="$pids $!"
"$M2BRIDGE" fastcgi --send-spec "$(endpoint "$SEND2")" --recv-spec "$(endpoint "$RECV2")" \
  --log-level warn "unix:$RUN/run/c.sock" &
C_BRIDGE=$!; pids="$pids $!"
tries=0
until curl -sf -m 5 -o /dev/null "http://127.0.0.1:$M2_PORT/hello.php" && curl -sf -m 5 -o /dev/null "http://127.0.0.1:$M2_PORT/null/" \
      && curl -sf -m 5 -o /dev/null "http://127.0.0.1:$M2_PORT/c/x" && curl -sf -m 5 -o /dev/null "http://127.0.0.1:$M2_PORT/floor/"; do
  tries=$((tries + 1)); [ $tries -lt 100 ] || { echo "threads: servers did not answer; logs in $RUN/logs"; exit 1; }
  sleep 0.2
done

# One line per thread: name, ns on CPU, context switches (voluntary + not).
threads() {
  for t in /proc/"$1"/task/*; do
    echo "$(tr ' ' _ < "$t/comm") $(awk '{print $1}' "$t/schedstat") $(awk '/^voluntary_ctxt/ {v = $2} /^nonvoluntary_ctxt/ {n = $2} END {print v + n}' "$t/status")"
  done
}
run() {  # label url pid
  wrk -t 1 -c 8 -d 1 "$2" > /dev/null 2>&1
  threads "$3" > "$RUN/before"; threads "$M2_PID" > "$RUN/m2-before"
  out=$(wrk -t "$WRK_THREADS" -c "$CONNS" -d "$DURATION" --latency "$2")
  threads "$3" > "$RUN/after"; threads "$M2_PID" > "$RUN/m2-after"
  n=$(echo "$out" | awk '/requests in/ {print $1}')
  echo "$1: $(echo "$out" | awk '/^Requests/ {print $2}') req/s, $n requests, p50 $(echo "$out" | awk '$1 == "50%" {print $2}')"
  paste "$RUN/before" "$RUN/after" | awk -v n="$n" '$1 !~ /Reaper/ {printf "  %-18s %6.1f us/request  %5.2f switches/request\n", $1, ($5 - $2) / n / 1000, ($6 - $3) / n}'
  paste "$RUN/m2-before" "$RUN/m2-after" | awk -v n="$n" '{s += $5 - $2; c += $6 - $3} END {printf "  %-18s %6.1f us/request  %5.2f switches/request\n", "mongrel2 (all)", s / n / 1000, c / n}'
}
WRK_THREADS=2; [ "$CONNS" -ge 2 ] || WRK_THREADS=1
echo "threads: $M2BRIDGE, wrk -t$WRK_THREADS -c$CONNS ${DURATION}s, $(nproc) cores, load $(cut -d' ' -f1-3 /proc/loadavg)"
run "mongrel2 -> null handler" "http://127.0.0.1:$M2_PORT/null/" "$NULL_PID"
run "mongrel2 -> floor relay -> php-fpm" "http://127.0.0.1:$M2_PORT/floor/" "$FLOOR_PID"
run "mongrel2 -> m2bridge -> php-fpm" "http://127.0.0.1:$M2_PORT/hello.php" "$PHP_BRIDGE"
run "mongrel2 -> m2bridge -> C app" "http://127.0.0.1:$M2_PORT/c/x" "$C_BRIDGE"
