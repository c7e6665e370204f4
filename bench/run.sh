#!/bin/sh
# One run, same php-fpm pool and script for both:
#   wrk → Mongrel2 → m2bridge → php-fpm     and     wrk → nginx → php-fpm
# Prints requests/s, p50/p99 latency and the ratio. A benchmark, not a test.
# Usage: bench/run.sh [SECONDS] [CONNECTIONS]
set -eu
DURATION=${1:-10}
CONNS=${2:-32}
cd "$(dirname "$0")/.."
ROOT=$PWD
WITH_BENCH=1 ./scripts/deps.sh
[ -f build-bench/build.ninja ] || meson setup build-bench --buildtype=release >/dev/null
ninja -C build-bench >/dev/null

RUN=$(mktemp -d /tmp/m2b-bench-XXXXXX)
mkdir -p "$RUN/run" "$RUN/logs" "$RUN/tmp" "$RUN/www"
cp bench/hello.php "$RUN/www/"
echo "Hello, world" > "$RUN/www/hello.txt"
. bench/lib.sh
FIGURES="$RUN/figures.tsv"; SUMMARY="$RUN/summary.txt"
M2_PORT=$(free_port); NGINX_PORT=$(free_port); SEND=$(free_port); RECV=$(free_port); SEND2=$(free_port); RECV2=$(free_port)
SEND3=$(free_port); RECV3=$(free_port); SEND4=$(free_port); RECV4=$(free_port)
# The floors: a handler that answers with nothing in between (bench/null_handler.c), and a relay
# that adds one fixed FastCGI exchange and nothing else (bench/fcgi_floor.c).
cc -O2 -o "$RUN/null_handler" bench/null_handler.c -lzmq
cc -O2 -o "$RUN/fcgi_floor" bench/fcgi_floor.c -lzmq
SEND5=$(free_port); RECV5=$(free_port)
WORKERS=${FPM_WORKERS:-4}

pids=""
cleanup() { for p in $pids; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; rm -rf "$RUN"; }
trap cleanup EXIT INT TERM

start_php_fpm "$WORKERS"
# The floor relay's own pool: its kept connections would hold the first pool's workers.
start_php_fpm "$WORKERS" "" floor

start_nginx "    root $RUN/www;
    location / {
      include /etc/nginx/fastcgi_params;
      fastcgi_param SCRIPT_FILENAME \$document_root\$fastcgi_script_name;
      fastcgi_pass unix:$RUN/run/php.sock;
    }"
start_mongrel2 "$(handler h "$SEND" "$RECV")
$(handler c "$SEND2" "$RECV2")
$(handler n "$SEND3" "$RECV3")
$(handler c2 "$SEND4" "$RECV4")
$(handler f "$SEND5" "$RECV5")" \
  "'/': h, '/c/': c, '/c2/': c2, '/null/': n, '/floor/': f, '/static/': Dir(base='www/', index_file='hello.txt', default_ctype='text/plain')"
"$RUN/null_handler" "$(endpoint "$SEND3")" "$(endpoint "$RECV3")" &
pids="$pids $!"
build-bench/examples/fcgi-hello "unix:$RUN/run/c.sock" > "$RUN/logs/c.out" 2>&1 &
pids="$pids $!"
while [ ! -S "$RUN/run/php.sock" ] || [ ! -S "$RUN/run/c.sock" ] || [ ! -S "$RUN/run/floor.sock" ]; do sleep 0.1; done
"$RUN/fcgi_floor" "$(endpoint "$SEND5")" "$(endpoint "$RECV5")" "$RUN/run/floor.sock" "$WORKERS" "$RUN/www/hello.php" &
pids="$pids $!"
build-bench/m2bridge fastcgi --send-spec "$(endpoint "$SEND2")" --recv-spec "$(endpoint "$RECV2")" \
  --log-level warn "unix:$RUN/run/c.sock" &
pids="$pids $!"
# The same C app as an operator would run it on 2 cores: two copies, spawned by m2bridge.
build-bench/m2bridge fastcgi --send-spec "$(endpoint "$SEND4")" --recv-spec "$(endpoint "$RECV4")" \
  --log-level warn --spawn 2 -- "$ROOT/build-bench/examples/fcgi-hello" &
pids="$pids $!"
build-bench/m2bridge fastcgi --send-spec "$(endpoint "$SEND")" --recv-spec "$(endpoint "$RECV")" \
  --document-root "$RUN/www" --max-requests "$WORKERS" --log-level warn "unix:$RUN/run/php.sock" &
pids="$pids $!"
tries=0
until curl -sf -m 5 -o /dev/null "http://127.0.0.1:$M2_PORT/hello.php" && curl -sf -m 5 -o /dev/null "http://127.0.0.1:$M2_PORT/c/hello" \
      && curl -sf -m 5 -o /dev/null "http://127.0.0.1:$M2_PORT/c2/hello" \
      && curl -sf -o /dev/null "http://127.0.0.1:$NGINX_PORT/hello.php" && curl -sf -o /dev/null "http://127.0.0.1:$M2_PORT/null/" \
      && curl -sf -o /dev/null "http://127.0.0.1:$M2_PORT/floor/"; do
  tries=$((tries + 1)); [ $tries -lt 100 ] || { echo "bench: servers did not answer; logs in $RUN/logs"; trap - EXIT; exit 1; }
  sleep 0.2
