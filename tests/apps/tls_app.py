"""For tests/test_tls.py: the environ's TLS facts, a request body's sha256, a large
streamed download.

``/download/N`` streams N bytes (a repeating pattern, 64 KiB per chunk, no
Content-Length); any other path answers JSON: ``wsgi.url_scheme``, ``HTTPS``,
``SSL_CLIENT_S_DN`` (null when absent), ``REMOTE_ADDR``, ``REMOTE_PORT``,
``SERVER_PROTOCOL`` and the body's ``sha256`` and ``length``.
"""

import hashlib
import json

PATTERN = bytes(range(256)) * 256  # 64 KiB


def app(environ, start_response):
    path = environ["PATH_INFO"]
    if path.startswith("/download/"):
        size = int(path.rsplit("/", 1)[1])
        start_response("200 OK", [("Content-Type", "application/octet-stream")])
        return _stream(size)
    body = environ["wsgi.input"].read()
    data = {
        key: environ.get(key)
        for key in (
            "wsgi.url_scheme",
            "HTTPS",
            "SSL_CLIENT_S_DN",
            "REMOTE_ADDR",
            "REMOTE_PORT",
            "SERVER_PROTOCOL",
        )
    }
    data["sha256"] = hashlib.sha256(body).hexdigest()
    data["length"] = len(body)
    out = json.dumps(data).encode()
    start_response("200 OK", [("Content-Type", "application/json")])
    return [out]


def _stream(size):
    while size > 0:
        piece = PATTERN[: min(size, len(PATTERN))]
        size -= len(piece)
        yield piece
