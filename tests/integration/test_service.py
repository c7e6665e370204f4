"""m2bridge as an operator runs it: a TOML config with several handlers, `check`, SIGHUP reload,
SIGTERM drain, systemd's notify protocol, metrics, privileges, and start-up errors that name
what is wrong. Real mongrel2, php-fpm and CGI scripts throughout."""

import json
import os
import pwd
import re
import shutil
import signal
import socket
import subprocess
import threading
import time
import tomllib
import unittest
import urllib.request

from harness import (FCGI_HELLO, M2BRIDGE, Mongrel2, PhpFpm, Process, Workdir, docroot_with_php,
                     free_port, http_request, read_response, wait_until)

HERE = os.path.dirname(os.path.abspath(__file__))


def copy_cgi_bin(workdir):
    path = os.path.join(workdir, "cgi-bin")
    shutil.copytree(os.path.join(HERE, "cgi-bin"), path, symlinks=True)
    return os.path.realpath(path)


def run_m2bridge(*argv, timeout=10, env=None):
    return subprocess.run([M2BRIDGE, *argv], capture_output=True, text=True, timeout=timeout, env=env)


def answered(port, path):
    def check():
        try:
            return http_request(port, "GET", path, timeout=1)[0] not in (0, 404)
        except (OSError, EOFError):
            return False
    return check


class ConfiguredBridge:
    """m2bridge --config FILE as a process, with its log."""

    def __init__(self, work, text, env=None, extra=()):
        self.path = os.path.join(work, "m2bridge.toml")
        with open(self.path, "w") as f:
            f.write(text)
        self.log_path = os.path.join(work, "m2bridge-%d.log" % free_port())
        self.process = Process([M2BRIDGE, "--config", self.path, *extra], self.log_path, env=env)
        wait_until(lambda: "ready" in self.log() or not self.process.alive(), what="m2bridge ready")
        if not self.process.alive():
            raise RuntimeError("m2bridge exited: " + self.log())

    def rewrite(self, text):
        with open(self.path + ".new", "w") as f:
            f.write(text)
        os.rename(self.path + ".new", self.path)

    def signal(self, sig):
        os.kill(self.process.proc.pid, sig)

    def log(self):
        return self.process.output()

    def stop(self):
        code = self.process.stop(signal.SIGTERM)
        for marker in ("AddressSanitizer", "LeakSanitizer", "runtime error:"):
            if marker in self.log():
                raise AssertionError("sanitizer report:\n" + self.log()[-4000:])
        return code


def handler_block(name, m2, backend, **keys):
    send, recv = m2.specs[name]
    lines = ["[[handler]]", f'name = "{name}"', f'send_spec = "{send}"', f'recv_spec = "{recv}"', backend]
    for k, v in keys.items():
        lines.append(f"{k} = {json.dumps(v)}")
    return "\n".join(lines) + "\n"


