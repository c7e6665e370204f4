#!/bin/sh
# Installs what is needed, builds m2bridge, and runs the demo on localhost:6767:
# Mongrel2 in front; one m2bridge, run from a config file, with three handlers:
# php-fpm (examples/php) at /, two copies of the libfcgi C example that
# m2bridge starts and supervises itself at /hello/, and the WSGI example
# (examples/wsgi/app.py) on uWSGI's uwsgi socket at /wsgi/. Ctrl-C stops everything.
# DEMO_ONCE=1 shows the three answers and stops (a smoke test).
set -eu
cd "$(dirname "$0")/.."
ROOT=$PWD
./scripts/deps.sh
[ -f build/build.ninja ] || meson setup build --buildtype=release
ninja -C build

RUN=${DEMO_DIR:-/tmp/m2bridge-demo}
rm -rf "$RUN"
mkdir -p "$RUN/run" "$RUN/logs" "$RUN/tmp"
cp examples/mongrel2/mongrel2.conf "$RUN/"
cat > "$RUN/php-fpm.conf" <<CONF
[global]
pid = $RUN/run/php-fpm.pid
error_log = $RUN/logs/php-fpm.log
daemonize = no
[demo]
user = $(id -un)
group = $(id -gn)
listen = $RUN/run/php.sock
pm = static
pm.max_children = 4
clear_env = yes
CONF

pids=""
cleanup() {
  for p in $pids; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
}
trap cleanup EXIT INT TERM

(cd "$RUN" && LOGNAME=${LOGNAME:-root} m2sh load -config mongrel2.conf -db config.sqlite >/dev/null 2>&1)
(cd "$RUN" && exec mongrel2 config.sqlite a3c9e2d1-5b7f-4c8e-9a1d-2e3f4b5c6d7e > logs/mongrel2.out 2>&1) &
pids="$pids $!"
FPM_ROOT=""
[ "$(id -u)" = 0 ] && FPM_ROOT="-R"
$(command -v php-fpm8.2 || echo /usr/sbin/php-fpm8.2) $FPM_ROOT -n -y "$RUN/php-fpm.conf" -F > "$RUN/logs/php-fpm.out" 2>&1 &
pids="$pids $!"
uwsgi-core --plugin python3 --master --processes 2 --die-on-term --uwsgi-socket "$RUN/run/wsgi.sock" \
  --wsgi-file "$ROOT/examples/wsgi/app.py" --env "WSGI_WAITERS=$RUN/run/wsgi-waiters" > "$RUN/logs/uwsgi.out" 2>&1 &
pids="$pids $!"
i=0
while [ ! -S "$RUN/run/php.sock" ] || [ ! -S "$RUN/run/wsgi.sock" ]; do
  i=$((i + 1)); [ $i -lt 100 ] || { echo "backends did not start; see $RUN/logs"; exit 1; }; sleep 0.1
done

cat > "$RUN/m2bridge.toml" <<CONF
metrics = "127.0.0.1:9100"

[[handler]]
name = "php"
send_spec = "tcp://127.0.0.1:9997"
recv_spec = "tcp://127.0.0.1:9996"
fastcgi = "unix:$RUN/run/php.sock"
document_root = "$ROOT/examples/php"
index = "index.php"
upload_store = "$RUN/tmp/upload.XXXXXX"
access_log = "$RUN/logs/m2bridge-access.log"

[[handler]]
name = "hello"
send_spec = "tcp://127.0.0.1:9995"
recv_spec = "tcp://127.0.0.1:9994"
spawn = { command = ["$ROOT/build/examples/fcgi-hello"], instances = 2 }
upload_store = "$RUN/tmp/upload.XXXXXX"
access_log = "$RUN/logs/m2bridge-access.log"

[[handler]]
name = "wsgi"
send_spec = "tcp://127.0.0.1:9993"
recv_spec = "tcp://127.0.0.1:9992"
uwsgi = "unix:$RUN/run/wsgi.sock"
upload_store = "$RUN/tmp/upload.XXXXXX"
access_log = "$RUN/logs/m2bridge-access.log"
CONF
build/m2bridge --config "$RUN/m2bridge.toml" 2> "$RUN/logs/m2bridge.log" &
pids="$pids $!"

i=0
until curl -sf -o /dev/null http://127.0.0.1:6767/ && curl -sf -o /dev/null http://127.0.0.1:6767/hello/ &&
      curl -sf -o /dev/null http://127.0.0.1:6767/wsgi/; do
  i=$((i + 1)); [ $i -lt 100 ] || { echo "demo did not answer; see $RUN/logs"; exit 1; }; sleep 0.1
done
echo "---- curl http://127.0.0.1:6767/?x=1"
curl -s "http://127.0.0.1:6767/?x=1"
echo "---- curl http://127.0.0.1:6767/hello/world"
curl -s http://127.0.0.1:6767/hello/world
echo "---- curl -d name=Ada http://127.0.0.1:6767/wsgi/greet"
curl -s -d name=Ada http://127.0.0.1:6767/wsgi/greet
[ "${DEMO_ONCE:-0}" = 1 ] && exit 0
echo "---- demo running on http://127.0.0.1:6767/ (metrics on http://127.0.0.1:9100/metrics,"
echo "     config in $RUN/m2bridge.toml: edit it and kill -HUP the m2bridge; logs in $RUN/logs); Ctrl-C to stop"
wait
