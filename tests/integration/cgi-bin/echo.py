#!/usr/bin/python3
# Echoes the body while still reading it: 10 MB in and 10 MB out at once.
import sys
sys.stdout.buffer.write(b"Content-Type: application/octet-stream\r\n\r\n")
while True:
    chunk = sys.stdin.buffer.read1(65536)
    if not chunk:
        break
    sys.stdout.buffer.write(chunk)
    sys.stdout.buffer.flush()
