"""One process serving: :func:`serve`, :func:`make_server` and the run loop the
``ferrowsgi`` command shares with them (``--workers 0``).

Rules this module keeps:

* Options are checked by :mod:`ferrowsgi.options`, the table the command line
  uses, and every ``rust`` option reaches the native server with a value (the
  table's default when not given), so ``serve()``, ``make_server()`` and the
  command line run on the same defaults.
* Sockets are bound when the server is made: ``port=0`` works, and the real
  port is known before serving.
* "Listening at" is logged when the server is ready (its Python threads up),
  with the bound addresses, never the configured ones.
* Logging is set up on first use if the caller (or the ``ferrowsgi`` command)
  has not done it: level info, no access log (``make_server``: the access log
  on stdout, as wsgiref prints each request).
"""

from __future__ import annotations

import os
import signal
import threading
from collections.abc import Callable

from ._ferrowsgi import Server, __version__, parse_bind
from .logs import ensure_logging, log
from .options import SETTINGS, check_api, server_config

TYPE_CHECKING = False  # typing is not imported at run time: a worker has no use for it
if TYPE_CHECKING:
    import socket
    from typing import Any

    from typing_extensions import Unpack

    from ._typing import MakeServerOptions, ServeOptions

__all__ = ["WSGIServer", "bind_error", "make_server", "serve", "serve_until_stopped"]

LOGGING = ("log_level", "access_log", "access_log_format", "log_format")
SERVE_OPTIONS = tuple(s.name for s in SETTINGS if s.rust) + LOGGING
MAKE_SERVER_OPTIONS = tuple(name for name in SERVE_OPTIONS if name != "bind")


def serve(
    app: Callable[..., Any],
    host: str = "127.0.0.1",
    port: int = 8000,
    **kwargs: Unpack[ServeOptions],
) -> None:
    """Serve ``app`` on ``host:port`` until Ctrl-C or SIGTERM, then return.

    ``host`` is an IP address or a host name; ``""`` means all IPv4 interfaces.
    ``kwargs`` are the options of the ``ferrowsgi`` command that one process can
    honour, by their config-file names (the README's options table; typed in
    ``ferrowsgi._typing.ServeOptions``): ``bind`` (a list of addresses; replaces
    host and port), ``threads``, ``keep_alive``, ``graceful_timeout``,
    ``header_timeout`` and ``body_timeout`` (seconds), ``max_body_size`` and
    ``body_buffer_size`` (bytes, or "10M"), ``backlog``, ``max_connections``,
    ``limit_request_line``, ``limit_request_fields``, ``limit_request_field_size``,
    ``max_requests`` (stop after that many), ``url_scheme``, ``script_name``,
    ``multiprocess``, ``log_level`` and ``access_log``. Options that need a master
    process (``workers``, ``timeout``, ``reload``...) are the command's only.
    On Ctrl-C or SIGTERM (when SIGTERM has no handler yet), requests in flight
    get ``graceful_timeout`` seconds to finish before this returns.

    Raises ``TypeError`` for an unknown option, ``ValueError`` for a bad value,
    ``OSError`` when an address cannot be bound.
    """
    values = _checked(kwargs, SERVE_OPTIONS)
    values.setdefault("bind", [_address(host, port)])
    config = server_config(values)
    server = Server(app, config)
    log.info("Starting ferrowsgi %s", __version__)
    serve_until_stopped(server, own_signals=False, graceful_timeout=config["graceful_timeout"])


def make_server(
    host: str,
    port: int,
    app: Callable[..., Any],
    server_class: Any = None,
    handler_class: Any = None,
    **kwargs: Unpack[MakeServerOptions],
) -> WSGIServer:
    """Bind ``host:port`` and return a :class:`WSGIServer` for ``app`` (not serving yet).

    The signature of ``wsgiref.simple_server.make_server``: ``host`` is an IP
    address or a host name, ``""`` means all IPv4 interfaces, ``port=0`` picks a
    free port (see ``server_port``). As wsgiref does, each request is logged, on
    stdout (``access_log=None`` turns that off). ``server_class`` and
    ``handler_class`` cannot apply to ferrowsgi; passing one logs a warning.
    ``kwargs`` are those of :func:`serve`, except ``bind``.

    Raises ``TypeError``, ``ValueError`` or ``OSError`` as :func:`serve` does.
    """
    kwargs.setdefault("access_log", "-")
    values = _checked(kwargs, MAKE_SERVER_OPTIONS)
    for name, given in (("server_class", server_class), ("handler_class", handler_class)):
        if given is not None:
            log.warning("make_server(): %s is ignored: ferrowsgi has its own server", name)
    values["bind"] = [_address(host, port)]
    return WSGIServer(Server(app, server_config(values)))