done

echo "php-fpm workers: $WORKERS, wrk: 2 threads, $CONNS connections, ${DURATION}s, $(nproc) cores"
measure "nginx -> php-fpm" "http://127.0.0.1:$NGINX_PORT/hello.php" NGINX
measure "mongrel2 -> m2bridge -> php-fpm" "http://127.0.0.1:$M2_PORT/hello.php" M2B
/usr/bin/python3 -c "print('ratio m2bridge/nginx: %.2f' % ($RPS_M2B / $RPS_NGINX))" | tee -a "$SUMMARY"
# Latency at low load: one connection, one request at a time.
CONNS_SAVED=$CONNS; CONNS=1
measure "nginx -> php-fpm, 1 connection" "http://127.0.0.1:$NGINX_PORT/hello.php" NGINX1
measure "m2bridge -> php-fpm, 1 connection" "http://127.0.0.1:$M2_PORT/hello.php" M2B1
# The floor of any Mongrel2 handler at one connection: what Mongrel2 and ZeroMQ add alone.
measure "mongrel2 -> null handler, 1 connection" "http://127.0.0.1:$M2_PORT/null/" NULL1
measure "mongrel2 -> floor relay -> php-fpm, 1 connection" "http://127.0.0.1:$M2_PORT/floor/" FLOOR1
CONNS=$CONNS_SAVED
echo "p50 at 1 connection: m2bridge $P50_M2B1, nginx $P50_NGINX1 (goal: within 100us); null handler $P50_NULL1, floor relay $P50_FLOOR1" | tee -a "$SUMMARY"
kill_bridge_php() { pkill -f "build-bench/m2bridge fastcgi --send-spec $(endpoint "$SEND") " || true; }
kill_bridge_php
sleep 0.5
# Kept backend connections are the default over a unix socket: the same without them.
build-bench/m2bridge fastcgi --send-spec "$(endpoint "$SEND")" --recv-spec "$(endpoint "$RECV")" \
  --document-root "$RUN/www" --max-requests "$WORKERS" --no-keep-conn --log-level warn "unix:$RUN/run/php.sock" &
pids="$pids $!"
until curl -sf -m 5 -o /dev/null "http://127.0.0.1:$M2_PORT/hello.php"; do sleep 0.2; done
measure "mongrel2 -> m2bridge -> php-fpm, --no-keep-conn" "http://127.0.0.1:$M2_PORT/hello.php" NOKEEP
/usr/bin/python3 -c "print('ratio m2bridge --no-keep-conn/nginx: %.2f' % ($RPS_NOKEEP / $RPS_NGINX))" | tee -a "$SUMMARY"
# Where the time goes: the same path with a C app instead of PHP, and Mongrel2 with no backend at all.
BACKEND_PATTERN='examples/fcgi-hello unix:'
measure "mongrel2 -> m2bridge -> libfcgi C app" "http://127.0.0.1:$M2_PORT/c/hello" C_APP
BACKEND_PATTERN='^/[^ ]*examples/fcgi-hello$'
measure "mongrel2 -> m2bridge -> C app, --spawn 2" "http://127.0.0.1:$M2_PORT/c2/hello" C_APP2
unset BACKEND_PATTERN
measure "mongrel2 alone (static file)" "http://127.0.0.1:$M2_PORT/static/hello.txt" STATIC
measure "mongrel2 -> null handler" "http://127.0.0.1:$M2_PORT/null/" NULL
measure "mongrel2 -> floor relay -> php-fpm" "http://127.0.0.1:$M2_PORT/floor/" FLOOR
# m2bridge's CPU per request against the null handler's, each from its own run above.
m2b_us() { echo "$1" | awk '{print $4}'; }
null_us() { echo "$1" | awk '{print $10}'; }
/usr/bin/python3 -c "
m2b, nokeep, capp, capp2, null, floor = $(m2b_us "$CPU_M2B"), $(m2b_us "$CPU_NOKEEP"), $(m2b_us "$CPU_C_APP"), $(m2b_us "$CPU_C_APP2"), $(null_us "$CPU_NULL"), $(null_us "$CPU_FLOOR")
print('m2bridge cpu/request vs null handler: %.1fx (php, kept connections), %.1fx (--no-keep-conn), %.1fx (C app), %.1fx (C app, 2 copies); null handler %d us' % (m2b / null, nokeep / null, capp / null, capp2 / null, null))
print('floor relay (null handler + one FastCGI exchange) cpu/request: %d us, %.1fx the null handler; m2bridge (php, kept connections) %.2fx the floor relay' % (floor, floor / null, m2b / floor))
print('ratio mongrel2->m2bridge->C app / mongrel2->null handler: %.2f (one copy), %.2f (--spawn 2)' % ($RPS_C_APP / $RPS_NULL, $RPS_C_APP2 / $RPS_NULL))" | tee -a "$SUMMARY"
sh bench/report.sh fastcgi "$FIGURES" "$SUMMARY" "bench/run.sh $DURATION $CONNS"
