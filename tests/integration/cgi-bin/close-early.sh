#!/bin/sh
# Answers, closes its stdout and stays: the response ends at that EOF, and the
# script, still running, is stopped with its request (its pid goes to the file
# named by the query string).
printf 'Content-Type: text/plain\r\n\r\nearly\n'
echo $$ > "$QUERY_STRING.tmp" && mv "$QUERY_STRING.tmp" "$QUERY_STRING"
exec >&- 2>&-
sleep 30
