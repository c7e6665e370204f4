#!/bin/sh
printf 'HTTP/1.1 299 Raw\r\nContent-Type: text/plain\r\nX-Nph: yes\r\n\r\nstraight from the script'
