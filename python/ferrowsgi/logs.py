"""The "ferrowsgi" logger, routed to the native error log, and the log files.

Rules this module keeps:

* Every line goes through ``_ferrowsgi.log``, so Rust and Python write one
  error-log format (gunicorn's: ``[time] [pid] [LEVEL] message``, or with
  ``--log-format json`` one JSON object per line); a record's traceback goes
  as its own argument, so JSON puts it in one ``traceback`` field.
* ``--error-log PATH`` points the process's stderr (fd 2) at PATH, so the error
  log, ``wsgi.errors``, faulthandler's stacks and anything else written to
  stderr land in one file; ``-`` leaves stderr as it is. Calling
  :func:`setup_logging` again (SIGUSR1, a reload) reopens both files.
* Logging is set up once per process unless asked again with new values:
  :func:`ensure_logging` is what the Python API calls.
"""

from __future__ import annotations

import logging
import os

from ._ferrowsgi import init_logging
from ._ferrowsgi import log as native_log

TYPE_CHECKING = False  # typing is not imported at run time
if TYPE_CHECKING:
    from typing import Any

__all__ = ["RustLogHandler", "ensure_logging", "log", "setup_logging", "setup_logging_from"]

log = logging.getLogger("ferrowsgi")
_LEVELS = {"critical": 50, "error": 40, "warning": 30, "info": 20, "debug": 10}
_logging_level: str | None = None  # set once logging is up


class RustLogHandler(logging.Handler):
    """Forwards log records to the Rust error log (``_ferrowsgi.log``), one call each."""

    def emit(self, record: logging.LogRecord) -> None:
        level = next((n for n, v in _LEVELS.items() if record.levelno >= v), "debug")
        try:
            traceback = None
            if record.exc_info:
                traceback = logging.Formatter().formatException(record.exc_info)
            if record.stack_info:
                traceback = "\n".join(filter(None, (traceback, record.stack_info)))
            native_log(level, record.getMessage(), traceback)
        except Exception:
            self.handleError(record)


def setup_logging(
    level: str = "info",
    access_log: str | None = None,
    error_log: str | None = None,
    access_log_format: str | None = None,
    log_format: str = "text",
) -> None:
    """Initialise the Rust error/access logs and route the "ferrowsgi" logger to them.

    ``level``: critical, error, warning, info or debug. ``access_log``: None (off),
    "-" (stdout) or a file path. ``error_log``: None or "-" (stderr as it is) or a
    file path that stderr is pointed at. ``access_log_format``: gunicorn's atoms or
    "json" (None: the default line). ``log_format``: "text" or "json" (error log).
    Raises ``OSError`` if a file cannot be opened, ``ValueError`` for a bad format.
    """
    global _logging_level
    if error_log and error_log != "-":
        _redirect_stderr(error_log)
    init_logging(level, access_log, access_log_format, log_format)
    if not any(isinstance(h, RustLogHandler) for h in log.handlers):
        log.addHandler(RustLogHandler())
    log.setLevel(_LEVELS[level])
    log.propagate = False  # not twice when the application configured the root logger
    _logging_level = level


def setup_logging_from(cfg: Any) -> None:
    """:func:`setup_logging` with the log options of ``cfg`` (an ``options.Config``)."""
    setup_logging(
        cfg.log_level, cfg.access_log, cfg.error_log, cfg.access_log_format, cfg.log_format
    )


def ensure_logging(
    level: str | None = None,
    access_log: str | None = None,
    access_log_format: str | None = None,
    log_format: str | None = None,
) -> None:
    """Set up logging unless done already and nothing new is asked for.

    Defaults: level info (or the level already set), no access log, the default
    access-log line, text error log. Raises ``OSError`` if the access log cannot be
    opened.
    """
    asked = (level, access_log, access_log_format, log_format)
    if _logging_level is None or any(value is not None for value in asked):
        setup_logging(
            level or _logging_level or "info",
            access_log,
            access_log_format=access_log_format,
            log_format=log_format or "text",
        )


def _redirect_stderr(path: str) -> None:
    """Point fd 2 at ``path`` (appended to). Raises ``OSError``."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    try:
        os.dup2(fd, 2)
    finally:
        os.close(fd)
