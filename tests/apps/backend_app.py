"""A backend for the ``--forward`` tests, and the front's own application.

``app`` answers by the last segment of PATH_INFO (any prefix before it):

- ``.../upload``: reads the body, answers JSON ``{"name", "length", "sha256"}``.
- ``.../big?size=N``: N bytes of a fixed pattern (``pattern(N)``), as a generator
  with a Content-Length.
- ``.../sleep?s=S``: sleeps S seconds, then answers like any other path.
- ``.../chunks?n=N&ms=M``: N chunks ``chunk-i\\n`` M milliseconds apart, no
  Content-Length (the server sends them chunked).
- ``.../cut``: declares 1 MB, sends 100 kB, then fails (the server closes).
- anything else: JSON of who answered (``BACKEND_NAME``) and what it saw: method,
  path, query, Host, X-Forwarded-*, REMOTE_ADDR, and the request's X-Drop field.

``front`` is the front server's own application: ``front <PATH_INFO>``.
"""

import hashlib
import json
import os
import time
from urllib.parse import parse_qs

NAME = os.environ.get("BACKEND_NAME", "backend")


def pattern(size):
    """``size`` bytes of a fixed, non-repeating-per-block pattern."""
    block = bytes(range(256)) * 256  # 64 KiB
    whole, rest = divmod(size, len(block))
    return block * whole + block[:rest]


def _json(start_response, data, status="200 OK"):
    body = json.dumps(data).encode()
    start_response(status, [("Content-Type", "application/json"), ("X-Backend", NAME)])
    return [body]


def _big(size):
    block = bytes(range(256)) * 256
    left = size
    while left:
        piece = block[: min(left, len(block))]
        left -= len(piece)
        yield piece


def _chunks(n, ms):
    for i in range(n):
        if i:
            time.sleep(ms / 1000)
        yield f"chunk-{i}\n".encode()


def _cut():
    yield b"x" * 100_000
    raise RuntimeError("backend dies mid-body (on purpose)")


def _who(environ):
    keys = {
        "host": "HTTP_HOST",
        "xff": "HTTP_X_FORWARDED_FOR",
        "xfp": "HTTP_X_FORWARDED_PROTO",
        "xfh": "HTTP_X_FORWARDED_HOST",
        "remote_addr": "REMOTE_ADDR",
        "drop": "HTTP_X_DROP",
        "te": "HTTP_TE",
    }
    seen = {key: environ.get(name) for key, name in keys.items()}
    seen.update(
        name=NAME,
        method=environ["REQUEST_METHOD"],
        path=environ.get("SCRIPT_NAME", "") + environ["PATH_INFO"],
        query=environ.get("QUERY_STRING", ""),
        body=environ["wsgi.input"].read().decode("latin-1"),
    )
    return seen


def app(environ, start_response):
    last = environ["PATH_INFO"].rsplit("/", 1)[-1]
    query = parse_qs(environ.get("QUERY_STRING", ""))
    if last == "upload":
        digest, length = hashlib.sha256(), 0
        while chunk := environ["wsgi.input"].read(1 << 16):
            digest.update(chunk)
            length += len(chunk)
        return _json(start_response, {"name": NAME, "length": length, "sha256": digest.hexdigest()})
    if last == "big":
        size = int(query["size"][0])
        start_response(
            "200 OK",
            [
                ("Content-Type", "application/octet-stream"),
                ("Content-Length", str(size)),
                ("X-Backend", NAME),
            ],
        )
        return _big(size)
    if last == "chunks":
        start_response("200 OK", [("Content-Type", "text/plain")])
        return _chunks(int(query["n"][0]), int(query["ms"][0]))
    if last == "cut":
        start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", "1000000")])
        return _cut()
    if last == "sleep":
        time.sleep(float(query["s"][0]))
    return _json(start_response, _who(environ))


def front(environ, start_response):
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [f"front {environ['PATH_INFO']}".encode()]
