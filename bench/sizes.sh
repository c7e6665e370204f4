#!/bin/sh
# Scaling with size (issue 8, goal 6): m2bridge's CPU per request and per byte, and its peak RSS,
# for replies of 10 B .. 100 MB and request bodies of 10 KB .. 100 MB, through real Mongrel2.
#   GET  client -> Mongrel2 -> m2bridge fastcgi -> bench/fcgi_pattern.c (deterministic pattern,
#        Content-Length declared unless SIZES_CL=0, then the reply is chunked)
#   POST client -> Mongrel2 -> m2bridge fastcgi -> php-fpm upload.php (md5 of php://input); bodies
#        above Mongrel2's limits.content_length take Mongrel2's async upload path (a temp file that
#        m2bridge preads into FastCGI STDIN records); smaller ones come inline in the message.
# Each case gets a fresh m2bridge (so VmHWM is that case's peak) and runs at least K requests on
# one keep-alive connection, and at least SIZES_SECONDS, each reply checked (length and md5) by
# bench/sizes_client.py. CPU is utime+stime from /proc/PID/stat (all threads, 10 ms ticks) over
# the case; "sched" is the same from /proc/PID/task/*/schedstat in ns, as a cross-check when the
# tick count is small. One Mongrel2 serves all cases, download.flow_control=SIZES_FLOW (default 1:
# with 0 m2bridge paces by time and Mongrel2 cut a 100 MB reply to this fast client in a trial).
# A benchmark, not a test. Run it niced on a shared machine: nice -n 5 bench/sizes.sh
# Knobs: SIZES_CASES ("get:10:2000 get:10240:2000 get:1048576:50 get:104857600:5 post:10240:1000
#        post:1048576:30 post:104857600:3", KIND:BYTES:MIN_K), SIZES_SECONDS (2), SIZES_FLOW (1),
#        SIZES_CL (1), SIZES_LINEAR_FACTOR (2: the largest ns/byte ratio of 100 MB to 1 MB that
#        still counts as linear), M2BRIDGE (binary; default build-bench/m2bridge, built here),
#        BENCH_TRANSPORT=ipc (ZeroMQ over Unix sockets instead of TCP), SIZES_KEEP=1 keeps the temp dir.
set -eu
CASES=${SIZES_CASES:-get:10:2000 get:10240:2000 get:1048576:50 get:104857600:5 post:10240:1000 post:1048576:30 post:104857600:3}
SECONDS_MIN=${SIZES_SECONDS:-2}
FLOW=${SIZES_FLOW:-1}
CL=${SIZES_CL:-1}
FACTOR=${SIZES_LINEAR_FACTOR:-2}
cd "$(dirname "$0")/.."
WITH_BENCH=1 ./scripts/deps.sh
if [ -z "${M2BRIDGE:-}" ]; then
  [ -f build-bench/build.ninja ] || meson setup build-bench --buildtype=release >/dev/null
  ninja -C build-bench m2bridge >/dev/null || { echo "sizes: build failed (ninja -C build-bench); M2BRIDGE=/path/to/m2bridge uses another binary"; exit 1; }
  M2BRIDGE=build-bench/m2bridge
fi
. bench/lib.sh
PY=/usr/bin/python3
HZ=$(getconf CLK_TCK)

