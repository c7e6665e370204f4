#!/bin/sh
# One line on stderr, then 10 MB more of it, then a small response: stderr is
# logged with the connection id, bounded, and drained so the script never blocks.
echo "hello from stderr" >&2
head -c 10485760 /dev/zero | tr '\0' 'e' >&2
printf 'Content-Type: text/plain\r\n\r\nstderr done'
