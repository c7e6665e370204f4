# Helpers shared by the benchmark scripts (sourced, not run).

free_port() { /usr/bin/python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

# CPU seconds (user+system) used so far by the processes whose command line matches $1.
cpu() {
  total=0
  for pid in $(pgrep -f "$1"); do
    t=$(awk '{print $14 + $15}' "/proc/$pid/stat" 2>/dev/null || echo 0)
    total=$((total + t))
  done
  echo "$total"
}
# BACKEND_PATTERN names the backend processes (php-fpm, fcgiwrap...).
snapshot() {
  echo "$(cpu "mongrel2 config") $(cpu build-bench/m2bridge) $(cpu "${BACKEND_PATTERN:-php-fpm}") $(cpu "nginx")" \
       "$(cpu 'null_handler|fcgi_floor')"
}

# wrk's latency ("357.00us", "2.30ms", "1.02s") in whole microseconds.
to_us() {
  echo "${1:-0}" | awk '{ v = $1 + 0; if ($1 ~ /ms$/) v *= 1000; else if ($1 ~ /[0-9]s$/) v *= 1000000; printf "%.0f", v }'
}

measure() {  # name url var
  label=$(echo "$1" | sed 's/^ *//')
  wrk -t 1 -c 8 -d 2 "$2" > /dev/null 2>&1  # warm-up
  before=$(snapshot)
  threads=2; [ "$CONNS" -ge 2 ] || threads=1
  out=$(wrk -t "$threads" -c "$CONNS" -d "$DURATION" --latency "$2" 2>&1)
  after=$(snapshot)
  rps=$(echo "$out" | awk '/^Requests\/sec/ {print $2}')
  requests=$(echo "$out" | awk '/requests in/ {print $1}')
  p50=$(echo "$out" | awk '$1 == "50%" {print $2}')
  p99=$(echo "$out" | awk '$1 == "99%" {print $2}')
  errors=$(echo "$out" | awk '/Non-2xx|Socket errors/' | tr '\n' ' ')
  [ -n "$rps" ] || errors="wrk printed no figures: $(echo "$out" | head -3 | tr '\n' ' ')"
  printf '%-48s %10s req/s  p50 %8s  p99 %8s %s\n' "$1" "$rps" "$p50" "$p99" "$errors"
  # Process CPU (clock ticks of 10 ms) over the requests wrk completed: µs per request.
  # shellcheck disable=SC2086
  set -- "$3" $before $after "$requests"
  cpu_us=$(echo "$@" | awk '{ n = $12; for (i = 0; i < 5; i++) us[i] = n ? ($(7 + i) - $(2 + i)) * 10000 / n : 0;
    printf "mongrel2 %.0f  m2bridge %.0f  backend %.0f  nginx %.0f  null-handler/floor %.0f", us[0], us[1], us[2], us[3], us[4] }')
  echo "    cpu us per request: $cpu_us"
  # One line per run for bench/report.sh: label, connections, req/s, p50 and p99 in µs, CPU µs per process.
  [ -z "${FIGURES:-}" ] || printf '%s\t%s\t%s\t%s\t%s\t%s\n' "${LABEL_PREFIX:-}$label" "$CONNS" \
    "${rps:-0}" "$(to_us "$p50")" "$(to_us "$p99")" "$(echo "$cpu_us" | awk '{print $2 "\t" $4 "\t" $6 "\t" $8 "\t" $10}')" >> "$FIGURES"
  eval "RPS_$1=$rps"
  eval "P50_$1=$p50"
  eval "CPU_$1=\"$cpu_us\""
}

# The ZeroMQ endpoint for a port number: TCP on loopback, or BENCH_TRANSPORT=ipc for Unix sockets.
endpoint() {
  if [ "${BENCH_TRANSPORT:-tcp}" = ipc ]; then echo "ipc://$RUN/run/zmq-$1"; else echo "tcp://127.0.0.1:$1"; fi
}

# A Mongrel2 Handler definition: handler NAME SEND_PORT RECV_PORT
handler() {
  echo "$1 = Handler(send_spec='$(endpoint "$2")', send_ident='$(cat /proc/sys/kernel/random/uuid)', recv_spec='$(endpoint "$3")', recv_ident='', protocol='tnetstring')"
}

# Starts Mongrel2 in $RUN on $M2_PORT: start_mongrel2 "HANDLER DEFINITIONS" "ROUTES"
# M2_SETTINGS adds entries to its settings, e.g. "'superpoll.max_fd': 20000".
start_mongrel2() {
  cat > "$RUN/mongrel2.conf" <<CONF
$1
main = Server(uuid='3d1f9a6e-52b4-4c0a-8e2f-7b9c1d2e3f40', name='main', bind_addr='127.0.0.1', port=$M2_PORT,
              access_log='logs/access.log', error_log='logs/error.log', pid_file='run/mongrel2.pid',
              control_port='ipc://run/control', default_host='localhost',
              hosts=[Host(name='localhost', routes={$2})])
settings = {'server.daemonize': 0, 'disable.access_logging': 1, 'upload.temp_store': 'tmp/upload.XXXXXX'${M2_SETTINGS:+, $M2_SETTINGS}}
servers = [main]
CONF
  (cd "$RUN" && LOGNAME=root m2sh load -config mongrel2.conf -db config.sqlite >/dev/null 2>&1)
  (cd "$RUN" && exec mongrel2 config.sqlite 3d1f9a6e-52b4-4c0a-8e2f-7b9c1d2e3f40 > logs/m2.out 2>&1) &
  pids="$pids $!"
}

# Starts php-fpm in $RUN: a static pool of $1 workers on $RUN/run/NAME.sock (NAME is $3, php by
# default), plus the pool lines in $2 (e.g. php_admin_value[...]). Its pid is the last word of $pids.
start_php_fpm() {
  name=${3:-php}
  cat > "$RUN/$name-fpm.conf" <<CONF
[global]
pid = $RUN/run/$name-fpm.pid
error_log = $RUN/logs/$name-fpm.log
daemonize = no
[bench]
user = root
group = root
listen = $RUN/run/$name.sock
listen.mode = 0666
listen.backlog = 1024
pm = static
pm.max_children = $1
${2:-}
CONF
  /usr/sbin/php-fpm8.2 -R -n -y "$RUN/$name-fpm.conf" -F > "$RUN/logs/$name-fpm.out" 2>&1 &
  pids="$pids $!"
}

# The backends of bench/membound.sh and bench/sizes.sh: bench/fcgi_pattern.c on
# $RUN/run/pattern.sock, and php-fpm (one worker) with bench/upload.php in $RUN/www. php://input
# is read lazily from the FastCGI stream only when PHP does not parse the body itself (with
# enable_post_data_reading on, a body above post_max_size would be refused before the script
# runs). Waits for both sockets; $1 names the caller in the error line.
start_body_backends() {
  cc -O2 -o "$RUN/fcgi_pattern" bench/fcgi_pattern.c -lfcgi
  "$RUN/fcgi_pattern" "unix:$RUN/run/pattern.sock" > "$RUN/logs/pattern.out" 2>&1 &
  pids="$pids $!"
  cp bench/upload.php "$RUN/www/upload.php"
  start_php_fpm 1 'php_admin_value[enable_post_data_reading] = 0
php_admin_value[max_execution_time] = 0'
  tries=0
  while [ ! -S "$RUN/run/php.sock" ] || [ ! -S "$RUN/run/pattern.sock" ]; do
    tries=$((tries + 1)); [ $tries -lt 100 ] || { echo "$1: backends did not start; logs in $RUN/logs"; exit 1; }
    sleep 0.1
  done
}

# Starts nginx on $NGINX_PORT with the given server-block lines: start_nginx "LINES"
start_nginx() {
  cat > "$RUN/nginx.conf" <<CONF
user root;
worker_processes 1;
pid $RUN/run/nginx.pid;
error_log $RUN/logs/nginx-error.log;
events { worker_connections 4096; }
http {
  access_log off;
  server {
    listen 127.0.0.1:$NGINX_PORT;
$1
  }
}
CONF
  nginx -c "$RUN/nginx.conf" -g 'daemon off;' &
  pids="$pids $!"
}

# --- per-process measurements (bench/sizes.sh) ----------------------------------------------
# Clock ticks (user + system, all threads) a process has used: fields 14 and 15 of /proc/PID/stat.
proc_ticks() { awk '{print $14 + $15}' "/proc/$1/stat" 2>/dev/null || echo 0; }
# Nanoseconds on CPU, summed over the process's threads (/proc/PID/task/*/schedstat, first field):
# the same quantity as proc_ticks at nanosecond resolution, for runs of only a few ticks.
proc_ns() { cat /proc/"$1"/task/*/schedstat 2>/dev/null | awk '{s += $1} END {printf "%.0f", s}'; }
# A /proc/PID/status value in kB: proc_kb PID VmHWM
proc_kb() { awk -v k="$2:" '$1 == k {print $2}' "/proc/$1/status" 2>/dev/null || echo 0; }
# Stops one process we started: SIGTERM, SIGKILL after 15 s.
stop_pid() {
  kill "$1" 2>/dev/null || true
  ( sleep 15; kill -9 "$1" 2>/dev/null ) &
  _watcher=$!
  wait "$1" 2>/dev/null || true
  kill "$_watcher" 2>/dev/null || true
  wait "$_watcher" 2>/dev/null || true
}
