"""WSGI middleware: an application that wraps another one and calls it.

Run it from the repository root:

    ferrowsgi examples.middleware:application

then ``curl -i http://127.0.0.1:8000/`` shows the inner app's answer with two
headers added: ``X-Response-Time`` (microseconds from the call until the inner
application started its response) and ``X-Powered-By: ferrowsgi``.

PEP 3333 rules it keeps: the inner app gets a ``start_response`` that adds the
headers and then calls the server's one with the same ``exc_info`` (so an app
that reports an error after a first ``start_response`` still works), and
returns the server's ``write`` callable; the inner app's iterable is returned
unchanged, so its ``close()`` is still called by the server.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from typing import Any

WSGIApp = Callable[[dict, Callable[..., Any]], Iterable[bytes]]


class TimingMiddleware:
    """Adds ``X-Response-Time`` (integer microseconds) and ``X-Powered-By`` headers."""

    def __init__(self, app: WSGIApp) -> None:
        self.app = app

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Any:
        started = time.perf_counter()

        def timed_start_response(status: str, headers: list, exc_info: Any = None) -> Any:
            micros = int((time.perf_counter() - started) * 1_000_000)
            headers = [*headers, ("X-Response-Time", str(micros)), ("X-Powered-By", "ferrowsgi")]
            return start_response(status, headers, exc_info)

        return self.app(environ, timed_start_response)


def inner_app(environ: dict[str, Any], start_response: Callable[..., Any]) -> list[bytes]:
    """The wrapped application: a plain-text greeting."""
    body = b"Hello from the inner application.\n"
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
    return [body]


application = TimingMiddleware(inner_app)
