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
    location /cgi/ {
      include /etc/nginx/fastcgi_params;
      fastcgi_param SCRIPT_FILENAME $RUN\$fastcgi_script_name;
      fastcgi_pass unix:$RUN/run/fcgiwrap.sock;
    }
  }
}
CONF
nginx -c "$RUN/nginx.conf" -g 'daemon off;' &
pids="$pids $!"

cat > "$RUN/mongrel2.conf" <<CONF
h = Handler(send_spec='tcp://127.0.0.1:$SEND', send_ident='b5c3e4b2-7c1d-4a8e-9f55-2a0c6b7d9e03',
            recv_spec='tcp://127.0.0.1:$RECV', recv_ident='', protocol='tnetstring')
main = Server(uuid='3d1f9a6e-52b4-4c0a-8e2f-7b9c1d2e3f41', name='main', bind_addr='127.0.0.1', port=$M2_PORT,
              access_log='logs/access.log', error_log='logs/error.log', pid_file='run/mongrel2.pid',
              control_port='ipc://run/control', default_host='localhost',
              hosts=[Host(name='localhost', routes={'/cgi/': h})])
settings = {'server.daemonize': 0, 'disable.access_logging': 1, 'upload.temp_store': 'tmp/upload.XXXXXX'}
servers = [main]
CONF
(cd "$RUN" && LOGNAME=root m2sh load -config mongrel2.conf -db config.sqlite >/dev/null 2>&1)
(cd "$RUN" && exec mongrel2 config.sqlite 3d1f9a6e-52b4-4c0a-8e2f-7b9c1d2e3f41 > logs/m2.out 2>&1) &
pids="$pids $!"
build-bench/m2bridge cgi --send-spec "tcp://127.0.0.1:$SEND" --recv-spec "tcp://127.0.0.1:$RECV" \
  --max-procs "$PROCS" --log-level warn "$RUN/cgi" &
pids="$pids $!"
tries=0
until curl -sf -o /dev/null "http://127.0.0.1:$M2_PORT/cgi/hello" && curl -sf -o /dev/null "http://127.0.0.1:$NGINX_PORT/cgi/hello"; do
  tries=$((tries + 1)); [ $tries -lt 100 ] || { echo "bench: servers did not answer; logs in $RUN/logs"; trap - EXIT; exit 1; }
  sleep 0.2
done

echo "CGI processes at once: $PROCS, wrk: 2 threads, $CONNS connections, ${DURATION}s, $(nproc) cores"
for prog in hello hello.sh; do
  echo "-- $prog"
  measure "nginx -> fcgiwrap" "http://127.0.0.1:$NGINX_PORT/cgi/$prog" NGINX
  measure "mongrel2 -> m2bridge cgi" "http://127.0.0.1:$M2_PORT/cgi/$prog" M2B
  ceiling=$("$RUN/spawn_loop" "$RUN/cgi/$prog" "$DURATION" "$(nproc)")
  printf '%-36s %10s spawns/s (%s loops)\n' "bare spawn loop" "$ceiling" "$(nproc)"
  /usr/bin/python3 -c "print('ratio m2bridge/fcgiwrap: %.2f   m2bridge/bare loop: %.2f' % ($RPS_M2B / $RPS_NGINX, $RPS_M2B / $ceiling))"
done
