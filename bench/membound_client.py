#!/usr/bin/python3
"""Client for bench/membound.sh: one big download or upload, checked byte for byte.

  membound_client.py download PORT PATH SIZE [RATE]   GET PATH, expect SIZE bytes of the
      bench/fcgi_pattern.c pattern; RATE bytes/s caps the reading speed (0 = as fast as possible)
  membound_client.py upload PORT PATH SIZE            POST SIZE pattern bytes to PATH (the app
      answers "MD5 LENGTH"), compare with what was sent

Prints one line: status=N bytes=N md5_ok=yes|no seconds=F framing=... [error=...]
Every wait is bounded: socket timeout MEMBOUND_IO_TIMEOUT (default 120 s), whole run
MEMBOUND_DEADLINE seconds (default 1200).
"""
import hashlib
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import benchhttp  # noqa: E402

IO_TIMEOUT = float(os.environ.get("MEMBOUND_IO_TIMEOUT", "120"))
DEADLINE = time.monotonic() + float(os.environ.get("MEMBOUND_DEADLINE", "1200"))


class TooLong(Exception):
    pass


def expected_md5(size):
    h = hashlib.md5()
    batch = []
    for block in benchhttp.pattern_blocks(size):
        batch.append(block)
        if len(batch) == 256:
            h.update(b"".join(batch))
            batch = []
    h.update(b"".join(batch))
    return h.hexdigest()


def download(port, path, size, rate):
    want = expected_md5(size)
    h = hashlib.md5()
    got = 0
    status, framing, error = 0, "-", ""

    def sink(data):
        nonlocal got
        h.update(data)
        got += len(data)
        if time.monotonic() > DEADLINE:
            raise TooLong("deadline passed")

    start = time.monotonic()
    try:
        s = benchhttp.connect(port, IO_TIMEOUT)
        s.sendall(benchhttp.get_request(path))
        r = benchhttp.Reader(s, rate=rate or None)
        status, _, headers = r.read_head()
        framing = r.read_body(headers, sink)
        s.close()
    except Exception as e:  # report, don't crash: a cut download is a result
        error = "%s: %s" % (type(e).__name__, e)
    seconds = time.monotonic() - start
    ok = got == size and h.hexdigest() == want and status == 200
    print("status=%d bytes=%d md5_ok=%s seconds=%.2f framing=%s%s"
          % (status, got, "yes" if ok else "no", seconds, framing,
             (" error=" + error.replace(" ", "_")) if error else ""))


def upload(port, path, size):
    sent_md5 = hashlib.md5()
    status, framing, error, body = 0, "-", "", b""
    start = time.monotonic()
    try:
        s = benchhttp.connect(port, IO_TIMEOUT)
        s.sendall(("POST %s HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/octet-stream\r\n"
                   "Content-Length: %d\r\n\r\n" % (path, size)).encode())
        batch = []
        for block in benchhttp.pattern_blocks(size):
            batch.append(block)
            if len(batch) == 256:
                data = b"".join(batch)
                sent_md5.update(data)
                s.sendall(data)
                batch = []
                if time.monotonic() > DEADLINE:
                    raise TooLong("deadline passed")
        data = b"".join(batch)
        sent_md5.update(data)
        s.sendall(data)
        status, _, body, framing = benchhttp.Reader(s).read_response()
        s.close()
    except Exception as e:
        error = "%s: %s" % (type(e).__name__, e)
    seconds = time.monotonic() - start
    fields = body.split()
    ok = (status == 200 and len(fields) >= 2 and fields[0].decode() == sent_md5.hexdigest()
          and int(fields[1]) == size)
    got = int(fields[1]) if len(fields) >= 2 and fields[1].isdigit() else 0
    print("status=%d bytes=%d md5_ok=%s seconds=%.2f framing=%s%s"
          % (status, got, "yes" if ok else "no", seconds, framing,
             (" error=" + error.replace(" ", "_")) if error else ""))


def main():
    mode, port, path, size = sys.argv[1], int(sys.argv[2]), sys.argv[3], int(sys.argv[4])
    if mode == "download":
        download(port, path, size, float(sys.argv[5]) if len(sys.argv) > 5 else 0)
    elif mode == "upload":
        upload(port, path, size)
    else:
        sys.exit("unknown mode " + mode)


if __name__ == "__main__":
    main()
