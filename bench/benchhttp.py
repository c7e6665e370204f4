"""A small HTTP/1.x client for the soak and memory benchmarks (Python standard library only).

Reads responses from a raw socket so that tests can pipeline, disconnect half-way, rate-limit
their reads and hash bodies of any size without keeping them. Framing: Content-Length, chunked,
or until EOF. Used by bench/soak_driver.py and bench/membound_client.py.
"""
import socket
import time


class Closed(Exception):
    """The server closed the connection before a full response."""


class Reader:
    def __init__(self, sock, rate=None, chunk=1 << 20):
        self.sock = sock
        self.buf = bytearray()
        self.rate = rate            # bytes per second at most, or None
        self.chunk = chunk
        self.received = 0           # bytes taken from the socket so far
        self.started = None

    def _recv(self, n):
        n = min(n, self.chunk)
        if self.rate:
            if self.started is None:
                self.started = time.monotonic()
            # Never be ahead of the allowed rate: sleep until this many bytes are due.
            ahead = self.received / self.rate - (time.monotonic() - self.started)
            if ahead > 0:
                time.sleep(ahead)
            n = min(n, max(4096, int(self.rate / 50)))   # ~20 ms worth per read
        data = self.sock.recv(n)
        self.received += len(data)
        return data

    def _fill(self):
        data = self._recv(65536)
        if not data:
            raise Closed("connection closed")
        self.buf += data

    def readline(self, limit=65536):
        while True:
            i = self.buf.find(b"\n")
            if i >= 0:
                line = bytes(self.buf[: i + 1])
                del self.buf[: i + 1]
                return line
            if len(self.buf) > limit:
                raise ValueError("line too long")
            self._fill()

    def read_exact(self, n, sink):
        """Passes exactly n bytes to sink (buffered ones first, then straight from the socket)."""
        if self.buf:
            take = min(n, len(self.buf))
            sink(bytes(self.buf[:take]))
            del self.buf[:take]
            n -= take
        while n > 0:
            data = self._recv(n)
            if not data:
                raise Closed("connection closed with %d body bytes missing" % n)
            sink(data)
            n -= len(data)

    def read_to_eof(self, sink):
        if self.buf:
            sink(bytes(self.buf))
            self.buf.clear()
        while True:
            data = self._recv(1 << 20)
            if not data:
                return
            sink(data)

    def read_head(self):
        """Returns (status, version, headers dict with lower-case names)."""
        line = self.readline()
        while line in (b"\r\n", b"\n"):      # tolerate stray blank lines
            line = self.readline()
        parts = line.split(None, 2)
        if len(parts) < 2 or not parts[0].startswith(b"HTTP/"):
            raise ValueError("bad status line %r" % line[:80])
        version, status = parts[0].decode(), int(parts[1])
        headers = {}
        while True:
            line = self.readline()
            if line in (b"\r\n", b"\n"):
                break
            name, _, value = line.partition(b":")
            headers[name.strip().lower().decode("latin-1")] = value.strip().decode("latin-1")
        return status, version, headers

    def read_body(self, headers, sink, head_request=False):
        """Reads the body after read_head; returns the framing used."""
        if head_request:
            return "none"
        if "chunked" in headers.get("transfer-encoding", "").lower():
            while True:
                size_line = self.readline()
                size = int(size_line.split(b";")[0].strip(), 16)
                if size == 0:
                    while self.readline() not in (b"\r\n", b"\n"):   # trailers
                        pass
                    return "chunked"
                self.read_exact(size, sink)
                if self.readline() not in (b"\r\n", b"\n"):
                    raise ValueError("chunk not followed by CRLF")
        if "content-length" in headers:
            self.read_exact(int(headers["content-length"]), sink)
            return "length"
        self.read_to_eof(sink)
        return "eof"

    def read_response(self, head_request=False):
        """Returns (status, headers, body bytes, framing); for small bodies."""
        status, _, headers = self.read_head()
        parts = []
        framing = self.read_body(headers, parts.append, head_request)
        return status, headers, b"".join(parts), framing


def connect(port, timeout=30.0, host="127.0.0.1"):
    s = socket.create_connection((host, port), timeout=timeout)
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return s


def get_request(path, host="localhost", close=False, extra=""):
    return ("GET %s HTTP/1.1\r\nHost: %s\r\n%s%s\r\n"
            % (path, host, "Connection: close\r\n" if close else "", extra)).encode()


# The deterministic download pattern of bench/fcgi_pattern.c: 4096-byte blocks, each the block's
# index as 8 little-endian bytes followed by 4088 filler bytes (i * 131 + 7) mod 251.
BLOCK = 4096
_FILLER = bytes(((i * 131 + 7) % 251) for i in range(8, BLOCK))


def pattern_blocks(size):
    """Yields the pattern's bytes for a body of `size` bytes, 4 KiB at a time."""
    full, rest = divmod(size, BLOCK)
    for k in range(full):
        yield k.to_bytes(8, "little") + _FILLER
    if rest:
        yield (full.to_bytes(8, "little") + _FILLER)[:rest]
