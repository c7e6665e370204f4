#!/bin/sh
# Memory bounds of m2bridge's reply and upload paths, through real Mongrel2, checked byte for byte.
#   (a) one SIZE_MB download to a client reading at MEMBOUND_RATE_MB MiB/s (default 20)
#   (b) one SIZE_MB download to a client reading as fast as it can
#   (c) one SIZE_MB upload (Mongrel2's async upload path; php-fpm reads php://input, prints its md5)
# each with Mongrel2's download.flow_control=1 and =0, each case with a fresh m2bridge, whose peak
# RSS (VmHWM) is printed against the goal of 32 MB. A benchmark, not a test.
# Downloads come from bench/fcgi_pattern.c (libfcgi, a deterministic pattern, Content-Length
# declared unless MEMBOUND_CL=0); bench/membound_client.py checks the md5 of what arrives.
# Usage: bench/membound.sh [SIZE_MB]      (default 1024; MEMBOUND_SIZE_MB also works)
# Knobs: MEMBOUND_RATE_MB (20), MEMBOUND_FLOW ("1 0"), MEMBOUND_CASES ("slow fast upload"),
#        MEMBOUND_CL (1), MEMBOUND_GOAL_MB (32), MEMBOUND_DEADLINE (s per case, 1200),
#        M2BRIDGE (binary; default build-bench/m2bridge, built here), MEMBOUND_KEEP=1 keeps the temp dir.
set -eu
SIZE_MB=${1:-${MEMBOUND_SIZE_MB:-1024}}
RATE_MB=${MEMBOUND_RATE_MB:-20}
FLOWS=${MEMBOUND_FLOW:-1 0}
CASES=${MEMBOUND_CASES:-slow fast upload}
GOAL_MB=${MEMBOUND_GOAL_MB:-32}
CL=${MEMBOUND_CL:-1}
export MEMBOUND_DEADLINE=${MEMBOUND_DEADLINE:-1200}
cd "$(dirname "$0")/.."
WITH_BENCH=1 ./scripts/deps.sh
if [ -z "${M2BRIDGE:-}" ]; then
  [ -f build-bench/build.ninja ] || meson setup build-bench --buildtype=release >/dev/null
  ninja -C build-bench >/dev/null || { echo "membound: build failed (ninja -C build-bench); M2BRIDGE=/path/to/m2bridge uses another binary"; exit 1; }
  M2BRIDGE=build-bench/m2bridge
fi
. bench/lib.sh
PY=/usr/bin/python3
SIZE=$((SIZE_MB * 1048576))
RATE=$((RATE_MB * 1048576))

