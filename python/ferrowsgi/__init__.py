"""ferrowsgi: a production WSGI server (PEP 3333) with a Rust core.

The Python API: :data:`__version__`, :func:`serve` (blocks and serves) and
:func:`make_server` (a drop-in for ``wsgiref.simple_server.make_server``).

Rules this module keeps:

* Options are checked by :mod:`ferrowsgi.config`, the same table the command
  line uses, so ``serve(app, max_body_size="10M")`` means what ``--max-body-size
  10M`` means.
* Sockets are bound when the server is made: ``port=0`` works, and the real
  port is known before serving.
* Logging is set up on first use if the caller (or the ``ferrowsgi`` command)
  has not done it: level info, no access log. Explicit ``log_level`` or
  ``access_log`` options set it up again with those values.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from . import _ferrowsgi, config
from ._ferrowsgi import __version__
from .cli import ensure_logging, log, serve_until_stopped

__all__ = ["WSGIServer", "__version__", "make_server", "serve"]


def serve(
    app: Callable[..., Any],
    host: str = "127.0.0.1",
    port: int = 8000,
    threads: int = 1,
    **options: Any,
) -> None:
    """Serve ``app`` on ``host:port`` until Ctrl-C or SIGTERM, then return.

    ``host=""`` means all IPv4 interfaces. ``options`` are ``bind`` (a list of
    addresses as on the command line; replaces host and port), ``keep_alive``
    (seconds), ``max_body_size`` (bytes, or "10M"), ``graceful_timeout``
    (seconds), ``backlog``, ``body_buffer_size``, ``multiprocess``,
    ``url_scheme``, ``script_name``, ``log_level`` and ``access_log``.
    On Ctrl-C or SIGTERM (when SIGTERM has no handler yet), requests in flight
    get ``graceful_timeout`` seconds to finish before this returns.

    Raises ``TypeError`` for an unknown option, ``ValueError`` for a bad value,
    ``OSError`` when an address cannot be bound.
    """
    values = _checked({"threads": threads, **options})
    values.setdefault("bind", [_address(host, port)])
    server = _ferrowsgi.Server(app, config.to_server_config(values))
    log.info("Starting ferrowsgi %s", __version__)
    serve_until_stopped(server, own_sigterm=False)


def make_server(
    host: str,
    port: int,
    app: Callable[..., Any],
    server_class: Any = None,
    handler_class: Any = None,
    **options: Any,
) -> WSGIServer:
    """Bind ``host:port`` and return a :class:`WSGIServer` for ``app`` (not serving yet).

    The signature of ``wsgiref.simple_server.make_server``: ``host=""`` means
    all IPv4 interfaces, ``port=0`` picks a free port (see ``server_port``).
    ``server_class`` and ``handler_class`` cannot apply to ferrowsgi; passing
    one logs a warning. ``options`` are those of :func:`serve`, except ``bind``.

    Raises ``TypeError``, ``ValueError`` or ``OSError`` as :func:`serve` does.
    """
    values = _checked(options)
    if "bind" in values:
        raise TypeError("make_server() binds host and port; use serve() for 'bind'")
    for name, given in (("server_class", server_class), ("handler_class", handler_class)):
        if given is not None:
            log.warning("make_server(): %s is ignored: ferrowsgi has its own server", name)
    values["bind"] = [_address(host, port)]
    return WSGIServer(_ferrowsgi.Server(app, config.to_server_config(values)))


class WSGIServer:
    """A bound server with the interface of ``wsgiref.simple_server.WSGIServer``.

    ``server_address`` is the bound ``(host, port)`` and ``server_port`` the port.
    Use it as a context manager to close it on exit.
    """

    def __init__(self, server: _ferrowsgi.Server) -> None:
        self._server: _ferrowsgi.Server | None = server
        address = server.addresses[0]
        self.server_address: tuple[str, int] = (address[0], int(address[1]))
        self.server_port: int = self.server_address[1]

    def serve_forever(self, poll_interval: float = 0.5) -> None:
        """Serve until :meth:`shutdown` is called from another thread.

        A signal handler that raises (Ctrl-C: ``KeyboardInterrupt``) stops it too:
        requests in flight finish, then the exception propagates. ``poll_interval``
        exists for wsgiref compatibility and is not used. Raises ``ValueError``
        after :meth:`server_close`.
        """
        if self._server is None:
            raise ValueError("serve_forever() on a closed server")
        self._server.serve_forever()

    def shutdown(self) -> None:
        """Stop :meth:`serve_forever` gracefully and wait until it returned; else a no-op."""
        if self._server is not None:
            self._server.shutdown()

    def server_close(self) -> None:
        """Stop serving and release the listening socket. Idempotent."""
        self.shutdown()
        self._server = None  # dropping the native server closes its sockets

    def __enter__(self) -> WSGIServer:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.server_close()


def _checked(options: dict[str, Any]) -> dict[str, Any]:
    """Check API options, then set up logging (once) from log_level/access_log."""
    values = config.check_options(options)
    ensure_logging(values.pop("log_level", None), values.pop("access_log", None))
    return values


def _address(host: str, port: int) -> str:
    """A bind string for ``(host, port)``; "" is all IPv4 interfaces. Raises ValueError."""
    host = host or "0.0.0.0"
    if ":" in host and not host.startswith("["):
        host = f"[{host}]"
    return config.parse_bind(f"{host}:{int(port)}")
