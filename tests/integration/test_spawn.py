"""m2bridge fastcgi --spawn N -- CMD, end to end: Debian's mongrel2 → m2bridge → N copies of the
libfcgi example that m2bridge starts itself on a shared listening socket (fd 0) and keeps running."""

import os
import signal
import time
import unittest

from harness import FCGI_HELLO, Bridge, Mongrel2, Workdir, http_request, wait_until

COPIES = 3


def children(pid):
    """The pids of the processes whose parent is `pid` (any of its threads)."""
    found = set()
    try:
        tasks = os.listdir("/proc/%d/task" % pid)
    except OSError:
        return found
    for task in tasks:
        try:
            with open("/proc/%d/task/%s/children" % (pid, task)) as f:
                found.update(int(p) for p in f.read().split())
        except OSError:
            pass
    return found


def comm(pid):
    try:
        with open("/proc/%d/comm" % pid) as f:
            return f.read().strip()
    except OSError:
        return ""


def gone(pid):
    """No such process, or only a zombie (PID 1 in a container may be slow to reap orphans)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    try:
        with open("/proc/%d/stat" % pid) as f:
            return f.read().rsplit(")", 1)[1].split()[0] == "Z"
    except (OSError, IndexError):
        return True


def listening_socket_path(pid):
    """The path of the unix socket on a process's fd 0 if it is a listening one, else None."""
    try:
        target = os.readlink("/proc/%d/fd/0" % pid)
    except OSError:
        return None
    if not target.startswith("socket:["):
        return None
    inode = target[8:-1]
    with open("/proc/net/unix") as f:
        for line in f.readlines()[1:]:
            fields = line.split()
            if len(fields) >= 8 and fields[6] == inode and fields[3] == "00010000":  # __SO_ACCEPTCON
                return fields[7]
    return None


class SpawnedLibfcgiApp(unittest.TestCase):
    def setUp(self):
        self.work = Workdir()
        self.runtime = os.path.join(self.work.path, "run")
        os.makedirs(self.runtime)
        self.m2 = Mongrel2(self.work.path, routes={"/hello/": "bridge"})
        self.bridge = None
        try:
            # No backend address: the socket is the spawner's, made under RUNTIME_DIRECTORY.
            self.bridge = Bridge(self.work.path, self.m2, None, "--spawn", str(COPIES), "--", FCGI_HELLO,
                                 warmup_path="/hello/", env=dict(os.environ, RUNTIME_DIRECTORY=self.runtime))
            wait_until(lambda: len(self.copies()) == COPIES, what="%d copies of fcgi-hello" % COPIES)
        except BaseException:
            self.tearDown()
            raise

    def tearDown(self):
        try:
            if self.bridge:
                self.bridge.process.stop(signal.SIGKILL)  # if a test left it running; closes its log
        finally:
            self.m2.stop()
            self.work.cleanup()

    @property
    def pid(self):
        return self.bridge.process.proc.pid

    def copies(self):
        return {p for p in children(self.pid) if comm(p) == "fcgi-hello"}

    def assert_served(self, times=6):
        for i in range(times):
            status, _, body = http_request(self.m2.port, "GET", "/hello/n%d?q=%d" % (i, i))
            self.assertEqual(status, 200, body)
            self.assertIn(b"Hello from a libfcgi app behind Mongrel2.", body)
            self.assertIn(b"QUERY_STRING=q=%d\n" % i, body)

    def test_requests_are_served_by_copies_sharing_one_socket(self):
        self.assert_served()
        copies = self.copies()
        self.assertEqual(len(copies), COPIES)
        paths = {listening_socket_path(p) for p in copies}
        self.assertEqual(len(paths), 1, paths)  # one listening socket, on every copy's fd 0
        path = paths.pop()
        self.assertIsNotNone(path)
        self.assertEqual(os.path.dirname(os.path.dirname(path)), self.runtime)
        self.assertEqual(os.stat(os.path.dirname(path)).st_mode & 0o777, 0o700)
        for p in copies:
            self.assertEqual(os.getpgid(p), p)  # a process group of its own

    def test_a_killed_copy_is_logged_and_replaced(self):
        before = self.copies()
        victim = sorted(before)[0]
        os.kill(victim, signal.SIGKILL)
        wait_until(lambda: "(pid %d) killed by signal 9" % victim in self.bridge.log(),
                   what="m2bridge to log the death of copy %d" % victim)
        wait_until(lambda: len(self.copies()) == COPIES and victim not in self.copies(),
                   what="a new copy in place of %d" % victim)
        after = self.copies()
        self.assertEqual(len(after - before), 1)
        self.assertTrue(gone(victim))
        self.assert_served()
        self.assertEqual(self.copies(), after)

    def test_sigterm_stops_every_copy_and_removes_the_socket(self):
        copies = self.copies()
        path = listening_socket_path(sorted(copies)[0])
        self.assert_served(2)
        self.bridge.stop()  # SIGTERM; insists on exit status 0
        for p in copies:
            wait_until(lambda: gone(p), timeout=5, what="copy %d to be gone" % p)
        self.assertFalse(os.path.exists(path))
        self.assertEqual(os.listdir(self.runtime), [])

    def test_copies_die_with_a_sigkilled_m2bridge(self):
        copies = self.copies()
        os.kill(self.pid, signal.SIGKILL)
        self.bridge.process.proc.wait(5)
        for p in copies:
            wait_until(lambda: gone(p), timeout=5, what="copy %d to die with m2bridge" % p)


if __name__ == "__main__":
    unittest.main()
