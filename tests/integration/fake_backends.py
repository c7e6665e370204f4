"""A scriptable FastCGI backend for what no real one does on demand: lie in
its response head, stall, die mid-body, or answer with a local redirect.
Tests that use it say "fake backend" in their names."""

import os
import socket
import struct
import threading
import time

STDOUT, END_REQUEST, STDERR = 6, 3, 7


def record(rtype, content, request_id=1):
    return struct.pack(">BBHHBB", 1, rtype, request_id, len(content), 0, 0) + content


def end_request(status=0, protocol_status=0, request_id=1):
    return record(END_REQUEST, struct.pack(">IB3x", status, protocol_status), request_id)


def stdout(data, request_id=1):
    out = b""
    for i in range(0, len(data), 65535):
        out += record(STDOUT, data[i:i + 65535], request_id)
    return out


def read_request(conn):
    """Reads BEGIN, PARAMS and STDIN; returns (params dict, stdin bytes)."""
    buf = b""
    params_raw = b""
    stdin = b""
    done_params = done_stdin = False

    def need(n):
        nonlocal buf
        while len(buf) < n:
            data = conn.recv(65536)
            if not data:
                raise EOFError
            buf += data

    while not (done_params and done_stdin):
        need(8)
        _, rtype, _, length, padding, _ = struct.unpack(">BBHHBB", buf[:8])
        need(8 + length + padding)
        content = buf[8:8 + length]
        buf = buf[8 + length + padding:]
        if rtype == 4:
            if length == 0:
                done_params = True
            params_raw += content
        elif rtype == 5:
            if length == 0:
                done_stdin = True
            stdin += content
    params = {}
    i = 0

    def length_at(i):
        b = params_raw[i]
        if b < 128:
            return b, i + 1
        return struct.unpack(">I", params_raw[i:i + 4])[0] & 0x7FFFFFFF, i + 4

    while i < len(params_raw):
        nl, i = length_at(i)
        vl, i = length_at(i)
        params[params_raw[i:i + nl].decode("latin-1")] = params_raw[i + nl:i + nl + vl].decode("latin-1")
        i += nl + vl
    return params, stdin


class FakeBackend:
    """`behave(params, stdin, conn)` writes whatever it likes to `conn`."""

    def __init__(self, path, behave):
        self.path = path
        self.behave = behave
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.bind(path)
        self.sock.listen(64)
        self.requests = []
        self.closed_after_end = []
        self.running = True
        self.thread = threading.Thread(target=self.serve, daemon=True)
        self.thread.start()

    @property
    def address(self):
        return "unix:" + self.path

    def serve(self):
        while self.running:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self.handle, args=(conn,), daemon=True).start()

    def handle(self, conn):
        try:
            params, stdin = read_request(conn)
            self.requests.append((params, stdin))
            self.behave(params, stdin, conn)
        except (EOFError, OSError):
            pass
        finally:
            conn.close()

    def stop(self):
        self.running = False
        self.sock.close()
        try:
            os.unlink(self.path)
        except OSError:
            pass


def scripted(table):
    """A behaviour from a table: SCRIPT_NAME+PATH_INFO → list of byte strings or
    floats (sleep seconds); None in the list means 'close now without END_REQUEST'."""

    def behave(params, stdin, conn):
        key = params.get("PATH_INFO", "") or params.get("SCRIPT_NAME", "")
        steps = table.get(key, [stdout(b"Content-Type: text/plain\r\n\r\nfake:" + key.encode()), end_request()])
        if callable(steps):
            steps = steps(params, stdin)
        for step in steps:
            if step is None:
                return
            if isinstance(step, float):
                time.sleep(step)
            else:
                conn.sendall(step)
    return behave


def send_until_stalled(conn, data, stall=0.5, limit=30.0):
    """Writes as much of `data` as the peer takes; gives up once it has taken nothing for `stall`
    seconds (or after `limit` seconds in all). Returns the number of bytes written."""
    conn.setblocking(False)
    sent = 0
    last_progress = start = time.time()
    view = memoryview(data)
    while sent < len(data) and time.time() - last_progress < stall and time.time() - start < limit:
        try:
            n = conn.send(view[sent:sent + 65536])
        except BlockingIOError:
            time.sleep(0.01)
            continue
        sent += n
        last_progress = time.time()
    conn.setblocking(True)
    return sent


def burst_then_close(data, sent_log=None):
    """A behaviour: writes `data` (whole records) as fast as it is taken, then closes the
    socket without END_REQUEST, even if the peer stopped reading part way."""

    def behave(params, stdin, conn):
        n = send_until_stalled(conn, data)
        if sent_log is not None:
            sent_log.append(n)
    return behave


def kept_then_silent_close(answer, seen):
    """A behaviour for FCGI_KEEP_CONN: answers the connection's first request with
    `answer(params, stdin)` and keeps the connection; then reads the next request on it, notes it
    in `seen` and closes the connection without answering it."""

    def behave(params, stdin, conn):
        conn.sendall(answer(params, stdin))
        try:
            again = read_request(conn)
        except (EOFError, OSError):
            return
        seen.append(again)
    return behave


class FakeStreamBackend(FakeBackend):
    """A fake SCGI or uwsgi server, for what uWSGI cannot do on demand (stall, answer a
    broken head). It reads the request's first bytes, then `behave(request_bytes, conn)`.
    Connections it saw end are counted in `closed_by_peer`."""

    def __init__(self, path, behave):
        self.closed_by_peer = 0
        super().__init__(path, behave)

    def handle(self, conn):
        try:
            data = conn.recv(65536)
            self.requests.append(data)
            self.behave(data, conn)
        except OSError:
            pass
        finally:
            conn.close()

    def wait_for_close(self, conn, timeout):
        """Waits for the peer to close (what m2bridge does when it gives a request up)."""
        conn.settimeout(timeout)
        try:
            while conn.recv(65536):
                pass
            self.closed_by_peer += 1
        except OSError:
            pass
