"""Rolling restarts behind nginx (issue 11): no request lost, 10 runs out of 10.

Two ferrowsgi instances, A and B (each a master with two workers), sit in one nginx
upstream with pooled connections (``keepalive 16``), reached by the protocol under test
with the site configuration of tests/nginx_site.py, the one the documents show. Each run
starts both instances and its own nginx, sends a bounded load of keep-alive GETs
through nginx, and meanwhile:

1. sends HUP to A (new workers start, the old ones drain and exit),
2. sends TERM to B (in odd runs before A's HUP, so that A reloads while B drains),
   waits for B to exit (its workers drain first),
3. starts B again on the same port,

then lets the load run a little longer. Every response that is not a complete 200 and
every connection error at the client is a failed request: there must be none, in each
of 10 runs. nginx's error log must not show a ferrowsgi instance closing or resetting
a connection that nginx had sent a request on ("upstream prematurely closed", "reset
by peer"), which nginx would retry or answer 502. A stopping instance stops listening
when its stop begins and serves the connections already queued (see the last two
tests), so nginx finds B's port refused, and tries A, instead of reset: at most one
reset from B's port is excused per run, for a connection that reaches B's listening
socket in the instant between the last accept() (the queue found empty) and the
close(). nginx's "connect() failed (111: Connection refused)" while B is down is the
restart itself.

The protocol is a parameter: ``http`` (proxy_pass), ``uwsgi`` (uwsgi_pass) and
``fastcgi`` (fastcgi_pass with fastcgi_keep_conn).
"""

from __future__ import annotations

import http.client
import re
import signal
import socket
import threading
import time
from datetime import datetime
from pathlib import Path

import nginx_site
import pytest
from conftest import NGINX, ROOT, ServerProcess, read_response, request_bytes, wait_until

# The upstream protocols (nginx_site has the config of each).
PROTOCOLS = ("http", "uwsgi", "fastcgi")

APP = "supervised_app:app"
# --keep-alive is the drain period of a stopping worker (see README, "Graceful stop"):
# 1 s keeps each run short.
INSTANCE = ("--workers", "2", "--keep-alive", "1", "--graceful-timeout", "10")
RUNS = 10
CLIENTS = 8
WARM_UP = 200  # requests served before the first signal: both instances hold pooled connections
AFTER = 0.5  # seconds the load goes on once B is back and A's reload is over
MIN_ANSWERED = 500  # a run's load spans the restarts with at least this many requests
LOAD_CAP_SECONDS = 12.0  # a run's load never lasts longer than this
MAX_REQUESTS_PER_CLIENT = 20_000
EXCUSED_RESETS = 1  # per run, from the replaced instance's port (module docstring)
UPSTREAM_ERROR = re.compile(r"prematurely closed|reset by peer|no live upstreams")
UPSTREAM_PORT = re.compile(r'upstream: "\w+://127\.0\.0\.1:(\d+)')

needs_nginx = pytest.mark.skipif(
    NGINX is None, reason="nginx not found on PATH or in /usr/sbin (`make deps` installs it)"
)


# --- the instances ----------------------------------------------------------------------


class Instance:
    """One ferrowsgi master with two workers, bound to ``port`` for ``protocol``."""

    def __init__(self, protocol: str, port: int):
        self.protocol, self.port = protocol, port
        self.server = ServerProcess([APP, *INSTANCE, "--bind", nginx_site.bind(protocol, port)])

    @property
    def proc(self):
        return self.server.proc

    def wait_ready(self) -> None:
        self.server.wait_for_log(r"Listening at: ", timeout=30)
        assert wait_until(lambda: listening(self.port), 10), self.server.log

    def workers(self) -> set[int]:
        """The pids of the master's worker processes."""
        pid = self.proc.pid
        path = Path(f"/proc/{pid}/task/{pid}/children")
        return {int(p) for p in path.read_text().split()} if path.exists() else set()

    def wait_workers(self, count: int, without: set[int] = frozenset()) -> set[int]:
        """Waits until the master has ``count`` workers, none in ``without``; their pids."""

        def settled():
            kids = self.workers()
            return kids if len(kids) == count and not kids & without else None

        kids = wait_until(settled, 15)
        assert kids, f"want {count} workers (not {without}); log:\n{self.server.log}"
        return kids


