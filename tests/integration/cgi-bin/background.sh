#!/bin/sh
# Answers, then exits while a background child keeps writing to its stdout
# forever (its pid goes to the file named by the query string). The response
# ends with the script; the writer is killed.
printf 'Content-Type: text/plain\r\n\r\nfrom the script\n'
yes background &
echo $! > "$QUERY_STRING.tmp" && mv "$QUERY_STRING.tmp" "$QUERY_STRING"
sleep 0.02  # the writer is going when the script exits
