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
M2_PORT=$(free_port); NGINX_PORT=$(free_port); SEND=$(free_port); RECV=$(free_port); SEND2=$(free_port); RECV2=$(free_port)
WORKERS=${FPM_WORKERS:-4}

pids=""
cleanup() { for p in $pids; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; rm -rf "$RUN"; }
trap cleanup EXIT INT TERM

cat > "$RUN/fpm.conf" <<CONF
[global]
pid = $RUN/run/fpm.pid
error_log = $RUN/logs/fpm.log
daemonize = no
[bench]
user = root
group = root
listen = $RUN/run/php.sock
listen.mode = 0666
listen.backlog = 1024
pm = static
pm.max_children = $WORKERS
CONF
/usr/sbin/php-fpm8.2 -R -n -y "$RUN/fpm.conf" -F > "$RUN/logs/fpm.out" 2>&1 &
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
    root $RUN/www;
    location / {
      include /etc/nginx/fastcgi_params;
      fastcgi_param SCRIPT_FILENAME \$document_root\$fastcgi_script_name;
      fastcgi_pass unix:$RUN/run/php.sock;
    }
  }
}
CONF
nginx -c "$RUN/nginx.conf" -g 'daemon off;' &
pids="$pids $!"

cat > "$RUN/mongrel2.conf" <<CONF
h = Handler(send_spec='tcp://127.0.0.1:$SEND', send_ident='b5c3e4b2-7c1d-4a8e-9f55-2a0c6b7d9e01',
            recv_spec='tcp://127.0.0.1:$RECV', recv_ident='', protocol='tnetstring')
c = Handler(send_spec='tcp://127.0.0.1:$SEND2', send_ident='c5c3e4b2-7c1d-4a8e-9f55-2a0c6b7d9e02',
            recv_spec='tcp://127.0.0.1:$RECV2', recv_ident='', protocol='tnetstring')
main = Server(uuid='3d1f9a6e-52b4-4c0a-8e2f-7b9c1d2e3f40', name='main', bind_addr='127.0.0.1', port=$M2_PORT,
              access_log='logs/access.log', error_log='logs/error.log', pid_file='run/mongrel2.pid',
              control_port='ipc://run/control', default_host='localhost',
              hosts=[Host(name='localhost', routes={'/': h, '/c/': c,
                     '/static/': Dir(base='www/', index_file='hello.txt', default_ctype='text/plain')})])
settings = {'server.daemonize': 0, 'disable.access_logging': 1, 'upload.temp_store': 'tmp/upload.XXXXXX'}
servers = [main]
CONF
(cd "$RUN" && LOGNAME=root m2sh load -config mongrel2.conf -db config.sqlite >/dev/null 2>&1)
(cd "$RUN" && exec mongrel2 config.sqlite 3d1f9a6e-52b4-4c0a-8e2f-7b9c1d2e3f40 > logs/m2.out 2>&1) &
pids="$pids $!"
build-bench/examples/fcgi-hello "unix:$RUN/run/c.sock" > "$RUN/logs/c.out" 2>&1 &
pids="$pids $!"
while [ ! -S "$RUN/run/php.sock" ] || [ ! -S "$RUN/run/c.sock" ]; do sleep 0.1; done
build-bench/m2bridge fastcgi --send-spec "tcp://127.0.0.1:$SEND2" --recv-spec "tcp://127.0.0.1:$RECV2" \
  --log-level warn "unix:$RUN/run/c.sock" &
pids="$pids $!"
build-bench/m2bridge fastcgi --send-spec "tcp://127.0.0.1:$SEND" --recv-spec "tcp://127.0.0.1:$RECV" \
  --document-root "$RUN/www" --max-requests "$WORKERS" --log-level warn "unix:$RUN/run/php.sock" &
pids="$pids $!"
tries=0
until curl -sf -o /dev/null "http://127.0.0.1:$M2_PORT/hello.php" && curl -sf -o /dev/null "http://127.0.0.1:$M2_PORT/c/hello" \
      && curl -sf -o /dev/null "http://127.0.0.1:$NGINX_PORT/hello.php"; do
  tries=$((tries + 1)); [ $tries -lt 100 ] || { echo "bench: servers did not answer; logs in $RUN/logs"; trap - EXIT; exit 1; }
  sleep 0.2
done

echo "php-fpm workers: $WORKERS, wrk: 2 threads, $CONNS connections, ${DURATION}s, $(nproc) cores"
measure "nginx -> php-fpm" "http://127.0.0.1:$NGINX_PORT/hello.php" NGINX
measure "mongrel2 -> m2bridge -> php-fpm" "http://127.0.0.1:$M2_PORT/hello.php" M2B
/usr/bin/python3 -c "print('ratio m2bridge/nginx: %.2f' % ($RPS_M2B / $RPS_NGINX))"
kill_bridge_php() { pkill -f "build-bench/m2bridge fastcgi --send-spec tcp://127.0.0.1:$SEND " || true; }
kill_bridge_php
sleep 0.5
build-bench/m2bridge fastcgi --send-spec "tcp://127.0.0.1:$SEND" --recv-spec "tcp://127.0.0.1:$RECV" \
  --document-root "$RUN/www" --max-requests "$WORKERS" --keep-conn --log-level warn "unix:$RUN/run/php.sock" &
pids="$pids $!"
until curl -sf -o /dev/null "http://127.0.0.1:$M2_PORT/hello.php"; do sleep 0.2; done
measure "  the same with --keep-conn" "http://127.0.0.1:$M2_PORT/hello.php" KEEP
/usr/bin/python3 -c "print('ratio m2bridge --keep-conn/nginx: %.2f' % ($RPS_KEEP / $RPS_NGINX))"
# Where the time goes: the same path with a C app instead of PHP, and Mongrel2 with no backend at all.
measure "mongrel2 -> m2bridge -> libfcgi C app" "http://127.0.0.1:$M2_PORT/c/hello" C_APP
measure "mongrel2 alone (static file)" "http://127.0.0.1:$M2_PORT/static/hello.txt" STATIC
