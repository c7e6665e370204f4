"""Kept FastCGI connections, on by default over unix sockets: a backend gives each
connection one worker until it is closed, so m2bridge must learn how many it serves
at once, or requests on connections beyond that wait unread in its backlog."""

import concurrent.futures
import re
import unittest

from harness import Bridge, FcgiHello, Mongrel2, Stack, Workdir, http_request
import fake_backends as fb


def last_width(log):
    """The width the last "keeping N connection(s)" line of m2bridge's log settled on, or None."""
    found = re.findall(r"keeping (\d+) connection\(s\)", log)
    return int(found[-1]) if found else None


def fetch_all(port, paths, clients=16, timeout=30):
    """GETs every path, `clients` at once; returns [(status, body)] in order."""
    def one(path):
        status, _, body = http_request(port, "GET", path, timeout=timeout)
        return status, body
    with concurrent.futures.ThreadPoolExecutor(clients) as pool:
        return list(pool.map(one, paths))


class LearnedWidth(unittest.TestCase):
    def test_single_process_libfcgi_app_serves_16_clients_through_one_kept_connection(self):
        # Kept connections beyond the first would wait for ever behind it: the app reads
        # only the connection it has until that one closes.
        work = Workdir()
        m2 = Mongrel2(work.path, routes={"/hello/": "bridge"})
        app = FcgiHello(work.path)
        bridge = Bridge(work.path, m2, app.address, "--log-level", "info", warmup_path="/hello/")
        try:
            results = fetch_all(m2.port, ["/hello/%d" % i for i in range(64)])
            for i, (status, body) in enumerate(results):
                self.assertEqual(status, 200, "request %d" % i)
                self.assertIn(b"REQUEST_URI=/hello/%d\n" % i, body)
            self.assertEqual(last_width(bridge.log()), 1)
            # And afterwards one connection is all it keeps.
            results = fetch_all(m2.port, ["/hello/again-%d" % i for i in range(32)])
            self.assertEqual([s for s, _ in results], [200] * 32)
        finally:
            bridge.stop()
            app.stop()
            m2.stop()
            work.cleanup()

    def test_php_fpm_with_two_workers_behind_eight_slots(self):
        with Stack("--max-requests", "8", "--log-level", "info", children=2) as st:
            results = fetch_all(st.port, ["/status.php?i=%d" % i for i in range(64)], clients=12)
            self.assertEqual(results, [(200, b"status body\n")] * 64)
            self.assertEqual(last_width(st.bridge.log()), 2)

    def test_php_fpm_busy_with_slow_requests_is_not_taken_for_a_narrower_one(self):
        # php-fpm reads a request but not its final empty STDIN record until the script
        # reads its input: a worker busy with a slow script must still count as serving.
        with Stack("--max-requests", "4", "--log-level", "info", children=4) as st:
            for _ in range(2):
                results = fetch_all(st.port, ["/sleep.php?s=1&i=%d" % i for i in range(4)], clients=4)
                self.assertEqual(results, [(200, b"slept\n")] * 4)
            self.assertIsNone(last_width(st.bridge.log()), st.bridge.log())

    def test_posts_survive_php_fpm_recycling_its_workers(self):
        # A worker at pm.max_requests closes its connection right after its last answer;
        # a POST sent into that close could not be retried, so POSTs take fresh connections.
        with Stack("--max-requests", "4", children=2, extra_pool="pm.max_requests = 3") as st:
            def post(i):
                body = b"post %d " % i * 50
                status, _, got = http_request(st.port, "POST", "/echo.php", body=body, timeout=30)
                return status, got == body
            with concurrent.futures.ThreadPoolExecutor(8) as pool:
                results = list(pool.map(post, range(120)))
            self.assertEqual(results, [(200, True)] * 120)
            # GETs on kept connections meet the same closes and are retried on fresh ones.
            results = fetch_all(st.port, ["/status.php?i=%d" % i for i in range(60)], clients=8)
            self.assertEqual(results, [(200, b"status body\n")] * 60)


def fastcgi_get(socket_path, script, timeout):
    """One FastCGI request straight to a backend, as nginx would send it; returns STDOUT bytes."""
    import socket
    import struct

    def record(rtype, content):
        return struct.pack(">BBHHBB", 1, rtype, 1, len(content), 0, 0) + content

    def pair(name, value):
        return bytes([len(name), len(value)]) + name + value
    params = b"".join(pair(n, v) for n, v in [(b"SCRIPT_FILENAME", script.encode()), (b"REQUEST_METHOD", b"GET"),
                                              (b"SCRIPT_NAME", b"/status.php"), (b"QUERY_STRING", b"")])
    with socket.socket(socket.AF_UNIX) as s:
        s.settimeout(timeout)
        s.connect(socket_path)
        s.sendall(record(1, struct.pack(">HB5x", 1, 0)) + record(4, params) + record(4, b"") + record(5, b""))
        data = b""
        while True:
            chunk = s.recv(65536)
            if not chunk:
                break
            data += chunk
    out, pos = b"", 0
    while pos + 8 <= len(data):
        _, rtype, _, length, padding, _ = struct.unpack(">BBHHBB", data[pos:pos + 8])
        if rtype == 6:
            out += data[pos + 8:pos + 8 + length]
        pos += 8 + length + padding
    return out


class SharedBackend(unittest.TestCase):
    def test_an_idle_kept_connection_lets_go_of_the_worker_another_client_needs(self):
        # php-fpm with one worker, shared with another client (nginx, say). m2bridge's kept
        # connection pins that worker while idle; it is closed after a second so the other
        # client is served, instead of waiting in the backlog for as long as m2bridge lives.
        with Stack(children=1) as st:
            self.assertEqual(http_request(st.port, "GET", "/status.php")[0], 200)
            body = fastcgi_get(st.fpm.socket, st.root + "/status.php", timeout=15)
            self.assertIn(b"status body", body)
            self.assertEqual(http_request(st.port, "GET", "/status.php")[::2], (200, b"status body\n"))


class ConnectionsCounted(unittest.TestCase):
    """A fake backend that honours FCGI_KEEP_CONN and counts the connections it accepts
    (php-fpm and libfcgi cannot say how many they saw)."""

    def run_sequence(self, *bridge_args):
        accepted = []

        def keep_serving(params, stdin, conn):
            accepted.append(params["REQUEST_URI"])
            while True:
                conn.sendall(fb.stdout(b"Content-Type: text/plain\r\n\r\n" + params["REQUEST_URI"].encode()) +
                             fb.end_request())
                try:
                    params, stdin = fb.read_request(conn)
                except (EOFError, OSError):
                    return

        with Stack(*bridge_args, fake=keep_serving, warmup="/warm") as st:
            before = len(accepted)
            for i in range(20):
                status, _, body = http_request(st.port, "GET", "/n%d" % i)
                self.assertEqual((status, body), (200, b"/n%d" % i))
            return len(accepted) - before

    def test_fake_backend_sees_one_connection_for_20_requests_by_default(self):
        self.assertLessEqual(self.run_sequence(), 1)

    def test_fake_backend_sees_a_connection_per_request_with_no_keep_conn(self):
        self.assertEqual(self.run_sequence("--no-keep-conn"), 20)


if __name__ == "__main__":
    unittest.main()
