"""Scale-out on ZeroMQ: several m2bridge processes on one Mongrel2 Handler (Mongrel2's PUSH
deals requests round-robin, each reply names its server), through Debian's mongrel2 and a real
php-fpm. What holds across processes and what does not is in docs/design.md."""

import os
import socket
import unittest

from harness import (M2BRIDGE, Bridge, Mongrel2, PhpFpm, Process, Workdir, build_request, docroot_with_php,
                     http_request, read_response, wait_until)


def lines(path):
    if not os.path.exists(path):
        return []
    with open(path) as f:
        return f.read().splitlines()


class TwoBridges(unittest.TestCase):
    extra_args = ()

    def setUp(self):
        self.work = Workdir()
        self.root = docroot_with_php(self.work.path)
        self.fpm = PhpFpm(self.work.path, children=4)
        self.m2 = Mongrel2(self.work.path)
        self.logs = [os.path.join(self.work.path, "access-%d.log" % i) for i in (1, 2)]
        self.bridges = [Bridge(self.work.path, self.m2, self.fpm.address, "--document-root", self.root,
                               "--access-log", log, *self.extra_args) for log in self.logs]
        # Both PUB sockets must be connected before replies can flow (ZeroMQ's slow joiner):
        # twenty answers in a row, whichever bridge each went to.
        wait_until(lambda: all(self.status("/status.php") == 200 for _ in range(20)), what="both bridges answering")

    def tearDown(self):
        try:
            for bridge in self.bridges:
                bridge.stop()
        finally:
            self.fpm.stop()
            self.m2.stop()
            self.work.cleanup()

    def status(self, path):
        try:
            return http_request(self.m2.port, "GET", path, timeout=5)[0]
        except OSError:
            return 0


class TwoBridgesOnOneHandler(TwoBridges):
    def test_both_bridges_serve_a_share_of_1000_requests(self):
        with socket.create_connection(("127.0.0.1", self.m2.port), timeout=10) as s:
            for i in range(1000):
                s.sendall(build_request("GET", "/status.php?i=%d" % i))
                status, _, body = read_response(s)
                self.assertEqual((status, body), (200, b"status body\n"), "request %d" % i)
        # Only this test's requests count: a warm-up line may be written just after its answer
        # reached the client, and so may the last of these.
        def served():
            return [sum(" /status.php?i=" in line for line in lines(log)) for log in self.logs]
        wait_until(lambda: sum(served()) >= 1000, what="1000 access log lines")
        counts = served()
        self.assertEqual(sum(counts), 1000, counts)
        for count in counts:
            self.assertGreaterEqual(count, 300, counts)

    def test_one_bridge_stopped_the_other_serves_the_handler(self):
        self.bridges[1].stop()
        self.bridges = self.bridges[:1]
        # Mongrel2's PUSH stops dealing to a peer that has gone: every request is answered.
        for i in range(50):
            self.assertEqual(self.status("/status.php?after=%d" % i), 200, "request %d" % i)


class LostDisconnectsAreBoundedByTheDeadline(TwoBridges):
    """Mongrel2 deals disconnect notices round-robin too: the bridge running a request hears of
    its client leaving one time in two. --deadline bounds what a lost notice costs."""
    extra_args = ("--deadline", "2")

    def test_every_abandoned_request_ends_within_the_deadline(self):
        for _ in range(4):
            s = socket.create_connection(("127.0.0.1", self.m2.port), timeout=10)
            s.sendall(build_request("GET", "/drip.php?s=30"))
            s.recv(1)  # running: php-fpm drips for 30 s unless m2bridge lets go
            s.close()

        def ended():
            text = "".join(bridge.log() for bridge in self.bridges)
            return text.count("client went away") + text.count("request deadline of 2 s passed")
        # Far less than the 30 s the scripts would run: each ended by its notice or its deadline.
        wait_until(lambda: ended() >= 4, timeout=12, what="all four abandoned requests to end")


class OneBridgeTwoServers(unittest.TestCase):
    """One m2bridge process serving two Mongrel2 servers: a [[handler]] per server in one config
    file, each with its own sockets and its own connection ids."""

    def setUp(self):
        self.work = Workdir()
        self.root = docroot_with_php(self.work.path)
        self.fpm = PhpFpm(self.work.path, children=4)
        self.servers = []
        for name in ("a", "b"):
            path = os.path.join(self.work.path, name)
            os.makedirs(path)
            self.servers.append(Mongrel2(path))
        self.bridge = Process(self.argv(), os.path.join(self.work.path, "m2bridge.log"))
        for m2 in self.servers:
            wait_until(lambda: http_request(m2.port, "GET", "/status.php", timeout=2)[0] == 200,
                       what="an answer through each server")

    def argv(self):
        config = os.path.join(self.work.path, "m2bridge.toml")
        with open(config, "w") as f:
            for name, m2 in zip("ab", self.servers):
                f.write('[[handler]]\nname = "%s"\nfastcgi = "%s"\ndocument_root = "%s"\n'
                        'send_spec = "%s"\nrecv_spec = "%s"\n' % (name, self.fpm.address, self.root, m2.send_spec,
                                                                   m2.recv_spec))
        return [M2BRIDGE, "--config", config]

    def tearDown(self):
        try:
            code = self.bridge.stop()
            log = self.bridge.output()
            self.assertEqual(code, 0, log[-2000:])
            self.assertNotIn("Sanitizer", log)
        finally:
            for m2 in self.servers:
                m2.stop()
            self.fpm.stop()
            self.work.cleanup()

    def test_each_server_gets_its_own_answers(self):
        a, b = self.servers
        hold_dir = os.path.join(self.work.path, "held")
        os.makedirs(hold_dir)
        held = socket.create_connection(("127.0.0.1", a.port), timeout=10)
        try:
            held.sendall(build_request("GET", "/hold.php?dir=" + hold_dir))
            wait_until(lambda: os.listdir(hold_dir), what="the client held on server a")
            conn_id = os.listdir(hold_dir)[0]
            # Server b delivers to the same number: on b that is another client (or none).
            status, _, body = http_request(b.port, "GET", "/deliver_to.php?body=from-b&ids=" + conn_id)
            self.assertEqual((status, body), (200, b"from-b"))
            held.settimeout(1)
            with self.assertRaises(socket.timeout):
                held.recv(1)  # nothing reached a's client
            held.settimeout(10)
            status, _, body = http_request(a.port, "GET", "/deliver_to.php?body=from-a&dir=" + hold_dir)
            self.assertEqual((status, body), (200, b"from-a"))
            status, _, body = read_response(held)
            self.assertEqual((status, body), (200, b"from-a"))
        finally:
            held.close()
        for m2 in self.servers:
            self.assertEqual(http_request(m2.port, "GET", "/status.php")[0], 200)
        self.assertNotIn("error", self.bridge.output())


class OneBridgeTwoServersFromTheCommandLine(OneBridgeTwoServers):
    """The same with --send-spec and --recv-spec given once per server: a handler each."""

    def argv(self):
        argv = [M2BRIDGE, "fastcgi", "--document-root", self.root]
        for m2 in self.servers:
            argv += ["--send-spec", m2.send_spec, "--recv-spec", m2.recv_spec]
        return argv + [self.fpm.address]


if __name__ == "__main__":
    unittest.main()
