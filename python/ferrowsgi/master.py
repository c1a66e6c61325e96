"""The master process: binds the sockets, forks the worker processes, keeps them running.

Rules this module keeps (gunicorn's arbiter, with its known gaps closed):

* The master never serves and never starts a thread or an async runtime: it
  binds every listening socket with Python's socket module, then forks workers
  (:mod:`ferrowsgi.worker`), which serve on them as ``fd://N``. Names: the
  master, a worker (process); threads are a worker's Python threads.
* The listening sockets stay open in the master from start to stop, so while
  workers are replaced (reload, recycling, a crash) a new connection waits in
  the kernel's queue for the next worker instead of being refused.
* Signal handlers only queue the signal; Python's wakeup fd wakes the main
  loop, which does all the work, with the handlers' actions in one table.
* A worker reports on its own pipe (``ready``, ``beat S``, ``retire``,
  ``reload``: see :mod:`ferrowsgi.worker`). A worker whose heartbeat deadline
  passed is stuck: "WORKER TIMEOUT" (saying whether an application call was
  running), then SIGABRT, and its faulthandler writes every thread's Python
  stack to the error log.
* A worker that exits with an error before ``ready`` failed to boot: the master
  stops with status 1 (no crash loop) — unless a reload is under way, where the
  new workers are dropped and the old ones keep serving.
* Every stop is bounded: a worker asked to stop gets ``graceful_timeout`` (plus
  one second) before SIGKILL; one sent SIGABRT or SIGQUIT gets two seconds.
"""

from __future__ import annotations

import collections
import os
import select
import signal
import sys
import time
from collections.abc import Callable

from . import _ferrowsgi, loader, options, worker
from .listeners import Listeners
from .logs import log, setup_logging_from
from .server import bind_error

TYPE_CHECKING = False  # typing is not imported at run time: a worker has no use for it
if TYPE_CHECKING:
    from typing import Any

__all__ = ["Master", "run"]

SLACK = 2 * worker.TICK  # a heartbeat may come this late without the worker being stuck
KILL_DELAY = 2.0  # seconds a worker sent SIGABRT or SIGQUIT gets before SIGKILL
HANDLED = (signal.SIGTERM, signal.SIGINT, signal.SIGQUIT, signal.SIGHUP, signal.SIGUSR1,
           signal.SIGTTIN, signal.SIGTTOU, signal.SIGCHLD)  # fmt: skip


def run(cfg: options.Config, argv: list[str], start_dir: str) -> int:
    """Run the master until it stops; return the exit status (0, or 1 when the
    application, a socket or a worker's boot failed). ``argv`` and ``start_dir`` (the
    directory the command started in) are for reading the configuration again."""
    app, baseline = None, set(sys.modules)
    if cfg.preload:
        app = loader.load_logged(cfg.app, cfg.mount)
        if app is None:
            return 1
    try:
        listeners = Listeners.bind(
            cfg.bind, cfg.backlog, cfg.reuse_port, cfg.unix_socket_mode, cfg.certfile is not None
        )
    except OSError as e:
        log.error("Error: %s", bind_error(e, cfg.bind))
        return 1
    try:
        listeners.bind_metrics(cfg.metrics_bind)
        if cfg.metrics_bind is not None:
            _ferrowsgi.metrics_open(metrics_slots(cfg.workers))
    except OSError as e:
        log.error("Error: --metrics-bind: %s", bind_error(e, [cfg.metrics_bind or ""]))
        listeners.close()
        return 1
    try:
        write_pidfile(cfg.pid)
    except OSError as e:
        log.error("Error: --pid: cannot write %r: %s", cfg.pid, e.strerror)
        listeners.close()
        return 1
    try:
        return Master(cfg, (argv, start_dir), app, listeners, baseline).run()
    finally:
        remove_pidfile(cfg.pid)