RUN=$(mktemp -d /tmp/m2b-sizes-XXXXXX)
chmod 755 "$RUN"
mkdir -p "$RUN/run" "$RUN/logs" "$RUN/www" "$RUN/m2/run" "$RUN/m2/logs" "$RUN/m2/tmp"
pids=""
cleanup() {
  for p in $pids; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  if [ "${SIZES_KEEP:-0}" = 1 ]; then echo "sizes: kept $RUN"; else rm -rf "$RUN"; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# The backends, as in bench/membound.sh: the pattern app, and php-fpm reading php://input lazily
# (body parsing off, so no post_max_size refusal and no copy of the body in PHP's memory).
start_body_backends sizes

# One Mongrel2 for all cases: /p/ goes to the pattern app's bridge, /up/ to php-fpm's.
M2_DIR="$RUN/m2"
M2_PORT=$(free_port); PSEND=$(free_port); PRECV=$(free_port); USEND=$(free_port); URECV=$(free_port)
cat > "$M2_DIR/mongrel2.conf" <<CONF
$(handler p "$PSEND" "$PRECV")
$(handler u "$USEND" "$URECV")
main = Server(uuid='3d1f9a6e-52b4-4c0a-8e2f-7b9c1d2e3f42', name='main', bind_addr='127.0.0.1', port=$M2_PORT,
              access_log='logs/access.log', error_log='logs/error.log', pid_file='run/mongrel2.pid',
              control_port='ipc://run/control', default_host='localhost',
              hosts=[Host(name='localhost', routes={'/p/': p, '/up/': u})])
settings = {'server.daemonize': 0, 'disable.access_logging': 1, 'upload.temp_store': 'tmp/upload.XXXXXX',
            'download.flow_control': $FLOW}
servers = [main]
CONF
(cd "$M2_DIR" && LOGNAME=root m2sh load -config mongrel2.conf -db config.sqlite >/dev/null 2>&1)
(cd "$M2_DIR" && exec mongrel2 config.sqlite 3d1f9a6e-52b4-4c0a-8e2f-7b9c1d2e3f42 > logs/m2.out 2>&1) &
M2_PID=$!
pids="$pids $M2_PID"
tries=0
until curl -s -o /dev/null "http://127.0.0.1:$M2_PORT/nothing-here"; do
  tries=$((tries + 1)); [ $tries -lt 100 ] || { echo "sizes: mongrel2 did not start; logs in $M2_DIR/logs"; exit 1; }
  sleep 0.1
done
# Mongrel2 logs its limits at start; a body above content_length goes through a temp file.
LIMIT=$(sed -n 's/.*limits.content_length=\([0-9]*\).*/\1/p' "$M2_DIR/logs/m2.out" "$M2_DIR/logs/error.log" 2>/dev/null | head -1)
LIMIT=${LIMIT:-20480}

# A fresh m2bridge for one case (sets BR); waits until one small request went through it.
start_bridge() {  # get|post
  if [ "$1" = get ]; then
    "$M2BRIDGE" fastcgi --send-spec "$(endpoint "$PSEND")" --recv-spec "$(endpoint "$PRECV")" \
      --timeout 600 --log-level warn "unix:$RUN/run/pattern.sock" >> "$RUN/logs/m2bridge.log" 2>&1 &
    url="http://127.0.0.1:$M2_PORT/p/x?n=10"
  else
    "$M2BRIDGE" fastcgi --send-spec "$(endpoint "$USEND")" --recv-spec "$(endpoint "$URECV")" \
      --document-root "$RUN/www" --upload-store "$M2_DIR/tmp/upload.XXXXXX" \
      --timeout 600 --log-level warn "unix:$RUN/run/php.sock" >> "$RUN/logs/m2bridge.log" 2>&1 &
    url="http://127.0.0.1:$M2_PORT/up/upload.php"
  fi
  BR=$!
  pids="$pids $BR"
  tries=0
  until curl -sf -m 5 -o /dev/null "$url"; do
    tries=$((tries + 1)); [ $tries -lt 50 ] || { echo "sizes: m2bridge did not answer; logs in $RUN/logs"; exit 1; }
    sleep 0.2
  done
}

label() { awk -v b="$1" 'BEGIN { if (b >= 1048576) printf "%g MB", b / 1048576; else if (b >= 1024) printf "%g KB", b / 1024; else printf "%d B", b }'; }

# One case: run_case get|post BYTES MIN_K; appends a row to $RUN/rows.
run_case() {
  kind=$1; size=$2; min_k=$3
  start_bridge "$kind"
  idle=$(proc_kb "$BR" VmHWM)
  if [ "$kind" = get ]; then
    if [ "$CL" = 1 ]; then framing="Content-Length"; else framing="chunked"; fi
    if [ "$CL" = 1 ] && [ "$size" -lt 1048576 ]; then path="inline reply, 1 msg"; else path="streamed, $framing"; fi
    what="GET $(label "$size")"
  else
    if [ "$size" -le "$LIMIT" ]; then path="inline body in msg"; else path="upload file (async)"; fi
    what="POST $(label "$size")"
  fi
  sleep 0.3
  b0=$(proc_ticks "$BR"); m0=$(proc_ticks "$M2_PID"); bn0=$(proc_ns "$BR"); mn0=$(proc_ns "$M2_PID")
  if [ "$kind" = get ]; then
    out=$($PY bench/sizes_client.py download "$M2_PORT" "/p/x?n=$size&cl=$CL" "$size" "$min_k" "$SECONDS_MIN") || true
  else
    out=$($PY bench/sizes_client.py upload "$M2_PORT" "/up/upload.php" "$size" "$min_k" "$SECONDS_MIN") || true
  fi
  sleep 0.3  # let the last reply's credits and the upload file's removal be counted
  b1=$(proc_ticks "$BR"); m1=$(proc_ticks "$M2_PID"); bn1=$(proc_ns "$BR"); mn1=$(proc_ns "$M2_PID")
  hwm=$(proc_kb "$BR" VmHWM)
  alive=yes; kill -0 "$BR" 2>/dev/null || alive=no
  stop_pid "$BR"
  left=$(ls "$M2_DIR/tmp" | wc -l)
  echo "  $what: $out | m2bridge ticks $((b1 - b0)), VmHWM $hwm kB (idle $idle kB), alive $alive, temp files left $left"
  field() { echo "$out" | tr ' ' '\n' | sed -n "s/^$1=//p"; }
  k=$(field k); ok=$(field ok); secs=$(field seconds); bytes=$(field bytes)
  echo "$kind|$size|$what|$path|${k:-0}|${ok:-0}|${secs:-0}|$((b1 - b0))|$((bn1 - bn0))|$((m1 - m0))|$((mn1 - mn0))|$hwm|$idle|${bytes:-0}" >> "$RUN/rows"
}

echo "sizes: m2bridge $M2BRIDGE, ZeroMQ over ${BENCH_TRANSPORT:-tcp}, download.flow_control=$FLOW, Mongrel2 limits.content_length=$LIMIT, $(nproc) cores, load $(cut -d' ' -f1-3 /proc/loadavg)"
: > "$RUN/rows"
for c in $CASES; do
  IFS=: read -r kind size min_k <<EOF
$c
EOF
  run_case "$kind" "$size" "$min_k"
done
stop_pid "$M2_PID"

echo
awk -F'|' -v hz="$HZ" -v factor="$FACTOR" '
  BEGIN {
    printf "| %-11s | %-24s | %5s | %6s | %6s | %12s | %12s | %9s | %11s | %12s | %10s |\n", "case", "path", "K", "ok", "wall s",
      "m2b us/req", "(sched us)", "m2b ns/B", "m2b HWM MB", "m2 us/req", "m2 ns/B"
    print "|-------------|--------------------------|-------|--------|--------|--------------|--------------|-----------|-------------|--------------|------------|"
  }
  {
    k = $5 ? $5 : 1; bytes = $14 ? $14 : 1   # bytes that arrived (GET) or that the app counted (POST)
    us = $8 * 1e6 / hz / k; sus = $9 / 1e3 / k; nsb = $8 * 1e9 / hz / bytes
    mus = $10 * 1e6 / hz / k; mnsb = $10 * 1e9 / hz / bytes
    printf "| %-11s | %-24s | %5d | %6s | %6.2f | %12.1f | %12.1f | %9.3f | %11.1f | %12.1f | %10.3f |\n", $3, $4, $5,
      ($6 == $5 ? "all" : $6 "/" $5), $7, us, sus, nsb, $12 / 1024, mus, mnsb
    if ($6 != $5) bad = bad " " $3
    if ($2 == 1048576) { small[$1] = $8 / bytes; ssmall[$1] = $9 / bytes; sreq[$1] = $9 / k }
    if ($2 == 104857600) { large[$1] = $8 / bytes; slarge[$1] = $9 / bytes; lreq[$1] = $9 / k }
  }
  END {
    print ""
    if (bad != "") print "sizes: NOT all replies byte-exact:" bad
    # Linear: ns/byte at 100 MB no more than FACTOR times that at 1 MB. Below 1 is the fixed
    # per-request cost being spread over more bytes; the marginal cost between the two sizes is
    # the per-byte cost without it.
    for (kind in large) {
      if (!(kind in small) || small[kind] == 0 || ssmall[kind] == 0) continue
      r = large[kind] / small[kind]; sr = slarge[kind] / ssmall[kind]
      marginal = (lreq[kind] - sreq[kind]) / (104857600 - 1048576)
      printf "sizes: %s linearity: m2bridge ns/byte at 100 MB / at 1 MB = %.2f (stat ticks), %.2f (schedstat); marginal %.2f ns/byte from 1 to 100 MB -> %s (limit %sx)\n",
        toupper(kind), r, sr, marginal, (r <= factor) ? "linear" : "NOT linear", factor
    }
  }' "$RUN/rows"
if [ -s "$RUN/logs/m2bridge.log" ]; then
  echo "m2bridge log: $(grep -c '' "$RUN/logs/m2bridge.log") lines, last ones:"
  tail -5 "$RUN/logs/m2bridge.log" | cut -c1-200
fi
