"""m2bridge scgi and uwsgi, end to end: raw sockets → Debian's mongrel2 → m2bridge → Debian's
uWSGI serving examples/wsgi/app.py on each of its three gateway sockets (SCGI, uwsgi and
FastCGI); then the adapter-level failure cases of the FastCGI suite, from one table, for SCGI
and uwsgi against a fake backend (uWSGI cannot stall or answer a broken head on demand)."""

import hashlib
import json
import os
import socket
import threading
import time
import unittest

from harness import (UWSGI, WSGI_APP, Bridge, Mongrel2, SocketReader, UwsgiApp, Workdir, build_request, http_request,
                     read_response, wait_until)
import fake_backends as fb

SHARED = {}


def setUpModule():
    SHARED["work"] = Workdir()
    SHARED["uwsgi"] = UwsgiApp(SHARED["work"].path)


def tearDownModule():
    SHARED["uwsgi"].stop()
    SHARED["work"].cleanup()


class WsgiAppBehindBridge:
    """The example WSGI app through one of uWSGI's sockets; subclasses name the mode."""
    mode = None

    @classmethod
    def backend(cls):
        """The bridge's backend operands, and the file the app lists held clients in."""
        return [SHARED["uwsgi"].address(cls.mode)], os.path.join(SHARED["uwsgi"].dir, "waiters")

    @classmethod
    def setUpClass(cls):
        work = SHARED["work"].path
        cls.m2 = Mongrel2(work)
        operands, cls.waiters = cls.backend()
        try:
            cls.bridge = Bridge(work, cls.m2, None, "--timeout", "10", *operands, mode=cls.mode, warmup_path="/")
        except BaseException:
            cls.m2.stop()
            raise

    @classmethod
    def tearDownClass(cls):
        try:
            cls.bridge.stop()
        finally:
            cls.m2.stop()

    def request(self, method, path, **kw):
        return http_request(self.m2.port, method, path, **kw)

    def test_form_page(self):
        status, headers, body = self.request("GET", "/")
        self.assertEqual(status, 200)
        self.assertEqual(headers["content-type"], "text/html; charset=utf-8")
        self.assertIn(b'<form method="post" action="greet">', body)

    def test_form_post_is_answered(self):
        status, _, body = self.request("POST", "/greet", body=b"name=Ada+%3Cb%3E",
                                       headers={"Content-Type": "application/x-www-form-urlencoded"})
        self.assertEqual((status, body), (200, b"<p>Hello, Ada &lt;b&gt;!</p>\n"))

    def test_app_sees_the_cgi_variables(self):
        status, headers, body = self.request("GET", "/api/info?x=1&y=two", headers={"X-Custom": "v 1"})
        self.assertEqual(status, 200)
        self.assertEqual(headers["content-type"], "application/json")
        info = json.loads(body)
        for name, value in {"REQUEST_METHOD": "GET", "QUERY_STRING": "x=1&y=two", "PATH_INFO": "/api/info",
                            "SERVER_PROTOCOL": "HTTP/1.1", "HTTP_X_CUSTOM": "v 1", "SERVER_NAME": "localhost",
                            "REQUEST_URI": "/api/info?x=1&y=two", "GATEWAY_INTERFACE": "CGI/1.1"}.items():
            self.assertEqual(info.get(name), value, name)
        self.assertTrue(info["X_MONGREL2_CONN_ID"].isdigit())
        self.assertEqual(info["body_length"], 0)

    def test_post_1mb_body_arrives_whole(self):
        data = os.urandom(1024 * 1024)
        status, _, body = self.request("POST", "/api/echo", body=data, timeout=30,
                                       headers={"Content-Type": "application/octet-stream"})
        self.assertEqual(status, 200)
        self.assertEqual(json.loads(body), {"length": len(data), "md5": hashlib.md5(data).hexdigest()})

    def test_streamed_response_without_length(self):
        with socket.create_connection(("127.0.0.1", self.m2.port), timeout=10) as s:
            s.sendall(build_request("GET", "/api/stream?n=300&pause=0.3"))
            status, headers, body = read_response(s)
        self.assertEqual(status, 200)
        self.assertEqual(headers.get("transfer-encoding"), "chunked")
        self.assertEqual(body, b"".join(b"piece %d\n" % i for i in range(300)))

    def test_404_from_the_app(self):
        status, _, body = self.request("GET", "/no/such/page")
        self.assertEqual((status, body), (404, b"no such page\n"))

    def test_deliver_header_answers_held_clients(self):
        held = []
        try:
            for _ in range(3):
                s = socket.create_connection(("127.0.0.1", self.m2.port), timeout=10)
                s.sendall(build_request("GET", "/wait"))
                held.append(s)
            waiters = self.waiters

            def held_ids():
                if not os.path.exists(waiters):
                    return []
                with open(waiters) as f:
                    return f.read().split()
            wait_until(lambda: len(held_ids()) == 3, what="three held clients")
            status, _, body = self.request("POST", "/say", body=b"news for all")
            self.assertEqual((status, body), (200, b"news for all"))
            for s in held:
                status, _, body = read_response(s)
                self.assertEqual((status, body), (200, b"news for all"))
        finally:
            for s in held:
                s.close()


class WsgiOverScgi(WsgiAppBehindBridge, unittest.TestCase):
    mode = "scgi"


class WsgiOverUwsgi(WsgiAppBehindBridge, unittest.TestCase):
    mode = "uwsgi"


class WsgiOverFastcgi(WsgiAppBehindBridge, unittest.TestCase):
    mode = "fastcgi"