class WorkerProcess:
    """The master's view of one worker process.

    ``generation`` is bumped by each reload (older generations retire once the new
    one is up); ``pipe`` is the read end of the worker's pipe (-1 once closed);
    ``slot`` names its sockets with --reuse-port (a replacement takes the same
    slot). ``deadline`` is the monotonic time by which it must beat (--timeout),
    ``busy`` whether its last beat said an application call was running, and
    ``kill_at`` when it gets SIGKILL.
    """

    __slots__ = ("busy", "deadline", "generation", "kill_at", "metrics_slot", "pending", "pid",
                 "pipe", "ready", "retiring", "slot", "started")  # fmt: skip

    def __init__(self, pid: int, generation: int, pipe: int, slot: int, metrics_slot: int) -> None:
        self.pid, self.generation, self.pipe, self.slot = pid, generation, pipe, slot
        self.metrics_slot = metrics_slot  # its slot in the metrics segment; 0: none
        self.ready = False  # said "ready": booted
        self.retiring = False  # stopping (asked to, or by itself); no longer counted
        self.busy = False
        self.deadline: float | None = None
        self.kill_at: float | None = None
        self.pending = b""  # a message not yet ended by "\n"
        self.started = time.monotonic()


class Master:
    """The master's state and main loop. :meth:`run` returns the exit status."""

    def __init__(
        self,
        cfg: options.Config,
        source: tuple[list[str], str],
        app: Any,
        listeners: Listeners,
        baseline: set[str],
    ) -> None:
        self.cfg, self.source, self.app, self.listeners = cfg, source, app, listeners
        self.target = cfg.workers  # how many workers should serve (TTIN/TTOU change it)
        self.generation = 0
        self.previous: tuple[options.Config, Any, int, int] | None = None  # before a reload
        self.workers: dict[int, WorkerProcess] = {}
        self.by_pipe: dict[int, WorkerProcess] = {}
        self.signals: collections.deque[int] = collections.deque()
        self.poller = select.poll()
        self.stopping = False
        self.status = 0
        self.announced = False  # "Listening at" logged
        self.wakeup_r, self.wakeup_w = os.pipe()
        self.baseline_modules = baseline  # imported before the app: kept by reimport()

    def run(self) -> int:
        """Supervise until every worker has stopped after TERM, INT or QUIT."""
        for fd in (self.wakeup_r, self.wakeup_w):
            os.set_blocking(fd, False)
        self.poller.register(self.wakeup_r, select.POLLIN)
        signal.set_wakeup_fd(self.wakeup_w, warn_on_full_buffer=False)
        for sig in HANDLED:
            signal.signal(sig, self.queue_signal)
        worker.set_title("master", self.cfg.app)
        try:
            while not (self.stopping and not self.workers):
                self.step()
        finally:
            self.listeners.close()
        log.info("Shutting down")
        return self.status

    def queue_signal(self, signum: int, frame: Any) -> None:
        self.signals.append(signum)  # the wakeup fd wakes the loop; it does the rest

    def step(self) -> None:
        """One turn of the main loop: at most half a second."""
        for fd, _ in self.poller.poll(500):
            if fd == self.wakeup_r:
                _drain(fd)
            elif fd in self.by_pipe:
                self.read_messages(self.by_pipe[fd])
        while self.signals:
            action = ACTIONS.get(self.signals.popleft())
            if action is not None:
                action(self)
        self.reap()
        self.check_deadlines(time.monotonic())
        if not self.stopping:
            self.retire_old_generations()
            self.adjust_workers()

    # --- workers' messages -------------------------------------------------------------

    def read_messages(self, w: WorkerProcess) -> bool:
        """Handle what the worker wrote; False when there was nothing to read."""
        try:
            data = os.read(w.pipe, 4096) if w.pipe >= 0 else b""
        except BlockingIOError:
            return False
        if not data:
            self.close_pipe(w)
            return False
        *lines, w.pending = (w.pending + data).split(b"\n")
        for line in lines:
            word, _, arg = line.decode("ascii", "replace").partition(" ")
            self.on_message(w, word, arg)
        return True

    def on_message(self, w: WorkerProcess, word: str, arg: str) -> None:
        now = time.monotonic()
        if word == "ready":
            log.info("Worker (pid %d) ready in %.2fs", w.pid, now - w.started)
            w.ready = True
            w.deadline = now + self.cfg.timeout if self.cfg.timeout else None
            if not self.announced:
                self.announced = True
                for url in self.listeners.urls():
                    log.info("Listening at: %s (%d)", url, os.getpid())
                if self.listeners.metrics is not None:
                    log.info("Metrics at: %s/metrics", self.listeners.metrics.url)
        elif word == "beat" and self.cfg.timeout:
            w.busy = arg != "idle"
            try:
                w.deadline = now + (float(arg) if w.busy else self.cfg.timeout)
            except ValueError:
                log.warning("Worker (pid %d) sent a bad heartbeat: %r", w.pid, arg)
        elif word == "retire" and not w.retiring:
            if arg in ("max-requests", "memory"):
                self.count_restart(arg)
            w.retiring = True
            w.kill_at = now + self.cfg.graceful_timeout + 1
        elif word == "reload" and w.generation == self.generation and not w.retiring:
            self.reload(f"{arg or 'a Python file'} changed, restarting workers (--reload)")

    def close_pipe(self, w: WorkerProcess) -> None:
        if w.pipe >= 0:
            self.poller.unregister(w.pipe)
            del self.by_pipe[w.pipe]
            os.close(w.pipe)
            w.pipe = -1

    # --- spawning, stopping, reaping -----------------------------------------------------

    def spawn(self) -> None:
        taken = {w.slot for w in self.current()}
        slot = next(i for i in range(len(taken) + 1) if i not in taken)
        self.listeners.for_slot(slot)  # made here, in the master, to outlive the worker
        metrics_slot = self.free_metrics_slot()
        read_end, write_end = os.pipe()
        for stream in (sys.stdout, sys.stderr):
            stream.flush()
        mask = signal.pthread_sigmask(signal.SIG_BLOCK, HANDLED)
        try:
            pid = os.fork()
        except OSError as e:
            signal.pthread_sigmask(signal.SIG_SETMASK, mask)
            os.close(read_end)
            os.close(write_end)
            log.error("Cannot fork a worker: %s; trying again", e)
            return
        if pid == 0:
            self.become_worker(slot, metrics_slot, read_end, write_end, mask)
        signal.pthread_sigmask(signal.SIG_SETMASK, mask)
        os.close(write_end)
        os.set_blocking(read_end, False)
        w = WorkerProcess(pid, self.generation, read_end, slot, metrics_slot)
        self.workers[pid] = self.by_pipe[read_end] = w
        self.poller.register(read_end, select.POLLIN)

    def free_metrics_slot(self) -> int:
        """The lowest metrics slot no live worker holds (0: metrics off, or none free:
        the worker then counts nothing, and the master says so)."""
        if self.listeners.metrics is None:
            return 0
        taken = {w.metrics_slot for w in self.workers.values()}
        free = [i for i in range(1, metrics_slots(self.cfg.workers) + 1) if i not in taken]
        return free[0] if free else 0

    def count_restart(self, cause: str) -> None:
        """One worker replaced, for ``cause`` (``ferrowsgi_worker_restarts_total``)."""
        if self.listeners.metrics is not None:
            _ferrowsgi.metrics_restart(cause)

    def become_worker(
        self, slot: int, metrics_slot: int, read_end: int, write_end: int, mask: set
    ) -> None:
        """In the forked child: drop the master's fds, then run the worker (no return)."""
        signal.set_wakeup_fd(-1)
        for fd in (read_end, self.wakeup_r, self.wakeup_w, *self.by_pipe):
            os.close(fd)
        spec = worker.WorkerSpec(
            cfg=self.cfg,
            binds=self.listeners.hand_over(slot),
            channel=write_end,
            master_pid=os.getppid(),
            multiprocess=self.target > 1,
            app=self.app,
            sigmask=mask,
            metrics=(self.listeners.metrics.handover, metrics_slot)
            if self.listeners.metrics is not None
            else None,
        )
        worker.run(spec)

    def stop_worker(
        self, w: WorkerProcess, sig: int = signal.SIGTERM, grace: float | None = None
    ) -> None:
        """Send ``sig`` (TERM: graceful stop) and set when it will be killed."""
        now = time.monotonic()
        grace = self.cfg.graceful_timeout + 1 if grace is None else grace
        w.kill_at = min(w.kill_at or now + grace, now + grace)
        w.retiring = True
        _kill(w.pid, sig)

    def reap(self) -> None:
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                break
            if pid == 0:
                break
            w = self.workers.pop(pid, None)
            if w is not None:
                while self.read_messages(w):  # what it said last ("ready"?) counts
                    pass
                self.close_pipe(w)
                self.on_exit(w, status)
        # Slots below the target keep their sockets for the next worker (and the
        # connections in their queue); others close once no worker uses them.
        self.listeners.release({w.slot for w in self.workers.values()} | set(range(self.target)))

    def on_exit(self, w: WorkerProcess, status: int) -> None:
        if w.metrics_slot:
            _ferrowsgi.metrics_release(w.metrics_slot)
        if w.ready and not (w.retiring or self.stopping):
            self.count_restart("crash")
        how = describe_status(status)
        if not (w.ready or w.retiring or self.stopping) and os.WIFEXITED(status) and status:
            self.boot_failed(w)
        elif (w.retiring or self.stopping) and status == 0:
            log.info("Worker (pid %d) %s", w.pid, how)
        else:
            log.error("Worker (pid %d) %s", w.pid, how)

    def boot_failed(self, w: WorkerProcess) -> None:
        if w.generation < self.generation:
            log.error("Worker (pid %d) of before the reload failed to boot", w.pid)
            return
        older = [x for x in self.workers.values() if x.generation < w.generation]
        if self.previous is not None and any(not x.retiring for x in older):
            log.error("Reload failed: a new worker could not start; the old workers keep serving")
            for x in self.workers.values():
                if x.generation == self.generation:
                    self.stop_worker(x)
            self.cfg, self.app, self.target, self.generation = self.previous
            self.previous = None
            return
        log.critical("Worker (pid %d) failed to boot; stopping", w.pid)
        self.status = 1
        self.graceful_stop()

    def check_deadlines(self, now: float) -> None:
        for w in list(self.workers.values()):
            if w.kill_at is not None and now >= w.kill_at:
                log.warning("Worker (pid %d) did not stop in time; killing it", w.pid)
                w.kill_at = None
                _kill(w.pid, signal.SIGKILL)
            elif w.deadline is not None and now > w.deadline + SLACK:
                what = (
                    "an application call ran longer than --timeout %gs"
                    if w.busy
                    else "no heartbeat for --timeout %gs, with no application call running"
                )
                log.critical("WORKER TIMEOUT (pid %d): " + what + "; its Python stacks follow",
                             w.pid, self.cfg.timeout)  # fmt: skip
                w.deadline = None
                self.count_restart("timeout")
                self.stop_worker(w, signal.SIGABRT, KILL_DELAY)

    # --- keeping the right workers --------------------------------------------------------

    def current(self) -> list[WorkerProcess]:
        """Workers of the current generation that are not stopping, by slot."""
        live = [w for w in self.workers.values() if w.generation == self.generation]
        return sorted((w for w in live if not w.retiring), key=lambda w: w.slot)

    def adjust_workers(self) -> None:
        current = self.current()
        for w in current[self.target :]:
            self.stop_worker(w)
        for _ in range(self.target - len(current)):
            self.spawn()

    def retire_old_generations(self) -> None:
        current = self.current()
        if len(current) >= self.target and all(w.ready for w in current):
            self.previous = None
            for w in list(self.workers.values()):
                if w.generation < self.generation and not w.retiring:
                    self.count_restart("reload")
                    self.stop_worker(w)

    # --- signal actions -----------------------------------------------------------------

    def graceful_stop(self) -> None:
        if self.stopping:  # a second TERM or Ctrl-C: no more waiting
            self.quick_stop()
            return
        log.info("Stopping gracefully (up to %gs)", self.cfg.graceful_timeout)
        self.stopping = True
        self.listeners.close()
        for w in list(self.workers.values()):
            if not w.retiring:
                self.stop_worker(w)

    def quick_stop(self) -> None:
        log.info("Stopping now")
        self.stopping = True
        self.listeners.close()
        for w in list(self.workers.values()):
            self.stop_worker(w, signal.SIGQUIT, KILL_DELAY)

    def reload(self, reason: str = "SIGHUP") -> None:
        """New workers with the configuration re-read and the application re-imported;
        the old ones stop gracefully once all the new ones are ready."""
        if self.stopping:
            return
        log.info("Reloading: %s", reason)
        cfg = reread_config(*self.source)
        if cfg is None:
            return
        for line in [*cfg.warnings, *fixed_settings_changed(self.cfg, cfg)]:
            log.warning("%s", line)
        app = self.reimport(cfg) if self.app is not None else None
        if self.app is not None and app is None:
            log.error("Reload failed: the application could not be imported; nothing changed")
            return
        self.reopen_logs(cfg)
        self.previous = (self.cfg, self.app, self.target, self.generation)
        self.cfg, self.app, self.target = cfg, app, max(1, cfg.workers)
        self.generation += 1

    def reimport(self, cfg: options.Config) -> Callable[..., Any] | None:
        """Import the preloaded application again, after forgetting the modules of the
        application's directory imported since the master started."""
        root = worker.app_directory(cfg.app) + os.sep
        for name in set(sys.modules) - self.baseline_modules:
            path = getattr(sys.modules[name], "__file__", None) or ""
            if path.startswith(root) and "-packages" + os.sep not in path:
                del sys.modules[name]
        return loader.load_logged(cfg.app, cfg.mount)

    def reopen_logs(self, cfg: options.Config | None = None) -> None:
        cfg = cfg or self.cfg
        try:
            setup_logging_from(cfg)
        except OSError as e:
            log.error("Cannot open the access log %r: %s", cfg.access_log, e.strerror)

    def on_usr1(self) -> None:
        log.info("Reopening the log files")
        self.reopen_logs()
        for w in self.workers.values():
            _kill(w.pid, signal.SIGUSR1)

    def one_more(self) -> None:
        self.target += 1
        log.info("Workers: %d (SIGTTIN)", self.target)

    def one_less(self) -> None:
        self.target = max(1, self.target - 1)
        log.info("Workers: %d (SIGTTOU)", self.target)


