"""One worker process: forked by the master (:mod:`ferrowsgi.master`), it loads
the application, serves on the inherited sockets, and watches itself.

Rules this module keeps:

* :func:`run` is the whole life of a worker and never returns: it ends with
  ``os._exit`` (never the master's ``atexit`` handlers or finalizers). Status
  :data:`BOOT_ERROR` when the application or the server could not be made,
  else 0.
* The master decides; the worker tells. One line per message on the worker's
  pipe: ``ready`` once the application is loaded and the server is up (its
  Python threads started); ``beat S``
  every :data:`TICK` seconds with ``--timeout`` (S: seconds left before the
  oldest running application call passes the timeout, or ``idle`` when no call
  runs); ``retire CAUSE`` when it stops by itself (``max-requests``, ``memory``);
  ``reload`` when --reload saw a change. A full pipe drops the message instead
  of blocking.
* ``--max-requests`` is counted by the native server, which begins its graceful
  stop after exactly that many requests; the watchdog only tells the master.
* Light: nothing here imports the command line, argparse or dataclasses.
* Signals: TERM starts a graceful stop once (a second one must not cut the
  drain short); QUIT exits at once; USR1 reopens the logs; INT, HUP, TTIN and
  TTOU are the master's business and do nothing here. They are installed
  before the signal mask inherited from the master is lifted, so none is lost.
* ``faulthandler`` is on: SIGABRT from the master (worker timeout), or a crash
  in a C extension, writes the Python stack of every thread to the error log.
* The watchdog thread never blocks on the server: the graceful stop it asks
  for runs on a thread of its own, so heartbeats go on while requests drain.
"""

from __future__ import annotations

import faulthandler
import os
import signal
import sys
import threading
import time
from collections.abc import Callable

from . import _ferrowsgi, loader
from .logs import log, setup_logging_from

TYPE_CHECKING = False  # typing is not imported at run time: a worker has no use for it
if TYPE_CHECKING:
    from typing import Any, NoReturn

    from .options import Config

__all__ = ["BOOT_ERROR", "TICK", "Reloader", "WorkerSpec", "app_directory", "run", "set_title"]

BOOT_ERROR = 3  # exit status: the application or the server could not be made
TICK = 0.5  # seconds between two watchdog checks (heartbeat, limits, master alive)


class WorkerSpec:
    """What the master hands to a worker process it forks.

    ``binds``: listening sockets as ``--bind`` values for Rust, which owns them
    (``fd://N``, ``uwsgi://fd://N``, ``fcgi://fd://N``);
    ``channel``: write end of the worker's pipe to the master; ``master_pid``: when
    ``getppid()`` differs, the master died; ``multiprocess``: more than one worker
    serves (``environ['wsgi.multiprocess']``); ``app``: the preloaded application,
    if any; ``sigmask``: the signal mask to restore once the handlers are set;
    ``metrics``: the ``/metrics`` listener as a ``--metrics-bind`` value (``fd://N``)
    and the worker's slot in the metrics segment (0: none), or None.
    """

    __slots__ = ("app", "binds", "cfg", "channel", "master_pid", "metrics", "multiprocess",
                 "sigmask")  # fmt: skip

    def __init__(
        self,
        cfg: Config,
        binds: list[str],
        channel: int,
        master_pid: int,
        multiprocess: bool,
        app: Callable[..., Any] | None = None,
        sigmask: set[signal.Signals] | None = None,
        metrics: tuple[str, int] | None = None,
    ) -> None:
        self.cfg, self.binds, self.channel, self.master_pid = cfg, binds, channel, master_pid
        self.multiprocess, self.app, self.sigmask = multiprocess, app, sigmask or set()
        self.metrics = metrics


class _State:
    """Set once a graceful stop has begun, whoever began it."""

    stopping = False


def run(spec: WorkerSpec) -> NoReturn:
    """The body of a freshly forked worker; exits the process with its status."""
    code = 1
    try:
        code = _serve(spec)
    except SystemExit as e:  # SIGTERM while the application was being imported
        code = e.code if isinstance(e.code, int) else 0
    except BaseException:
        log.exception("Worker (pid %d) failed", os.getpid())
    finally:
        for stream in (sys.stdout, sys.stderr):
            try:
                stream.flush()
            except Exception:
                pass
        os._exit(code)


