"""Process plumbing for benches/run.py: start a server, wait for it, load it, stop it.

Rules kept here:

* Every server runs in its own session (process group) and is killed as a
  group — SIGTERM, then SIGKILL after a grace period — by :func:`stop_all`,
  which run.py calls in a ``finally`` (Ctrl-C and SIGTERM included).
* Readiness is a successful TCP connect to the port, polled while the process
  is alive, with a deadline; never a fixed sleep.
* Every load run is bounded: wrk gets ``-d`` and the subprocess a timeout.
* The RSS reported is the worker's: the descendant of the started process that
  has no children of its own (a master, when there is one, is skipped). Its
  PSS is read with it, for the same pid at the same moment: RSS counts every
  page the worker maps in full, pages shared with the master included; PSS
  divides each shared page between the processes that map it.
* The CPU time reported is the whole server's: utime + stime (and that of
  reaped children) of every process in its tree, read from ``/proc/PID/stat``
  just before wrk starts and just after it ends, divided by the requests wrk
  completed.
"""

from __future__ import annotations

import os
import re
import resource
import signal
import socket
import subprocess
import tempfile
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

HOST = "127.0.0.1"
START_TIMEOUT = 60.0
STOP_GRACE = 5.0
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")  # units of /proc/PID/stat's CPU times
_running: dict[int, subprocess.Popen] = {}


class BenchError(Exception):
    """A server could not be started, answered wrongly, or a load run failed.

    ``shown``: a few words the tables show instead of "failed", when they say more.
    """

    def __init__(self, message: str, shown: str | None = None) -> None:
        super().__init__(message)
        self.shown = shown


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return sock.getsockname()[1]


@dataclass
class Server:
    """A started server process and where its output goes."""

    proc: subprocess.Popen
    port: int
    log: Path

    def tail(self, lines: int = 8) -> str:
        """The last lines the server printed, for error messages."""
        text = self.log.read_text(errors="replace").strip().splitlines()
        return " | ".join(text[-lines:])


def raise_nofile(wanted: int) -> int:
    """Raise this process's open-file limit to ``wanted`` if it is lower; returns the limit.

    Root may raise the hard limit too; anyone else gets at most the hard limit.
    """
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY or soft >= wanted:
        return wanted
    if hard != resource.RLIM_INFINITY and hard < wanted:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, wanted))
            return wanted
        except (ValueError, OSError):
            wanted = hard
    resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, hard))
    return wanted


def start(argv: list[str], port: int, cwd: Path, env: dict[str, str], nofile: int = 0) -> Server:
    """Start ``argv`` in a new session and wait until ``port`` accepts connections.

    ``nofile``: raise the server's open-file limit to this (``ulimit -n``) first.
    """
    fd, log = tempfile.mkstemp(prefix="ferrowsgi-bench-", suffix=".log")
    with os.fdopen(fd, "wb") as out:
        proc = subprocess.Popen(
            argv,
            cwd=cwd,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            preexec_fn=(lambda: raise_nofile(nofile)) if nofile else None,
        )
    _running[proc.pid] = proc
    server = Server(proc, port, Path(log))
    try:
        _wait_for_port(server)
    except BaseException:
        stop(server)
        raise
    return server


