#!/bin/sh
printf 'Location: /cgi/status.sh\r\n\r\n'
