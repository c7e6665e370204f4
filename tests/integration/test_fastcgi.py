"""m2bridge fastcgi, end to end: curl/raw sockets → Debian's mongrel2 → m2bridge → php-fpm
(or the libfcgi example, or a fake backend where a real one cannot misbehave on demand)."""

import base64
import json
import os
import re
import socket
import subprocess
import threading
import time
import unittest
import urllib.parse

from harness import (Bridge, FcgiHello, Mongrel2, SocketReader, Stack, Workdir, build_request, free_port,
                     http_request, md5, read_response, wait_until)
import fake_backends as fb

HERE = os.path.dirname(os.path.abspath(__file__))


# The shared stack: Mongrel2, php-fpm and m2bridge in a temp dir (harness.Stack).
PhpStack = Stack


def server_vars(body):
    data = json.loads(body)
    return {k: base64.b64decode(v) for k, v in data["server"].items()}, data


class PhpFpmThroughMongrel2(unittest.TestCase):
    protocol = "json"

    @classmethod
    def setUpClass(cls):
        cls.stack = PhpStack("--timeout", "2", "--index", "dump.php", children=4, routes={"/app/": "bridge"},
                             protocol=cls.protocol, warmup="/app/dump.php")
        cls.work, cls.root, cls.m2, cls.bridge = cls.stack.work, cls.stack.root, cls.stack.m2, cls.stack.bridge

    @classmethod
    def tearDownClass(cls):
        cls.stack.stop()

    def get(self, path, **kw):
        return http_request(self.m2.port, "GET", path, **kw)

    def test_get_sees_every_cgi_variable(self):
        status, headers, body = self.get("/app/dump.php/extra/p?x=1&y=two")
        self.assertEqual(status, 200)
        self.assertEqual(headers["content-type"], "application/json")
        self.assertEqual(headers["x-test"], "dump")
        self.assertEqual(int(headers["content-length"]), len(body))
        self.assertIn("date", headers)
        env, data = server_vars(body)
        expect = {
            "REQUEST_METHOD": b"GET", "QUERY_STRING": b"x=1&y=two", "GATEWAY_INTERFACE": b"CGI/1.1",
            "SERVER_PROTOCOL": b"HTTP/1.1", "SERVER_SOFTWARE": b"m2bridge/0.1.0", "SERVER_NAME": b"localhost",
            "SERVER_PORT": b"80", "REMOTE_ADDR": b"127.0.0.1", "REQUEST_URI": b"/app/dump.php/extra/p?x=1&y=two",
            "DOCUMENT_ROOT": self.root.encode(), "SCRIPT_FILENAME": (self.root + "/dump.php").encode(),
            "SCRIPT_NAME": b"/app/dump.php", "PATH_INFO": b"/extra/p",
            "PATH_TRANSLATED": (self.root + "/extra/p").encode(), "REDIRECT_STATUS": b"200",
            "X_MONGREL2_PATTERN": b"/app/", "HTTP_HOST": b"localhost",
        }
        for name, value in expect.items():
            self.assertEqual(env.get(name), value, name)
        self.assertRegex(env["X_MONGREL2_CONN_ID"].decode(), r"^\d+$")
        self.assertRegex(env["X_MONGREL2_SENDER"].decode(), r"^[0-9a-f-]{36}$")
        for absent in ("CONTENT_LENGTH", "HTTPS", "HTTP_PROXY", "HTTP_X_MONGREL2_UPLOAD_START"):
            self.assertNotIn(absent, env)
        self.assertEqual(data["body_len"], 0)

    def test_index_for_a_directory_path(self):
        status, _, body = self.get("/app/")
        self.assertEqual(status, 200)
        env, _ = server_vars(body)
        self.assertEqual(env["SCRIPT_NAME"], b"/app/dump.php")
        self.assertNotIn("PATH_INFO", env)

    def test_missing_script_is_404_without_php(self):
        status, _, body = self.get("/app/nope.php")
        self.assertEqual(status, 404)
        self.assertEqual(body, b"404 Not Found\n")

    def test_traversal_is_refused(self):
        self.assertEqual(self.get("/app/%2e%2e/%2e%2e/etc/passwd")[0], 403)
        self.assertEqual(self.get("/app/..%2f..%2fetc/passwd")[0], 400)

    def test_post_inline_body_reaches_php(self):
        payload = b"a=1&b=" + bytes(range(256)) * 10
        status, _, body = http_request(self.m2.port, "POST", "/app/dump.php", body=payload,
                                       headers={"Content-Type": "application/x-test"})
        self.assertEqual(status, 200)
        env, data = server_vars(body)
        self.assertEqual(env["CONTENT_LENGTH"], str(len(payload)).encode())
        self.assertEqual(env["CONTENT_TYPE"], b"application/x-test")
        self.assertEqual(data["body_md5"], md5(payload))

    def test_head_sends_no_body_bytes(self):
        with socket.create_connection(("127.0.0.1", self.m2.port), timeout=5) as s:
            reader = SocketReader(s)
            s.sendall(build_request("HEAD", "/app/status.php"))
            status, headers, _ = read_response(s, head_request=True, reader=reader)
            self.assertEqual(status, 200)
            # The same connection then answers a GET: any stray body byte would corrupt it.
            s.sendall(build_request("GET", "/app/status.php?code=201"))
            status2, _, body2 = read_response(s, reader=reader)
            self.assertEqual((status2, body2), (201, b"status body\n"))
            self.assertEqual(reader.buf, b"")

    def test_status_and_repeated_set_cookie(self):
        status, headers, body = self.get("/app/status.php?code=418")
        self.assertEqual(status, 418)
        self.assertEqual(body, b"status body\n")
        cookies = [v for k, v in headers["__raw__"] if k.lower() == "set-cookie"]
        self.assertEqual(cookies, ["a=1", "b=2"])

    def test_raw_tab_and_0xff_header_are_served(self):
        status, _, body = self.get("/app/dump.php", headers={"X-Tab": b"a\tb", "X-Bin": b"\xff\xfeok",
                                                             "X-Quote": b'say "hi" \\'})
        self.assertEqual(status, 200)
        env, _ = server_vars(body)
        self.assertEqual(env["HTTP_X_TAB"], b"a\tb")
        self.assertEqual(env["HTTP_X_BIN"], b"\xff\xfeok")
        self.assertEqual(env["HTTP_X_QUOTE"], b'say "hi" \\')

    def test_httpoxy_and_forged_upload_headers_are_not_passed(self):
        status, _, body = self.get("/app/dump.php", headers={"Proxy": "http://evil:1",
                                                             "X-Mongrel2-Upload-Start": "/etc/passwd",
                                                             "X-Mongrel2-Upload-Done": "/etc/passwd"})
        self.assertEqual(status, 200)
        env, data = server_vars(body)
        self.assertNotIn("HTTP_PROXY", env)
        self.assertNotIn("HTTP_X_MONGREL2_UPLOAD_DONE", env)
        self.assertEqual(data["body_len"], 0)
        self.assertIn("forged upload header", self.bridge.log())

    def test_1mb_upload_is_byte_exact_and_temp_file_deleted(self):
        payload = os.urandom(1024 * 1024)
        status, _, body = http_request(self.m2.port, "POST", "/app/dump.php", body=payload, timeout=30,
                                       headers={"Content-Type": "application/octet-stream"})
        self.assertEqual(status, 200)
        env, data = server_vars(body)
        self.assertEqual(data["body_len"], len(payload))
        self.assertEqual(data["body_md5"], md5(payload))
        self.assertEqual(env["CONTENT_LENGTH"], b"1048576")
        self.assertEqual(self.m2.uploads_left(), [])

    def test_chunked_request_body_arrives_with_its_length(self):
        payload = os.urandom(50000)
        chunked = b"".join(b"%x\r\n%s\r\n" % (len(payload[i:i + 7000]), payload[i:i + 7000])
                           for i in range(0, len(payload), 7000)) + b"0\r\n\r\n"
        status, _, body = http_request(self.m2.port, "POST", "/app/dump.php", body=chunked, timeout=20,
                                       headers={"Transfer-Encoding": "chunked", "Content-Length": None})
        self.assertEqual(status, 200)
        env, data = server_vars(body)
        self.assertEqual(env["CONTENT_LENGTH"], b"50000")  # de-chunked by Mongrel2, counted by m2bridge
        self.assertEqual(data["body_md5"], md5(payload))
        self.assertNotIn("HTTP_TRANSFER_ENCODING", env)

    def test_http10_streamed_response_is_close_delimited(self):
        with socket.create_connection(("127.0.0.1", self.m2.port), timeout=20) as s:
            s.sendall(b"GET /app/big.php?mib=2 HTTP/1.0\r\n\r\n")
            status, headers, body = read_response(s)
            self.assertEqual(status, 200)
            self.assertNotIn("content-length", headers)
            self.assertNotIn("transfer-encoding", headers)
            self.assertEqual(len(body), 2 * 1024 * 1024)  # read until Mongrel2 closed the connection

    def test_5mb_response_is_byte_exact(self):
        status, headers, body = self.get("/app/big.php", timeout=30)
        self.assertEqual(status, 200)
        expected = b"".join(md5(str(i).encode()).encode() for i in range(5 * 1024 * 1024 // 32))
        self.assertEqual(len(body), len(expected))
        self.assertEqual(md5(body), md5(expected))

    def test_5mb_response_with_curl(self):
        out = subprocess.run(["curl", "-sS", "--max-time", "30", "http://127.0.0.1:%d/app/big.php" % self.m2.port],
                             capture_output=True, check=True).stdout
        self.assertEqual(len(out), 5 * 1024 * 1024)

    def test_http10_gets_reply_then_eof_promptly(self):
        with socket.create_connection(("127.0.0.1", self.m2.port), timeout=5) as s:
            s.sendall(b"GET /app/status.php HTTP/1.0\r\n\r\n")
            reader = SocketReader(s)
            start = time.time()
            status, headers, body = read_response(s, reader=reader)
            self.assertEqual(status, 200)
            self.assertTrue(headers["__status_line__"].startswith("HTTP/1.0 200"))
            self.assertEqual(headers.get("connection"), "close")
            self.assertEqual(body, b"status body\n")
            self.assertEqual(reader.until_eof(), b"")
            self.assertLess(time.time() - start, 2.0)

    def test_keepalive_three_requests_in_order(self):
        with socket.create_connection(("127.0.0.1", self.m2.port), timeout=10) as s:
            reader = SocketReader(s)
            for code in (201, 202, 203):
                s.sendall(build_request("GET", "/app/status.php?code=%d" % code))
                status, headers, _ = read_response(s, reader=reader)
                self.assertEqual(status, code)
                self.assertNotEqual(headers.get("connection"), "close")

    def test_pipelined_requests_answered_in_order(self):
        with socket.create_connection(("127.0.0.1", self.m2.port), timeout=10) as s:
            reader = SocketReader(s)
            # The first one is slow: a bridge that answered as backends finish would reorder them.
            s.sendall(build_request("GET", "/app/sleep.php?s=1") + build_request("GET", "/app/status.php?code=202")
                      + build_request("GET", "/app/status.php?code=203"))
            got = [read_response(s, reader=reader)[0] for _ in range(3)]
            self.assertEqual(got, [200, 202, 203])

    def hold_clients(self, count, ids_dir):
        sockets = []
        for _ in range(count):
            s = socket.create_connection(("127.0.0.1", self.m2.port), timeout=20)
            s.sendall(build_request("GET", "/app/hold.php?dir=" + urllib.parse.quote(ids_dir)))
            sockets.append(s)
        wait_until(lambda: len(os.listdir(ids_dir)) == count, timeout=30, what="held clients to register")
        return sockets

    def deliver_to_held(self, count):
        ids_dir = os.path.join(self.work.path, "ids-%d-%d" % (count, free_port()))
        os.makedirs(ids_dir)
        held = self.hold_clients(count, ids_dir)
        try:
            for s in held:  # held: nothing arrives before the delivery
                s.settimeout(0.05)
                with self.assertRaises(socket.timeout):
                    s.recv(1)
                s.settimeout(20)
            status, _, body = self.get("/app/deliver.php?dir=" + urllib.parse.quote(ids_dir))
            self.assertEqual((status, body), (200, b"news for everyone"))
            for s in held:
                reader = SocketReader(s)
                status, headers, body = read_response(s, reader=reader)
                self.assertEqual((status, body), (200, b"news for everyone"))
                self.assertNotIn("x-mongrel2-deliver", headers)
                s.settimeout(0.2)  # exactly one delivery each
                with self.assertRaises(socket.timeout):
                    s.recv(1)
        finally:
            for s in held:
                s.close()

    def test_deliver_to_three_held_clients(self):
        self.deliver_to_held(3)

    def test_deliver_to_200_held_clients(self):
        self.deliver_to_held(200)

    def test_backend_slower_than_timeout_is_504(self):
        start = time.time()
        status, _, body = self.get("/app/sleep.php?s=4")
        self.assertEqual(status, 504)
        self.assertEqual(body, b"504 Gateway Timeout\n")
        self.assertLess(time.time() - start, 3.9)


class TnetstringProtocol(PhpFpmThroughMongrel2):
    """The same suite with Mongrel2's tnetstring headers."""
    protocol = "tnetstring"


class DownloadFlowControl(unittest.TestCase):
    """Mongrel2 with download.flow_control=1 closes a connection with more than 100 KiB queued:
    m2bridge must send large replies in pieces as DOWNLOAD_CREDITS come back."""

    @classmethod
    def setUpClass(cls):
        cls.stack = PhpStack(settings={"download.flow_control": "1"})
        cls.m2 = cls.stack.m2

    @classmethod
    def tearDownClass(cls):
        cls.stack.stop()

    def test_5mb_response_through_credits(self):
        status, _, body = http_request(self.m2.port, "GET", "/big.php", timeout=30)
        self.assertEqual(status, 200)
        expected = b"".join(md5(str(i).encode()).encode() for i in range(5 * 1024 * 1024 // 32))
        self.assertEqual(md5(body), md5(expected))

    def test_keepalive_connection_keeps_its_window(self):
        with socket.create_connection(("127.0.0.1", self.m2.port), timeout=30) as s:
            reader = SocketReader(s)
            for path in ("/big.php?mib=1", "/status.php?code=202", "/big.php?mib=2"):
                s.sendall(build_request("GET", path))
                status, _, body = read_response(s, reader=reader)
                self.assertIn(status, (200, 202), path)
                if "big" in path:
                    self.assertEqual(len(body), int(path[-1]) * 1024 * 1024)


class KeptConnections(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.stack = PhpStack("--keep-conn", "--max-requests", "3", children=4, extra_pool="pm.max_requests = 5")
        cls.m2 = cls.stack.m2

    @classmethod
    def tearDownClass(cls):
        cls.stack.stop()

    def test_fifty_sequential_requests_survive_worker_recycling(self):
        for i in range(50):
            status, _, body = http_request(self.m2.port, "GET", "/status.php?code=200&i=%d" % i)
            self.assertEqual((status, body), (200, b"status body\n"), "request %d" % i)


class ClientDisconnectFreesWorker(unittest.TestCase):
    def test_disconnect_while_php_works_frees_the_only_worker(self):
        with PhpStack(children=1) as stack:
            m2, bridge = stack.m2, stack.bridge
            s = socket.create_connection(("127.0.0.1", m2.port), timeout=5)
            s.sendall(build_request("GET", "/drip.php?s=30"))
            s.recv(1)  # the response has started: the only worker is busy for 30 s
            s.close()
            start = time.time()
            status, _, body = http_request(m2.port, "GET", "/status.php", timeout=25)
            self.assertEqual((status, body), (200, b"status body\n"))
            self.assertLess(time.time() - start, 15)  # far less than the 30 s the drip would take
            self.assertIn("client went away", bridge.log())


class JsonSocket(unittest.TestCase):
    def test_json_socket_message_reaches_php_and_reply_is_raw(self):
        with PhpStack(script="dump.php", routes={"@chat": "bridge", "/": "bridge"},
                      raw_payload=True, document_root=False, warmup="/") as stack:
            m2 = stack.m2
            message = b'{"type":"join","user":"bob"}'
            with socket.create_connection(("127.0.0.1", m2.port), timeout=10) as s:
                s.sendall(b"@chat " + message + b"\0")
                data = b""
                while True:
                    try:
                        json.loads(data)
                        break
                    except ValueError:
                        chunk = s.recv(65536)
                        self.assertTrue(chunk, "connection closed before a whole JSON reply: %r" % data[:80])
                        data += chunk
            self.assertTrue(data.startswith(b"{"))  # no status line, no HTTP framing
            env, parsed = server_vars(data)
            self.assertEqual(env["REQUEST_METHOD"], b"JSON")
            self.assertEqual(env["CONTENT_TYPE"], b"application/json")
            self.assertEqual(env["X_MONGREL2_PATTERN"], b"@chat")
            self.assertEqual(parsed["body_md5"], md5(message))


class QueueLimits(unittest.TestCase):
    def test_beyond_max_requests_and_queue_is_503(self):
        with PhpStack("--max-requests", "1", "--queue", "1", children=4) as stack:
            m2, bridge = stack.m2, stack.bridge
            results = {}

            def fetch(i):
                results[i] = http_request(m2.port, "GET", "/sleep.php?s=1&i=%d" % i, timeout=20)
            threads = []
            for i in range(3):  # one runs, one waits, one is refused
                t = threading.Thread(target=fetch, args=(i,))
                t.start()
                threads.append(t)
                time.sleep(0.2)
            for t in threads:
                t.join()
            self.assertEqual([results[i][0] for i in range(3)], [200, 200, 503])
            self.assertEqual(results[2][1]["retry-after"], "1")
            self.assertEqual(results[1][2], b"slept\n")
            self.assertIn("queue full", bridge.log())


class KeepAliveAgainstMongrel2Sweeper(unittest.TestCase):
    """Mongrel2 kills idle connections (min_ping, here 2 s, checked every second); a long-poll
    held by an empty X-Mongrel2-Deliver survives only through m2bridge's ctl keep-alive."""

    def hold_for(self, keepalive, seconds):
        with PhpStack("--keepalive", keepalive, settings={"limits.min_ping": "2", "limits.tick_timer": "1",
                                                         "limits.min_read_rate": "300",
                                                         "limits.min_write_rate": "300"}) as stack:
            ids_dir = os.path.join(stack.work.path, "ids")
            os.makedirs(ids_dir)
            with socket.create_connection(("127.0.0.1", stack.m2.port), timeout=seconds + 10) as s:
                return self.hold_and_deliver(stack.m2, s, ids_dir, seconds)

    def hold_and_deliver(self, m2, s, ids_dir, seconds):
        s.sendall(build_request("GET", "/hold.php?dir=" + urllib.parse.quote(ids_dir)))
        wait_until(lambda: os.listdir(ids_dir), what="the long-poll to register")
        s.settimeout(seconds)
        try:
            early = s.recv(1)  # b"" if Mongrel2 closed the connection
        except socket.timeout:
            early = None
        if early is not None:
            return "closed"
        http_request(m2.port, "GET", "/deliver.php?dir=" + urllib.parse.quote(ids_dir))
        s.settimeout(5)
        status, _, body = read_response(s)
        return (status, body)

    def test_held_connection_survives_with_keepalive(self):
        self.assertEqual(self.hold_for("0.5", 7), (200, b"news for everyone"))

    def test_without_keepalive_mongrel2_drops_it(self):
        # The control case: the same hold with keep-alives 30 s apart is swept by Mongrel2.
        self.assertEqual(self.hold_for("30", 7), "closed")


class BackendDown(unittest.TestCase):
    def test_missing_socket_is_502(self):
        work = Workdir()
        m2 = Mongrel2(work.path)
        bridge = Bridge(work.path, m2, "unix:" + os.path.join(work.path, "nobody.sock"), warmup_path="/")
        try:
            status, _, body = http_request(m2.port, "GET", "/x")
            self.assertEqual((status, body), (502, b"502 Bad Gateway\n"))
            self.assertRegex(bridge.log(), r"error: conn=\d+ .*nobody.sock")
        finally:
            bridge.stop()
            m2.stop()
            work.cleanup()

    def test_tcp_refused_is_502(self):
        work = Workdir()
        m2 = Mongrel2(work.path)
        bridge = Bridge(work.path, m2, "127.0.0.1:%d" % free_port(), warmup_path="/")
        try:
            self.assertEqual(http_request(m2.port, "GET", "/x")[0], 502)
        finally:
            bridge.stop()
            m2.stop()
            work.cleanup()


class LibfcgiExample(unittest.TestCase):
    def test_get_and_uploaded_post_through_the_c_example(self):
        work = Workdir()
        m2 = Mongrel2(work.path, routes={"/hello/": "bridge"})
        app = FcgiHello(work.path)
        bridge = Bridge(work.path, m2, app.address, warmup_path="/hello/")
        try:
            status, _, body = http_request(m2.port, "GET", "/hello/a/b?q=1")
            self.assertEqual(status, 200)
            self.assertIn(b"SCRIPT_NAME=/hello\nPATH_INFO=/a/b\nQUERY_STRING=q=1\n", body)
            payload = os.urandom(300 * 1024)
            status, _, body = http_request(m2.port, "POST", "/hello/echo", body=payload, timeout=20)
            self.assertEqual(status, 200)
            self.assertEqual(md5(body), md5(payload))
            self.assertEqual(m2.uploads_left(), [])
        finally:
            bridge.stop()
            app.stop()
            m2.stop()
            work.cleanup()


class FakeBackendMisbehaviour(unittest.TestCase):
    """Responses no real backend produces on demand, from the fake FastCGI backend."""

    @classmethod
    def setUpClass(cls):
        cls.work = Workdir()
        head = b"Content-Type: text/plain\r\n\r\n"

        def final(params, stdin):
            return [fb.stdout(head + b"final:" + params["REQUEST_URI"].encode() + b":" +
                              params["REQUEST_METHOD"].encode() + b":" + params.get("CONTENT_LENGTH", "-").encode()),
                    fb.end_request()]

        table = {
            "/inject": [fb.stdout(b"Content-Type: text/plain\r\nX-A: a\rSet-Cookie: s=1\r\n\r\nbody"), fb.end_request()],
            "/bad-status": [fb.stdout(b"Status: abc\r\n\r\n"), fb.end_request()],
            "/huge-head": [fb.stdout(b"Content-Type: a\r\nX-Big: " + b"a" * 70000 + b"\r\n\r\n"), fb.end_request()],
            "/no-head": [fb.end_request()],
            "/mid-head-close": [fb.stdout(b"Content-Type: text/pl"), None],
            "/mid-body-close": [fb.stdout(b"Content-Type: text/plain\r\nContent-Length: 100000\r\n\r\n" + b"x" * 10),
                                0.3, fb.stdout(b"y" * 10), None],
            "/one-byte-records": [fb.stdout(bytes([c])) for c in head + b"tiny"] + [fb.end_request()],
            "/overloaded": [fb.end_request(0, 2)],
            "/local-redirect": [fb.stdout(b"Location: /final?from=redirect\r\n\r\n"), fb.end_request()],
            "/redirect-loop": [fb.stdout(b"Location: /redirect-loop\r\n\r\n"), fb.end_request()],
            "/client-redirect": [fb.stdout(b"Location: http://example.com/x\r\n\r\n"), fb.end_request()],
            "/stall-after-head": [fb.stdout(head + b"partial"), 5.0, fb.end_request()],
            "/final": final,
            "/deliver-bad": [fb.stdout(b"Content-Type: a\r\nX-Mongrel2-Deliver: 1 two\r\n\r\n"), fb.end_request()],
            "/foreign-id": [fb.stdout(head + b"x", request_id=2), fb.end_request()],
        }
        cls.fake = fb.FakeBackend(os.path.join(cls.work.path, "fake.sock"), fb.scripted(table))
        cls.m2 = Mongrel2(cls.work.path, routes={"/": "bridge"})
        cls.bridge = Bridge(cls.work.path, cls.m2, cls.fake.address, "--timeout", "1", warmup_path="/warm")

    @classmethod
    def tearDownClass(cls):
        cls.bridge.stop()
        cls.fake.stop()
        cls.m2.stop()
        cls.work.cleanup()

    def get(self, path, **kw):
        return http_request(self.m2.port, "GET", path, **kw)

    def test_fake_backend_header_injection_is_502(self):
        status, headers, body = self.get("/inject")
        self.assertEqual(status, 502)
        self.assertNotIn("set-cookie", headers)
        self.assertRegex(self.bridge.log(), r"conn=\d+ malformed response .*bare CR")

    def test_fake_backend_malformed_heads_are_502(self):
        for path in ("/bad-status", "/huge-head", "/no-head", "/mid-head-close", "/deliver-bad", "/foreign-id"):
            self.assertEqual(self.get(path)[0], 502, path)

    def test_fake_backend_death_mid_body_closes_the_client(self):
        with socket.create_connection(("127.0.0.1", self.m2.port), timeout=5) as s:
            s.sendall(build_request("GET", "/mid-body-close"))
            reader = SocketReader(s)
            status, headers, _ = read_response(s, head_request=True, reader=reader)
            self.assertEqual(status, 200)
            self.assertEqual(headers["content-length"], "100000")
            rest = reader.until_eof()  # closed, short of the declared length
            self.assertEqual(rest, b"x" * 10 + b"y" * 10)

    def test_fake_backend_one_byte_records(self):
        self.assertEqual(self.get("/one-byte-records")[2], b"tiny")

    def test_fake_backend_overloaded_is_503_with_retry_after(self):
        status, headers, _ = self.get("/overloaded")
        self.assertEqual(status, 503)
        self.assertEqual(headers["retry-after"], "1")

    def test_fake_backend_local_redirect_runs_again_as_get(self):
        status, _, body = http_request(self.m2.port, "POST", "/local-redirect", body=b"abc")
        self.assertEqual((status, body), (200, b"final:/final?from=redirect:GET:-"))

    def test_fake_backend_redirect_loop_stops(self):
        self.assertEqual(self.get("/redirect-loop")[0], 502)

    def test_fake_backend_client_redirect_is_302(self):
        status, headers, _ = self.get("/client-redirect")
        self.assertEqual(status, 302)
        self.assertEqual(headers["location"], "http://example.com/x")

    def test_fake_backend_stall_after_head_closes_the_client(self):
        with socket.create_connection(("127.0.0.1", self.m2.port), timeout=10) as s:
            s.sendall(build_request("GET", "/stall-after-head"))
            reader = SocketReader(s)
            status, headers, _ = read_response(s, head_request=True, reader=reader)
            self.assertEqual(status, 200)
            self.assertEqual(headers["transfer-encoding"], "chunked")
            rest = reader.until_eof()
            self.assertEqual(rest, b"7\r\npartial\r\n")  # no last chunk: the client sees it was cut

    def test_fake_backend_sees_exact_body_and_params(self):
        before = len(self.fake.requests)
        payload = bytes(range(256)) * 300  # 76800 bytes: Mongrel2's upload path
        http_request(self.m2.port, "POST", "/final", body=payload, timeout=20)
        params, stdin = self.fake.requests[before]
        self.assertEqual(stdin, payload)
        self.assertEqual(params["CONTENT_LENGTH"], str(len(payload)))
        self.assertNotIn("HTTP_CONTENT_LENGTH", params)


class MalformedMessagesFromTheFront(unittest.TestCase):
    """Garbage pushed straight at m2bridge's PULL socket, between real requests. The front here
    is a ZeroMQ PUSH/SUB pair standing in for Mongrel2, because Mongrel2 never sends garbage."""

    def test_fake_front_garbage_is_dropped_and_requests_still_answered(self):
        import zmq
        work = Workdir()
        ctx = zmq.Context()
        push = ctx.socket(zmq.PUSH)
        sub = ctx.socket(zmq.SUB)
        sub.setsockopt(zmq.SUBSCRIBE, b"")

        class Front:
            send_spec = "tcp://127.0.0.1:%d" % free_port()
            recv_spec = "tcp://127.0.0.1:%d" % free_port()
        push.bind(Front.send_spec)
        sub.bind(Front.recv_spec)
        app = FcgiHello(work.path)
        bridge = Bridge(work.path, Front, app.address)
        try:
            def request(conn_id):
                headers = json.dumps({"PATH": "/hi", "METHOD": "GET", "VERSION": "HTTP/1.1", "URI": "/hi",
                                      "PATTERN": "/", "host": "localhost", "REMOTE_ADDR": "127.0.0.1"}).encode()
                return b"front-1 %d /hi %d:%s,0:," % (conn_id, len(headers), headers)
            garbage = [b"", b"garbage", b"front-1 1 / 99:{},0:,", b"front-1 x / 2:{},0:,",
                       b"front-1 2 / 9:{\"METHOD\",0:,", b"front 3 / 2:{},0:,", b"front-1 4 / 5:hello]0:,",
                       b"front-1 5 @* 17:{\"METHOD\":\"JSON\"},18:{\"type\":\"weird\"},",
                       b"front-1 6 @* 17:{\"METHOD\":\"JSON\"},21:{\"type\":\"disconnect\"},",
                       b"\xff" * 1000]
            # PUB/SUB slow joiner: the SUB socket attaches m2bridge's connection, and sends its
            # subscription, only inside a call on it; a reply sent before that is dropped.
            deadline = time.time() + 1
            while time.time() < deadline:
                sub.poll(50)
            replies = {}
            for i, junk in enumerate(garbage):
                push.send(junk)
                push.send(request(100 + i))
            poller = zmq.Poller()
            poller.register(sub, zmq.POLLIN)
            deadline = time.time() + 10
            while len(replies) < len(garbage) and time.time() < deadline:
                if poller.poll(200):
                    msg = sub.recv()
                    m = re.match(rb"front-1 (\d+):(\d+), (.*)", msg, re.S)
                    self.assertIsNotNone(m, msg[:80])
                    replies[int(m.group(2))] = m.group(3)
            self.assertEqual(sorted(replies), list(range(100, 100 + len(garbage))))
            for body in replies.values():
                self.assertTrue(body.startswith(b"HTTP/1.1 200 OK\r\n"))
            self.assertTrue(bridge.process.alive())
            self.assertGreaterEqual(bridge.log().count("dropped a malformed message"), 7)
        finally:
            bridge.stop()
            app.stop()
            push.close(0)
            sub.close(0)
            ctx.term()
            work.cleanup()


if __name__ == "__main__":
    unittest.main()
