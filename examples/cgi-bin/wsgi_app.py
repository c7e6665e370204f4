#!/usr/bin/python3
"""A WSGI application run as CGI through the standard library's CGIHandler:
the WSGI-like path for Python apps behind Mongrel2, with no ZeroMQ in sight."""
from urllib.parse import parse_qs
from wsgiref.handlers import CGIHandler


def app(environ, start_response):
    method = environ["REQUEST_METHOD"]
    if method == "POST":
        size = int(environ.get("CONTENT_LENGTH") or 0)
        form = parse_qs(environ["wsgi.input"].read(size).decode("utf-8", "replace"))
        name = form.get("name", ["stranger"])[0]
        body = "Hello, %s! (POST via WSGI)\n" % name
    else:
        query = parse_qs(environ.get("QUERY_STRING", ""))
        body = "Hello, %s! (GET via WSGI, path %s)\n" % (query.get("name", ["world"])[0],
                                                          environ.get("PATH_INFO", "/"))
    data = body.encode("utf-8")
    start_response("200 OK", [("Content-Type", "text/plain; charset=utf-8"), ("Content-Length", str(len(data)))])
    return [data]


if __name__ == "__main__":
    CGIHandler().run(app)
