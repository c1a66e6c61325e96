"""Every server benches/run.py measures: its command line, its label, what to know about it.

Each runs ONE worker process (no more) behind ``taskset -c 0``, with cwd =
the repository root and PYTHONPATH set to it. A server runs only the
workloads its ``Command`` lists; options a workload needs (c10k's connection
limits) are added from ``Command.extra``.
"""

from __future__ import annotations

import os
import shlex
from dataclasses import dataclass, field
from pathlib import Path

from benches import harness, install
from benches.apps import STATIC_FILE, STATIC_ROOT
from benches.report import FLOOR
from benches.workloads import WORKLOADS

CPU_WORKLOADS = ("hello", "flask", "big", "post")
PY_GZIP = "ferrowsgi-pygzip"
ISSUE_9 = ("pipelined", "c10k")


@dataclass(frozen=True)
class Command:
    """How to start one server; ``{threads}`` is ``threads``, or ``io_threads`` on io."""

    argv: str
    threads: int = 1
    io_threads: int = 1
    workloads: tuple[str, ...] = (*CPU_WORKLOADS, "io")
    extra: dict[str, str] = field(default_factory=dict)  # options added on a workload
    apps: dict[str, str] = field(default_factory=dict)  # its own app on a workload


# Every server's command line. Placeholders: {ferrowsgi} {bin} (the venv's
# bin/) {ceiling} {floor} {app} (module:callable) {module} {callable} {host}
# {port} {threads} {max_connections} (twice --idle) {static_dir} (the static
# workload's directory) {nginx} {nginx_conf} (written for this port). All run with cwd = the
# repo root and PYTHONPATH set to it, behind `taskset -c 0`.
SERVERS = {
    "ferrowsgi": Command(
        "{ferrowsgi} {app} --bind {host}:{port} --threads {threads}",
        io_threads=128,
        workloads=(*CPU_WORKLOADS, "io", *ISSUE_9, "gzip", "static"),
        # Its defaults: 1000 connections per worker, idle ones closed after 5 s.
        extra={
            "c10k": "--max-connections {max_connections} --keep-alive 300",
            "gzip": "--compress",
            "static": "--static /static={static_dir}",
        },
        # gzip: the application without the Python middleware; --compress does it.
        apps={"gzip": "benches.apps:json_body"},
    ),
    # The gzip workload's Python middleware on ferrowsgi (no --compress).
    PY_GZIP: Command(
        "{ferrowsgi} {app} --bind {host}:{port} --threads {threads}", workloads=("gzip",)
    ),
    # The same file through the application: wsgi.file_wrapper, 8 KiB blocks.
    "file_wrapper": Command(
        "{ferrowsgi} {app} --bind {host}:{port} --threads {threads}", workloads=("static",)
    ),
    "nginx": Command("{nginx} -p {static_root}/ -c {nginx_conf}", workloads=("static",)),
    "bjoern": Command(
        '{bin}/python -c "import bjoern, importlib; '
        "app = getattr(importlib.import_module('{module}'), '{callable}'); "
        "bjoern.run(app, '{host}', {port})\"",
        workloads=(*CPU_WORKLOADS, "io", *ISSUE_9),
    ),
    "granian": Command(
        "{bin}/granian --interface wsgi --workers 1 --host {host} --port {port} {app}",
        workloads=(*CPU_WORKLOADS, "io", *ISSUE_9),
        # Keep-alive is on by default, with no idle timeout; --backpressure
        # (default: the backlog, 1024) bounds the connections one worker serves.
        extra={"c10k": "--backpressure {max_connections}"},
    ),
    # --http-socket closes the connection after every response (wrk counts a
    # read error each time); --http11-socket keeps it open, but then the one
    # process serves one connection at a time and starves the other 49.
    # No master process is the default (--master=false is not accepted).
    "uwsgi": Command(
        "{bin}/uwsgi --http-socket {host}:{port} --processes 1 --need-app "
        "--disable-logging --die-on-term --module {app}",
        workloads=CPU_WORKLOADS,
    ),
    "gunicorn": Command(
        "{bin}/gunicorn -w 1 -k gthread --threads {threads} --bind {host}:{port} {app}",
        io_threads=32,
        workloads=(*CPU_WORKLOADS, "io", "gzip"),
    ),
    "waitress": Command("{bin}/waitress-serve --listen={host}:{port} {app}"),
    "ceiling": Command("{ceiling} {host}:{port}", workloads=("hello", *ISSUE_9)),
    FLOOR: Command("{floor} {port}", workloads=("hello", *ISSUE_9)),
}
LABELS = {
    "ceiling": "ceiling (no Python)",
    FLOOR: "floor (epoll, no HTTP)",
    PY_GZIP: "ferrowsgi + Python gzip",
    "file_wrapper": "ferrowsgi file_wrapper",
}
NOTES = [
    "uwsgi runs with --http-socket, which closes the connection after every response: "
    "wrk reconnects for each request and counts each close as a read error (its errors "
    "column). With --http11-socket one uwsgi process serves one connection at a time.",
    "io: ferrowsgi --threads 128, gunicorn gthread --threads 32, granian and waitress "
    "with their defaults, bjoern single-threaded (one request at a time by design); "
    "uwsgi is not run.",
    "Other workloads: ferrowsgi --threads 1, gunicorn -k gthread --threads 1.",
    "big sets Content-Length, so no server uses chunked framing.",
    "ceiling (no Python): benches/ceiling, hyper on a current-thread tokio runtime.",
    "floor (epoll, no HTTP): benches/floor_server, one thread, level-triggered epoll, "
    "one recv and one send per batch of request heads, a fixed answer; the least CPU a "
    "server can spend per request, so every CPU figure is also shown as a multiple of it.",
    "RSS is the worker's: ferrowsgi, gunicorn and granian start a master process and "
    "one worker, and the master is not counted. CPU time per request is the whole "
    "server's (master included): utime + stime from /proc over the load ÷ requests done.",
    "PSS is the same worker's, read from /proc/PID/smaps_rollup right after its RSS "
    "(VmRSS). RSS counts in full every page the worker maps, so the pages it shares with "
    "the master process (copy-on-write pages from before the fork, shared libraries) "
    "count whole in both; PSS divides each shared page between the processes that map "
    "it (a page mapped by the master and the worker counts half in each). bjoern has no "
    "master, so its two figures differ only by the pages of files other processes map too "
    "(libpython, libc; benches/run.py's own Python among them): PSS moves with what else "
    "runs on the machine, for every server alike.",
    "pipelined: wrk writes 16 hello GETs at once (benches/pipelined.lua) and its next 16 "
    "once all 16 answers are in; a server that does not answer all 16 of one raw write "
    "fails the run and is shown with the count it answered.",
    "pipelined: wrk records one latency per batch of 16, so its p50 and p99 are a batch's "
    "(and wrk shows 0 for a percentile it has too few batches for).",
    "c10k: hello at 50 connections without idle connections, with them open (each answered "
    "once, then left idle), and without again once they are closed; req/s and CPU per "
    "request with them ÷ the mean of the two without, and worker RSS growth ÷ their "
    "number. ferrowsgi runs with --max-connections (twice their number) and --keep-alive "
    "300, granian with --backpressure (the same); bjoern has no limit nor timeout.",
    "uwsgi, gunicorn and waitress do not run pipelined nor c10k.",
    "gzip: a 100 KiB JSON body (benches.apps:json_body) requested with Accept-Encoding: "
    "gzip. ferrowsgi compresses it with --compress (gzip level 6, on its I/O thread); "
    "'ferrowsgi + Python gzip' (ferrowsgi without --compress) and gunicorn run the same "
    "application wrapped in a Python WSGI middleware that collects the body and calls "
    "gzip.compress (level 6). Both send ~11.5 KiB. CPU per MiB: the server's CPU time "
    "per request ÷ 0.098 MiB (the uncompressed body), the whole request included.",
    "static: a 1 MiB file at 10 connections; ferrowsgi answers it with --static (the "
    "application is never called), 'ferrowsgi file_wrapper' with an application that "
    "returns wsgi.file_wrapper over it (8 KiB blocks, as Flask's send_file), nginx "
    "with `location /static/ { root ...; }`, one worker process, sendfile on, "
    "tcp_nopush on, access log off.",
]

