"""The ``ferrowsgi`` command (``python -m ferrowsgi`` too), and the logging and
run-until-stopped steps the Python API shares with it.

Rules this module keeps:

* :func:`main` returns the exit status and never prints a traceback for an
  expected failure: 0 after a clean stop, 1 when the application cannot be
  loaded or an address cannot be bound, 2 for bad usage (like argparse).
* Before logging is set up, errors go to stderr as ``ferrowsgi: error: ...``.
  After it, every line goes through ``_ferrowsgi.log`` (via the "ferrowsgi"
  logger), so Rust and Python write one error-log format.
* A failure is one ``Error: ...`` line; tracebacks appear only at debug level.
* The test suite reads ``Listening at: http://HOST:PORT`` with the bound port:
  that text comes from the bound sockets (``server.addresses``, or the master's
  sockets), never from the configuration.
* ``--workers N`` (N >= 1, the default 1) hands over to :mod:`ferrowsgi.supervisor`:
  a master process and N workers. ``--workers 0`` serves from this process.
"""

from __future__ import annotations

import logging
import os
import re
import signal
import sys
import threading
from collections.abc import Callable, Sequence
from typing import Any

from . import _ferrowsgi, config, demo, loader

__all__ = [
    "RustLogHandler",
    "bind_error",
    "ensure_logging",
    "load_app",
    "log",
    "main",
    "serve_until_stopped",
]

log = logging.getLogger("ferrowsgi")
_LEVELS = {"critical": 50, "error": 40, "warning": 30, "info": 20, "debug": 10}
_logging_level: str | None = None  # set once logging is up


class RustLogHandler(logging.Handler):
    """Forwards log records to the Rust error log (``_ferrowsgi.log``), one call each."""

    def emit(self, record: logging.LogRecord) -> None:
        level = next((n for n, v in _LEVELS.items() if record.levelno >= v), "debug")
        try:
            _ferrowsgi.log(level, self.format(record))
        except Exception:
            self.handleError(record)


def setup_logging(level: str = "info", access_log: str | None = None) -> None:
    """Initialise the Rust error/access logs and route the "ferrowsgi" logger to them.

    ``level``: critical, error, warning, info or debug. ``access_log``: None (off),
    "-" (stdout) or a file path. Raises ``OSError`` if the access log cannot be opened.
    """
    global _logging_level
    _ferrowsgi.init_logging(level, access_log)
    if not any(isinstance(h, RustLogHandler) for h in log.handlers):
        log.addHandler(RustLogHandler())
    log.setLevel(_LEVELS[level])
    log.propagate = False  # not twice when the application configured the root logger
    _logging_level = level


def ensure_logging(level: str | None = None, access_log: str | None = None) -> None:
    """Set up logging unless done already and nothing new is asked for.

    Defaults: level info (or the level already set), no access log. Raises
    ``OSError`` if the access log cannot be opened.
    """
    if _logging_level is None or level is not None or access_log is not None:
        setup_logging(level or _logging_level or "info", access_log)


def format_address(address: tuple[str, int] | str) -> str:
    """``("::1", 80)`` → ``http://[::1]:80``; a unix socket path → ``unix:/path``."""
    if isinstance(address, str):
        return address if address.startswith("unix:") else f"unix:{address}"
    host, port = address[0], address[1]
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