ACTIONS: dict[int, Callable[[Master], None] | None] = {
    signal.SIGTERM: Master.graceful_stop,
    signal.SIGINT: Master.graceful_stop,
    signal.SIGQUIT: Master.quick_stop,
    signal.SIGHUP: Master.reload,
    signal.SIGUSR1: Master.on_usr1,
    signal.SIGTTIN: Master.one_more,
    signal.SIGTTOU: Master.one_less,
    signal.SIGCHLD: None,  # reaping happens on every turn of the loop
}


def reread_config(argv: list[str], start_dir: str) -> options.Config | None:
    """The configuration read again from where the command started (relative
    ``--config`` paths), or None after logging why it cannot be."""
    here = os.getcwd()
    try:
        os.chdir(start_dir)
        return options.load(argv)
    except (options.ConfigError, OSError) as e:
        log.error("Reload failed: %s; nothing changed", e)
        return None
    finally:
        os.chdir(here)


def describe_status(status: int) -> str:
    """``exited with status 1`` or ``was killed by signal 9 (SIGKILL)``."""
    if os.WIFSIGNALED(status):
        number = os.WTERMSIG(status)
        try:
            name = signal.Signals(number).name
        except ValueError:
            name = "unknown"
        return f"was killed by signal {number} ({name})"
    return f"exited with status {os.WEXITSTATUS(status)}"


