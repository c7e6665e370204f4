#!/bin/sh
printf 'Content-Type: text/plain\r\n\r\nuid=%s\n' "$(id -u)"
