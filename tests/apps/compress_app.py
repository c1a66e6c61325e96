"""Responses for the --compress tests (tests/test_compress.py), one per path.

``/text`` (``?size=N`` bytes, default 4096), ``/json``, ``/js``, ``/xml``, ``/svg``,
``/png``: a body of that type. ``/sized``: a declared Content-Length. ``/encoded``: the
application's own gzip. ``/empty`` (204), ``/not-modified`` (304), ``/partial`` (206),
``/no-transform``, ``/vary`` (``Vary: Cookie``). ``/stream?gate=PATH``: a generator that
yields a first chunk, then waits (up to 10 s) for the file PATH before the second.
``/broken``: a generator that fails after its first chunk. ``flask_app``: Flask's
``jsonify``.
"""

import gzip
import os
import time
from urllib.parse import parse_qs

from flask import Flask, jsonify

LINE = b"ferrowsgi compresses what the application says, line after line.\n"


def text(size: int) -> bytes:
    """``size`` bytes of repetitive text."""
    return (LINE * (size // len(LINE) + 1))[:size]


TYPES = {
    "/text": "text/plain; charset=utf-8",
    "/json": "application/json",
    "/js": "application/javascript",
    "/xml": "application/xml",
    "/svg": "image/svg+xml",
    "/png": "image/png",
}

CHUNK_ONE = b"chunk one: " + text(3000)
CHUNK_TWO = b"chunk two: " + text(3000)


def app(environ, start_response):
    path = environ["PATH_INFO"]
    query = parse_qs(environ.get("QUERY_STRING", ""))
    size = int(query.get("size", ["4096"])[0])
    if path in TYPES:
        start_response("200 OK", [("Content-Type", TYPES[path])])
        return [text(size)]
    special = SPECIAL.get(path)
    if special is None:
        start_response("404 Not Found", [("Content-Type", "text/plain")])
        return [b"no such path\n"]
    return special(environ, start_response, query, size)


def sized(environ, start_response, query, size):
    body = text(size)
    start_response("200 OK", [("Content-Type", "text/html"), ("Content-Length", str(len(body)))])
    return [body]


def encoded(environ, start_response, query, size):
    body = gzip.compress(text(size))
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Encoding", "gzip")])
    return [body]


def empty(environ, start_response, query, size):
    start_response("204 No Content", [("Content-Type", "text/plain")])
    return []


def not_modified(environ, start_response, query, size):
    start_response("304 Not Modified", [("Content-Type", "text/plain"), ("ETag", '"v1"')])
    return []


def partial(environ, start_response, query, size):
    body = text(size)
    start_response(
        "206 Partial Content",
        [("Content-Type", "text/plain"), ("Content-Range", f"bytes 0-{size - 1}/{size * 2}")],
    )
    return [body]


def no_transform(environ, start_response, query, size):
    headers = [("Content-Type", "text/plain"), ("Cache-Control", "public, no-transform")]
    start_response("200 OK", headers)
    return [text(size)]


def vary(environ, start_response, query, size):
    start_response("200 OK", [("Content-Type", "text/html"), ("Vary", "Cookie")])
    return [text(size)]


def stream(environ, start_response, query, size):
    gate = query["gate"][0]
    start_response("200 OK", [("Content-Type", "text/plain")])

    def body():
        yield CHUNK_ONE
        deadline = time.monotonic() + 10
        while not os.path.exists(gate) and time.monotonic() < deadline:
            time.sleep(0.02)
        yield CHUNK_TWO

    return body()


def broken(environ, start_response, query, size):
    start_response("200 OK", [("Content-Type", "text/plain")])

    def body():
        yield CHUNK_ONE
        raise RuntimeError("the application fails mid-body")

    return body()


SPECIAL = {
    "/sized": sized,
    "/encoded": encoded,
    "/empty": empty,
    "/not-modified": not_modified,
    "/partial": partial,
    "/no-transform": no_transform,
    "/vary": vary,
    "/stream": stream,
    "/broken": broken,
}

flask_app = Flask(__name__)


@flask_app.route("/items")
def items():
    return jsonify(items=[{"id": i, "name": f"item {i}", "tags": ["a", "b"]} for i in range(200)])