class TwoHandlersFromOneFile(unittest.TestCase):
    """One config file, one process: php-fpm at /app/, a cgi-bin at /cgi/, through one Mongrel2."""

    def setUp(self):
        self.work = Workdir()
        self.root = docroot_with_php(self.work.path)
        self.cgi = copy_cgi_bin(self.work.path)
        self.m2 = Mongrel2(self.work.path, routes={"/app/": "php", "/cgi/": "cgi", "/new/": "added"},
                           handlers=("php", "cgi", "added"))
        self.fpm = PhpFpm(self.work.path, children=4)
        self.bridge = None

    def tearDown(self):
        try:
            if self.bridge:
                self.bridge.stop()
        finally:
            self.fpm.stop()
            self.m2.stop()
            self.work.cleanup()

    def config(self, with_added=False, timeout=5, **php_keys):
        text = handler_block("php", self.m2, f'fastcgi = "unix:{self.fpm.socket}"', document_root=self.root,
                             timeout=timeout, **php_keys)
        text += handler_block("cgi", self.m2, f'cgi = "{self.cgi}"', allow_root=True)
        if with_added:
            text += handler_block("added", self.m2, f'fastcgi = "unix:{self.fpm.socket}"', document_root=self.root)
        return text

    def test_both_handlers_answer(self):
        self.bridge = ConfiguredBridge(self.work.path, self.config())
        wait_until(answered(self.m2.port, "/app/status.php?code=200"), timeout=20, what="php handler")
        wait_until(answered(self.m2.port, "/cgi/tiny.sh"), timeout=20, what="cgi handler")
        status, _, body = http_request(self.m2.port, "GET", "/app/status.php?code=201")
        self.assertEqual(status, 201)
        status, _, body = http_request(self.m2.port, "GET", "/cgi/tiny.sh")
        self.assertEqual((status, body), (200, b"ok"))

    def test_sighup_adds_a_handler_without_losing_requests_in_flight(self):
        self.bridge = ConfiguredBridge(self.work.path, self.config())
        wait_until(answered(self.m2.port, "/app/status.php?code=200"), timeout=20, what="php handler")
        results = []

        def slow():
            results.append(http_request(self.m2.port, "GET", "/app/sleep.php?s=1", timeout=10))
        threads = [threading.Thread(target=slow) for _ in range(3)]
        for t in threads:
            t.start()
        time.sleep(0.3)  # the three are in flight at php-fpm
        self.bridge.rewrite(self.config(with_added=True, timeout=7))  # php changed too: its handler is replaced
        self.bridge.signal(signal.SIGHUP)
        wait_until(lambda: "reloaded" in self.bridge.log(), what="reload")
        for t in threads:
            t.join()
        self.assertEqual([(s, b) for s, _, b in results], [(200, b"slept\n")] * 3)
        wait_until(answered(self.m2.port, "/new/status.php?code=200"), timeout=20, what="the added handler")
        self.assertEqual(http_request(self.m2.port, "GET", "/new/status.php?code=202")[0], 202)
        self.assertEqual(http_request(self.m2.port, "GET", "/app/status.php?code=203")[0], 203)
        self.assertEqual(http_request(self.m2.port, "GET", "/cgi/tiny.sh")[2], b"ok")

    def test_long_polls_held_across_a_reload_are_delivered_to_and_their_leaving_reported(self):
        notice = {"disconnect_path": "/app/disconnected.php"}
        self.bridge = ConfiguredBridge(self.work.path, self.config(**notice))
        wait_until(answered(self.m2.port, "/app/status.php?code=200"), timeout=20, what="php handler")
        dirs = [os.path.join(self.work.path, d) for d in ("stays", "leaves")]
        socks = []
        for d in dirs:
            os.mkdir(d)
            s = socket.create_connection(("127.0.0.1", self.m2.port), timeout=10)
            s.sendall(b"GET /app/hold.php?dir=" + d.encode() + b" HTTP/1.1\r\nHost: localhost\r\n\r\n")
            socks.append(s)
            wait_until(lambda: os.listdir(d), what="the long-poll to be held")
        stays, leaves = socks
        try:
            self.bridge.rewrite(self.config(timeout=9, **notice))  # php's handler is replaced
            self.bridge.signal(signal.SIGHUP)
            wait_until(lambda: "reloaded" in self.bridge.log(), what="reload")
            time.sleep(0.3)
            # The one that leaves was held by the old handler: the new one reports it.
            leaves.close()
            log = os.path.join(self.root, "disconnects.log")
            wait_until(lambda: os.path.exists(log), what="the disconnect notice")
            self.assertEqual(json.loads(open(log).read().splitlines()[0])["id"], os.listdir(dirs[1])[0])
            status, _, body = http_request(self.m2.port, "GET",
                                           "/app/deliver_to.php?dir=" + dirs[0] + "&body=after-reload")
            self.assertEqual((status, body), (200, b"after-reload"))
            status, _, body = read_response(stays)
            self.assertEqual((status, body), (200, b"after-reload"))
        finally:
            stays.close()

    def test_a_bad_config_on_sighup_is_refused_and_the_old_one_keeps_running(self):
        self.bridge = ConfiguredBridge(self.work.path, self.config())
        wait_until(answered(self.m2.port, "/app/status.php?code=200"), timeout=20, what="php handler")
        self.bridge.rewrite(self.config() + "\n[[handler]]\nbogus_key = 1\n")
        self.bridge.signal(signal.SIGHUP)
        wait_until(lambda: "reload refused" in self.bridge.log(), what="reload refused")
        self.assertRegex(self.bridge.log(), r"reload refused.*m2bridge\.toml:\d+")
        self.assertEqual(http_request(self.m2.port, "GET", "/app/status.php?code=204")[0], 204)
        self.assertEqual(http_request(self.m2.port, "GET", "/cgi/tiny.sh")[2], b"ok")

    def test_sigterm_lets_requests_in_flight_finish_and_exits_0(self):
        self.bridge = ConfiguredBridge(self.work.path, self.config())
        wait_until(answered(self.m2.port, "/app/status.php?code=200"), timeout=20, what="php handler")
        results = []

        def slow():
            results.append(http_request(self.m2.port, "GET", "/app/sleep.php?s=1", timeout=10))
        threads = [threading.Thread(target=slow) for _ in range(4)]
        for t in threads:
            t.start()
        time.sleep(0.3)
        self.bridge.signal(signal.SIGTERM)
        for t in threads:
            t.join()
        self.assertEqual([(s, b) for s, _, b in results], [(200, b"slept\n")] * 4)
        self.assertEqual(self.bridge.process.proc.wait(10), 0)
        self.bridge = None

    def test_check_prints_the_resolved_config(self):
        path = os.path.join(self.work.path, "check.toml")
        with open(path, "w") as f:
            f.write(self.config())
        out = run_m2bridge("check", "--config", path)
        self.assertEqual(out.returncode, 0, out.stderr)
        resolved = tomllib.loads(out.stdout)
        php, cgi = resolved["handler"]
        self.assertEqual(php["fastcgi"], "unix:" + self.fpm.socket)
        self.assertEqual(php["timeout"], 5)
        self.assertEqual(php["max_requests"], 64)  # defaults are filled in
        self.assertEqual(cgi["cgi"], self.cgi)
        self.assertTrue(cgi["allow_root"])


