"""The built-in demo application, served when ``ferrowsgi`` is run without an APP.

It answers every request, whatever the method and path, with ``200 OK``, a
``text/plain; charset=utf-8`` body that starts with ``Hello world!`` and then
lists the environ it was called with, one ``key = repr(value)`` line per key,
sorted by key. It keeps PEP 3333 exactly: ``start_response`` is called once with
native-string status and headers, and the body is a list of one bytes object.
"""

from __future__ import annotations

from collections.abc import Callable

TYPE_CHECKING = False  # typing is not imported at run time: a worker has no use for it
if TYPE_CHECKING:
    from typing import Any

__all__ = ["application"]


def application(environ: dict[str, Any], start_response: Callable[..., Any]) -> list[bytes]:
    """WSGI application: ``Hello world!`` and a dump of ``environ`` as UTF-8 text."""
    lines = [f"{key} = {environ[key]!r}" for key in sorted(environ)]
    body = ("Hello world!\n\n" + "\n".join(lines) + "\n").encode("utf-8", "backslashreplace")
    start_response(
        "200 OK",
        [("Content-Type", "text/plain; charset=utf-8"), ("Content-Length", str(len(body)))],
    )
    return [body]