def _serve(spec: WorkerSpec) -> int:
    state = _State()
    _install_signals(spec, state)
    signal.pthread_sigmask(signal.SIG_SETMASK, spec.sigmask)
    faulthandler.enable(all_threads=True)
    set_title("worker", spec.cfg.app)
    log.info("Booting worker with pid %d", os.getpid())
    app = spec.app if spec.app is not None else loader.load_logged(spec.cfg.app, spec.cfg.mount)
    if app is None:
        return BOOT_ERROR
    cfg = spec.cfg
    jitter = 0
    if cfg.max_requests and cfg.max_requests_jitter:
        import random

        jitter = random.randint(0, cfg.max_requests_jitter)
    settings = cfg.server_config(
        bind=spec.binds,
        multiprocess=spec.multiprocess,
        max_requests=cfg.max_requests + jitter if cfg.max_requests else 0,
        metrics_bind=spec.metrics[0] if spec.metrics else None,
    )
    if spec.metrics and not _ferrowsgi.metrics_claim(spec.metrics[1]):
        log.warning("No free metrics slot: this worker's requests are not counted")
    try:
        server = _ferrowsgi.Server(app, settings)
    except (OSError, ValueError, TypeError) as e:
        log.error("Error: %s", e)
        return BOOT_ERROR
    channel = Channel(spec.channel)
    watchdog = Watchdog(server, spec, channel, state, settings["max_requests"])
    watchdog.start()
    try:
        # A worker's only run: its copies of the listening sockets close when its stop
        # begins; the master's copies keep them listening through a reload.
        server.serve_forever(lambda: channel.send("ready"), close_on_stop=True)
    except (SystemExit, KeyboardInterrupt):
        pass
    finally:
        watchdog.stop()
    watchdog.check_max_requests()  # the server stopped itself before the watchdog saw it
    log.info("Worker exiting (pid: %d)", os.getpid())
    return 0


def _install_signals(spec: WorkerSpec, state: _State) -> None:
    signal.set_wakeup_fd(-1)  # the master's self-pipe is not ours

    def stop(signum: int, frame: Any) -> None:
        if not state.stopping:
            state.stopping = True
            raise SystemExit(0)  # serve_forever drains, then re-raises it

    def reopen_logs(signum: int, frame: Any) -> None:
        try:
            setup_logging_from(spec.cfg)
        except OSError as e:
            log.error("Cannot reopen the access log: %s", e)

    def ignore(signum: int, frame: Any) -> None:
        pass  # not SIG_IGN, which the application's subprocesses would inherit

    handlers = {
        signal.SIGTERM: stop,
        signal.SIGQUIT: lambda signum, frame: os._exit(0),
        signal.SIGUSR1: reopen_logs,
        signal.SIGCHLD: signal.SIG_DFL,
    }
    for sig in (signal.SIGINT, signal.SIGHUP, signal.SIGTTIN, signal.SIGTTOU):
        handlers[sig] = ignore
    for sig, handler in handlers.items():
        signal.signal(sig, handler)


class Channel:
    """The worker's end of its pipe to the master: one short line per message."""

    def __init__(self, fd: int) -> None:
        self.fd = fd
        os.set_blocking(fd, False)

    def send(self, message: str) -> None:
        """Write ``message`` (under PIPE_BUF bytes, so atomic); drop it if the pipe is
        full (the master reads it soon) or closed (the watchdog sees the master gone)."""
        try:
            os.write(self.fd, message.encode() + b"\n")
        except (BlockingIOError, BrokenPipeError):
            pass


class Watchdog(threading.Thread):
    """Every :data:`TICK` seconds: heartbeat, recycling limits, master alive, --reload."""

    def __init__(
        self, server: Any, spec: WorkerSpec, channel: Channel, state: _State, max_requests: int
    ) -> None:
        super().__init__(name="ferrowsgi-watchdog", daemon=True)
        cfg = spec.cfg
        self.server, self.channel, self.state = server, channel, state
        self.master_pid = spec.master_pid
        self.timeout = cfg.timeout
        self.max_requests = max_requests  # the server stops itself after exactly this many
        self.max_memory = cfg.max_worker_memory
        self.reloader = Reloader(app_directory(cfg.app)) if cfg.reload else None
        self.stopped = threading.Event()

    def stop(self) -> None:
        """End the thread (after serve_forever returned)."""
        self.stopped.set()
        if self.reloader is not None:
            self.reloader.close()

    def run(self) -> None:
        # The server stops itself after --max-requests; the master is told within
        # 20 ms, so that the replacement starts while this one drains.
        period = 0.02 if self.max_requests else TICK
        next_tick = time.monotonic()
        while not self.stopped.wait(period):
            self.check_max_requests()
            if time.monotonic() >= next_tick:
                next_tick = time.monotonic() + TICK
                self.tick()

    def check_max_requests(self) -> None:
        """Tell the master once the server reached --max-requests (it stops itself)."""
        served = self.server.requests_served
        if self.max_requests and served >= self.max_requests and not self.state.stopping:
            log.info("Worker (pid %d) served %d requests (--max-requests); stopping "
                     "gracefully", os.getpid(), served)  # fmt: skip
            self.state.stopping = True
            self.channel.send("retire max-requests")

    def tick(self) -> None:
        if self.timeout:
            busy = self.server.busy_seconds()
            self.channel.send(f"beat {self.timeout - busy:.3f}" if busy else "beat idle")
        if self.state.stopping:
            return
        reason = self.recycle_reason()
        if reason:
            self.retire(*reason)
        elif self.reloader is not None:
            changed = self.reloader.changed()
            if changed:
                self.channel.send(f"reload {reload_message(changed)}")

    def retire(self, reason: str, cause: str) -> None:
        """Tell the master why (it starts a replacement at once, and counts the restart
        by ``cause``), then stop gracefully."""
        log.info("%s; stopping gracefully", reason)
        self.channel.send(f"retire {cause}")
        self.begin_stop()

    def recycle_reason(self) -> tuple[str, str] | None:
        """Why this worker should stop now (master gone, memory) and the restart cause
        the master counts it under, or None."""
        if os.getppid() != self.master_pid:
            return "The master process is gone", "orphan"
        rss = rss_mib()
        if self.max_memory and rss is not None and rss > self.max_memory:
            return (
                f"Worker (pid {os.getpid()}) uses {rss:.0f} MiB of memory, "
                f"more than {self.max_memory} (--max-worker-memory)"
            ), "memory"
        return None

    def begin_stop(self) -> None:
        """A graceful stop, run on its own thread: shutdown() waits for the drain."""
        self.state.stopping = True
        threading.Thread(target=self.server.shutdown, name="ferrowsgi-stop", daemon=True).start()