def serve_until_stopped(server: _ferrowsgi.Server, own_sigterm: bool = True) -> int:
    """Log the bound addresses, then serve until Ctrl-C, SIGTERM or ``server.shutdown()``.

    SIGTERM is made to raise ``SystemExit(0)`` while serving (always when
    ``own_sigterm``, else only if it still has its default action), so that the
    server drains gracefully. Returns the exit status: 0, or a ``SystemExit`` code.
    """
    for address in server.addresses:
        log.info("Listening at: %s (%d)", format_address(address), os.getpid())
    previous = _catch_sigterm(own_sigterm)
    code = 0
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    except SystemExit as e:
        code = e.code if isinstance(e.code, int) else 0
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)
    log.info("Shutting down")
    return code


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``ferrowsgi`` command with ``argv`` (default ``sys.argv[1:]``).

    Returns the exit status (see the module docstring); blocks while serving.
    """
    start_dir = os.getcwd()  # the config file's path is relative to it, also on reload
    try:
        cfg = config.load(argv, version=_ferrowsgi.__version__)
        if cfg.chdir:
            _chdir(cfg.chdir)
    except config.ConfigError as e:
        print(f"ferrowsgi: error: {e}", file=sys.stderr)
        return 2
    except SystemExit as e:  # --help, --version
        return e.code if isinstance(e.code, int) else 0
    try:
        setup_logging(cfg.log_level, cfg.access_log)
    except OSError as e:
        reason = _reason(e).rpartition(": ")[2]  # the OS's words, not a wrapper's
        print(
            f"ferrowsgi: error: --access-log: cannot open {cfg.access_log!r}: {reason}",
            file=sys.stderr,
        )
        return 2
    try:
        return _run(cfg, list(sys.argv[1:] if argv is None else argv), start_dir)
    except KeyboardInterrupt:  # Ctrl-C before serving, e.g. during a slow import
        return 130


def _run(cfg: config.Config, argv: list[str], start_dir: str) -> int:
    log.info("Starting ferrowsgi %s", _ferrowsgi.__version__)
    for warning in cfg.warnings:
        log.warning("%s", warning)
    for line in cfg.describe():
        log.debug("config: %s", line)
    if cfg.workers > 0:
        from . import supervisor  # here, not at the top: supervisor imports this module

        return supervisor.run(cfg, argv, start_dir)
    app = load_app(cfg.app)
    if app is None:
        return 1
    try:
        server = _ferrowsgi.Server(app, cfg.server_config())
    except OSError as e:
        log.error("Error: %s", bind_error(e, cfg.bind))
        return 1
    except (ValueError, TypeError) as e:
        log.error("Error: %s", e)
        return 2
    return serve_until_stopped(server)


def load_app(spec: str | None) -> Callable[..., Any] | None:
    """The application named by ``spec`` (None: the demo app), or None after logging
    why it could not be loaded (one ``Error: ...`` line; the traceback at debug level)."""
    if spec is None:
        log.info("No APP given: serving the demo application (ferrowsgi.demo:application)")
        return demo.application
    try:
        return loader.load_app(spec)
    except loader.LoadError as e:
        quiet = e.details is not None and not log.isEnabledFor(logging.DEBUG)
        log.error("Error: %s%s", e, "; --log-level debug shows the traceback" if quiet else "")
        if e.details is not None:
            log.debug("%s", e.details)
        return None


def bind_error(error: OSError, binds: list[str]) -> str:
    """One line for a failed bind: "cannot bind ADDRESS: reason"."""
    reason = _reason(error)
    address = str(error.filename) if error.filename else ", ".join(binds)
    named = address in reason or reason.startswith("cannot bind")
    return reason if named else f"cannot bind {address}: {reason}"


def _reason(error: OSError) -> str:
    """The OS's reason, without Python's "[Errno N]" or Rust's "(os error N)" decoration."""
    return re.sub(r" \(os error \d+\)$", "", error.strerror or str(error))


def _chdir(directory: str) -> None:
    try:
        os.chdir(directory)
    except OSError as e:
        raise config.ConfigError(f"--chdir: cannot change to {directory!r}: {e.strerror}") from None


def _catch_sigterm(force: bool) -> Any:
    """Make SIGTERM raise SystemExit(0); return the handler to restore (None: untouched)."""
    if threading.current_thread() is not threading.main_thread():
        return None  # only the main thread may set signal handlers
    previous = signal.getsignal(signal.SIGTERM)
    if not force and previous is not signal.SIG_DFL:
        return None
    signal.signal(signal.SIGTERM, _raise_exit)
    return signal.SIG_DFL if previous is None else previous  # None: set outside Python


def _raise_exit(signum: int, frame: Any) -> None:
    raise SystemExit(0)
