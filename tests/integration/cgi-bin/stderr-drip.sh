#!/bin/sh
# Never answers, but writes one byte to stderr every 0.2 s: that is not progress.
while :; do printf . >&2; sleep 0.2; done