def fixed_settings_changed(old: options.Config, new: options.Config) -> list[str]:
    """Warnings for settings a reload cannot change."""
    fixed = ("bind", "reuse_port", "preload", "pid", "chdir", "backlog", "unix_socket_mode",
             "metrics_bind")  # fmt: skip
    return [
        f"Reload: --{name.replace('_', '-')} changed; it takes effect at the next restart"
        for name in fixed
        if getattr(old, name) != getattr(new, name)
    ]


def metrics_slots(workers: int) -> int:
    """Worker slots in the metrics segment: room for a reload's second generation and
    for workers added with TTIN."""
    return max(64, 4 * workers)


def write_pidfile(path: str | None) -> None:
    """Write this process's pid to ``path`` (atomically: a reader never sees it half
    written). Raises ``OSError``."""
    if path:
        temporary = f"{path}.{os.getpid()}.tmp"
        with open(temporary, "w") as f:
            f.write(f"{os.getpid()}\n")
        os.replace(temporary, path)


def remove_pidfile(path: str | None) -> None:
    """Remove the pid file, if it still holds this process's pid."""
    try:
        with open(path or "") as f:
            ours = f.read().strip() == str(os.getpid())
        if ours and path:
            os.unlink(path)
    except OSError:
        pass


def _drain(fd: int) -> None:
    try:
        while os.read(fd, 4096):
            pass
    except BlockingIOError:
        pass


def _kill(pid: int, sig: int) -> None:
    try:
        os.kill(pid, sig)
    except ProcessLookupError:
        pass  # already gone; reaped on the next turn