class CgiAndSpawnInOneProcess(unittest.TestCase):
    """A cgi handler and a spawned FastCGI app share the process (and its SIGCHLD): removing the
    cgi handler by reload, killing a copy, and stopping must neither crash nor lose the exit."""

    def test_reload_away_the_cgi_handler_then_a_copy_dies_then_stop(self):
        work = Workdir()
        cgi = copy_cgi_bin(work.path)
        m2 = Mongrel2(work.path, routes={"/cgi/": "cgi", "/hello/": "app"}, handlers=("cgi", "app"))
        both = (handler_block("cgi", m2, f'cgi = "{cgi}"', allow_root=True) +
                handler_block("app", m2, f'spawn = {{ command = ["{FCGI_HELLO}"], instances = 2 }}'))
        bridge = ConfiguredBridge(work.path, both)
        try:
            wait_until(answered(m2.port, "/cgi/tiny.sh"), timeout=20, what="cgi handler")
            wait_until(answered(m2.port, "/hello/"), timeout=20, what="spawned app")
            for _ in range(5):
                self.assertEqual(http_request(m2.port, "GET", "/cgi/tiny.sh")[2], b"ok")
            bridge.rewrite(handler_block("app", m2, f'spawn = {{ command = ["{FCGI_HELLO}"], instances = 2 }}'))
            bridge.signal(signal.SIGHUP)
            wait_until(lambda: "reloaded" in bridge.log(), what="reload")
            copies = subprocess.run(["pgrep", "-P", str(bridge.process.proc.pid), "-f", FCGI_HELLO],
                                    capture_output=True, text=True).stdout.split()
            self.assertEqual(len(copies), 2)
            os.kill(int(copies[0]), signal.SIGKILL)
            wait_until(lambda: "killed by signal 9" in bridge.log(), what="the death to be logged")
            self.assertEqual(http_request(m2.port, "GET", "/hello/")[0], 200)
            self.assertTrue(bridge.process.alive())
            code = bridge.stop()
            self.assertEqual(code, 0, bridge.log()[-3000:])
            bridge = None
        finally:
            if bridge:
                bridge.stop()
            m2.stop()
            work.cleanup()


