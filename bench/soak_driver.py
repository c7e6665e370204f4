#!/usr/bin/python3
"""The mixed, unusual part of bench/soak.sh's load (wrk does the bulk of small GETs).

  soak_driver.py PORT REQUESTS [THREADS] [SEED]

THREADS workers pick operations at random (seeded) until REQUESTS requests have been sent or
SOAK_MAX_SECONDS (default 3600) have passed; with SOAK_DRIVER_SECONDS the requests are spread
over about that many seconds (until SIGUSR1):
  pipeline    20 (SOAK_PIPELINE) GET /hello.php written at once on one connection, all 20 responses read
  download    GET /big.php, 1 MiB body, checked
  stream      GET /stream.php?n=8: 8 flushed pieces with 3 ms sleeps (chunked), checked
  upload      POST /upload.php with 100 KiB (above limits.content_length: Mongrel2's async
              upload path); the app's md5 and length are checked
  http10      GET /hello.php as HTTP/1.0 (the reply closes the connection)
  disconnect  a client that goes away: mid-download, with RST mid-stream, mid-upload, or right
              after sending its request
  burst       40 (SOAK_BURST) connections each send GET /stream.php?n=8 at once (over --max-requests 8 +
              --queue 16: some must get 503)
Prints the responses by operation and status, then "driver-status STATUS COUNT" lines.
Outcomes that are not a status: bad-body (200 with a wrong body), closed (no full response),
timeout, error-<Exception>, gone (our own disconnects: no response expected).
"""
import collections
import hashlib
import os
import random
import signal
import socket
import struct
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import benchhttp  # noqa: E402

TIMEOUT = float(os.environ.get("SOAK_IO_TIMEOUT", "30"))
DEADLINE = time.monotonic() + float(os.environ.get("SOAK_MAX_SECONDS", "3600"))

HELLO = b"Hello, world\n"
BIG = b"0123456789abcdef" * 65536                     # what big.php prints (1 MiB)
STREAM_PIECES = 8


def stream_body(n):                                    # what stream.php?n=N prints
    return b"".join(b"piece %04d " % i + b"x" * 1000 + b"\n" for i in range(n))


STREAM = stream_body(STREAM_PIECES)
UPLOAD = random.Random(7).randbytes(100 * 1024)
UPLOAD_ANSWER = ("%s %d" % (hashlib.md5(UPLOAD).hexdigest(), len(UPLOAD))).encode()
PIPELINE = int(os.environ.get("SOAK_PIPELINE", "20"))
BURST = int(os.environ.get("SOAK_BURST", "40"))
# Pacing: spread the budget over this many seconds (0: as fast as possible). SIGUSR1 (sent when
# wrk is done) switches pacing off, so the driver finishes at full speed.
PACE = [float(os.environ.get("SOAK_DRIVER_SECONDS", "0"))]

# operation: (weight, requests it counts for)
OPS = {
    "pipeline": (15, PIPELINE),
    "download": (15, 1),
    "stream": (15, 1),
    "upload": (20, 1),
    "http10": (15, 1),
    "disconnect": (15, 1),
    "burst": (5, BURST),
}


class Stats:
    def __init__(self):
        self.lock = threading.Lock()
        self.counts = collections.Counter()           # (op, outcome) -> n
        self.ops = collections.Counter()

    def add(self, op, outcome, n=1):
        with self.lock:
            self.counts[(op, str(outcome))] += n


def outcome_of(exc):
    if isinstance(exc, benchhttp.Closed):
        return "closed"
    if isinstance(exc, socket.timeout):
        return "timeout"
    return "error-" + type(exc).__name__


def check(stats, op, status, body, expected):
    if status == 200 and expected is not None and body.strip() != expected.strip():
        stats.add(op, "bad-body")
    else:
        stats.add(op, status)


def simple(stats, op, port, request, expected):
    try:
        with benchhttp.connect(port, TIMEOUT) as s:
            s.sendall(request)
            status, _, body, _ = benchhttp.Reader(s).read_response()
        check(stats, op, status, body, expected)
    except Exception as e:
        stats.add(op, outcome_of(e))


def op_pipeline(stats, port, rng):
    done = 0
    try:
        with benchhttp.connect(port, TIMEOUT) as s:
            s.sendall(benchhttp.get_request("/hello.php") * PIPELINE)
            r = benchhttp.Reader(s)
            for _ in range(PIPELINE):
                status, _, body, _ = r.read_response()
                check(stats, "pipeline", status, body, HELLO)
                done += 1
    except Exception as e:
        stats.add("pipeline", outcome_of(e), PIPELINE - done)


def op_upload(stats, port, rng):
    head = ("POST /upload.php HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/octet-stream\r\n"
            "Content-Length: %d\r\n\r\n" % len(UPLOAD)).encode()
    simple(stats, "upload", port, head + UPLOAD, UPLOAD_ANSWER)


