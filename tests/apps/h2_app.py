"""Routes for the HTTP/2 tests (tests/test_http2.py).

GET /env...              the CGI variables the tests look at, as JSON
POST /sha                {"sha256": hex, "length": N} of the request body
GET /stream?n=N&size=S   a generator: N chunks of S bytes (b"0123456789" repeated)
GET /endless?id=X        chunks of 16 KiB until the client goes away (at most 64 MiB);
                         its close() calls are counted under X
GET /closed?id=X         {"closed": N, "produced": N} for the /endless body X
GET /slow?ms=N           sleeps N ms, then answers "slept N"
GET /short               declares Content-Length: 100 and sends 10 bytes
GET /abort               two chunks, then the generator raises
"""

import hashlib
import json
import threading
import time
from urllib.parse import parse_qs

ENV_KEYS = (
    "REQUEST_METHOD",
    "SERVER_PROTOCOL",
    "HTTP_HOST",
    "HTTP_COOKIE",
    "SERVER_NAME",
    "SERVER_PORT",
    "PATH_INFO",
    "QUERY_STRING",
    "CONTENT_LENGTH",
    "REMOTE_ADDR",
    "wsgi.url_scheme",
)

_lock = threading.Lock()
_counts: dict[str, dict[str, int]] = {}


def _bump(key: str, field: str) -> None:
    with _lock:
        entry = _counts.setdefault(key, {"closed": 0, "produced": 0})
        entry[field] += 1


class Endless:
    """Chunks until the client leaves; counts its close() calls."""

    def __init__(self, key: str) -> None:
        self.key = key

    def __iter__(self):
        chunk = b"x" * 16384
        for _ in range(4096):
            _bump(self.key, "produced")
            yield chunk

    def close(self) -> None:
        _bump(self.key, "closed")


def _json(start_response, data, status="200 OK"):
    body = json.dumps(data).encode()
    start_response(status, [("Content-Type", "application/json")])
    return [body]


def _stream(n: int, size: int):
    chunk = (b"0123456789" * (size // 10 + 1))[:size]
    for _ in range(n):
        yield chunk


def _abort():
    yield b"first "
    yield b"second "
    raise RuntimeError("the generator failed half-way")


def app(environ, start_response):
    path = environ["PATH_INFO"]
    q = {k: v[0] for k, v in parse_qs(environ.get("QUERY_STRING", "")).items()}
    if path.startswith("/env"):
        return _json(start_response, {k: environ.get(k) for k in ENV_KEYS})
    if path == "/sha":
        body = environ["wsgi.input"].read()
        return _json(
            start_response, {"sha256": hashlib.sha256(body).hexdigest(), "length": len(body)}
        )
    if path == "/stream":
        start_response("200 OK", [("Content-Type", "application/octet-stream")])
        return _stream(int(q.get("n", "10")), int(q.get("size", "1000")))
    if path == "/endless":
        start_response("200 OK", [("Content-Type", "application/octet-stream")])
        return Endless(q["id"])
    if path == "/closed":
        with _lock:
            counts = dict(_counts.get(q["id"], {"closed": 0, "produced": 0}))
        return _json(start_response, counts)
    if path == "/slow":
        ms = int(q.get("ms", "1000"))
        time.sleep(ms / 1000)
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [f"slept {ms}".encode()]
    if path == "/short":
        start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", "100")])
        return [b"0123456789"]
    if path == "/abort":
        start_response("200 OK", [("Content-Type", "text/plain")])
        return _abort()
    start_response("404 Not Found", [("Content-Type", "text/plain")])
    return [b"not found\n"]
