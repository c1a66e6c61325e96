"""For tests/test_metrics.py: / answers "hello", /missing 404, /boom raises, /echo
returns the request body, /slow?ms=N sleeps first."""

import time


def app(environ, start_response):
    path = environ["PATH_INFO"]
    if path == "/boom":
        raise RuntimeError("boom, as asked")
    if path == "/missing":
        start_response("404 Not Found", [("Content-Type", "text/plain")])
        return [b"not here\n"]
    if path == "/echo":
        length = int(environ.get("CONTENT_LENGTH") or 0)
        body = environ["wsgi.input"].read(length)
        start_response("200 OK", [("Content-Type", "application/octet-stream")])
        return [body]
    if path == "/slow":
        time.sleep(int(environ["QUERY_STRING"].partition("=")[2] or 100) / 1000)
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [b"hello\n"]