class WSGIServer:
    """A bound server with the interface of ``wsgiref.simple_server.WSGIServer``.

    ``server_address`` is the bound ``(host, port)``, ``server_port`` the port and
    ``socket`` the listening socket (a duplicate: closing it does not stop the
    server). Use it as a context manager to close it on exit.
    """

    def __init__(self, server: Server) -> None:
        self._server: Server | None = server
        address = server.addresses[0]
        self.server_address: tuple[str, int] = (address[0], int(address[1]))
        self.server_port: int = self.server_address[1]
        self._socket: socket.socket | None = None

    @property
    def socket(self) -> socket.socket:
        """The listening socket (a duplicate of it; closed by :meth:`server_close`, as
        wsgiref's). Raises ``ValueError`` when first asked for after the close."""
        if self._socket is None:
            import socket  # here: a worker process never needs the module

            self._socket = socket.socket(fileno=os.dup(self._live().fileno()))
        return self._socket

    def set_app(self, application: Callable[..., Any]) -> None:
        """Serve ``application`` from the next :meth:`serve_forever` or
        :meth:`handle_request` on. Raises ``TypeError`` when it is not callable."""
        self._live().set_app(application)

    def get_app(self) -> Callable[..., Any] | None:
        """wsgiref's counterpart of :meth:`set_app` (not kept: returns None)."""
        return None

    def serve_forever(self, poll_interval: float = 0.5) -> None:
        """Serve until :meth:`shutdown` is called from another thread.

        A signal handler that raises (Ctrl-C: ``KeyboardInterrupt``) stops it too:
        requests in flight finish, then the exception propagates. ``poll_interval``
        exists for wsgiref compatibility and is not used. Raises ``ValueError``
        after :meth:`server_close`.
        """
        self._live().serve_forever()

    def handle_request(self) -> None:
        """Wait for one request, answer it, and return (wsgiref's ``handle_request``).

        Raises ``ValueError`` after :meth:`server_close`.
        """
        self._live().serve_forever(max_requests=1)

    def shutdown(self) -> None:
        """Stop :meth:`serve_forever` gracefully and wait until it returned; else a no-op."""
        if self._server is not None:
            self._server.shutdown()

    def server_close(self) -> None:
        """Stop serving and release the listening socket. Idempotent."""
        self.shutdown()
        if self._socket is not None:
            self._socket.close()
        self._server = None  # dropping the native server closes its sockets

    def _live(self) -> Server:
        if self._server is None:
            raise ValueError("the server is closed (server_close() was called)")
        return self._server

    def __enter__(self) -> WSGIServer:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.server_close()


def serve_until_stopped(
    server: Server, own_signals: bool = True, graceful_timeout: float | None = None
) -> int:
    """Serve until Ctrl-C, SIGTERM or ``server.shutdown()``; log the bound addresses
    once the server is ready, and the graceful stop when a signal begins it.

    SIGTERM is made to raise ``SystemExit(0)`` while serving (always when
    ``own_signals``, else only if it still has its default action), so that the
    server drains gracefully; with ``own_signals`` SIGINT raises
    ``KeyboardInterrupt`` even where the shell started us with SIGINT ignored.
    ``graceful_timeout`` (seconds) is only for the log line. Returns the exit
    status: 0, or a ``SystemExit`` code.
    """

    def ready() -> None:
        for url in server.urls:
            log.info("Listening at: %s (%d)", url, os.getpid())
        if server.metrics_url is not None:
            log.info("Metrics at: %s", server.metrics_url)

    previous = _catch_signals(own_signals, _StopLogger(graceful_timeout))
    code = 0
    try:
        # The only run: the sockets close when the stop begins, so a client that
        # connects meanwhile is refused at once, not queued and reset at exit.
        server.serve_forever(ready, close_on_stop=True)
    except KeyboardInterrupt:
        pass
    except SystemExit as e:
        code = e.code if isinstance(e.code, int) else 0
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
    log.info("Shutting down")
    return code


def bind_error(error: OSError, binds: list[str]) -> str:
    """One line for a failed bind: "cannot bind ADDRESS: reason"."""
    reason = error.strerror or str(error)
    address = str(error.filename) if error.filename else ", ".join(binds)
    return reason if address in reason else f"cannot bind {address}: {reason}"


def _checked(kwargs: dict[str, Any], allowed: tuple[str, ...]) -> dict[str, Any]:
    """Check API options, then set up logging (once) from the LOGGING options."""
    access_log = kwargs.pop("access_log", None)
    values = check_api(kwargs, allowed)
    if access_log is not None:
        access_log = check_api({"access_log": access_log}, allowed)["access_log"]
    ensure_logging(
        values.pop("log_level", None),
        access_log,
        values.pop("access_log_format", None),
        values.pop("log_format", None),
    )
    return values


def _address(host: str, port: int) -> str:
    """A bind string for ``(host, port)``; "" is all IPv4 interfaces. Raises ValueError."""
    host = host or "0.0.0.0"
    if ":" in host and not host.startswith("["):
        host = f"[{host}]"
    return parse_bind(f"{host}:{int(port)}")


class _StopLogger:
    """Signal handlers that log the stop they begin (the first signal: graceful, as
    the master logs it; a second one: at once), then raise as Python's own would."""

    def __init__(self, graceful_timeout: float | None) -> None:
        self.graceful_timeout, self.signalled = graceful_timeout, False

    def log(self, signum: int) -> None:
        name = signal.Signals(signum).name
        if self.signalled:
            log.info("Stopping now (%s)", name)
        elif self.graceful_timeout is not None:
            log.info("Stopping gracefully (%s, up to %gs)", name, self.graceful_timeout)
        else:
            log.info("Stopping gracefully (%s)", name)
        self.signalled = True

    def exit(self, signum: int, frame: Any) -> None:
        self.log(signum)
        raise SystemExit(0)

    def interrupt(self, signum: int, frame: Any) -> None:
        self.log(signum)
        raise KeyboardInterrupt


def _catch_signals(own: bool, stop: _StopLogger) -> dict[int, Any]:
    """Make SIGTERM raise SystemExit(0) (and, when ``own``, SIGINT raise
    KeyboardInterrupt), logging the stop; return the handlers to restore."""
    if threading.current_thread() is not threading.main_thread():
        return {}  # only the main thread may set signal handlers
    wanted: dict[int, Any] = {signal.SIGTERM: stop.exit}
    if own:
        wanted[signal.SIGINT] = stop.interrupt
    previous = {}
    for signum, handler in wanted.items():
        current = signal.getsignal(signum)
        if own or current is signal.SIG_DFL:
            previous[signum] = signal.SIG_DFL if current is None else current
            signal.signal(signum, handler)
    return previous
