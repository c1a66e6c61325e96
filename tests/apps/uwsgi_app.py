"""An application for the uwsgi engine tests (tests/test_uwsgi.py).

Routes:
  /upload           reads wsgi.input to the end; JSON: size, sha256, CONTENT_LENGTH and
                    CONTENT_TYPE as the application saw them.
  /download?N       N bytes of ``pattern(N)``; ``/download-stream?N`` the same from a
                    generator (no Content-Length), in 64 KiB pieces.
  /slow             a generator: ``first\\n``, a 1 s pause, ``second\\n``.
  /raise            a generator: ``partial\\n``, then an exception (the body is aborted).
  anything else     the environ as JSON (environ_app.describe).
"""

import hashlib
import json
import time

from environ_app import describe

PIECE = 64 * 1024


def pattern(size):
    """``size`` bytes that are not all alike, the same in the tests."""
    block = bytes(range(256)) * (PIECE // 256)
    whole, rest = divmod(size, PIECE)
    return block * whole + block[:rest]


def _json(start_response, data):
    body = json.dumps(data).encode()
    start_response("200 OK", [("Content-Type", "application/json")])
    return [body]


def _upload(environ, start_response):
    stream, digest, size = environ["wsgi.input"], hashlib.sha256(), 0
    while True:
        piece = stream.read(PIECE)
        if not piece:
            break
        digest.update(piece)
        size += len(piece)
    return _json(
        start_response,
        {
            "size": size,
            "sha256": digest.hexdigest(),
            "CONTENT_LENGTH": environ.get("CONTENT_LENGTH"),
            "CONTENT_TYPE": environ.get("CONTENT_TYPE"),
        },
    )


def _pieces(data):
    for i in range(0, len(data), PIECE):
        yield data[i : i + PIECE]


def _slow():
    yield b"first\n"
    time.sleep(1.0)
    yield b"second\n"


def _raise():
    yield b"partial\n"
    raise RuntimeError("the body breaks off here (expected by the test)")


def app(environ, start_response):
    path, query = environ["PATH_INFO"], environ.get("QUERY_STRING", "")
    if path == "/upload":
        return _upload(environ, start_response)
    if path in ("/download", "/download-stream"):
        data = pattern(int(query))
        headers = [("Content-Type", "application/octet-stream")]
        if path == "/download":
            headers.append(("Content-Length", str(len(data))))
            start_response("200 OK", headers)
            return [data]
        start_response("200 OK", headers)
        return _pieces(data)
    if path in ("/slow", "/raise"):
        start_response("200 OK", [("Content-Type", "text/plain")])
        return _slow() if path == "/slow" else _raise()
    return _json(start_response, describe(environ))
