"""Applications for the FastCGI tests (tests/test_fastcgi.py).

``app`` (plain WSGI) by path:
- ``/stream?n=N``: a streamed body of N chunks (default a lot), one every 20 ms; the
  iterable's ``close()`` appends a line to the file named by FCGI_CLOSE_LOG.
- ``/download?size=N``: N deterministic bytes (sha256 known to the test).
- ``/upload``: the sha256 and length of the request body.
- ``/cut``: declares 100 bytes and yields 5 (the body cannot be completed).
- ``/slow?ms=N``: sleeps N ms before it answers.
- anything else: the environ as JSON (environ_app), with the body's sha256 and length.

``flask_app``: a Flask application with ``/hello/<name>``.
"""

import hashlib
import json
import os
import time
from urllib.parse import parse_qs

from environ_app import describe
from flask import Flask, request

CHUNK = bytes(range(256)) * 256  # 64 KiB


def pattern(size: int) -> bytes:
    """``size`` bytes of a fixed pattern."""
    return (CHUNK * (size // len(CHUNK) + 1))[:size]


class Stream:
    """A streamed body whose close() is recorded."""

    def __init__(self, n: int, path: str):
        self.n = n
        self.path = path

    def __iter__(self):
        for i in range(self.n):
            time.sleep(0.02)
            yield f"chunk {i}\n".encode()

    def close(self):
        with open(self.path, "a") as f:
            f.write("closed\n")


def app(environ, start_response):
    path = environ["PATH_INFO"]
    query = parse_qs(environ.get("QUERY_STRING", ""))
    if path == "/stream":
        n = int(query.get("n", ["500"])[0])
        start_response("200 OK", [("Content-Type", "text/plain")])
        return Stream(n, os.environ["FCGI_CLOSE_LOG"])
    if path == "/download":
        size = int(query["size"][0])
        start_response("200 OK", [("Content-Type", "application/octet-stream")])
        return [pattern(size)]
    if path == "/slow":
        time.sleep(int(query["ms"][0]) / 1000)
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [b"slept"]
    if path == "/cut":
        start_response("200 OK", [("Content-Length", "100")])
        return iter([b"short"])
    body = environ["wsgi.input"].read()
    data = describe(environ)
    data["_body_sha256"] = hashlib.sha256(body).hexdigest()
    data["_body_len"] = len(body)
    out = json.dumps(data).encode()
    start_response("200 OK", [("Content-Type", "application/json")])
    return [out]


flask_app = Flask(__name__)


@flask_app.get("/hello/<name>")
def hello(name):
    return {"hello": name, "script_name": request.script_root, "path": request.path}
