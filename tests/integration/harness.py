"""Real peers for integration tests: Debian's mongrel2, php-fpm, the libfcgi
example and m2bridge itself, each on loopback, on free ports, in a temp dir,
stopped at the end. Nothing here is mocked; fakes live in fake_backends.py."""

import hashlib
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import uuid

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BUILD = os.environ.get("M2B_BUILD_DIR", os.path.join(ROOT, "build"))
M2BRIDGE = os.path.join(BUILD, "m2bridge")
FCGI_HELLO = os.path.join(BUILD, "examples", "fcgi-hello")
PHP_FPM = shutil.which("php-fpm8.2") or "/usr/sbin/php-fpm8.2"


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def free_ports(n):
    """n distinct free ports (free_port() alone may hand out the same port twice)."""
    ports = set()
    while len(ports) < n:
        ports.add(free_port())
    return list(ports)


def listening_ports(pid):
    """The TCP ports that process `pid` itself listens on (not just: that someone listens on)."""
    inodes = set()
    try:
        for fd in os.listdir("/proc/%d/fd" % pid):
            try:
                target = os.readlink("/proc/%d/fd/%s" % (pid, fd))
            except OSError:
                continue
            if target.startswith("socket:["):
                inodes.add(target[8:-1])
    except OSError:
        return set()
    ports = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with open(table) as f:
            for line in f.readlines()[1:]:
                fields = line.split()
                if fields[3] == "0A" and fields[9] in inodes:  # 0A: LISTEN
                    ports.add(int(fields[1].rsplit(":", 1)[1], 16))
    return ports


def wait_until(predicate, timeout=10.0, interval=0.02, what="condition"):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if predicate():
            return True
        time.sleep(interval)
    raise TimeoutError("timed out waiting for " + what)


def port_open(port):
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.2):
            return True
    except OSError:
        return False


class Process:
    """A child process with its output in a file, killed with its group."""

    def __init__(self, argv, log_path, cwd=None, env=None):
        self.log_path = log_path
        self.log = open(log_path, "ab")
        self.proc = subprocess.Popen(argv, stdout=self.log, stderr=subprocess.STDOUT, cwd=cwd, env=env,
                                     start_new_session=True)

    def output(self):
        with open(self.log_path, "rb") as f:
            return f.read().decode("utf-8", "replace")

    def alive(self):
        return self.proc.poll() is None

    def stop(self, sig=signal.SIGTERM, timeout=10):
        if self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, sig)
            except ProcessLookupError:
                pass
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        self.log.close()
        return self.proc.returncode


