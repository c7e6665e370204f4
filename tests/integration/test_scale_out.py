"""Scale-out on ZeroMQ: several m2bridge processes on one Mongrel2 Handler (Mongrel2's PUSH
deals requests round-robin, each reply names its server), through Debian's mongrel2 and a real
php-fpm. What holds across processes and what does not is in docs/design.md."""

import os
import socket
import unittest

from harness import (Bridge, Mongrel2, PhpFpm, Workdir, build_request, docroot_with_php, http_request,
                     read_response, wait_until)


def lines(path):
    if not os.path.exists(path):
        return []
    with open(path) as f:
        return f.read().splitlines()


class TwoBridgesOnOneHandler(unittest.TestCase):
    def setUp(self):
        self.work = Workdir()
        self.root = docroot_with_php(self.work.path)
        self.fpm = PhpFpm(self.work.path, children=4)
        self.m2 = Mongrel2(self.work.path)
        self.logs = [os.path.join(self.work.path, "access-%d.log" % i) for i in (1, 2)]
        self.bridges = [Bridge(self.work.path, self.m2, self.fpm.address, "--document-root", self.root,
                               "--access-log", log) for log in self.logs]
        # Both PUB sockets must be connected before replies can flow (ZeroMQ's slow joiner):
        # twenty answers in a row, whichever bridge each went to.
        wait_until(lambda: all(self.status("/status.php") == 200 for _ in range(20)), what="both bridges answering")
        self.before = [len(lines(log)) for log in self.logs]

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

    def test_both_bridges_serve_a_share_of_1000_requests(self):
        with socket.create_connection(("127.0.0.1", self.m2.port), timeout=10) as s:
            for i in range(1000):
                s.sendall(build_request("GET", "/status.php?i=%d" % i))
                status, _, body = read_response(s)
                self.assertEqual((status, body), (200, b"status body\n"), "request %d" % i)
        served = [len(lines(log)) - before for log, before in zip(self.logs, self.before)]
        self.assertEqual(sum(served), 1000, served)
        for count in served:
            self.assertGreaterEqual(count, 300, served)

    def test_one_bridge_stopped_the_other_serves_the_handler(self):
        self.bridges[1].stop()
        self.bridges = self.bridges[:1]
        # Mongrel2's PUSH stops dealing to a peer that has gone: every request is answered.
        for i in range(50):
            self.assertEqual(self.status("/status.php?after=%d" % i), 200, "request %d" % i)


if __name__ == "__main__":
    unittest.main()