def rss_mib() -> float | None:
    """This process's resident memory in MiB (Linux ``/proc``), or None elsewhere."""
    try:
        with open("/proc/self/statm") as f:
            pages = int(f.read().split()[1])
    except (OSError, ValueError, IndexError):
        return None
    return pages * os.sysconf("SC_PAGE_SIZE") / (1 << 20)


def app_directory(spec: str | None) -> str:
    """The directory holding the application's code: the file's directory for
    ``path/app.py``, the directory above the top-level package or module for
    ``package.module:app``, else the current directory."""
    target = (spec or "").split(":", 1)[0].strip()
    if not target:
        return os.getcwd()
    if target.endswith(".py") or os.sep in target:
        return os.path.dirname(os.path.abspath(target))
    top = sys.modules.get(target.split(".")[0])
    origin = getattr(top, "__file__", None)
    if not origin:
        return os.getcwd()
    directory = os.path.dirname(os.path.abspath(origin))
    return os.path.dirname(directory) if hasattr(top, "__path__") else directory


class Reloader:
    """Tells when a ``.py`` file under ``root`` changed (``--reload``).

    With ``watchfiles`` installed, a thread of it watches ``root``; otherwise the
    files of the imported modules under ``root`` are polled, once a second.
    """

    def __init__(self, root: str) -> None:
        self.root = root.rstrip(os.sep) + os.sep
        self.lock = threading.Lock()
        self.paths: set[str] = set()  # changed since the last changed(); under lock
        self.closing = threading.Event()
        self.last_scan = time.monotonic()
        self.mtimes = self.scan()
        try:
            import watchfiles
        except ImportError:
            self.watchfiles = None
        else:
            self.watchfiles = watchfiles
            threading.Thread(target=self.watch, name="ferrowsgi-reload", daemon=True).start()

    def changed(self) -> list[str]:
        """The files changed since the last call (sorted; empty when none)."""
        if self.watchfiles is None and time.monotonic() - self.last_scan >= 1.0:
            self.last_scan = time.monotonic()
            current = self.scan()
            with self.lock:
                self.paths.update(
                    path for path, mtime in current.items()
                    if self.mtimes.get(path, mtime) != mtime
                )  # fmt: skip
            self.mtimes.update(current)  # modules imported since are watched from now on
        with self.lock:
            paths, self.paths = sorted(self.paths), set()
        return paths

    def scan(self) -> dict[str, int]:
        """Modification times of the imported modules' ``.py`` files under root."""
        mtimes = {}
        for module in list(sys.modules.values()):
            path = getattr(module, "__file__", None)
            if isinstance(path, str) and path.endswith(".py") and path.startswith(self.root):
                try:
                    mtimes[path] = os.stat(path).st_mtime_ns
                except OSError:
                    pass
        return mtimes

    def watch(self) -> None:
        assert self.watchfiles is not None
        changes = self.watchfiles.watch(
            self.root,
            watch_filter=self.watchfiles.PythonFilter(),
            stop_event=self.closing,
            raise_interrupt=False,
        )
        for batch in changes:
            with self.lock:
                self.paths.update(path for _, path in batch)

    def close(self) -> None:
        self.closing.set()


def reload_message(paths: list[str]) -> str:
    """``app.py`` or ``app.py (and 2 more)``, short enough for one pipe message
    (PIPE_BUF: atomic)."""
    first = paths[0] if len(paths[0]) <= 2000 else "..." + paths[0][-2000:]
    return first if len(paths) == 1 else f"{first} (and {len(paths) - 1} more)"


def set_title(role: str, app: str | None) -> None:
    """``ferrowsgi: ROLE [APP]`` as the process title, when setproctitle is installed."""
    try:
        from setproctitle import setproctitle
    except ImportError:
        return
    setproctitle(f"ferrowsgi: {role} [{app or 'demo'}]")