def _wait_for_port(server: Server) -> None:
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        if server.proc.poll() is not None:
            raise BenchError(f"exited with {server.proc.returncode}: {server.tail()}")
        try:
            socket.create_connection((HOST, server.port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.05)  # poll interval, not a readiness guess
    raise BenchError(f"port {server.port} not open after {START_TIMEOUT:.0f} s: {server.tail()}")


def stop(server: Server) -> None:
    """Stop the server's whole process group; SIGKILL what outlives the grace period."""
    proc = _running.pop(server.proc.pid, server.proc)
    _signal_group(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout=STOP_GRACE)
    except subprocess.TimeoutExpired:
        pass
    _signal_group(proc.pid, signal.SIGKILL)  # stragglers: workers, helpers
    proc.wait()
    server.log.unlink(missing_ok=True)


def stop_all() -> None:
    """Stop every server still running (for ``finally`` and signal handlers)."""
    for proc in list(_running.values()):
        _signal_group(proc.pid, signal.SIGKILL)
        proc.wait()
    _running.clear()


def _signal_group(pgid: int, sig: int) -> None:
    try:
        os.killpg(pgid, sig)
    except ProcessLookupError:
        pass


def fetch(port: int, body: bytes | None, path: str = "/") -> tuple[int, bytes]:
    """One request to ``path`` (a POST when ``body`` is given): (status, body)."""
    req = urllib.request.Request(f"http://{HOST}:{port}{path}", data=body)
    if body is not None:
        req.add_header("Content-Type", "application/octet-stream")
    with urllib.request.urlopen(req, timeout=10) as resp:
        return resp.status, resp.read()


def _children() -> dict[int, list[int]]:
    tree: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            ppid = int(stat.rsplit(")", 1)[1].split()[1])
            tree.setdefault(ppid, []).append(int(entry.name))
    return tree


def rss_kib(pid: int) -> int:
    """VmRSS of ``pid``, KiB (0 if it is gone)."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return 0
    match = re.search(r"^VmRSS:\s+(\d+) kB", status, re.MULTILINE)
    return int(match.group(1)) if match else 0


def _tree(server: Server) -> tuple[list[int], list[int]]:
    """(every pid of the server's process tree, the leaves among them)."""
    tree = _children()
    pids, leaves, todo = [], [], [server.proc.pid]
    while todo:
        pid = todo.pop()
        pids.append(pid)
        kids = tree.get(pid, [])
        todo.extend(kids)
        if not kids:
            leaves.append(pid)
    return pids, leaves


def pss_kib(pid: int) -> int:
    """PSS of ``pid`` from /proc/PID/smaps_rollup, KiB (0 if it is gone or unreadable).

    smaps_rollup needs Linux 4.14 or later and the right to read the process's maps.
    """
    try:
        rollup = Path(f"/proc/{pid}/smaps_rollup").read_text()
    except OSError:
        return 0
    match = re.search(r"^Pss:\s+(\d+) kB", rollup, re.MULTILINE)
    return int(match.group(1)) if match else 0


def _worker(server: Server) -> tuple[int, int]:
    """(pid, RSS KiB) of the serving process: the largest leaf of the server's tree."""
    return max(((pid, rss_kib(pid)) for pid in _tree(server)[1]), key=lambda x: x[1])


def worker_rss_kib(server: Server) -> int:
    """RSS of the serving process: the largest leaf of the server's process tree."""
    return _worker(server)[1]


def worker_memory_kib(server: Server) -> tuple[int, int]:
    """(RSS, PSS) of the serving process, KiB, read one right after the other.

    PSS is 0 when /proc/PID/smaps_rollup cannot be read.
    """
    pid, rss = _worker(server)
    return rss, pss_kib(pid)


def cpu_seconds(server: Server) -> float:
    """CPU time used so far by the server's whole process tree (every thread), seconds."""
    ticks = 0
    for pid in _tree(server)[0]:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue  # gone since the tree was read
        # Fields 14-17 of proc(5): utime, stime, cutime, cstime (fields[0] is field 3).
        ticks += sum(int(n) for n in fields[11:15])
    return ticks / CLOCK_TICKS


@dataclass
class Load:
    """What one wrk run measured."""

    requests_per_s: float
    p50_ms: float
    p99_ms: float
    errors: int
    requests: int = 0  # responses wrk completed
    cpu_us: float | None = None  # the server's CPU time per request, µs (see load())


def run_wrk(
    port: int,
    connections: int,
    seconds: int,
    script: Path | None,
    script_args: tuple = (),
    path: str = "/",
) -> Load:
    """wrk -t1 pinned to core 1 against ``path`` on ``port`` for ``seconds`` (whole
    seconds: wrk's unit).

    ``script_args`` go to the script's ``init(args)``.
    """
    argv = ["taskset", "-c", "1", "wrk", "-t1", f"-c{connections}", f"-d{seconds}s"]
    argv += ["--latency", "--timeout", "5s"]
    if script is not None:
        argv += ["-s", str(script)]
    argv.append(f"http://{HOST}:{port}{path}")
    if script_args:
        argv += ["--", *map(str, script_args)]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=seconds + 60)
    if done.returncode != 0:
        output = (done.stderr.strip() or done.stdout.strip() or "no output").splitlines()
        raise BenchError(f"wrk failed ({done.returncode}): {output[0]}")
    return parse_wrk(done.stdout)


def load(
    server: Server,
    connections: int,
    seconds: int,
    script: Path | None,
    script_args: tuple = (),
    path: str = "/",
) -> Load:
    """:func:`run_wrk` against ``server``, with the server's CPU time per request."""
    before = cpu_seconds(server)
    result = run_wrk(server.port, connections, seconds, script, script_args, path)
    used = cpu_seconds(server) - before
    if result.requests:
        result.cpu_us = used * 1e6 / result.requests
    return result


_UNITS_MS = {"us": 1e-3, "ms": 1.0, "s": 1e3, "m": 60e3}


def _latency_ms(text: str, percent: str) -> float:
    match = re.search(rf"^\s*{percent}%\s+([\d.]+)(us|ms|s|m)\s*$", text, re.MULTILINE)
    if not match:
        raise BenchError(f"no {percent}% latency in wrk output")
    return float(match.group(1)) * _UNITS_MS[match.group(2)]


def parse_wrk(text: str) -> Load:
    """Requests/s, p50/p99, the error count and the requests done from wrk's output."""
    match = re.search(r"^Requests/sec:\s+([\d.]+)", text, re.MULTILINE)
    done = re.search(r"^\s*(\d+) requests in ", text, re.MULTILINE)
    if not match or not done:
        raise BenchError(f"unexpected wrk output: {text.strip()[-300:]}")
    errors = sum(int(n) for n in re.findall(r"(?:connect|read|write|timeout) (\d+)", text))
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", text)
    errors += int(non2xx.group(1)) if non2xx else 0
    p50, p99 = _latency_ms(text, "50"), _latency_ms(text, "99")
    return Load(float(match.group(1)), p50, p99, errors, int(done.group(1)))
