"""The WSGI applications the side-by-side benchmark serves (benches/run.py).

Every server loads the same callables from here, so they all do the same work:

* ``hello``: a 13-byte ``text/plain`` body, as a one-element list.
* ``flask``: in ``benches/flask_app.py`` (``benches.flask_app:app``), so the
  servers running the other workloads never import Flask and their RSS after
  ``hello`` is not inflated by it.
* ``big``: a 1 MiB body as 16 chunks of 64 KiB from a generator, with its
  Content-Length, so no server has to fall back to chunked framing.
* ``post``: reads the whole request body from ``wsgi.input`` and answers its length.
* ``io``: sleeps 10 ms (a database query, say) and answers like ``hello``.
* ``json_body``: a 100 KiB JSON document (``JSON_BODY``) as a one-element list;
  ``json_gzip``: the same wrapped in ``gzip_middleware``, a WSGI gzip middleware
  in Python (the ``gzip`` workload: ferrowsgi ``--compress`` runs ``json_body``,
  every other server ``json_gzip``).
* ``file_wrapper``: the 1 MiB file of the ``static`` workload (:data:`STATIC_FILE`)
  through ``wsgi.file_wrapper`` with its default 8 KiB blocks, as Flask's
  ``send_file`` does; ferrowsgi's ``--static`` and nginx serve the same file.
"""

from __future__ import annotations

import gzip
import json
import tempfile
import time
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any, Callable

HELLO = b"Hello, World!"
CHUNK = b"x" * (64 * 1024)
CHUNKS = 16
BIG_SIZE = len(CHUNK) * CHUNKS
IO_SECONDS = 0.010
JSON_SIZE = 100 * 1024
# Level 6, as ferrowsgi --compress (flate2's default); gzip.compress's own is 9.
GZIP_LEVEL = 6


def _json_body() -> bytes:
    """Records of an API answer, padded to exactly ``JSON_SIZE`` bytes."""
    records = []
    n = 0
    while len(json.dumps(records)) < JSON_SIZE - 200:
        records.append(
            {
                "id": n,
                "name": f"customer {n}",
                "email": f"c{n}@example.com",
                "active": n % 3 != 0,
                "balance": round(n * 13.37, 2),
                "tags": ["retail", "eu"] if n % 2 else ["wholesale"],
            }
        )
        n += 1
    text = json.dumps({"records": records, "pad": ""})
    return json.dumps({"records": records, "pad": " " * (JSON_SIZE - len(text))}).encode()


JSON_BODY = _json_body()

STATIC_SIZE = 1 << 20
# nginx's `root` and ferrowsgi's `--static /static=` directory (STATIC_ROOT/static):
# under the system's temporary directory, which nginx's workers (user nobody) can read.
STATIC_ROOT = Path(tempfile.gettempdir()) / "ferrowsgi-bench-static"
STATIC_FILE = STATIC_ROOT / "static" / "file.bin"
STATIC_PATH = "/static/file.bin"

StartResponse = Callable[..., Any]


def hello(environ: dict, start_response: StartResponse) -> list[bytes]:
    """Answer ``Hello, World!`` (13 bytes)."""
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(HELLO)))])
    return [HELLO]


def _chunks() -> Iterator[bytes]:
    for _ in range(CHUNKS):
        yield CHUNK


def big(environ: dict, start_response: StartResponse) -> Iterator[bytes]:
    """Answer 1 MiB as 16 × 64 KiB chunks from a generator."""
    headers = [("Content-Type", "application/octet-stream"), ("Content-Length", str(BIG_SIZE))]
    start_response("200 OK", headers)
    return _chunks()


def post(environ: dict, start_response: StartResponse) -> list[bytes]:
    """Read the request body whole from ``wsgi.input``; answer its length."""
    length = int(environ.get("CONTENT_LENGTH") or 0)
    data = environ["wsgi.input"].read(length)
    body = str(len(data)).encode()
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
    return [body]


def io(environ: dict, start_response: StartResponse) -> list[bytes]:
    """Wait 10 ms (an I/O-bound view), then answer like ``hello``."""
    time.sleep(IO_SECONDS)
    return hello(environ, start_response)


def json_body(environ: dict, start_response: StartResponse) -> list[bytes]:
    """Answer ``JSON_BODY`` (100 KiB of ``application/json``) with its Content-Length."""
    headers = [("Content-Type", "application/json"), ("Content-Length", str(len(JSON_BODY)))]
    start_response("200 OK", headers)
    return [JSON_BODY]


def gzip_middleware(app: Callable) -> Callable:
    """``app`` with its bodies gzipped when the client accepts gzip: the body is
    collected, compressed with ``gzip.compress`` and sent with its new length (what
    the usual WSGI gzip middlewares do)."""

    def wrapped(environ: dict, start_response: StartResponse) -> Iterable[bytes]:
        if "gzip" not in environ.get("HTTP_ACCEPT_ENCODING", ""):
            return app(environ, start_response)
        head: list = []
        result = app(environ, lambda status, headers, exc_info=None: head.extend([status, headers]))
        try:
            data = b"".join(result)
        finally:
            if hasattr(result, "close"):
                result.close()
        body = gzip.compress(data, GZIP_LEVEL)
        status, headers = head
        headers = [(k, v) for k, v in headers if k.lower() != "content-length"]
        headers += [
            ("Content-Encoding", "gzip"),
            ("Content-Length", str(len(body))),
            ("Vary", "Accept-Encoding"),
        ]
        start_response(status, headers)
        return [body]

    return wrapped


json_gzip = gzip_middleware(json_body)


def write_static_file() -> Path:
    """Write :data:`STATIC_FILE` (1 MiB, the same bytes every time), readable by all."""
    STATIC_FILE.parent.mkdir(parents=True, exist_ok=True)
    for directory in (STATIC_ROOT, STATIC_FILE.parent):
        directory.chmod(0o755)
    data = bytes(range(256)) * (STATIC_SIZE // 256)
    if not STATIC_FILE.exists() or STATIC_FILE.read_bytes() != data:
        STATIC_FILE.write_bytes(data)
    STATIC_FILE.chmod(0o644)
    return STATIC_FILE


def file_wrapper(environ: dict, start_response: StartResponse) -> Any:
    """Answer :data:`STATIC_FILE` through ``wsgi.file_wrapper`` (8 KiB blocks)."""
    f = open(STATIC_FILE, "rb")  # closed by the wrapper's close()
    headers = [
        ("Content-Type", "application/octet-stream"),
        ("Content-Length", str(STATIC_SIZE)),
    ]
    start_response("200 OK", headers)
    return environ["wsgi.file_wrapper"](f)