# nginx for the static workload: one worker process (under a master, which the
# tables do not count in RSS), the same file, sendfile as production configs have it.
NGINX_CONF = """daemon off;
master_process on;
worker_processes 1;
pid {root}/nginx-{port}.pid;
error_log {root}/nginx-{port}.log;
events {{ worker_connections 1024; }}
http {{
    access_log off;
    default_type application/octet-stream;
    sendfile on;
    tcp_nopush on;
    keepalive_requests 1000000;
    server {{
        listen {host}:{port};
        location /static/ {{ root {root}; }}
    }}
}}
"""


def nginx_conf(port: int) -> Path:
    """Write nginx's configuration for ``port``; returns its path."""
    conf = STATIC_ROOT / f"nginx-{port}.conf"
    conf.write_text(NGINX_CONF.format(root=STATIC_ROOT, host=harness.HOST, port=port))
    return conf


def server_argv(name: str, workload: str, port: int, ferrowsgi: str, idle: int) -> list[str]:
    """The pinned command line of ``name`` serving ``workload`` on ``port``."""
    command = SERVERS[name]
    threads = command.io_threads if workload == "io" else command.threads
    app = command.apps.get(workload, WORKLOADS[workload].app)
    module, _, attr = app.partition(":")
    text = " ".join([command.argv, command.extra.get(workload, "")]).format(
        ferrowsgi=ferrowsgi,
        bin=install.BIN,
        ceiling=install.CEILING_BIN,
        floor=install.FLOOR_BIN,
        app=app,
        module=module,
        callable=attr,
        host=harness.HOST,
        port=port,
        threads=threads,
        max_connections=2 * idle,
        static_dir=STATIC_FILE.parent,
        static_root=STATIC_ROOT,
        nginx=install.NGINX or "nginx",
        nginx_conf=nginx_conf(port) if name == "nginx" else "",
    )
    return ["taskset", "-c", "0", *shlex.split(text)]


def server_env() -> dict[str, str]:
    """The environment every server runs with."""
    path = f"{install.BIN}{os.pathsep}{os.environ.get('PATH', '')}"
    return dict(os.environ, PYTHONPATH=str(install.ROOT), PATH=path)