def listening(port: int) -> bool:
    """True while some socket listens on 127.0.0.1:``port`` (IPv4)."""
    rows = Path("/proc/net/tcp").read_text().splitlines()[1:]
    return any(r.split()[1].endswith(f":{port:04X}") and r.split()[3] == "0A" for r in rows)


# --- the load ---------------------------------------------------------------------------


class Load:
    """``CLIENTS`` HTTP/1.1 keep-alive clients sending GETs to nginx until ``finish()``
    (at most LOAD_CAP_SECONDS, and MAX_REQUESTS_PER_CLIENT each). Every answer that is
    not a complete 200, and every exception, is a failure. One request in 20 waits
    50 ms in the application, so requests are in flight whenever a signal arrives."""

    def __init__(self, port: int):
        self.port = port
        self.ok = 0
        self.pids: set[int] = set()
        self.failures: list[str] = []
        self._lock = threading.Lock()
        self._deadline = time.monotonic() + LOAD_CAP_SECONDS
        self.threads = [threading.Thread(target=self._client) for _ in range(CLIENTS)]
        for t in self.threads:
            t.start()

    def _client(self) -> None:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=15)
        try:
            for n in range(MAX_REQUESTS_PER_CLIENT):
                if time.monotonic() >= self._deadline:
                    break
                self._one(conn, "/sleep?s=0.05" if n % 20 == 19 else "/")
        finally:
            conn.close()

    def _one(self, conn: http.client.HTTPConnection, path: str) -> None:
        try:
            conn.request("GET", path)
            response = conn.getresponse()
            body = response.read()
        except (OSError, http.client.HTTPException) as e:
            conn.close()  # the next request opens a new connection
            self._fail(f"GET {path}: {type(e).__name__}: {e}")
            return
        if response.status != 200:
            self._fail(f"GET {path}: {response.status} {body[:100]!r}")
            return
        pid = re.search(rb'"pid": (\d+)', body) if path == "/" else None
        if path == "/" and pid is None:
            self._fail(f"GET {path}: not the application's answer: {body[:100]!r}")
            return
        with self._lock:
            self.ok += 1
            if pid:
                self.pids.add(int(pid[1]))

    def _fail(self, what: str) -> None:
        with self._lock:
            self.failures.append(f"{datetime.now():%H:%M:%S.%f} {what}")

    def wait_for(self, count: int, timeout: float = 10.0) -> None:
        assert wait_until(lambda: self.ok >= count, timeout), f"load stalled: {self.failures[:5]}"

    def finish(self, after: float) -> None:
        """Ends the load ``after`` seconds from now; waits for every client."""
        self._deadline = min(self._deadline, time.monotonic() + after)
        for t in self.threads:
            t.join(LOAD_CAP_SECONDS + 30)
        assert not any(t.is_alive() for t in self.threads), "a load client hung"


# --- one run ----------------------------------------------------------------------------


class Timeline:
    """What a run did when, in wall-clock time to compare with nginx's logs."""

    def __init__(self) -> None:
        self.events: list[str] = []

    def __call__(self, what: str) -> None:
        self.events.append(f"{datetime.now():%H:%M:%S.%f}"[:-3] + " " + what)

    def __str__(self) -> str:
        return "\n".join(self.events)


def upstream_errors(error_log: str, replaced_port: int) -> list[str]:
    """nginx's error-log lines that show an instance dropping a request nginx had sent
    it, less one reset from the replaced instance's port (see the module docstring)."""
    errors, excused = [], 0
    for line in error_log.splitlines():
        port = UPSTREAM_PORT.search(line)
        reset = "reset by peer" in line and port and int(port[1]) == replaced_port
        if reset and excused < EXCUSED_RESETS:
            excused += 1
        elif UPSTREAM_ERROR.search(line):
            errors.append(line)
    return errors