class WsgiUnderSpawn(WsgiAppBehindBridge, unittest.TestCase):
    """The same app in uWSGI processes that m2bridge starts itself (fastcgi --spawn): each copy
    takes the listening socket m2bridge hands it on fd 0."""
    mode = "fastcgi"

    @classmethod
    def backend(cls):
        waiters = os.path.join(SHARED["work"].path, "spawn-waiters")
        return ["--spawn", "2", "--", UWSGI, "--plugin", "python3", "--protocol", "fastcgi", "--socket", "fd://0",
                "--buffer-size", "65535", "--wsgi-file", WSGI_APP, "--env", "WSGI_WAITERS=" + waiters], waiters


def fake_behaviour(request, conn):
    """What the fake backend does, picked by the path in the request's bytes."""
    if b"/stall" in request:
        time.sleep(5)
    elif b"/inject-cgi" in request:
        conn.sendall(b"Content-Type: text/plain\r\nX-A: a\rSet-Cookie: s=1\r\n\r\nbody")
    elif b"/inject-http" in request:
        conn.sendall(b"HTTP/1.1 200 OK\r\nX-A: a\rSet-Cookie: s=1\r\n\r\nbody")
    elif b"/bad-status-line" in request:
        conn.sendall(b"HTTP/1.1 2x0 OK\r\nContent-Type: text/plain\r\n\r\nbody")
    elif b"/closed-at-once" in request:
        pass
    elif b"/http-created" in request:
        conn.sendall(b"HTTP/1.0 201 Created\r\nContent-Type: text/plain\r\nConnection: close\r\n\r\nmade")
    elif b"/drip" in request:
        conn.sendall(b"Status: 200 OK\r\nContent-Type: text/plain\r\n\r\n" + b"x" * 1000)
        FAKES[-1].wait_for_close(conn, 20)


FAKES = []

# path, expected status, expected body (None: any)
CASES = [
    ("/stall", 504, b"504 Gateway Timeout\n"),
    ("/inject-cgi", 502, b"502 Bad Gateway\n"),
    ("/inject-http", 502, b"502 Bad Gateway\n"),
    ("/bad-status-line", 502, b"502 Bad Gateway\n"),
    ("/closed-at-once", 502, b"502 Bad Gateway\n"),
    ("/http-created", 201, b"made"),
]


class FakeBackendFailures:
    """The failure cases, one table for every stream protocol."""
    mode = None

    def setUp(self):
        self.work = Workdir()
        self.m2 = Mongrel2(self.work.path)
        self.fake = fb.FakeStreamBackend(os.path.join(self.work.path, "fake.sock"), fake_behaviour)
        FAKES.append(self.fake)
        self.bridge = Bridge(self.work.path, self.m2, self.fake.address, "--timeout", "1", mode=self.mode,
                             warmup_path="/http-created")

    def tearDown(self):
        try:
            self.bridge.stop()
        finally:
            self.fake.stop()
            self.m2.stop()
            self.work.cleanup()

    def test_table_of_backend_failures(self):
        for path, status, body in CASES:
            with self.subTest(path=path):
                got_status, _, got_body = http_request(self.m2.port, "GET", path, timeout=10)
                self.assertEqual((got_status, got_body), (status, body))
        log = self.bridge.log()
        self.assertRegex(log, r"error: conn=\d+ .*silent for 1000 ms")
        self.assertRegex(log, r"error: conn=\d+ .*malformed status line: HTTP/1.1 2x0 OK")

    def test_what_reached_the_backend(self):
        http_request(self.m2.port, "POST", "/http-created?q=1", body=b"hello", headers={"X-Test": "yes"})
        request = self.fake.requests[-1]
        if self.mode == "scgi":
            length, _, rest = request.partition(b":")
            fields = rest[:int(length)].split(b"\0")
            self.assertEqual(fields[:4], [b"CONTENT_LENGTH", b"5", b"SCGI", b"1"])
            self.assertEqual(rest[int(length):], b",hello")
        else:
            self.assertEqual(request[0], 0)  # modifier1: a WSGI/CGI request
            size = request[1] | request[2] << 8
            self.assertEqual(request[3], 0)
            self.assertEqual(request[4 + size:], b"hello")
            fields, pos = [], 4
            while pos < 4 + size:
                n = request[pos] | request[pos + 1] << 8
                fields.append(request[pos + 2:pos + 2 + n])
                pos += 2 + n
            self.assertEqual(pos, 4 + size)
            env = dict(zip(fields[::2], fields[1::2]))
            self.assertEqual(env[b"CONTENT_LENGTH"], b"5")
        self.assertIn(b"HTTP_X_TEST\0yes" if self.mode == "scgi" else b"yes", request)
        self.assertIn(b"QUERY_STRING", request)

    def test_client_disconnect_closes_the_backend_connection(self):
        s = socket.create_connection(("127.0.0.1", self.m2.port), timeout=10)
        s.sendall(build_request("GET", "/drip"))
        s.recv(1)  # the response has started
        s.close()
        wait_until(lambda: self.fake.closed_by_peer == 1, timeout=10, what="m2bridge to close the backend")
        wait_until(lambda: "client went away" in self.bridge.log(), what="the log line")

    def test_backend_down_is_502(self):
        self.fake.stop()
        status, _, body = http_request(self.m2.port, "GET", "/x")
        self.assertEqual((status, body), (502, b"502 Bad Gateway\n"))
        self.assertRegex(self.bridge.log(), r"error: conn=\d+ .*connect to unix:.*fake.sock")


class ScgiFailures(FakeBackendFailures, unittest.TestCase):
    mode = "scgi"


class UwsgiFailures(FakeBackendFailures, unittest.TestCase):
    mode = "uwsgi"


if __name__ == "__main__":
    unittest.main()
