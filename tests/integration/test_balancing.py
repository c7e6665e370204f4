"""Several backends behind one handler: Debian's mongrel2 → m2bridge fastcgi ADDR_A ADDR_B →
two real php-fpm pools. Requests spread over both; a pool stopped under load costs no request
beyond those it held; a pool started again takes requests within its back-off."""

import os
import signal
import threading
import time
import unittest

from harness import Bridge, Mongrel2, PhpFpm, Workdir, docroot_with_php, http_request, wait_until


class TwoPhpFpmPools(unittest.TestCase):
    def setUp(self):
        self.work = Workdir()
        self.root = docroot_with_php(self.work.path)
        self.pools = {name: self.start_pool(name) for name in ("a", "b")}
        self.m2 = Mongrel2(self.work.path)
        self.bridge = Bridge(self.work.path, self.m2, None, "--document-root", self.root,
                             self.pools["a"].address, self.pools["b"].address, warmup_path="/pool.php")

    def start_pool(self, name):
        path = os.path.join(self.work.path, name)
        os.makedirs(path, exist_ok=True)
        return PhpFpm(path, children=2, extra_pool="env[POOL] = %s" % name)

    def tearDown(self):
        try:
            self.bridge.stop()
        finally:
            for pool in self.pools.values():
                pool.stop()
            self.m2.stop()
            self.work.cleanup()

    def who(self):
        status, _, body = http_request(self.m2.port, "GET", "/pool.php", timeout=10)
        return status, body.decode()

    def test_requests_spread_over_both_pools(self):
        answers = [self.who() for _ in range(40)]
        self.assertTrue(all(status == 200 for status, _ in answers), answers)
        served = [who for _, who in answers]
        self.assertGreaterEqual(served.count("a"), 12, served)
        self.assertGreaterEqual(served.count("b"), 12, served)

    def test_pool_stopped_under_load_then_started_again(self):
        results = []
        stop = threading.Event()

        def client():
            while not stop.is_set():
                try:
                    status, who = self.who()
                    results.append((time.monotonic(), status, who))  # when the answer came
                except OSError as e:
                    results.append((time.monotonic(), 0, str(e)))

        threads = [threading.Thread(target=client) for _ in range(4)]
        for t in threads:
            t.start()
        try:
            time.sleep(1)
            stopped_at = time.monotonic()
            self.pools["b"].process.stop(signal.SIGKILL)  # dies with its requests: those may be 502
            time.sleep(2)
            self.pools["b"] = self.start_pool("b")
            restarted_at = time.monotonic()
            # The back-off is 1 s after the first failure, doubling while probes fail.
            wait_until(lambda: any(t > restarted_at and who == "b" for t, _, who in list(results)), timeout=20,
                       what="pool b to take requests again")
        finally:
            stop.set()
            for t in threads:
                t.join()
        before = [r for r in results if r[0] < stopped_at]
        after = [r for r in results if r[0] >= stopped_at]
        self.assertTrue(before and all(status == 200 for _, status, _ in before), before[-5:])
        failed = [r for r in after if r[1] != 200]
        # Only requests pool b held when it was killed may fail: at most one per client thread.
        self.assertLessEqual(len(failed), 4, failed)
        self.assertGreater(len(after), 20)
        first_b = min(t for t, _, who in results if t > restarted_at and who == "b")
        self.assertLess(first_b - restarted_at, 10)  # within the back-off's ceiling seen here
        log = self.bridge.log()
        self.assertRegex(log, r"backend unix:\S+/b/fpm/php.sock taken out for 1000 ms")
        self.assertIn("answers again", log)

    def test_both_pools_down_is_502_and_named(self):
        for pool in self.pools.values():
            pool.process.stop(signal.SIGKILL)
        for path in (self.pools["a"].socket, self.pools["b"].socket):
            if os.path.exists(path):
                os.unlink(path)
        status, _, body = http_request(self.m2.port, "POST", "/pool.php", body=b"x=1")
        self.assertEqual((status, body), (502, b"502 Bad Gateway\n"))
        log = self.bridge.log()
        self.assertIn("/a/fpm/php.sock taken out", log)
        self.assertIn("/b/fpm/php.sock taken out", log)


class StuckConnect(unittest.TestCase):
    """A backend whose listen queue is full never completes a connect (loopback drops the SYNs):
    after --timeout the request moves to the other backend, and the stuck one is taken out. The
    other backend is a fake SCGI server (no real one can be made to stall its accept on demand)."""

    def test_fake_backend_request_moves_on_when_connect_hangs(self):
        import socket as s
        import fake_backends as fb
        work = Workdir()
        stuck = s.socket()
        stuck.bind(("127.0.0.1", 0))
        stuck.listen(0)
        fillers = []
        live = m2 = bridge = None
        try:
            for _ in range(4):  # fill the accept queue; later SYNs are dropped
                c = s.socket()
                c.setblocking(False)
                c.connect_ex(stuck.getsockname())
                fillers.append(c)
            live = fb.FakeStreamBackend(os.path.join(work.path, "live.sock"), lambda request, conn: conn.sendall(
                b"Status: 200 OK\r\nContent-Type: text/plain\r\n\r\nlive"))
            m2 = Mongrel2(work.path)
            bridge = Bridge(work.path, m2, None, "--timeout", "1", "127.0.0.1:%d" % stuck.getsockname()[1],
                            live.address, mode="scgi", warmup_path="/")
            answers = [http_request(m2.port, "GET", "/x%d" % i, timeout=10)[::2] for i in range(6)]
            self.assertEqual(answers, [(200, b"live")] * 6)
            self.assertRegex(bridge.log(), r"taken out for 1000 ms: connect to 127.0.0.1:\d+ timed out after 1000 ms")
        finally:
            if bridge:
                bridge.stop()
            if m2:
                m2.stop()
            if live:
                live.stop()
            for c in fillers:
                c.close()
            stuck.close()
            work.cleanup()


if __name__ == "__main__":
    unittest.main()