def upstream_503s(access_log: Path) -> list[str]:
    """Requests an instance answered 503 (nginx retried them on the other one)."""
    lines = access_log.read_text().splitlines() if access_log.exists() else []
    return [line for line in lines if re.search(r"\b503\b", line.split('"', 2)[-1])]


def scenario(protocol: str, run: int, tmp: Path, started: list[Instance]) -> tuple[int, list[str]]:
    """One run: how many requests were answered, and what went wrong (nothing, when
    the restarts lost no request)."""

    def instance(port: int) -> Instance:
        started.append(Instance(protocol, port))
        return started[-1]

    a, b = instance(nginx_site.free_port()), instance(nginx_site.free_port())
    a.wait_ready()
    b.wait_ready()
    old_a, old_b = a.wait_workers(2), b.wait_workers(2)
    proxy = nginx_site.Nginx(tmp, protocol, [f"127.0.0.1:{a.port}", f"127.0.0.1:{b.port}"])
    timeline = Timeline()
    try:
        proxy.start()
        timeline(f"load starts: A :{a.port} workers {sorted(old_a)}, B :{b.port} {sorted(old_b)}")
        load = Load(proxy.port)
        try:
            load.wait_for(WARM_UP)
            # Overlapping, in either order: A reloads while B drains, or the other way.
            if run % 2 == 0:
                a.proc.send_signal(signal.SIGHUP)
                timeline("HUP to A")
            b.proc.send_signal(signal.SIGTERM)
            timeline("TERM to B")
            if run % 2 == 1:
                time.sleep(0.1)
                a.proc.send_signal(signal.SIGHUP)
                timeline("HUP to A")
            b_status = b.proc.wait(15)
            timeline(f"B exited with status {b_status}; starting B again")
            new_b = instance(b.port)
            new_b.wait_ready()
            timeline("the new B is ready")
            new_a = a.wait_workers(2, without=old_a)
            timeline(f"A's old workers have exited; new ones {sorted(new_a)}")
        finally:
            load.finish(AFTER)
            timeline(f"load ends: {load.ok} answered, {len(load.failures)} failed")
    finally:
        proxy.stop()

    problems = []
    if load.failures:
        problems.append(f"{len(load.failures)} failed requests: {load.failures[:10]}")
    errors = upstream_errors(proxy.errors(), replaced_port=b.port)
    if errors:
        problems.append("nginx logged upstream errors:\n" + "\n".join(errors[:10]))
    if shed := upstream_503s(proxy.access_log):
        problems.append("an instance answered 503:\n" + "\n".join(shed[:10]))
    if b_status != 0:
        problems.append(f"B exited with status {b_status}:\n{b.server.log}")
    if a.proc.poll() is not None:
        problems.append(f"A stopped:\n{a.server.log}")
    # The load spanned the reload and the stop: A's old and new workers and B's old
    # ones all served it.
    if not (load.pids & old_a and load.pids & new_a and load.pids & old_b):
        problems.append(f"served by {load.pids}: A {old_a} then {new_a}, B {old_b}")
    if load.ok < MIN_ANSWERED:
        problems.append(f"only {load.ok} requests answered: the load did not span the restarts")
    if problems:
        problems.append(f"timeline:\n{timeline}\nnginx logs in {tmp}")
    return load.ok, problems


@needs_nginx
@pytest.mark.timeout(240)
@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_reload_and_restart_behind_nginx_lose_no_request_10_runs_of_10(protocol, tmp_path):
    outcomes = {}
    for run in range(RUNS):
        started: list[Instance] = []
        tmp = tmp_path / f"run{run}"
        tmp.mkdir()
        try:
            answered, outcomes[run] = scenario(protocol, run, tmp, started)
        finally:
            for instance in started:
                instance.server.stop()
        print(f"{protocol} run {run}: {answered} answered, {len(outcomes[run])} problems")
    bad = {run: problems for run, problems in outcomes.items() if problems}
    report = "\n\n".join(f"run {run}:\n" + "\n".join(p) for run, p in bad.items())
    assert not bad, f"{len(bad)} of {RUNS} runs lost requests or logged errors:\n{report}"