class Mongrel2:
    """Debian's mongrel2 1.12 with one Handler. `routes` maps a pattern to
    'bridge' (the handler) or to a Dir spec."""

    def __init__(self, workdir, routes=None, protocol="json", settings=None, raw_payload=False, handlers=("bridge",)):
        self.dir = os.path.join(workdir, "m2")
        self.handler_names = list(handlers)
        for d in ("run", "logs", "tmp"):
            os.makedirs(os.path.join(self.dir, d), exist_ok=True)
        # A port free a moment ago can be taken before Mongrel2 binds it (an outgoing
        # connection's local port). Mongrel2 then serves HTTP but its handler task dies and
        # every request gets its own 404, so check it holds all three and else start again.
        for attempt in range(5):
            self._start(workdir, routes, protocol, settings, raw_payload)
            ports = {self.port} | {int(spec.rsplit(":", 1)[1]) for pair in self.specs.values() for spec in pair}
            try:
                wait_until(lambda: ports <= listening_ports(self.process.proc.pid) or not self.process.alive(),
                           timeout=10, what="mongrel2 to listen on %s" % sorted(ports))
            except TimeoutError:
                pass
            if self.process.alive() and ports <= listening_ports(self.process.proc.pid):
                return
            self.process.stop(signal.SIGKILL)
            try:
                os.unlink(os.path.join(self.dir, "run", "mongrel2.pid"))
            except FileNotFoundError:
                pass
        raise RuntimeError("mongrel2 did not get its ports: " + open(self.process.log_path).read()[-2000:])

    def _start(self, workdir, routes, protocol, settings, raw_payload):
        ports = free_ports(1 + 2 * len(self.handler_names))
        self.port, self.send_port, self.recv_port = ports[:3]
        # Each handler's (send_spec, recv_spec); the first one's are also self.send_spec/recv_spec.
        self.specs = {name: ("tcp://127.0.0.1:%d" % ports[1 + 2 * i], "tcp://127.0.0.1:%d" % ports[2 + 2 * i])
                      for i, name in enumerate(self.handler_names)}
        self.send_spec, self.recv_spec = self.specs[self.handler_names[0]]
        self.upload_store = os.path.join(self.dir, "tmp", "upload.XXXXXX")
        self.uuid = str(uuid.uuid4())
        routes = routes or {"/": "bridge"}
        merged = {"server.daemonize": "0", "upload.temp_store": self.upload_store,
                  "limits.min_ping": "0", "limits.min_read_rate": "0", "limits.min_write_rate": "0"}
        merged.update(settings or {})
        route_text = ", ".join("'%s': %s" % (p, h) for p, h in routes.items())
        settings_text = ", ".join("'%s': %s" % (k, v if v.isdigit() else "'%s'" % v) for k, v in merged.items())
        handler_text = "".join(f"""
{name} = Handler(send_spec='{send}', send_ident='{uuid.uuid4()}',
                 recv_spec='{recv}', recv_ident='', protocol='{protocol}', raw_payload={int(raw_payload)})"""
                               for name, (send, recv) in self.specs.items())
        conf = f"""{handler_text}
main = Server(uuid='{self.uuid}', name='main', bind_addr='127.0.0.1', port={self.port},
              access_log='logs/access.log', error_log='logs/error.log', pid_file='run/mongrel2.pid',
              control_port='ipc://run/control', default_host='localhost',
              hosts=[Host(name='localhost', routes={{{route_text}}})])
settings = {{{settings_text}}}
servers = [main]
"""
        with open(os.path.join(self.dir, "mongrel2.conf"), "w") as f:
            f.write(conf)
        try:
            os.unlink(os.path.join(self.dir, "config.sqlite"))
        except FileNotFoundError:
            pass
        env = dict(os.environ, LOGNAME="root")
        subprocess.run(["m2sh", "load", "-config", "mongrel2.conf", "-db", "config.sqlite"], cwd=self.dir,
                       check=True, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self.process = Process(["mongrel2", "config.sqlite", self.uuid], os.path.join(self.dir, "mongrel2.out"),
                               cwd=self.dir, env=env)

    def uploads_left(self):
        return [n for n in os.listdir(os.path.join(self.dir, "tmp")) if n.startswith("upload.")]

    def stop(self):
        self.process.stop(signal.SIGINT)


class PhpFpm:
    def __init__(self, workdir, children=2, extra_pool=""):
        self.dir = os.path.join(workdir, "fpm")
        os.makedirs(self.dir, exist_ok=True)
        self.socket = os.path.join(self.dir, "php.sock")
        conf = f"""
[global]
pid = {self.dir}/php-fpm.pid
error_log = {self.dir}/error.log
daemonize = no

[www]
user = root
group = root
listen = {self.socket}
listen.mode = 0666
pm = static
pm.max_children = {children}
catch_workers_output = yes
clear_env = yes
{extra_pool}
"""
        path = os.path.join(self.dir, "php-fpm.conf")
        with open(path, "w") as f:
            f.write(conf)
        self.process = Process([PHP_FPM, "-R", "-n", "-y", path, "-F"], os.path.join(self.dir, "out.log"))
        wait_until(lambda: os.path.exists(self.socket), what="php-fpm socket")

    @property
    def address(self):
        return "unix:" + self.socket

    def stop(self):
        self.process.stop(signal.SIGQUIT)


class FcgiHello:
    def __init__(self, workdir):
        self.socket = os.path.join(workdir, "hello.sock")
        self.process = Process([FCGI_HELLO, "unix:" + self.socket], os.path.join(workdir, "fcgi-hello.log"))
        wait_until(lambda: os.path.exists(self.socket), what="fcgi-hello socket")

    @property
    def address(self):
        return "unix:" + self.socket

    def stop(self):
        self.process.stop(signal.SIGKILL)


UWSGI = shutil.which("uwsgi-core") or "/usr/bin/uwsgi-core"
WSGI_APP = os.path.join(ROOT, "examples", "wsgi", "app.py")


class UwsgiApp:
    """Debian's uWSGI serving examples/wsgi/app.py on its three gateway sockets at once:
    `address(protocol)` for "scgi", "uwsgi" and "fastcgi"."""

    def __init__(self, workdir, processes=2, app=WSGI_APP):
        self.dir = os.path.join(workdir, "uwsgi")
        os.makedirs(self.dir, exist_ok=True)
        self.sockets = {p: os.path.join(self.dir, p + ".sock") for p in ("scgi", "uwsgi", "fastcgi")}
        argv = [UWSGI, "--plugin", "python3", "--master", "--processes", str(processes), "--die-on-term",
                "--buffer-size", "65535", "--wsgi-file", app, "--env",
                "WSGI_WAITERS=" + os.path.join(self.dir, "waiters")]
        for protocol, path in self.sockets.items():
            argv += ["--%s-socket" % protocol, path]
        self.process = Process(argv, os.path.join(self.dir, "out.log"))
        wait_until(lambda: all(os.path.exists(p) for p in self.sockets.values()) or not self.process.alive(),
                   what="uwsgi sockets")
        if not self.process.alive():
            raise RuntimeError("uwsgi exited: " + self.process.output()[-2000:])

    def address(self, protocol):
        return "unix:" + self.sockets[protocol]

    def stop(self):
        self.process.stop(signal.SIGTERM)


class Bridge:
    """m2bridge itself, connected to a Mongrel2 (or to a fake front with the same two endpoints)."""

    def __init__(self, workdir, front, backend_address, *args, mode="fastcgi", warmup_path=None, env=None):
        self.log_path = os.path.join(workdir, "m2bridge-%d.log" % free_port())
        argv = [M2BRIDGE, mode, "--send-spec", front.send_spec, "--recv-spec", front.recv_spec]
        if getattr(front, "upload_store", None):
            argv += ["--upload-store", front.upload_store]
        if mode == "cgi" and os.geteuid() == 0 and "--user" not in args:
            argv.append("--allow-root")  # the tests run as root; m2bridge cgi refuses that unless told
        argv += list(args) + ([backend_address] if backend_address is not None else [])
        self.process = Process(argv, self.log_path, env=env)
        wait_until(lambda: "m2bridge" in self.process.output() or not self.process.alive(), what="m2bridge start")
        if not self.process.alive():
            raise RuntimeError("m2bridge exited: " + self.process.output())
        if warmup_path is not None and isinstance(front, Mongrel2):
            # PUB/SUB needs a moment before replies flow (ZeroMQ's slow joiner).
            def answered():
                try:
                    status, _, _ = http_request(front.port, "GET", warmup_path, timeout=1)
                    return status != 0
                except OSError:
                    return False
            wait_until(answered, what="first answer through mongrel2")

    def log(self):
        return self.process.output()

    def stop(self):
        """Stops m2bridge the way systemd does and insists on a clean exit:
        status 0 and no sanitizer report (the test build runs under ASan/UBSan)."""
        code = self.process.stop(signal.SIGTERM)
        log = self.log()
        for marker in ("AddressSanitizer", "LeakSanitizer", "runtime error:", "UndefinedBehaviorSanitizer"):
            if marker in log:
                raise AssertionError("m2bridge sanitizer report:\n" + log[-4000:])
        if code != 0:
            raise AssertionError("m2bridge exited with %s:\n%s" % (code, log[-2000:]))
        return code


def docroot_with_php(workdir):
    """A copy of the test PHP scripts in the work dir; its canonical path."""
    root = os.path.join(workdir, "www")
    shutil.copytree(os.path.join(os.path.dirname(os.path.abspath(__file__)), "php"), root)
    return os.path.realpath(root)


class Front:
    """Mongrel2's two endpoints with the --upload-store m2bridge is given (None: no option)."""

    def __init__(self, m2, upload_store):
        self.send_spec, self.recv_spec, self.upload_store = m2.send_spec, m2.recv_spec, upload_store


SAME_STORE = object()


class Stack:
    """A temp dir with the test PHP scripts, Mongrel2, php-fpm (or a fake FastCGI backend:
    `fake` is its behaviour) and m2bridge, stopped together. `upload_store`: SAME_STORE
    (Mongrel2's), None (no --upload-store) or f(workdir) -> template. `script` is a front
    controller; `document_root=False` leaves --document-root out."""

    def __init__(self, *bridge_args, children=2, routes=None, settings=None, protocol="json", raw_payload=False,
                 extra_pool="", document_root=True, script=None, fake=None, upload_store=SAME_STORE, env=None,
                 warmup="/status.php"):
        import fake_backends
        self.work = Workdir()
        self.root = docroot_with_php(self.work.path)
        self.m2 = self.fpm = self.fake = self.bridge = None
        try:
            self.m2 = Mongrel2(self.work.path, routes=routes, protocol=protocol, settings=settings,
                               raw_payload=raw_payload)
            args = list(bridge_args)
            if fake is not None:
                self.fake = fake_backends.FakeBackend(os.path.join(self.work.path, "fake.sock"), fake)
                address = self.fake.address
            else:
                self.fpm = PhpFpm(self.work.path, children=children, extra_pool=extra_pool)
                address = self.fpm.address
                if document_root:
                    args = ["--document-root", self.root] + args
            if script:
                args += ["--script-filename", os.path.join(self.root, script)]
            if upload_store is SAME_STORE:
                front = self.m2
            else:
                front = Front(self.m2, upload_store(self.work.path) if callable(upload_store) else upload_store)
            self.bridge = Bridge(self.work.path, front, address, *args, env=env)
            if warmup:
                warm_up(self.m2.port, warmup)
        except BaseException:
            self.stop()
            raise

    @property
    def port(self):
        return self.m2.port

    @property
    def pid(self):
        return self.bridge.process.proc.pid

    def stop(self):
        try:
            if self.bridge:
                self.bridge.stop()  # raises on a sanitizer report or an unclean exit
        finally:
            if self.fake:
                self.fake.stop()
            if self.fpm:
                self.fpm.stop()
            if self.m2:
                self.m2.stop()
            self.work.cleanup()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.stop()


def warm_up(port, path):
    """Waits for a first answer through Mongrel2 (ZeroMQ PUB/SUB needs a moment)."""

    def answered():
        try:
            return http_request(port, "GET", path, timeout=1)[0] != 0
        except (OSError, EOFError):
            return False
    wait_until(answered, timeout=20, what="a first answer through mongrel2")


def http_request(port, method, path, headers=None, body=b"", timeout=10, version="HTTP/1.1"):
    """One request on a fresh connection. Returns (status, headers dict lower-case, body bytes)."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        s.sendall(build_request(method, path, headers, body, version))
        return read_response(s, method == "HEAD")


def build_request(method, path, headers=None, body=b"", version="HTTP/1.1"):
    head = "%s %s %s\r\nHost: localhost\r\n" % (method, path, version)
    hs = dict(headers or {})
    if body or method in ("POST", "PUT"):
        hs.setdefault("Content-Length", str(len(body)))
    # A header given as None is left out (e.g. no Content-Length on a chunked body).
    lines = b"".join(k.encode() + b": " + (v if isinstance(v, bytes) else v.encode()) + b"\r\n"
                     for k, v in hs.items() if v is not None)
    return head.encode() + lines + b"\r\n" + body


class SocketReader:
    def __init__(self, sock):
        self.sock = sock
        self.buf = b""

    def fill(self):
        data = self.sock.recv(65536)
        if not data:
            raise EOFError("connection closed")
        self.buf += data

    def line(self):
        while b"\r\n" not in self.buf:
            self.fill()
        line, self.buf = self.buf.split(b"\r\n", 1)
        return line

    def exactly(self, n):
        while len(self.buf) < n:
            self.fill()
        out, self.buf = self.buf[:n], self.buf[n:]
        return out

    def until_eof(self):
        try:
            while True:
                self.fill()
        except EOFError:
            pass
        out, self.buf = self.buf, b""
        return out


def read_response(sock, head_request=False, reader=None):
    reader = reader or SocketReader(sock)
    status_line = reader.line().decode()
    status = int(status_line.split(" ")[1])
    headers = {}
    raw_headers = []
    while True:
        line = reader.line()
        if not line:
            break
        k, v = line.decode("latin-1").split(":", 1)
        raw_headers.append((k, v.strip()))
        headers[k.lower()] = v.strip()
    headers["__raw__"] = raw_headers
    headers["__status_line__"] = status_line
    if head_request or status in (204, 304) or 100 <= status < 200:
        return status, headers, b""
    if "content-length" in headers:
        return status, headers, reader.exactly(int(headers["content-length"]))
    if headers.get("transfer-encoding") == "chunked":
        body = b""
        while True:
            size = int(reader.line().split(b";")[0], 16)
            if size == 0:
                reader.line()
                return status, headers, body
            body += reader.exactly(size)
            reader.exactly(2)
    return status, headers, reader.until_eof()


def md5(data):
    return hashlib.md5(data).hexdigest()


class Workdir:
    def __init__(self):
        self.path = tempfile.mkdtemp(prefix="m2b-it-")

    def cleanup(self):
        shutil.rmtree(self.path, ignore_errors=True)
