#!/usr/bin/python3
import os, sys
body = sys.stdin.read(int(os.environ.get("CONTENT_LENGTH") or 0))
print("Content-Type: text/plain; charset=utf-8")
print()
print("Hello from Python: %s %s" % (os.environ["REQUEST_METHOD"], os.environ.get("REQUEST_URI", "")))
if body:
    print("You sent %d bytes." % len(body))