@pytest.mark.parametrize("protocol", nginx_site.PROTOCOLS)
def test_the_documents_show_the_tested_site(protocol):
    """README and docs/production.md show the very site configuration this test runs."""
    servers = ["127.0.0.1:8001", "127.0.0.1:8002"]
    guide = (ROOT / "docs" / "production.md").read_text()
    assert nginx_site.site(protocol, servers) in guide
    readme = (ROOT / "README.md").read_text()
    assert nginx_site.location_block(protocol) in readme
    assert nginx_site.upstream_block(servers) in readme


@pytest.mark.parametrize("workers", ["2", "0"])
def test_a_stopping_server_refuses_new_connections_while_it_drains(workers):
    """On TERM the listening socket closes at once, in the master and in every worker,
    while the workers still drain their connections: a client (nginx) that connects
    meanwhile is refused, and tries elsewhere, instead of waiting in a queue that no one
    accepts from any more, to be reset when the last worker exits (with nginx: "reset by
    peer" on a request it had sent, and the instance marked failed)."""
    port = nginx_site.free_port()
    server = ServerProcess(
        [APP, "--workers", workers, "--keep-alive", "5", "--bind", f"127.0.0.1:{port}"]
    )
    try:
        server.wait_for_log(r"Listening at: ")
        with socket.create_connection(("127.0.0.1", port), timeout=10) as idle:
            idle.sendall(request_bytes("GET", "/"))
            assert read_response(idle)[0] == b"HTTP/1.1 200 OK"
            server.proc.send_signal(signal.SIGTERM)
            # The idle keep-alive connection holds its worker in the drain for up to 5 s;
            # the socket stops listening long before that.
            assert wait_until(lambda: not listening(port), 2), "still listening while draining"
            with pytest.raises(ConnectionRefusedError):
                socket.create_connection(("127.0.0.1", port), timeout=2).close()
            # The drain goes on: a request on the idle connection is still answered.
            assert server.proc.poll() is None, server.log
            idle.sendall(request_bytes("GET", "/"))
            status, headers, _ = read_response(idle)
            assert (status, headers.get("connection")) == (b"HTTP/1.1 200 OK", "close")
        assert server.proc.wait(10) == 0, server.log
    finally:
        server.stop()


@pytest.mark.parametrize("workers", ["0", "1"])
def test_connections_queued_when_the_stop_begins_are_served_not_reset(workers):
    """Connections the kernel had queued on the listening socket when the stop began are
    accepted and answered (``Connection: close``), not reset when the socket closes.
    With ``--threads 1`` the I/O thread runs the application itself, so while it runs
    ``/sleep`` nothing is accepted and the next connections wait in the queue."""
    port = nginx_site.free_port()
    server = ServerProcess(
        [APP, "--workers", workers, "--threads", "1", "--bind", f"127.0.0.1:{port}"]
    )
    queued: list[socket.socket] = []
    try:
        server.wait_for_log(r"Listening at: ")
        with socket.create_connection(("127.0.0.1", port), timeout=10) as busy:
            busy.sendall(request_bytes("GET", "/sleep?s=1"))
            time.sleep(0.3)  # the application is running: the I/O thread accepts nothing
            for _ in range(3):
                queued.append(socket.create_connection(("127.0.0.1", port), timeout=10))
                queued[-1].sendall(request_bytes("GET", "/"))
            server.proc.send_signal(signal.SIGTERM)
            assert read_response(busy)[0] == b"HTTP/1.1 200 OK"
        for sock in queued:
            status, headers, body = read_response(sock)
            assert (status, headers.get("connection")) == (b"HTTP/1.1 200 OK", "close"), body
            assert b'"pid"' in body
        assert server.proc.wait(10) == 0, server.log
    finally:
        for sock in queued:
            sock.close()
        server.stop()
