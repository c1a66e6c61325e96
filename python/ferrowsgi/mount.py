"""Several WSGI applications in one, by URL prefix: :func:`mount`.

Rules (PEP 3333 "environ Variables", RFC 3875 §4.1.5 and §4.1.13), the same
ones ferrowsgi's server applies in Rust when it is given a :class:`Mount`
(``--mount PREFIX=APP``), so both behave alike:

* A prefix takes whole path segments: ``/api`` takes ``/api`` and ``/api/x``,
  never ``/apix``. The longest matching prefix wins; ``/`` takes whatever no
  other prefix does.
* The prefix moves from the end of PATH_INFO to the end of SCRIPT_NAME (after
  any SCRIPT_NAME already set); a request for exactly ``/api`` gets PATH_INFO
  ``''``.
* No prefix matches (and nothing is mounted at ``/``): ``404 Not Found``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping

from ._ferrowsgi import under_prefix

TYPE_CHECKING = False  # typing is not imported at run time
if TYPE_CHECKING:
    from typing import Any

__all__ = ["Mount", "mount"]

_NOT_FOUND = b"404 Not Found\n"


class Mount:
    """A WSGI application routing each request to the application mounted at the
    longest matching prefix (see the module docstring).

    ``routes`` is a tuple of ``(prefix, application)``, longest prefix first.
    """

    __slots__ = ("routes",)

    def __init__(self, apps: Mapping[str, Callable[..., Any]]) -> None:
        routes: dict[str, Callable[..., Any]] = {}
        for raw, app in apps.items():
            prefix = normalize_prefix(raw)
            if prefix in routes:
                raise ValueError(f"two applications mounted at {prefix!r}")
            if not callable(app):
                raise TypeError(f"the application mounted at {prefix!r} is not callable")
            routes[prefix] = app
        if not routes:
            raise ValueError("mount() needs at least one application")
        self.routes = tuple(sorted(routes.items(), key=lambda r: len(r[0]), reverse=True))

    def __call__(
        self, environ: dict[str, Any], start_response: Callable[..., Any]
    ) -> Iterable[bytes]:
        path = environ.get("PATH_INFO", "")
        for prefix, app in self.routes:
            rest = under_prefix(prefix, path)
            if rest is None:
                continue
            if prefix != "/":
                environ["SCRIPT_NAME"] = environ.get("SCRIPT_NAME", "") + prefix
                environ["PATH_INFO"] = rest
            return app(environ, start_response)
        start_response(
            "404 Not Found",
            [("Content-Type", "text/plain; charset=utf-8"), ("Content-Length", "14")],
        )
        return [_NOT_FOUND]

    def __repr__(self) -> str:
        return f"Mount({', '.join(prefix for prefix, _ in self.routes)})"


def mount(apps: Mapping[str, Callable[..., Any]]) -> Mount:
    """One WSGI application made of ``apps``: a mapping of URL prefix (``"/"``,
    ``"/api"``; a trailing slash is ignored) to WSGI application. Any WSGI server can
    run the result; ferrowsgi routes its requests in Rust, before the GIL.

    Raises ``ValueError`` for a prefix that does not start with ``/``, two
    applications at one prefix, or no application; ``TypeError`` for one that is not
    callable.
    """
    return Mount(apps)


def normalize_prefix(raw: str) -> str:
    """``raw`` as a mount prefix: starts with ``/``, no trailing slash (but ``/``).
    Raises ``ValueError`` otherwise."""
    if not isinstance(raw, str) or not raw.startswith("/"):
        raise ValueError(f"a mount prefix must start with '/', got {raw!r}")
    return raw.rstrip("/") or "/"