RUN=$(mktemp -d /tmp/m2b-membound-XXXXXX)
chmod 755 "$RUN"
mkdir -p "$RUN/run" "$RUN/logs" "$RUN/www"
pids=""
cleanup() {
  for p in $pids; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  if [ "${MEMBOUND_KEEP:-0}" = 1 ]; then echo "membound: kept $RUN"; else rm -rf "$RUN"; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

mb() { awk -v k="$1" 'BEGIN {printf "%.1f", k / 1024}'; }

start_body_backends membound

# Starts Mongrel2 in its own directory with download.flow_control=$1; sets M2_DIR, M2_PORT, M2_PID,
# and the handler ports PSEND/PRECV (pattern app) and USEND/URECV (upload app).
start_m2() {
  M2_DIR="$RUN/m2-fc$1"
  mkdir -p "$M2_DIR/run" "$M2_DIR/logs" "$M2_DIR/tmp"
  M2_PORT=$(free_port); PSEND=$(free_port); PRECV=$(free_port); USEND=$(free_port); URECV=$(free_port)
  cat > "$M2_DIR/mongrel2.conf" <<CONF
$(handler p "$PSEND" "$PRECV")
$(handler u "$USEND" "$URECV")
main = Server(uuid='3d1f9a6e-52b4-4c0a-8e2f-7b9c1d2e3f41', name='main', bind_addr='127.0.0.1', port=$M2_PORT,
              access_log='logs/access.log', error_log='logs/error.log', pid_file='run/mongrel2.pid',
              control_port='ipc://run/control', default_host='localhost',
              hosts=[Host(name='localhost', routes={'/p/': p, '/up/': u})])
settings = {'server.daemonize': 0, 'disable.access_logging': 1, 'upload.temp_store': 'tmp/upload.XXXXXX',
            'download.flow_control': $1}
servers = [main]
CONF
  (cd "$M2_DIR" && LOGNAME=root m2sh load -config mongrel2.conf -db config.sqlite >/dev/null 2>&1)
  (cd "$M2_DIR" && exec mongrel2 config.sqlite 3d1f9a6e-52b4-4c0a-8e2f-7b9c1d2e3f41 > logs/m2.out 2>&1) &
  M2_PID=$!
  pids="$pids $M2_PID"
  tries=0
  until curl -s -o /dev/null "http://127.0.0.1:$M2_PORT/nothing-here"; do
    tries=$((tries + 1)); [ $tries -lt 100 ] || { echo "membound: mongrel2 did not start; logs in $M2_DIR/logs"; exit 1; }
    sleep 0.1
  done
}

# Starts a fresh m2bridge for one case (sets BR); waits until one small request went through it.
start_bridge() {  # pattern|upload
  if [ "$1" = pattern ]; then
    "$M2BRIDGE" fastcgi --send-spec "tcp://127.0.0.1:$PSEND" --recv-spec "tcp://127.0.0.1:$PRECV" \
      --timeout 600 --log-level warn "unix:$RUN/run/pattern.sock" >> "$RUN/logs/m2bridge.log" 2>&1 &
    url="http://127.0.0.1:$M2_PORT/p/x?n=10"
  else
    "$M2BRIDGE" fastcgi --send-spec "tcp://127.0.0.1:$USEND" --recv-spec "tcp://127.0.0.1:$URECV" \
      --document-root "$RUN/www" --upload-store "$M2_DIR/tmp/upload.XXXXXX" \
      --timeout 600 --log-level warn "unix:$RUN/run/php.sock" >> "$RUN/logs/m2bridge.log" 2>&1 &
    url="http://127.0.0.1:$M2_PORT/up/upload.php"
  fi
  BR=$!
  pids="$pids $BR"
  tries=0
  until curl -sf -m 5 -o /dev/null "$url"; do
    tries=$((tries + 1)); [ $tries -lt 50 ] || { echo "membound: m2bridge did not answer; logs in $RUN/logs"; exit 1; }
    sleep 0.2
  done
}

# One case: run_case NAME FLOW; appends a row to $RUN/rows.
run_case() {
  case $1 in
    slow) start_bridge pattern; what="download, client at $RATE_MB MiB/s" ;;
    fast) start_bridge pattern; what="download, fast client" ;;
    upload) start_bridge upload; what="upload (async, php-fpm)" ;;
  esac
  base=$(proc_kb "$BR" VmHWM)
  case $1 in
    slow) out=$($PY bench/membound_client.py download "$M2_PORT" "/p/x?n=$SIZE&cl=$CL" "$SIZE" "$RATE") || true ;;
    fast) out=$($PY bench/membound_client.py download "$M2_PORT" "/p/x?n=$SIZE&cl=$CL" "$SIZE" 0) || true ;;
    upload) out=$($PY bench/membound_client.py upload "$M2_PORT" "/up/upload.php" "$SIZE") || true ;;
  esac
  hwm=$(proc_kb "$BR" VmHWM); rss=$(proc_kb "$BR" VmRSS); fds=$(ls "/proc/$BR/fd" 2>/dev/null | wc -l)
  alive=yes; kill -0 "$BR" 2>/dev/null || alive="no (exited)"
  stop_pid "$BR"
  sleep 0.3
  left=$(ls "$M2_DIR/tmp" | wc -l)
  echo "  $1 fc=$2: $out | m2bridge VmHWM ${hwm} kB (idle ${base} kB), VmRSS ${rss} kB, fds $fds, alive $alive, temp files $left"
  bytes=$(echo "$out" | sed -n 's/.*bytes=\([0-9]*\).*/\1/p')
  ok=$(echo "$out" | sed -n 's/.*md5_ok=\([a-z]*\).*/\1/p')
  secs=$(echo "$out" | sed -n 's/.*seconds=\([0-9.]*\).*/\1/p')
  hwm_mb=$(mb "$hwm")
  if [ "$ok" != yes ]; then verdict="NOT BYTE-EXACT"
  elif [ "$hwm" -le $((GOAL_MB * 1024)) ]; then verdict="ok (<= $GOAL_MB MB)"
  else verdict="OVER $GOAL_MB MB"; fi
  printf '%s|%s|%s|%s|%s|%s|%s|%s\n' "$what" "$2" "$bytes" "$ok" "$secs" "$(mb "$base")" "$hwm_mb" "$verdict" >> "$RUN/rows"
}

echo "membound: $SIZE_MB MiB per case ($SIZE bytes), slow client $RATE_MB MiB/s, goal m2bridge VmHWM <= $GOAL_MB MB, $(nproc) cores"
: > "$RUN/rows"
for fc in $FLOWS; do
  start_m2 "$fc"
  for c in $CASES; do run_case "$c" "$fc"; done
  stop_pid "$M2_PID"
done

echo
printf '| %-30s | %-12s | %12s | %-6s | %8s | %-13s | %-17s | %-18s |\n' case "flow control" bytes "md5 ok" seconds "idle VmHWM MB" "m2bridge VmHWM MB" "verdict vs $GOAL_MB MB"
echo "|--------------------------------|--------------|--------------|--------|----------|---------------|-------------------|--------------------|"
worst=0; exact=0; total=0
while IFS='|' read -r what fc bytes ok secs base hwm verdict; do
  printf '| %-30s | %-12s | %12s | %-6s | %8s | %13s | %17s | %-18s |\n' "$what" "$fc" "$bytes" "$ok" "$secs" "$base" "$hwm" "$verdict"
  total=$((total + 1)); [ "$ok" != yes ] || exact=$((exact + 1))
  worst=$(awk -v a="$worst" -v b="$hwm" 'BEGIN {print (b > a) ? b : a}')
done < "$RUN/rows"
echo
if [ -s "$RUN/logs/m2bridge.log" ]; then
  echo "m2bridge log: $(grep -c '' "$RUN/logs/m2bridge.log") lines, last ones:"
  tail -5 "$RUN/logs/m2bridge.log" | cut -c1-200
fi
verdict=met; awk -v w="$worst" -v g="$GOAL_MB" 'BEGIN {exit !(w > g)}' && verdict="NOT met"
[ "$exact" = "$total" ] || verdict="NOT met"
echo "membound: worst m2bridge VmHWM $worst MB (goal <= $GOAL_MB MB), byte-exact $exact/$total: goal $verdict"
