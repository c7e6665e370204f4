#!/bin/sh
# The smallest CGI script: headers, a blank line, the body.
printf 'Content-Type: text/plain\r\n\r\n'
echo "Hello from sh. You asked for ${PATH_INFO:-/} with query '${QUERY_STRING}'."
