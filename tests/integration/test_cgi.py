"""m2bridge cgi, end to end: raw sockets and curl → Debian's mongrel2 → m2bridge → real sh,
Python, Perl and php-cgi scripts, one process per request."""

import base64
import json
import os
import shutil
import signal
import socket
import subprocess
import time
import unittest

from harness import (ROOT, Bridge, Mongrel2, SocketReader, Workdir, build_request, free_port, http_request, md5,
                     read_response, wait_until)

HERE = os.path.dirname(os.path.abspath(__file__))


def copy_cgi_bin(workdir):
    target = os.path.join(workdir, "cgi-bin")
    shutil.copytree(os.path.join(HERE, "cgi-bin"), target, symlinks=True)
    return os.path.realpath(target)


def decode_env(body):
    data = json.loads(body)
    return {k: base64.b64decode(v) for k, v in data["env"].items()}, data


def group_alive(pgid):
    try:
        os.killpg(pgid, 0)
        return True
    except ProcessLookupError:
        return False


def zombies_of(pid):
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open("/proc/%s/stat" % entry) as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if fields[0] == "Z" and int(fields[1]) == pid:
            found.append(int(entry))
    return found


class CgiDirectory(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.work = Workdir()
        cls.cgi = copy_cgi_bin(cls.work.path)
        # Outside the cgi-bin: a script that must never run, and a link to it from inside.
        cls.outside_marker = os.path.join(cls.work.path, "outside-ran")
        outside = os.path.join(cls.work.path, "outside.sh")
        with open(outside, "w") as f:
            f.write("#!/bin/sh\ntouch %s\nprintf 'Content-Type: text/plain\\r\\n\\r\\nescaped'\n" % cls.outside_marker)
        os.chmod(outside, 0o755)
        os.symlink(outside, os.path.join(cls.cgi, "link.sh"))
        cls.m2 = Mongrel2(cls.work.path, routes={"/cgi/": "bridge"})
        env = dict(os.environ, M2B_SECRET="do-not-leak", LANG="C.UTF-8")
        cls.bridge = Bridge(cls.work.path, cls.m2, cls.cgi, "--timeout", "2", "--index", "index.sh",
                            "--pass-env", "LANG", mode="cgi", warmup_path="/cgi/tiny.sh", env=env)

    @classmethod
    def tearDownClass(cls):
        cls.bridge.stop()
        cls.m2.stop()
        cls.work.cleanup()

    def get(self, path, **kw):
        return http_request(self.m2.port, "GET", path, **kw)

    def test_environment_matches_the_contract(self):
        status, _, body = self.get("/cgi/env.py/extra/p%20q?x=1&y=2", headers={"Proxy": "http://evil:1",
                                                                                "X-Tab": b"a\tb"})
        self.assertEqual(status, 200)
        env, data = decode_env(body)
        expect = {
            "GATEWAY_INTERFACE": b"CGI/1.1", "REQUEST_METHOD": b"GET", "QUERY_STRING": b"x=1&y=2",
            "SCRIPT_NAME": b"/cgi/env.py", "PATH_INFO": b"/extra/p q", "SCRIPT_FILENAME": (self.cgi + "/env.py").encode(),
            "REQUEST_URI": b"/cgi/env.py/extra/p%20q?x=1&y=2", "SERVER_PROTOCOL": b"HTTP/1.1",
            "SERVER_SOFTWARE": b"m2bridge/0.1.0", "SERVER_NAME": b"localhost", "SERVER_PORT": b"80",
            "REMOTE_ADDR": b"127.0.0.1", "REDIRECT_STATUS": b"200", "X_MONGREL2_PATTERN": b"/cgi/",
            "HTTP_X_TAB": b"a\tb", "PATH": b"/usr/local/bin:/usr/bin:/bin", "LANG": b"C.UTF-8",
        }
        for name, value in expect.items():
            self.assertEqual(env.get(name), value, name)
        self.assertRegex(env["X_MONGREL2_CONN_ID"].decode(), r"^\d+$")
        for absent in ("HTTP_PROXY", "M2B_SECRET", "HOME", "CONTENT_LENGTH", "PATH_TRANSLATED"):
            self.assertNotIn(absent, env)
        self.assertEqual(data["argv"], [self.cgi + "/env.py"])  # no words from the query
        self.assertEqual(data["cwd"], self.cgi)
        self.assertTrue(data["pgid_is_own"])

    def test_script_sees_only_descriptors_0_1_2(self):
        # stdout and stderr are pipes; stdin is /dev/null without a body (the same EOF, no pipe
        # to make per GET) and a pipe with one.
        _, _, body = self.get("/cgi/env.py")
        fds = json.loads(body)["fds"]
        self.assertEqual(sorted(fds), ["0", "1", "2"], fds)
        self.assertEqual(fds["0"], "/dev/null", fds)
        for fd in ("1", "2"):
            self.assertTrue(fds[fd].startswith("pipe:"), fds)
        status, _, body = http_request(self.m2.port, "POST", "/cgi/env.py", body=b"x=1", timeout=10)
        self.assertEqual(status, 200)
        fds = json.loads(body)["fds"]
        self.assertEqual(sorted(fds), ["0", "1", "2"], fds)
        for fd in ("0", "1", "2"):
            self.assertTrue(fds[fd].startswith("pipe:"), fds)

    def test_index_for_a_directory(self):
        self.assertEqual(self.get("/cgi/sub/")[2], b"index of sub")

    def test_status_and_headers(self):
        status, headers, body = self.get("/cgi/status.sh")
        self.assertEqual((status, body), (201, b"created\n"))
        self.assertTrue(headers["__status_line__"].endswith("201 Made It"))
        self.assertEqual(headers["x-script"], "sh")

    def test_script_without_content_type(self):
        status, headers, body = self.get("/cgi/notype.sh")
        self.assertEqual((status, body), (200, b"no type"))
        self.assertNotIn("content-type", headers)

    def test_local_redirect_is_served_internally(self):
        status, headers, body = self.get("/cgi/redirect.sh")
        self.assertEqual((status, body), (201, b"created\n"))
        self.assertNotIn("location", headers)

    def test_client_redirect(self):
        status, headers, _ = self.get("/cgi/away.sh")
        self.assertEqual(status, 302)
        self.assertEqual(headers["location"], "http://example.com/elsewhere")

    def test_cr_in_a_header_is_502(self):
        status, headers, _ = self.get("/cgi/crheader.sh")
        self.assertEqual(status, 502)
        self.assertNotIn("set-cookie", headers)

    def test_nph_script_output_passes_raw_then_close(self):
        with socket.create_connection(("127.0.0.1", self.m2.port), timeout=5) as s:
            s.sendall(build_request("GET", "/cgi/nph-raw.sh"))
            reader = SocketReader(s)
            self.assertEqual(reader.until_eof(),
                             b"HTTP/1.1 299 Raw\r\nContent-Type: text/plain\r\nX-Nph: yes\r\n\r\nstraight from the script")

    def test_10mb_upload_echoed_back(self):
        payload = os.urandom(10 * 1024 * 1024)
        status, _, body = http_request(self.m2.port, "POST", "/cgi/echo.py", body=payload, timeout=60)
        self.assertEqual(status, 200)
        self.assertEqual(len(body), len(payload))
        self.assertEqual(md5(body), md5(payload))
        self.assertEqual(self.m2.uploads_left(), [])

    def test_10mb_response(self):
        out = subprocess.run(["curl", "-sS", "--max-time", "60", "http://127.0.0.1:%d/cgi/big.pl" % self.m2.port],
                             capture_output=True, check=True).stdout
        expected = b"".join(b"%-31s\n" % (b"line %d" % i) for i in range(10 * 1024 * 1024 // 32))
        self.assertEqual(len(out), len(expected))
        self.assertEqual(md5(out), md5(expected))

    def test_post_body_reaches_the_script(self):
        payload = b"name=value&" + bytes(range(256))
        status, _, body = http_request(self.m2.port, "POST", "/cgi/env.py", body=payload,
                                       headers={"Content-Type": "application/x-test"})
        env, data = decode_env(body)
        self.assertEqual(data["body_md5"], md5(payload))
        self.assertEqual(env["CONTENT_LENGTH"], str(len(payload)).encode())
        self.assertEqual(env["CONTENT_TYPE"], b"application/x-test")

    def test_timeout_is_504_and_process_group_gone(self):
        pidfile = os.path.join(self.work.path, "sleep-timeout.pid")
        start = time.time()
        status, _, _ = self.get("/cgi/sleep.sh?" + pidfile, timeout=20)
        self.assertEqual(status, 504)
        self.assertLess(time.time() - start, 10)
        with open(pidfile) as f:
            pgid = int(f.read())
        wait_until(lambda: not group_alive(pgid), timeout=5, what="script process group to die")

    def test_client_disconnect_kills_the_script(self):
        pidfile = os.path.join(self.work.path, "sleep-disconnect.pid")
        s = socket.create_connection(("127.0.0.1", self.m2.port), timeout=5)
        s.sendall(build_request("GET", "/cgi/sleep.sh?" + pidfile))
        wait_until(lambda: os.path.exists(pidfile), timeout=5, what="script to start")
        with open(pidfile) as f:
            pgid = int(f.read())
        self.assertTrue(group_alive(pgid))
        s.close()
        wait_until(lambda: not group_alive(pgid), timeout=5, what="script to be killed after the disconnect")

    def test_traversal_and_links_out_are_refused(self):
        for path in ("/cgi/../outside.sh", "/cgi/%2e%2e/outside.sh", "/cgi/.%2e/outside.sh", "/cgi/..%2foutside.sh",
                     "/cgi/%2e%2e%2foutside.sh", "/cgi/link.sh", "/cgi/sub/../../outside.sh", "/cgi/env.py%00.txt"):
            status = self.get(path)[0]
            self.assertIn(status, (400, 403, 404), path)
        self.assertFalse(os.path.exists(self.outside_marker))

    def test_stderr_is_logged_bounded_and_never_blocks(self):
        status, _, body = self.get("/cgi/stderr.sh", timeout=30)
        self.assertEqual((status, body), (200, b"stderr done"))
        log = self.bridge.log()
        self.assertRegex(log, r"warn: conn=\d+ backend stderr: hello from stderr")
        self.assertLess(len(log), 200 * 1024)  # 10 MB of stderr did not reach the log

    def test_missing_is_404_and_not_executable_is_403(self):
        self.assertEqual(self.get("/cgi/nope.sh")[0], 404)
        self.assertEqual(self.get("/cgi/noexec.sh")[0], 403)

    def test_php_cgi_with_redirect_status(self):
        status, _, body = http_request(self.m2.port, "POST", "/cgi/hello.php", body=b"12345")
        self.assertEqual(status, 200)
        self.assertEqual(body, b"php-cgi POST /cgi/hello.php 5")

    def test_no_zombies_after_1000_requests(self):
        for i in range(1000):
            status, _, body = self.get("/cgi/tiny.sh")
            self.assertEqual((status, body), (200, b"ok"), "request %d" % i)
        time.sleep(0.5)
        self.assertEqual(zombies_of(self.bridge.process.proc.pid), [])


def process_alive(pid):
    """True while `pid` runs (a zombie waiting to be reaped counts as gone)."""
    try:
        with open("/proc/%d/stat" % pid) as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def read_pid(path):
    wait_until(lambda: os.path.exists(path), timeout=5, what=path)
    with open(path) as f:
        return int(f.read())


def kill_quietly(pid):
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


class CappedReader(SocketReader):
    """Fails instead of following an endless response."""

    def __init__(self, sock, limit):
        super().__init__(sock)
        self.left = limit

    def fill(self):
        if self.left <= 0:
            raise AssertionError("the response does not end")
        before = len(self.buf)
        super().fill()
        self.left -= len(self.buf) - before


NOT_CONFINED = "scripts not confined to a cgroup"  # m2bridge says so at start, and why


def not_confined(log):
    return next((line for line in log.splitlines() if NOT_CONFINED in line), None)


class CgiRunaways(unittest.TestCase):
    """Scripts that try to hold m2bridge: background writers, stderr drips, escaped grandchildren."""

    @classmethod
    def setUpClass(cls):
        cls.work = Workdir()
        cls.cgi = copy_cgi_bin(cls.work.path)
        cls.m2 = Mongrel2(cls.work.path, routes={"/cgi/": "bridge"})
        cls.bridge = Bridge(cls.work.path, cls.m2, cls.cgi, "--timeout", "1", mode="cgi", warmup_path="/cgi/tiny.sh")

    @classmethod
    def tearDownClass(cls):
        cls.bridge.stop()
        cls.m2.stop()
        cls.work.cleanup()

    def test_background_writer_neither_holds_the_response_nor_the_loop(self):
        pidfile = os.path.join(self.work.path, "background.pid")
        writer = None
        try:
            with socket.create_connection(("127.0.0.1", self.m2.port), timeout=10) as s:
                s.sendall(build_request("GET", "/cgi/background.sh?" + pidfile))
                writer = read_pid(pidfile)
                # Served while the first script's output is being finished.
                status, _, body = http_request(self.m2.port, "GET", "/cgi/tiny.sh", timeout=5)
                self.assertEqual((status, body), (200, b"ok"))
                status, _, body = read_response(s, reader=CappedReader(s, 64 * 1024 * 1024))
            self.assertEqual(status, 200)
            self.assertTrue(body.startswith(b"from the script\n"), body[:100])
            # Whatever follows was in the pipe as the script exited: lines of the writer, the last one cut.
            lines = body[len(b"from the script\n"):].split(b"\n")
            self.assertEqual(set(lines[:-1]) - {b"background"}, set())
            self.assertTrue(b"background".startswith(lines[-1]), lines[-1])
            wait_until(lambda: not process_alive(writer), timeout=5, what="background writer to be killed")
        finally:
            if writer:
                kill_quietly(writer)

    def test_script_that_closes_stdout_and_stays_is_stopped_with_its_request(self):
        # The response ends at the EOF; a script still running then is killed, while one that
        # has exited (the usual EOF) is left alone so its cgroup can be reused.
        pidfile = os.path.join(self.work.path, "close-early.pid")
        try:
            status, _, body = http_request(self.m2.port, "GET", "/cgi/close-early.sh?" + pidfile, timeout=5)
            self.assertEqual((status, body), (200, b"early\n"))
            script = read_pid(pidfile)
            wait_until(lambda: not process_alive(script), timeout=5, what="the script to be stopped")
        finally:
            if os.path.exists(pidfile):
                kill_quietly(read_pid(pidfile))

    def test_stderr_alone_is_not_progress(self):
        status, _, _ = http_request(self.m2.port, "GET", "/cgi/stderr-drip.sh", timeout=8)
        self.assertEqual(status, 504)

    def test_grandchild_in_its_own_session_dies_with_its_request(self):
        if not_confined(self.bridge.log()):
            self.skipTest(not_confined(self.bridge.log()))
        pidfile = os.path.join(self.work.path, "setsid-hang.pid")
        try:
            status, _, _ = http_request(self.m2.port, "GET", "/cgi/setsid.sh?hang:" + pidfile, timeout=8)
            self.assertEqual(status, 504)
            grandchild = read_pid(pidfile)
            wait_until(lambda: not process_alive(grandchild), timeout=5, what="setsid() grandchild to be killed")
        finally:
            if os.path.exists(pidfile):
                kill_quietly(read_pid(pidfile))


class CgiEscapedGrandchild(unittest.TestCase):
    def test_grandchild_in_its_own_session_dies_with_m2bridge(self):
        work = Workdir()
        cgi = copy_cgi_bin(work.path)
        m2 = Mongrel2(work.path, routes={"/cgi/": "bridge"})
        bridge = Bridge(work.path, m2, cgi, mode="cgi", warmup_path="/cgi/tiny.sh")
        pidfile = os.path.join(work.path, "setsid-answer.pid")
        try:
            if not_confined(bridge.log()):
                self.skipTest(not_confined(bridge.log()))
            status, _, body = http_request(m2.port, "GET", "/cgi/setsid.sh?answer:" + pidfile)
            self.assertEqual((status, body), (200, b"answered\n"))
            grandchild = read_pid(pidfile)
            bridge.stop()
            self.assertFalse(process_alive(grandchild))
        finally:
            if bridge.process.alive():
                bridge.stop()
            if os.path.exists(pidfile):
                kill_quietly(read_pid(pidfile))
            m2.stop()
            work.cleanup()


class CgiOneFile(unittest.TestCase):
    def test_one_script_serves_the_whole_route(self):
        work = Workdir()
        cgi = copy_cgi_bin(work.path)
        m2 = Mongrel2(work.path, routes={"/env/": "bridge"})
        bridge = Bridge(work.path, m2, cgi + "/env.py", mode="cgi", warmup_path="/env/")
        try:
            status, _, body = http_request(m2.port, "GET", "/env/some/where?q=1")
            self.assertEqual(status, 200)
            env, _ = decode_env(body)
            self.assertEqual(env["SCRIPT_NAME"], b"/env")
            self.assertEqual(env["PATH_INFO"], b"/some/where")
            self.assertEqual(env["QUERY_STRING"], b"q=1")
        finally:
            bridge.stop()
            m2.stop()
            work.cleanup()


class CgiExamples(unittest.TestCase):
    """examples/cgi-bin: sh, Python, Perl and a WSGI app through CGIHandler."""

    @classmethod
    def setUpClass(cls):
        cls.work = Workdir()
        cls.m2 = Mongrel2(cls.work.path, routes={"/cgi-bin/": "bridge"})
        cls.bridge = Bridge(cls.work.path, cls.m2, os.path.join(ROOT, "examples", "cgi-bin"), mode="cgi",
                            warmup_path="/cgi-bin/hello.sh")

    @classmethod
    def tearDownClass(cls):
        cls.bridge.stop()
        cls.m2.stop()
        cls.work.cleanup()

    def test_shell_python_perl(self):
        self.assertEqual(http_request(self.m2.port, "GET", "/cgi-bin/hello.sh/a?b=c")[2],
                         b"Hello from sh. You asked for /a with query 'b=c'.\n")
        self.assertEqual(http_request(self.m2.port, "POST", "/cgi-bin/hello.py", body=b"abc")[2],
                         b"Hello from Python: POST /cgi-bin/hello.py\nYou sent 3 bytes.\n")
        self.assertEqual(http_request(self.m2.port, "GET", "/cgi-bin/hello.pl")[2],
                         b"Hello from Perl: GET /cgi-bin/hello.pl\n")

    def test_wsgi_get_and_post(self):
        status, headers, body = http_request(self.m2.port, "GET", "/cgi-bin/wsgi_app.py/x?name=Zed")
        self.assertEqual((status, body), (200, b"Hello, Zed! (GET via WSGI, path /x)\n"))
        self.assertEqual(headers["content-type"], "text/plain; charset=utf-8")
        status, _, body = http_request(self.m2.port, "POST", "/cgi-bin/wsgi_app.py", body=b"name=Ada",
                                       headers={"Content-Type": "application/x-www-form-urlencoded"})
        self.assertEqual((status, body), (200, b"Hello, Ada! (POST via WSGI)\n"))


class CgiCommandLine(unittest.TestCase):
    def run_m2bridge(self, *args):
        return subprocess.run([os.path.join(os.environ.get("M2B_BUILD_DIR", os.path.join(ROOT, "build")), "m2bridge")]
                              + list(args), capture_output=True, text=True, timeout=10)

    def test_missing_or_bad_paths_exit_2_with_one_line(self):
        for args in (["cgi", "/nonexistent/x.cgi"], ["cgi", os.path.join(HERE, "cgi-bin", "noexec.sh")],
                     ["cgi", "--bogus", "/tmp"], ["fastcgi", "no-port"], ["fastcgi", "--timeout", "-1", "unix:/x"]):
            result = self.run_m2bridge(*args)
            self.assertEqual(result.returncode, 2, args)
            self.assertEqual(len(result.stderr.strip().splitlines()), 1, (args, result.stderr))

    def test_version_and_help(self):
        self.assertRegex(self.run_m2bridge("--version").stdout.strip(), r"^m2bridge 0\.1\.0 \(ZMTP 3\.1, built ")
        self.assertIn("cgi", self.run_m2bridge("--help").stdout)


if __name__ == "__main__":
    unittest.main()
