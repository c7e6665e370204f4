#!/bin/sh
# Records its process group, then waits on a child: both must die on timeout or disconnect.
echo $$ > "$QUERY_STRING.tmp" && mv "$QUERY_STRING.tmp" "$QUERY_STRING"
sleep 60 &
wait
printf 'Content-Type: text/plain\r\n\r\nwoke up\n'
