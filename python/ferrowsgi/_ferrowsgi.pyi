"""The native core of ferrowsgi (Rust, PyO3): the contract between Rust and Python.

Everything below is implemented in ``src/``; Python code never reaches past this
surface. Errors become Python exceptions only here, at the boundary.
"""

from collections.abc import Callable, Iterable
from typing import TypedDict

__version__: str

class ServerConfig(TypedDict, total=False):
    """Options handed to :class:`Server`; every key is optional.

    binds: listen addresses, each ``HOST:PORT``, ``[IPv6]:PORT``, ``unix:PATH`` or
        ``fd://N`` (an inherited, already listening socket). Default ``["127.0.0.1:8000"]``.
    threads: Python threads that call the application (>= 1). Default 1: the
        server's I/O thread then calls the application itself (one call at a time,
        never on the thread that runs serve_forever()).
    keep_alive: seconds an idle keep-alive connection is kept open. Default 5.0.
    max_body_size: largest request body accepted, bytes; beyond it 413. Default 1 GiB.
    body_buffer_size: request bodies up to this many bytes stay in memory; larger
        ones are spilled to a temporary file. Default 1 MiB.
    graceful_timeout: seconds in-flight requests get to finish after a stop
        request, before connections are dropped. Default 30.0.
    backlog: listen queue length for sockets bound here. Default 2048.
    multiprocess: value of ``environ['wsgi.multiprocess']``. Default False.
    url_scheme: value of ``environ['wsgi.url_scheme']``. Default ``"http"``.
    script_name: SCRIPT_NAME prefix the application is mounted at. Default ``""``.
    """

    binds: list[str]
    threads: int
    keep_alive: float
    max_body_size: int
    body_buffer_size: int
    graceful_timeout: float
    backlog: int
    multiprocess: bool
    url_scheme: str
    script_name: str

class Server:
    """A bound WSGI server. Binding happens in the constructor.

    Raises ``OSError`` when an address cannot be bound (port in use, bad path),
    ``ValueError`` for a malformed bind string or option, ``TypeError`` when
    ``app`` is not callable.
    """

    def __init__(self, app: Callable[..., Iterable[bytes]], config: ServerConfig) -> None: ...
    @property
    def addresses(self) -> list[tuple[str, int] | str]:
        """The bound addresses: ``(host, port)`` for TCP, the path for unix sockets."""
    @property
    def requests_served(self) -> int:
        """Requests handed to the application since the server was made."""
    def busy_seconds(self) -> float:
        """Seconds the oldest running application call has been running; 0.0 when idle.

        Safe to call from any thread while serve_forever() runs (a worker's
        watchdog thread uses it for ``--timeout``).
        """
    def serve_forever(self) -> None:
        """Serve until :meth:`shutdown` is called or a Python signal handler raises.

        Blocks the calling thread with the GIL released (the server runs on its own
        threads, so signal handlers never interrupt the application). Python signal
        handlers are run about every 100 ms; when one raises (``KeyboardInterrupt`` on
        SIGINT, say), the server stops accepting, lets requests in flight finish
        for up to ``graceful_timeout`` seconds, and then re-raises that exception.
        """
    def shutdown(self) -> None:
        """Ask :meth:`serve_forever` to stop gracefully and wait until it returned.

        Safe to call from any thread; a no-op when the server is not running.
        """

def init_logging(level: str = "info", access_log: str | None = None) -> None:
    """Configure the error log (stderr) and the access log.

    level: one of ``critical``, ``error``, ``warning``, ``info``, ``debug``.
    access_log: ``None`` (off), ``"-"`` (stdout) or a file path (appended to).
    Raises ``ValueError`` for an unknown level, ``OSError`` if the file cannot be opened.
    """

def log(level: str, message: str) -> None:
    """Write one line to the error log, in the server's format, at ``level``."""