def op_disconnect(stats, port, rng):
    variant = rng.randrange(4)
    name = ["disconnect-mid-download", "disconnect-rst-mid-stream", "disconnect-mid-upload",
            "disconnect-before-reply"][variant]
    try:
        outcome = "gone"
        s = benchhttp.connect(port, TIMEOUT)
        try:
            if variant == 0:
                s.sendall(benchhttp.get_request("/big.php"))
                r = benchhttp.Reader(s)
                status, _, _ = r.read_head()
                if status != 200:
                    outcome = status
                while status == 200 and r.received < 8192:
                    r._fill()
            elif variant == 1:
                s.sendall(benchhttp.get_request("/stream.php?n=40"))
                status, _, _ = benchhttp.Reader(s).read_head()
                if status != 200:
                    outcome = status
                s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            elif variant == 2:
                s.sendall(("POST /upload.php HTTP/1.1\r\nHost: localhost\r\nContent-Length: %d\r\n\r\n"
                           % len(UPLOAD)).encode() + UPLOAD[:40000])
                time.sleep(0.01)
            else:
                s.sendall(benchhttp.get_request("/stream.php?n=8"))
        finally:
            s.close()
        stats.add(name, outcome)
    except Exception as e:
        stats.add(name, outcome_of(e))


def op_burst(stats, port, rng):
    socks = []
    try:
        for _ in range(BURST):
            try:
                socks.append(benchhttp.connect(port, TIMEOUT))
            except Exception as e:
                stats.add("burst", outcome_of(e))
        request = benchhttp.get_request("/stream.php?n=%d" % STREAM_PIECES)
        for s in socks:
            try:
                s.sendall(request)
            except Exception:
                pass                                    # counted when its reply is read
        for s in socks:
            try:
                status, _, body, _ = benchhttp.Reader(s).read_response()
                check(stats, "burst", status, body, STREAM)
            except Exception as e:
                stats.add("burst", outcome_of(e))
    finally:
        for s in socks:
            s.close()


def run_op(name, stats, port, rng):
    if name == "pipeline":
        op_pipeline(stats, port, rng)
    elif name == "download":
        simple(stats, name, port, benchhttp.get_request("/big.php"), BIG)
    elif name == "stream":
        simple(stats, name, port, benchhttp.get_request("/stream.php?n=%d" % STREAM_PIECES), STREAM)
    elif name == "upload":
        op_upload(stats, port, rng)
    elif name == "http10":
        simple(stats, name, port, b"GET /hello.php HTTP/1.0\r\nHost: localhost\r\n\r\n", HELLO)
    elif name == "disconnect":
        op_disconnect(stats, port, rng)
    elif name == "burst":
        op_burst(stats, port, rng)


def main():
    port, budget = int(sys.argv[1]), int(sys.argv[2])
    threads = int(sys.argv[3]) if len(sys.argv) > 3 else 4
    seed = int(sys.argv[4]) if len(sys.argv) > 4 else 1
    stats = Stats()
    left = [budget]
    names = list(OPS)
    weights = [OPS[n][0] for n in names]

    signal.signal(signal.SIGUSR1, lambda *_: PACE.__setitem__(0, 0.0))
    start = time.monotonic()

    def worker(i):
        rng = random.Random(seed * 1000 + i)
        while time.monotonic() < DEADLINE:
            if PACE[0] > 0 and budget - left[0] > budget * (time.monotonic() - start) / PACE[0]:
                time.sleep(0.02)
                continue
            name = rng.choices(names, weights)[0]
            with stats.lock:
                if left[0] <= 0:
                    return
                left[0] -= OPS[name][1]
                stats.ops[name] += 1
            run_op(name, stats, port, rng)

    workers = [threading.Thread(target=worker, args=(i,), daemon=True) for i in range(threads)]
    for w in workers:
        w.start()
    for w in workers:
        w.join(max(0.0, DEADLINE - time.monotonic()) + 2 * TIMEOUT)
    seconds = time.monotonic() - start
    sent = budget - left[0]
    print("driver: %d requests in %d operations, %.1f s, %d threads%s"
          % (sent, sum(stats.ops.values()), seconds, threads,
             "" if left[0] <= 0 else " (STOPPED BY SOAK_MAX_SECONDS)"))
    by_op = collections.defaultdict(dict)
    totals = collections.Counter()
    for (op, outcome), n in sorted(stats.counts.items()):
        by_op[op][outcome] = n
        totals[outcome] += n
    for op in sorted(by_op):
        print("  %-28s %s" % (op, "  ".join("%s: %d" % kv for kv in sorted(by_op[op].items()))))
    for outcome, n in sorted(totals.items()):
        print("driver-status %s %d" % (outcome, n))


if __name__ == "__main__":
    main()