class ConfigMistakes(unittest.TestCase):
    """Each kind of mistake: exit 2 and one line on stderr naming file, line and key."""

    def setUp(self):
        self.work = Workdir()
        self.path = os.path.join(self.work.path, "m2bridge.toml")

    def tearDown(self):
        self.work.cleanup()

    def run_with(self, text, mode="--config"):
        with open(self.path, "w") as f:
            f.write(text)
        out = run_m2bridge(mode, self.path) if mode == "--config" else run_m2bridge("check", "--config", self.path)
        self.assertEqual(out.returncode, 2, out.stdout + out.stderr)
        lines = out.stderr.strip().splitlines()
        self.assertEqual(len(lines), 1, out.stderr)
        return lines[0]

    def test_each_mistake_names_its_place(self):
        ok = '[[handler]]\nfastcgi = "127.0.0.1:9000"\n'
        cases = [
            (ok + "timeout = \"soon\"\n", r"m2bridge\.toml:3: timeout: must be a number, not a string"),
            (ok + "timout = 3\n", r"m2bridge\.toml:3: timout: unknown key"),
            (ok + "timeout = 0\n", r"m2bridge\.toml:3: timeout: must be between"),
            (ok + "max_procs = 4\n", r"m2bridge\.toml:3: max_procs: applies only to cgi handlers"),
            (ok + "user = \"nobody\"\n", r"m2bridge\.toml:3: user: is a top-level key"),
            ('[[handler]]\nsend_spec = "tcp://127.0.0.1:1"\n', r"m2bridge\.toml:1: handler 1: give exactly one of"),
            ('[[handler]]\nfastcgi = "x"\ncgi = "/tmp"\n', r"m2bridge\.toml:1: handler 1: give exactly one of"),
            ('[[handler]]\nfastcgi = "no-port"\n', r"m2bridge\.toml:1: handler 1: fastcgi: no-port"),
            (ok + 'send_spec = "bogus://x"\n', r"m2bridge\.toml:1: .*send_spec: bogus://x: "),
            ('frobnicate = 1\n' + ok, r"m2bridge\.toml:1: frobnicate: unknown key"),
            ('timeout = 3\n' + ok, r"m2bridge\.toml:1: timeout: unknown key at the top level: it belongs in"),
            ("[[handler]\n", r"m2bridge\.toml:1: "),
            ("grace = 5\n", r"m2bridge\.toml: no \[\[handler\]\] table"),
            ('user = "no-such-user-here"\n' + ok, r"user: no such user: no-such-user-here"),
            (ok + ok, r"send_spec: two handlers connect to tcp://127.0.0.1:9997"),
            ('[[handler]]\nspawn = { command = ["/no/such/app"] }\n', r"spawn.command: not an executable program: /no/such/app"),
        ]
        for text, pattern in cases:
            with self.subTest(text=text):
                self.assertRegex(self.run_with(text), pattern)
                self.assertRegex(self.run_with(text, mode="check"), pattern)

    def test_missing_file(self):
        out = run_m2bridge("--config", os.path.join(self.work.path, "nope.toml"))
        self.assertEqual(out.returncode, 2)
        self.assertIn("nope.toml", out.stderr)
        self.assertEqual(len(out.stderr.strip().splitlines()), 1)


class CommandLineErrorsAndHelp(unittest.TestCase):
    def one_line_exit_2(self, *argv):
        out = run_m2bridge(*argv)
        self.assertEqual(out.returncode, 2, out.stdout + out.stderr)
        self.assertEqual(len(out.stderr.strip().splitlines()), 1, out.stderr)
        return out.stderr

    def test_a_bad_endpoint_names_the_option_and_the_value(self):
        err = self.one_line_exit_2("fastcgi", "--send-spec", "tcp://nowhere", "127.0.0.1:9000")
        self.assertIn("--send-spec", err)
        self.assertIn("tcp://nowhere", err)
        err = self.one_line_exit_2("fastcgi", "--recv-spec", "carrier-pigeon", "127.0.0.1:9000")
        self.assertIn("--recv-spec", err)
        self.assertIn("carrier-pigeon", err)

    def test_bad_values_name_the_option(self):
        self.assertRegex(self.one_line_exit_2("fastcgi", "--timeout", "-1", "127.0.0.1:9000"), r"--timeout.*-1")
        self.assertIn("ADDRESS", self.one_line_exit_2("fastcgi"))
        self.assertIn("nothing to run", self.one_line_exit_2())

    def test_cgi_as_root_is_refused_with_both_ways_out(self):
        if os.geteuid() != 0:
            self.skipTest("needs root")
        err = self.one_line_exit_2("cgi", os.path.join(HERE, "cgi-bin"))
        self.assertIn("--user", err)
        self.assertIn("--allow-root", err)

    def test_help_shows_defaults_and_version_shows_zmtp(self):
        out = run_m2bridge("fastcgi", "--help")
        self.assertEqual(out.returncode, 0)
        # CLI11 shows a default as TYPE=VALUE.
        self.assertRegex(out.stdout, r"--timeout FLOAT=60\b")
        self.assertRegex(out.stdout, r"--send-spec TEXT=tcp://127\.0\.0\.1:9997")
        self.assertRegex(out.stdout, r"--queue UINT=1024\b")
        out = run_m2bridge("--version")
        self.assertEqual(out.returncode, 0)
        self.assertRegex(out.stdout, r"m2bridge \d+\.\d+\.\d+ \(ZMTP 3\.1, built ")


