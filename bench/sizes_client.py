#!/usr/bin/python3
"""Client for bench/sizes.sh: the same request again and again, as fast as it can, each checked.

  sizes_client.py download PORT PATH SIZE MIN_K SECONDS   GET PATH, expect SIZE bytes of the
      bench/fcgi_pattern.c pattern (md5 and length checked on every reply)
  sizes_client.py upload PORT PATH SIZE MIN_K SECONDS     POST SIZE pattern bytes to PATH (the app
      answers "MD5 LENGTH"), compared with what was sent

Runs at least MIN_K requests and goes on until SECONDS have passed, on one keep-alive connection
(a new one only when the server closes it). Prints one line:
  k=N ok=N bytes=N seconds=F reconnects=N framing=... [error=...]
Every wait is bounded: socket timeout SIZES_IO_TIMEOUT (default 120 s).
"""
import hashlib
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import benchhttp  # noqa: E402

IO_TIMEOUT = float(os.environ.get("SIZES_IO_TIMEOUT", "120"))


def pattern(size):
    return b"".join(benchhttp.pattern_blocks(size))


class Client:
    def __init__(self, port):
        self.port = port
        self.sock = None
        self.reader = None
        self.reconnects = -1

    def conn(self):
        if self.sock is None:
            self.sock = benchhttp.connect(self.port, IO_TIMEOUT)
            self.reader = benchhttp.Reader(self.sock)
            self.reconnects += 1
        return self.sock, self.reader

    def drop(self):
        if self.sock is not None:
            self.sock.close()
        self.sock = None


def run(mode, port, path, size, min_k, seconds):
    body = pattern(size)
    want = hashlib.md5(body).hexdigest()
    if mode == "download":
        body = None  # only its md5 is needed
        request = benchhttp.get_request(path)
    else:
        request = ("POST %s HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/octet-stream\r\n"
                   "Content-Length: %d\r\n\r\n" % (path, size)).encode()
        if size <= 65536:
            request, body = request + body, None
    c = Client(port)
    k = ok = total = 0
    framing, error = "-", ""
    start = time.monotonic()
    while k < min_k or time.monotonic() - start < seconds:
        try:
            s, r = c.conn()
            s.sendall(request)
            if body is not None:
                s.sendall(memoryview(body))
            status, _, headers = r.read_head()
            if mode == "download":
                h = hashlib.md5()
                got = [0]

                def sink(data, h=h, got=got):
                    h.update(data)
                    got[0] += len(data)

                framing = r.read_body(headers, sink)
                good = status == 200 and got[0] == size and h.hexdigest() == want
                total += got[0]
            else:
                parts = []
                framing = r.read_body(headers, parts.append)
                fields = b"".join(parts).split()
                good = (status == 200 and len(fields) >= 2 and fields[0].decode() == want
                        and fields[1].isdigit() and int(fields[1]) == size)
                total += int(fields[1]) if len(fields) >= 2 and fields[1].isdigit() else 0
            if headers.get("connection", "").lower() == "close" or framing == "eof":
                c.drop()
        except Exception as e:  # report, don't crash
            error = "%s: %s" % (type(e).__name__, e)
            good = False
            c.drop()
        k += 1
        ok += good
        if error:
            break
    seconds = time.monotonic() - start
    c.drop()
    print("k=%d ok=%d bytes=%d seconds=%.3f reconnects=%d framing=%s%s"
          % (k, ok, total, seconds, max(c.reconnects, 0), framing,
             (" error=" + error.replace(" ", "_")) if error else ""))


def main():
    mode, port, path = sys.argv[1], int(sys.argv[2]), sys.argv[3]
    size, min_k, seconds = int(sys.argv[4]), int(sys.argv[5]), float(sys.argv[6])
    if mode not in ("download", "upload"):
        sys.exit("unknown mode " + mode)
    run(mode, port, path, size, min_k, seconds)


if __name__ == "__main__":
    main()
