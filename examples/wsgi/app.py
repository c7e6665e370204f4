"""A small WSGI application for uWSGI behind m2bridge (scgi, uwsgi or fastcgi mode).

  GET  /            a form
  POST /greet       the form's answer (HTML)
  GET  /api/info    JSON: the request as the app saw it (tests read what reached the backend)
  POST /api/echo    JSON: size and MD5 of the body
  GET  /api/stream  a body in pieces, with no Content-Length (?n=PIECES&pause=SECONDS after the first)
  GET  /wait        long-poll: the reply is held (an empty X-Mongrel2-Deliver) until /say
  POST /say         delivers its body to every held /wait and answers the speaker too
  anything else     404 from the app

The held connections are listed in a file (WSGI_WAITERS, default in /tmp), so that
several uWSGI processes agree on them.
"""
import fcntl
import hashlib
import html
import json
import os
import time
from urllib.parse import parse_qs

WAITERS = os.environ.get("WSGI_WAITERS", "/tmp/m2bridge-wsgi-waiters")
FORM = b"""<!doctype html><title>m2bridge WSGI example</title>
<form method="post" action="greet"><input name="name" placeholder="your name">
<button>Greet</button></form>
"""


def body_of(environ):
    size = int(environ.get("CONTENT_LENGTH") or 0)
    return environ["wsgi.input"].read(size) if size else b""


def waiters(update=None):
    """The held connection ids; `update(ids)` returns the new list (under a lock)."""
    with open(WAITERS, "a+") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        f.seek(0)
        ids = [i for i in f.read().split() if i.isdigit()]
        if update is not None:
            new = update(ids)
            f.seek(0)
            f.truncate()
            f.write(" ".join(new))
            return ids
        return ids


def reply(start_response, status, body, content_type="text/plain; charset=utf-8", extra=()):
    start_response(status, [("Content-Type", content_type), ("Content-Length", str(len(body)))] + list(extra))
    return [body]


def application(environ, start_response):
    method = environ["REQUEST_METHOD"]
    path = environ.get("PATH_INFO", "/")
    conn = environ.get("X_MONGREL2_CONN_ID", "")
    if path == "/" and method == "GET":
        return reply(start_response, "200 OK", FORM, "text/html; charset=utf-8")
    if path == "/greet" and method == "POST":
        name = parse_qs(body_of(environ).decode("utf-8", "replace")).get("name", ["stranger"])[0]
        return reply(start_response, "200 OK", ("<p>Hello, %s!</p>\n" % html.escape(name)).encode(),
                     "text/html; charset=utf-8")
    if path == "/api/info":
        body = body_of(environ)
        info = {k: v for k, v in environ.items() if isinstance(v, str) and k.isupper()}
        info["body_length"] = len(body)
        return reply(start_response, "200 OK", json.dumps(info, sort_keys=True).encode(), "application/json")
    if path == "/api/echo" and method == "POST":
        body = body_of(environ)
        data = json.dumps({"length": len(body), "md5": hashlib.md5(body).hexdigest()}).encode()
        return reply(start_response, "200 OK", data, "application/json")
    if path == "/api/stream":
        query = parse_qs(environ.get("QUERY_STRING", ""))
        count, pause = int(query.get("n", ["5"])[0]), float(query.get("pause", ["0"])[0])

        def pieces():
            for i in range(count):
                yield ("piece %d\n" % i).encode()
                if i == 0:
                    time.sleep(pause)
        start_response("200 OK", [("Content-Type", "text/plain")])
        return pieces()
    if path == "/wait" and conn:
        waiters(lambda ids: ids + [conn])
        # Sent to nobody: Mongrel2 keeps the connection until /say delivers to it.
        start_response("200 OK", [("X-Mongrel2-Deliver", "")])
        return [b""]
    if path == "/say" and method == "POST":
        message = body_of(environ)
        held = waiters(lambda ids: [])
        ids = " ".join(held + [conn])
        return reply(start_response, "200 OK", message, extra=[("X-Mongrel2-Deliver", ids)])
    return reply(start_response, "404 Not Found", b"no such page\n")