class PhpStackWithArgs(unittest.TestCase):
    """Helpers for tests that run `m2bridge fastcgi` against php-fpm with extra options."""

    def start(self, *args, env=None, routes=None):
        self.work = Workdir()
        self.root = docroot_with_php(self.work.path)
        self.m2 = Mongrel2(self.work.path, routes=routes or {"/": "bridge"})
        self.fpm = PhpFpm(self.work.path, children=2)
        self.log_path = os.path.join(self.work.path, "m2bridge.log")
        argv = [M2BRIDGE, "fastcgi", "--send-spec", self.m2.send_spec, "--recv-spec", self.m2.recv_spec,
                "--document-root", self.root, *args, "unix:" + self.fpm.socket]
        self.process = Process(argv, self.log_path, env=env)
        wait_until(lambda: "ready" in self.process.output() or not self.process.alive(), what="ready")
        self.assertTrue(self.process.alive(), self.process.output())

    def tearDown(self):
        try:
            self.process.stop(signal.SIGTERM)
        finally:
            self.fpm.stop()
            self.m2.stop()
            self.work.cleanup()


class SystemdNotify(PhpStackWithArgs):
    def test_ready_reloading_stopping_and_watchdog(self):
        sock_path = os.path.join("/tmp", "m2b-notify-%d" % free_port())
        listener = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        listener.bind(sock_path)
        listener.settimeout(10)
        try:
            env = dict(os.environ, NOTIFY_SOCKET=sock_path, WATCHDOG_USEC="200000")
            self.start(env=env)
            seen = []

            def expect(state):
                while True:
                    msg = listener.recv(4096).decode()
                    seen.append(msg)
                    if state in msg.split("\n"):
                        return
            expect("READY=1")
            expect("WATCHDOG=1")
            expect("WATCHDOG=1")  # keeps coming
            os.kill(self.process.proc.pid, signal.SIGHUP)
            expect("RELOADING=1")
            expect("READY=1")
            os.kill(self.process.proc.pid, signal.SIGTERM)
            expect("STOPPING=1")
            self.assertEqual(self.process.proc.wait(10), 0)
        finally:
            listener.close()
            os.unlink(sock_path)


