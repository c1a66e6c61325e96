"""The ``ferrowsgi`` command (``python -m ferrowsgi`` too): the top layer.

Rules this module keeps:

* Nothing imports this module: the master, the worker and the library face
  sit below it (the layers import downward only).
* :func:`main` returns the exit status and never prints a traceback for an
  expected failure: 0 after a clean stop, 1 when the application cannot be
  loaded or an address cannot be bound, 2 for bad usage (like argparse).
* Before logging is set up, errors go to stderr as ``ferrowsgi: error: ...``.
  After it, every line goes through the error log (:mod:`ferrowsgi.logs`).
* ``--workers N`` (N >= 1, the default 1) hands over to :mod:`ferrowsgi.master`:
  a master process and N worker processes. ``--workers 0`` serves from this
  process (:mod:`ferrowsgi.server`); a second Ctrl-C there exits at once, even
  while an application call is still running.
* ``ferrowsgi top [METRICS_URL]`` (the bare word ``top`` first) is the live view of
  :mod:`ferrowsgi.top`, imported only then; an application module named ``top`` is
  given as ``top:app`` (or after an option).
"""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence

from . import _ferrowsgi, loader, master, options
from .logs import log, setup_logging_from
from .server import bind_error, serve_until_stopped

__all__ = ["main"]


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``ferrowsgi`` command with ``argv`` (default ``sys.argv[1:]``).

    Returns the exit status (see the module docstring); blocks while serving.
    """
    args = list(sys.argv[1:] if argv is None else argv)
    if args[:1] == ["top"]:  # the subcommand; `top:app` is an application
        from . import top

        return top.main(args[1:])
    start_dir = os.getcwd()  # the config file's path is relative to it, also on reload
    try:
        cfg = options.load(argv, version=_ferrowsgi.__version__)
        if cfg.chdir:
            _chdir(cfg.chdir)
    except options.ConfigError as e:
        print(f"ferrowsgi: error: {e}", file=sys.stderr)
        return 2
    except SystemExit as e:  # --help, --version
        return e.code if isinstance(e.code, int) else 0
    try:
        setup_logging_from(cfg)
    except OSError as e:
        which = "--access-log" if e.filename == cfg.access_log else "--error-log"
        print(f"ferrowsgi: error: {which}: cannot open {e.filename!r}: {e.strerror}",
              file=sys.stderr)  # fmt: skip
        return 2
    try:
        return _run(cfg, list(sys.argv[1:] if argv is None else argv), start_dir)
    except KeyboardInterrupt:  # Ctrl-C before serving, e.g. during a slow import
        return 130


def _run(cfg: options.Config, argv: list[str], start_dir: str) -> int:
    if cfg.print_config or cfg.check_config:
        return _check(cfg)
    log.info("Starting ferrowsgi %s", _ferrowsgi.__version__)
    _announce(cfg)
    for warning in cfg.warnings:
        log.warning("%s", warning)
    for line in cfg.describe():
        log.debug("config: %s", line)
    if cfg.workers > 0:
        return master.run(cfg, argv, start_dir)
    app = loader.load_logged(cfg.app, cfg.mount)
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
    code = serve_until_stopped(server, graceful_timeout=cfg.graceful_timeout)
    if server.busy_seconds() > 0:  # stopped without waiting: don't wait at exit either
        for stream in (sys.stdout, sys.stderr):
            stream.flush()
        os._exit(code)
    return code


def _announce(cfg: options.Config) -> None:
    """The start-up lines: application, workers, threads (one line each); each
    listener gets its "Listening at: URL" line once the server is ready."""
    if not cfg.mount:
        log.info("Application: %s", cfg.app or "ferrowsgi.demo:application (no APP given)")
    routes = [*cfg.mount, *([("/", cfg.app)] if cfg.mount and cfg.app else [])]
    for prefix, spec in routes:
        log.info("Application: %s at %s (--mount)", spec, prefix)
    if cfg.workers > 0:
        log.info("Workers: %d (master pid %d)", cfg.workers, os.getpid())
    else:
        log.info("Workers: 0 (this process serves; no master)")
    log.info("Threads: %d per worker%s", cfg.threads,
             " (the I/O thread calls the application)" if cfg.threads == 1 else "")  # fmt: skip


def _check(cfg: options.Config) -> int:
    """``--check-config`` / ``--print-config`` (gunicorn's): the options were read and
    checked by now; print them if asked, import the application, bind nothing.
    Returns 0, or 1 when the application cannot be loaded (logged as for a start)."""
    if cfg.print_config:
        width = max(len(name) for name in cfg.values)
        lines = [f"{'app':<{width}} = {cfg.app!r}"]
        for name, value in cfg.values.items():
            shown = oct(value) if name == "unix_socket_mode" else repr(value)
            lines.append(f"{name:<{width}} = {shown}  ({cfg.origins[name]})")
        try:
            print("\n".join(lines), flush=True)
        except BrokenPipeError:  # `ferrowsgi --print-config | head`
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    if loader.load_logged(cfg.app, cfg.mount) is None:
        return 1
    what = cfg.app or ("(demo)" if not cfg.mount else "(none at /)")
    mounted = "".join(f", {spec} at {prefix}" for prefix, spec in cfg.mount)
    log.info("Configuration checked: options valid, application %s loaded%s", what, mounted)
    return 0


def _chdir(directory: str) -> None:
    try:
        os.chdir(directory)
    except OSError as e:
        raise options.ConfigError(
            f"--chdir: cannot change to {directory!r}: {e.strerror}"
        ) from None
