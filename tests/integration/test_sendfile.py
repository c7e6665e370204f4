"""X-Sendfile and X-Accel-Redirect: php-fpm names a file, m2bridge sends it (Debian's mongrel2 →
m2bridge → php-fpm), only from --sendfile-root, with validators, 304 and single ranges."""

import hashlib
import os
import shutil
import socket
import tempfile
import unittest
import urllib.parse

from harness import SocketReader, Stack, build_request, http_request, read_response
from test_hardening import LOW_QUARANTINE, MIB, vm_hwm_kib


class SendfileThroughPhp(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.files = os.path.realpath(tempfile.mkdtemp(prefix="m2b-sendfile-"))
        cls.root = os.path.join(cls.files, "public")
        os.makedirs(cls.root)
        cls.small = bytes(range(256)) * 4
        with open(os.path.join(cls.root, "small.bin"), "wb") as f:
            f.write(cls.small)
        with open(os.path.join(cls.files, "secret.txt"), "w") as f:
            f.write("outside the root\n")
        os.symlink(os.path.join(cls.files, "secret.txt"), os.path.join(cls.root, "link-out"))
        os.symlink("small.bin", os.path.join(cls.root, "link-in"))
        os.mkfifo(os.path.join(cls.root, "fifo"))
        cls.stack = Stack("--sendfile-root", cls.root, env=LOW_QUARANTINE)
        cls.m2, cls.bridge = cls.stack.m2, cls.stack.bridge

    @classmethod
    def tearDownClass(cls):
        cls.stack.stop()
        shutil.rmtree(cls.files)

    def fetch(self, name, headers=None, method="GET", **query):
        query["path"] = name if name.startswith("/") else os.path.join(self.root, name)
        return http_request(self.m2.port, method, "/sendfile.php?" + urllib.parse.urlencode(query), headers=headers,
                            timeout=30)

    def test_small_file_with_validators(self):
        status, headers, body = self.fetch("small.bin")
        self.assertEqual(status, 200)
        self.assertEqual(body, self.small)
        self.assertEqual(headers["content-length"], str(len(self.small)))
        self.assertEqual(headers["content-type"], "application/x-test")
        self.assertEqual(headers["x-app"], "yes")
        self.assertEqual(headers["accept-ranges"], "bytes")
        self.assertRegex(headers["etag"], r'^"[0-9a-f]+-[0-9a-f]+"$')
        self.assertTrue(headers["last-modified"].endswith(" GMT"))
        self.assertNotIn("x-sendfile", headers)

    def test_x_accel_redirect_is_the_same(self):
        status, _, body = self.fetch("small.bin", accel=1)
        self.assertEqual((status, body), (200, self.small))

    def test_symlink_inside_the_root_is_followed(self):
        self.assertEqual(self.fetch("link-in")[2], self.small)

    def test_not_modified(self):
        _, headers, _ = self.fetch("small.bin")
        status, again, body = self.fetch("small.bin", headers={"If-None-Match": headers["etag"]})
        self.assertEqual((status, body), (304, b""))
        self.assertEqual(again["etag"], headers["etag"])
        status, _, body = self.fetch("small.bin", headers={"If-Modified-Since": headers["last-modified"]})
        self.assertEqual((status, body), (304, b""))
        status, _, body = self.fetch("small.bin", headers={"If-Modified-Since": "Sat, 01 Jan 2000 00:00:00 GMT"})
        self.assertEqual((status, body), (200, self.small))
        status, _, _ = self.fetch("small.bin", headers={"If-None-Match": '"other"',
                                                       "If-Modified-Since": headers["last-modified"]})
        self.assertEqual(status, 200)  # If-None-Match decides when both are there

    def test_single_ranges(self):
        for spec, start, end in (("bytes=10-19", 10, 19), ("bytes=1000-", 1000, 1023), ("bytes=-5", 1019, 1023),
                                 ("bytes=1020-5000", 1020, 1023)):
            status, headers, body = self.fetch("small.bin", headers={"Range": spec})
            self.assertEqual(status, 206, spec)
            self.assertEqual(body, self.small[start:end + 1], spec)
            self.assertEqual(headers["content-range"], "bytes %d-%d/1024" % (start, end), spec)
        status, headers, _ = self.fetch("small.bin", headers={"Range": "bytes=5000-"})
        self.assertEqual(status, 416)
        self.assertEqual(headers["content-range"], "bytes */1024")
        status, _, body = self.fetch("small.bin", headers={"Range": "bytes=0-1,5-6"})
        self.assertEqual((status, body), (200, self.small))  # several ranges: the whole file
        status, _, body = self.fetch("small.bin", headers={"Range": "bytes=0-1", "If-Range": '"stale"'})
        self.assertEqual((status, body), (200, self.small))

    def test_post_gets_the_whole_file_never_a_304_or_a_range(self):
        status, _, body = self.fetch("small.bin", method="POST", headers={"If-None-Match": "*", "Range": "bytes=0-1"})
        self.assertEqual((status, body), (200, self.small))

    def test_status_without_body_reads_no_file(self):
        status, headers, body = self.fetch("small.bin", status=204)
        self.assertEqual((status, body), (204, b""))

    def test_head_gets_the_head_only(self):
        status, headers, body = self.fetch("small.bin", method="HEAD")
        self.assertEqual((status, body), (200, b""))
        self.assertEqual(headers["content-length"], "1024")

    def test_other_app_status_sends_the_whole_file_with_it(self):
        status, headers, body = self.fetch("small.bin", status=404, headers={"Range": "bytes=0-1"})
        self.assertEqual((status, body), (404, self.small))
        self.assertNotIn("content-range", headers)

    def test_refused_paths_are_502_and_logged(self):
        for name, why in (("/etc/passwd", "outside every --sendfile-root"),
                          ("link-out", "outside every --sendfile-root (it is %s/secret.txt)" % self.files),
                          ("../secret.txt", "outside every --sendfile-root"),
                          ("fifo", "not a regular file"),
                          ("missing", "No such file or directory"),
                          ("relative/x", "not an absolute path")):
            path = "relative/x" if name == "relative/x" else name
            query = {"path": path} if name == "relative/x" else {}
            status, _, body = (http_request(self.m2.port, "GET", "/sendfile.php?" + urllib.parse.urlencode(query))
                               if query else self.fetch(name))
            self.assertEqual((status, body), (502, b"502 Bad Gateway\n"), name)
            self.assertIn(why, self.bridge.log(), name)

    def test_100mb_file_byte_exact_in_bounded_memory(self):
        path = os.path.join(self.root, "big.bin")
        digest = hashlib.md5()
        with open(path, "wb") as f:
            block = os.urandom(MIB)
            for i in range(100):
                piece = block[i:] + block[:i]
                f.write(piece)
                digest.update(piece)
        try:
            base = vm_hwm_kib(self.stack.pid)
            with socket.create_connection(("127.0.0.1", self.m2.port), timeout=30) as s:
                s.sendall(build_request("GET", "/sendfile.php?" + urllib.parse.urlencode({"path": path})))
                reader = SocketReader(s)
                status, headers, _ = read_response(s, head_request=True, reader=reader)
                self.assertEqual(status, 200)
                self.assertEqual(int(headers["content-length"]), 100 * MIB)
                got = hashlib.md5(reader.buf)
                size = len(reader.buf)
                while size < 100 * MIB:
                    data = s.recv(4 * MIB)
                    if not data:
                        break
                    size += len(data)
                    got.update(data)
            self.assertEqual(size, 100 * MIB)
            self.assertEqual(got.hexdigest(), digest.hexdigest())
            growth = (vm_hwm_kib(self.stack.pid) - base) / 1024
            self.assertLess(growth, 32, "m2bridge's peak memory grew by %.0f MiB" % growth)
        finally:
            os.unlink(path)


class SendfileWithoutRoot(unittest.TestCase):
    def test_no_root_configured_is_502_with_the_reason(self):
        with Stack() as st:
            status, _, body = http_request(st.port, "GET", "/sendfile.php?path=/etc/hostname")
            self.assertEqual((status, body), (502, b"502 Bad Gateway\n"))
            self.assertIn("X-Sendfile /etc/hostname: no --sendfile-root is configured", st.bridge.log())


if __name__ == "__main__":
    unittest.main()
