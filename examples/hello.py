"""Hello, NAME: the smallest useful WSGI application, with no framework.

Run it from the repository root (either form):

    ferrowsgi examples.hello:application
    ferrowsgi examples/hello.py

then open http://127.0.0.1:8000/alice (→ ``<h1>Hello, alice!</h1>``) or
http://127.0.0.1:8000/ (→ ``<h1>Hello, web!</h1>``).

PEP 3333 rules it shows: ``PATH_INFO`` is a native string holding the URL path
bytes decoded as latin-1, so it is re-decoded as UTF-8; anything taken from
the request is HTML-escaped before it goes into HTML; the body is a list of bytes.
"""

from __future__ import annotations

import html
from collections.abc import Callable
from typing import Any


def application(environ: dict[str, Any], start_response: Callable[..., Any]) -> list[bytes]:
    """Greet the name in the path: ``/alice`` → ``<h1>Hello, alice!</h1>`` (text/html)."""
    path = environ.get("PATH_INFO", "").encode("latin-1").decode("utf-8", "replace")
    name = path[1:] or "web"
    body = f"<h1>Hello, {html.escape(name)}!</h1>".encode()
    start_response(
        "200 OK",
        [("Content-Type", "text/html; charset=utf-8"), ("Content-Length", str(len(body)))],
    )
    return [body]