class JournalFormat(unittest.TestCase):
    """Priority prefixes without timestamps only when stderr is the stream JOURNAL_STREAM names."""

    def first_lines(self, journal_stream_of_log):
        log = os.path.join("/tmp", "m2b-journal-%d.log" % free_port())
        open(log, "w").close()
        st = os.stat(log)
        stream = "%d:%d" % (st.st_dev, st.st_ino) if journal_stream_of_log else "8:12345"
        try:
            with open(log, "ab") as f:
                proc = subprocess.Popen([M2BRIDGE, "fastcgi", "--send-spec", "tcp://127.0.0.1:%d" % free_port(),
                                         "--recv-spec", "tcp://127.0.0.1:%d" % free_port(), "127.0.0.1:9000"],
                                        stderr=f, env=dict(os.environ, JOURNAL_STREAM=stream))
            try:
                wait_until(lambda: "ready" in open(log).read(), what="ready")
            finally:
                proc.send_signal(signal.SIGTERM)
                self.assertEqual(proc.wait(10), 0)
            return [line for line in open(log).read().splitlines() if "info:" in line]
        finally:
            os.unlink(log)

    def test_inherited_journal_stream_with_stderr_in_a_file_keeps_timestamps(self):
        lines = self.first_lines(False)
        self.assertTrue(lines)
        for line in lines:
            self.assertRegex(line, r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z info: ")

    def test_priority_prefix_when_device_and_inode_match(self):
        lines = self.first_lines(True)
        self.assertTrue(lines)
        for line in lines:
            self.assertRegex(line, r"^<6>info: ")


class Metrics(PhpStackWithArgs):
    def test_counters_after_n_requests(self):
        port = free_port()
        self.start("--metrics", "127.0.0.1:%d" % port)
        wait_until(answered(self.m2.port, "/status.php?code=200"), timeout=20, what="first answer")

        def scrape():
            with urllib.request.urlopen("http://127.0.0.1:%d/metrics" % port, timeout=5) as r:
                return r.read().decode()

        def count(text, status):
            m = re.search(r'^m2bridge_requests_total\{[^}]*status="%d"[^}]*\} (\d+)' % status, text, re.M)
            return int(m.group(1)) if m else 0
        before200, before404 = count(scrape(), 200), count(scrape(), 404)
        for _ in range(7):
            self.assertEqual(http_request(self.m2.port, "GET", "/status.php?code=200")[0], 200)
        for _ in range(3):
            self.assertEqual(http_request(self.m2.port, "GET", "/missing.php")[0], 404)
        text = scrape()
        self.assertEqual(count(text, 200) - before200, 7)
        self.assertEqual(count(text, 404) - before404, 3)
        m = re.search(r"^m2bridge_request_duration_seconds_count\{[^}]*\} (\d+)", text, re.M)
        self.assertGreaterEqual(int(m.group(1)), 10)
        self.assertRegex(text, r"(?m)^m2bridge_requests_in_flight\{[^}]*\} 0$")


class DisconnectPath(PhpStackWithArgs):
    def test_a_held_client_that_leaves_is_reported_to_the_app(self):
        self.start("--disconnect-path", "/disconnected.php?who=left")
        wait_until(answered(self.m2.port, "/status.php?code=200"), timeout=20, what="first answer")
        held_dir = os.path.join(self.work.path, "held")
        os.mkdir(held_dir)
        with socket.create_connection(("127.0.0.1", self.m2.port), timeout=5) as s:
            s.sendall(b"GET /hold.php?dir=" + held_dir.encode() + b" HTTP/1.1\r\nHost: localhost\r\n\r\n")
            wait_until(lambda: os.listdir(held_dir), what="the long-poll to be held")
        held_id = os.listdir(held_dir)[0]
        log = os.path.join(self.root, "disconnects.log")
        wait_until(lambda: os.path.exists(log), what="the disconnect request")
        entry = json.loads(open(log).read().splitlines()[0])
        self.assertEqual(entry, {"id": held_id, "method": "POST", "query": "who=left", "body": '{"type":"disconnect"}'})
        # A client that was not held leaving tells nobody.
        self.assertEqual(http_request(self.m2.port, "GET", "/status.php?code=200")[0], 200)
        time.sleep(0.5)
        self.assertEqual(len(open(log).read().splitlines()), 1)


class Privileges(unittest.TestCase):
    def test_user_nobody_runs_cgi_scripts_as_nobody(self):
        if os.geteuid() != 0:
            self.skipTest("needs root")
        work = Workdir()
        os.chmod(work.path, 0o755)  # nobody must reach the scripts
        cgi = copy_cgi_bin(work.path)
        m2 = Mongrel2(work.path, routes={"/cgi/": "bridge"})
        log = os.path.join(work.path, "m2bridge.log")
        process = Process([M2BRIDGE, "cgi", "--user", "nobody", "--send-spec", m2.send_spec, "--recv-spec",
                           m2.recv_spec, cgi], log)
        try:
            wait_until(answered(m2.port, "/cgi/tiny.sh"), timeout=20, what="first answer")
            status, _, body = http_request(m2.port, "GET", "/cgi/whoami.sh")
            self.assertEqual((status, body), (200, b"uid=%d\n" % pwd.getpwnam("nobody").pw_uid))
            status_line = open("/proc/%d/status" % process.proc.pid).read()
            self.assertRegex(status_line, r"Uid:\s+%d\s" % pwd.getpwnam("nobody").pw_uid)
        finally:
            self.assertEqual(process.stop(signal.SIGTERM), 0, process.output())
            m2.stop()
            work.cleanup()


if __name__ == "__main__":
    unittest.main()
