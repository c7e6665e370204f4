#!/bin/sh
# Starts a grandchild in a session of its own (outside the script's process
# group) and records its pid; QUERY_STRING is "hang:PIDFILE" (the script then
# never answers) or "answer:PIDFILE".
mode=${QUERY_STRING%%:*}
pidfile=${QUERY_STRING#*:}
setsid sh -c 'echo $$ > "$1.tmp" && mv "$1.tmp" "$1" && exec sleep 300' sh "$pidfile" </dev/null >/dev/null 2>&1 &
while [ ! -s "$pidfile" ]; do sleep 0.01; done
[ "$mode" = hang ] && exec sleep 300
printf 'Content-Type: text/plain\r\n\r\nanswered\n'
