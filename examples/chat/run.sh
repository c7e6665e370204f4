#!/bin/sh
# Runs the chat demo on localhost: Mongrel2 -> m2bridge -> php-fpm running examples/chat.
#   examples/chat/run.sh [PORT]        (default 6767), then open the URL it prints; Ctrl-C stops all.
# Needs mongrel2, m2sh and php-fpm8.2 (scripts/deps.sh installs them) and m2bridge: $M2BRIDGE,
# else build/m2bridge, else m2bridge on PATH. Everything runs in a temp dir, removed at the end.
set -eu
PORT=${1:-6767}
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)

M2BRIDGE=${M2BRIDGE:-}
if [ -z "$M2BRIDGE" ]; then
  if [ -x "$ROOT/build/m2bridge" ]; then M2BRIDGE=$ROOT/build/m2bridge
  elif command -v m2bridge >/dev/null; then M2BRIDGE=$(command -v m2bridge)
  else echo "no m2bridge: build it (meson setup build && ninja -C build) or put it on PATH" >&2; exit 1
  fi
fi
PHP_FPM=$(command -v php-fpm8.2 || echo /usr/sbin/php-fpm8.2)
for tool in mongrel2 m2sh "$PHP_FPM" curl; do
  command -v "$tool" >/dev/null || { echo "$tool is missing (scripts/deps.sh installs it)" >&2; exit 1; }
done

RUN=$(mktemp -d "${TMPDIR:-/tmp}/m2bridge-chat.XXXXXX")
mkdir -p "$RUN/run" "$RUN/logs" "$RUN/tmp" "$RUN/state"

pids=""
started=no
cleanup() {
  trap - EXIT INT TERM
  for p in $pids; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  if [ $started = no ]; then
    for log in "$RUN"/logs/*; do echo "---- $log"; tail -n 20 "$log"; done >&2
  fi
  rm -rf "$RUN"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# ZeroMQ over ipc sockets in the temp dir: no port besides PORT is taken. Mongrel2's defaults for
# limits.min_ping and the rate limits stay: a held long poll survives them through m2bridge's
# ctl keep-alive (every 30 s).
cat > "$RUN/mongrel2.conf" <<CONF
chat = Handler(send_spec='ipc://run/send', send_ident='5d1c0b7e-3f2a-4e8d-9c61-0a7b3e2f9d14',
               recv_spec='ipc://run/recv', recv_ident='', protocol='tnetstring')
main = Server(uuid='8e4f2a61-7c3d-4b59-a0e2-6d1f9c3b7a58', name='chat', bind_addr='127.0.0.1',
              port=$PORT, access_log='logs/access.log', error_log='logs/error.log',
              pid_file='run/mongrel2.pid', control_port='ipc://run/control',
              default_host='localhost', hosts=[Host(name='localhost', routes={'/': chat})])
settings = {'server.daemonize': 0}
servers = [main]
CONF

# php-fpm runs several workers at once; chat.php keeps its state in CHAT_STATE_DIR under flock.
cat > "$RUN/php-fpm.conf" <<CONF
[global]
pid = $RUN/run/php-fpm.pid
error_log = $RUN/logs/php-fpm.log
daemonize = no
[chat]
user = $(id -un)
group = $(id -gn)
listen = $RUN/run/php.sock
pm = static
pm.max_children = 4
clear_env = yes
env[CHAT_STATE_DIR] = $RUN/state
CONF

(cd "$RUN" && LOGNAME=${LOGNAME:-root} m2sh load -config mongrel2.conf -db config.sqlite > logs/m2sh.out 2>&1)
(cd "$RUN" && exec mongrel2 config.sqlite 8e4f2a61-7c3d-4b59-a0e2-6d1f9c3b7a58 > logs/mongrel2.out 2>&1) &
pids="$pids $!"
FPM_ROOT=""
[ "$(id -u)" = 0 ] && FPM_ROOT="-R"
"$PHP_FPM" $FPM_ROOT -n -y "$RUN/php-fpm.conf" -F > "$RUN/logs/php-fpm.out" 2>&1 &
pids="$pids $!"
i=0
until [ -S "$RUN/run/php.sock" ] && [ -S "$RUN/run/send" ] && [ -S "$RUN/run/recv" ]; do
  i=$((i + 1)); [ $i -lt 100 ] || { echo "mongrel2 or php-fpm did not start" >&2; exit 1; }; sleep 0.1
done

# When a tab closes, its held poll's connection closes; m2bridge then tells chat.php (the POST
# {"type":"disconnect"} to --disconnect-path), which makes that member leave.
set --
if "$M2BRIDGE" fastcgi --help 2>&1 | grep -q -- --disconnect-path; then
  set -- --disconnect-path /chat.php
else
  echo "note: $M2BRIDGE has no --disconnect-path; a closed tab leaves the chat only after 60 s" >&2
fi
"$M2BRIDGE" fastcgi --send-spec "ipc://$RUN/run/send" --recv-spec "ipc://$RUN/run/recv" \
  --document-root "$HERE" --index index.php "$@" \
  --access-log "$RUN/logs/m2bridge-access.log" "unix:$RUN/run/php.sock" > "$RUN/logs/m2bridge.out" 2>&1 &
pids="$pids $!"

i=0
until curl -sf -o /dev/null "http://127.0.0.1:$PORT/"; do
  i=$((i + 1)); [ $i -lt 100 ] || { echo "the chat did not answer on port $PORT" >&2; exit 1; }; sleep 0.1
done
started=yes
echo "chat running on http://127.0.0.1:$PORT/  (logs in $RUN/logs); Ctrl-C to stop"
wait
