#!/bin/sh
# One run, the same small CGI programs (a compiled one and a shell one) three ways:
#   wrk → Mongrel2 → m2bridge cgi      wrk → nginx → fcgiwrap      a bare spawn-and-reap loop (ceiling)
# Prints requests/s and the ratios. A benchmark, not a test. Usage: bench/cgi.sh [SECONDS] [CONNECTIONS]
set -eu
DURATION=${1:-10}
CONNS=${2:-16}
cd "$(dirname "$0")/.."
WITH_BENCH=1 ./scripts/deps.sh
[ -f build-bench/build.ninja ] || meson setup build-bench --buildtype=release >/dev/null
ninja -C build-bench >/dev/null
. bench/lib.sh

RUN=$(mktemp -d /tmp/m2b-bench-XXXXXX)
chmod 755 "$RUN"
FIGURES="$RUN/figures.tsv"; SUMMARY="$RUN/summary.txt"
mkdir -p "$RUN/run" "$RUN/logs" "$RUN/tmp" "$RUN/cgi"
cc -O2 -o "$RUN/cgi/hello" bench/cgi_hello.c
cc -O2 -o "$RUN/spawn_loop" bench/spawn_loop.c
cp bench/cgi_hello.sh "$RUN/cgi/hello.sh"
M2_PORT=$(free_port); NGINX_PORT=$(free_port); SEND=$(free_port); RECV=$(free_port)
PROCS=${CGI_PROCS:-4}
BACKEND_PATTERN=fcgiwrap

pids=""
cleanup() {
  for p in $pids; do kill "$p" 2>/dev/null || true; done
  pkill -f "fcgiwrap -c $PROCS -s unix:$RUN" 2>/dev/null || true  # its pre-forked children too
  wait 2>/dev/null || true
  rm -rf "$RUN"
}
trap cleanup EXIT INT TERM

fcgiwrap -c "$PROCS" -s "unix:$RUN/run/fcgiwrap.sock" &
pids="$pids $!"
start_nginx "    location /cgi/ {
      include /etc/nginx/fastcgi_params;
      fastcgi_param SCRIPT_FILENAME $RUN\$fastcgi_script_name;
      fastcgi_pass unix:$RUN/run/fcgiwrap.sock;
    }"
start_mongrel2 "$(handler h "$SEND" "$RECV")" "'/cgi/': h"
# CGI_UNCONFINED=1 shows what confinement costs: m2bridge in a mount namespace without the
# cgroup2 file system, so scripts run unconfined (posix_spawn, no request cgroup).
if [ "${CGI_UNCONFINED:-0}" = 1 ]; then
  set -- unshare -m sh -c 'for m in $(findmnt -n -t cgroup2 -o TARGET); do umount "$m" || exit 1; done; exec "$@"' sh
else
  set --
fi
"$@" build-bench/m2bridge cgi --send-spec "$(endpoint "$SEND")" --recv-spec "$(endpoint "$RECV")" \
  --max-procs "$PROCS" --log-level info --allow-root "$RUN/cgi" 2> "$RUN/logs/m2bridge.err" &
pids="$pids $!"
tries=0
until curl -sf -m 5 -o /dev/null "http://127.0.0.1:$M2_PORT/cgi/hello" && curl -sf -m 5 -o /dev/null "http://127.0.0.1:$NGINX_PORT/cgi/hello"; do
  tries=$((tries + 1)); [ $tries -lt 100 ] || { echo "bench: servers did not answer; logs in $RUN/logs"; trap - EXIT; exit 1; }
  sleep 0.2
done

echo "$(grep -o 'scripts.*confined.*' "$RUN/logs/m2bridge.err" | head -1)"
echo "CGI processes at once: $PROCS, wrk: 2 threads, $CONNS connections, ${DURATION}s, $(nproc) cores"
for prog in hello hello.sh; do
  echo "-- $prog"
  LABEL_PREFIX="$prog: "
  measure "nginx -> fcgiwrap" "http://127.0.0.1:$NGINX_PORT/cgi/$prog" NGINX
  measure "mongrel2 -> m2bridge cgi" "http://127.0.0.1:$M2_PORT/cgi/$prog" M2B
  ceiling=$("$RUN/spawn_loop" "$RUN/cgi/$prog" "$DURATION" "$(nproc)")
  printf '%-48s %10s spawns/s (%s loops)\n' "bare spawn loop" "$ceiling" "$(nproc)"
  printf '%s\t0\t%s\t0\t0\t0\t0\t0\t0\t0\n' "${LABEL_PREFIX}bare spawn loop" "$ceiling" >> "$FIGURES"
  /usr/bin/python3 -c "print('ratio m2bridge/fcgiwrap: %.2f   m2bridge/bare loop: %.2f' % ($RPS_M2B / $RPS_NGINX, $RPS_M2B / $ceiling))" | tee -a "$SUMMARY"
done
sh bench/report.sh cgi "$FIGURES" "$SUMMARY" "bench/cgi.sh $DURATION $CONNS"
