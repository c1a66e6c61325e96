"""Hostile and broken clients (issue 3): slowloris, stalled bodies, --max-connections,
--backlog, clients that vanish mid-request or mid-response, and no leaked fds or threads.

Every wait is bounded; the only sleeps pace a slow client or poll a counter. The
application is tests/apps/counting_app.py, which records its calls (GET /calls) and
the close() calls of its response iterables (GET /closes).
"""

from __future__ import annotations

import json
import os
import re
import select
import shutil
import socket
import struct
import subprocess
import time
from concurrent.futures import ThreadPoolExecutor, wait

import pytest
from conftest import exchange, read_response, recv_until_closed, request_bytes, wait_until

BAD_LOG = re.compile(r"\b(ERROR|WARNING|CRITICAL)\b|Traceback|panicked", re.IGNORECASE)


def app_paths(server) -> list[str]:
    status, _, body = exchange(server, request_bytes("GET", "/calls"))
    assert status == b"HTTP/1.1 200 OK", body
    return [call["path"] for call in json.loads(body)]


def close_calls(server) -> dict[str, dict[str, int]]:
    status, _, body = exchange(server, request_bytes("GET", "/closes"))
    assert status == b"HTTP/1.1 200 OK", body
    return json.loads(body)


def answer_or_close(raw: bytes) -> bool:
    """A cut-off client gets either nothing (a plain close) or a 408, and nothing else."""
    return raw == b"" or raw.startswith(b"HTTP/1.1 408 ")


def reset_on_close(sock: socket.socket) -> None:
    """Make close() send RST instead of FIN (SO_LINGER with a zero timeout)."""
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))


# --- Slowloris and stalled bodies ----------------------------------------------------------


def dribble(server, first: bytes, data: bytes, limit: float = 8.0):
    """Send ``first`` at once, then ``data`` one byte per 0.5 s until the server answers or
    closes (or ``limit`` seconds pass). Returns (seconds from the first dribbled byte to
    the cut, or None if never cut; what the server sent after ``first``'s answer)."""
    with server.connect() as sock:
        sock.sendall(first)
        if first:
            read_response(sock)
        started = time.monotonic()
        for byte in data:
            if time.monotonic() - started > limit:
                break
            try:
                sock.sendall(bytes([byte]))
            except OSError:
                return time.monotonic() - started, b""
            readable, _, _ = select.select([sock], [], [], 0.5)
            if readable:
                raw, closed = recv_until_closed(sock, 3)
                return (time.monotonic() - started if closed else None), raw
    return None, b""


SLOW_HEAD = b"GET /slowloris HTTP/1.1\r\nHost: x\r\nX-Slow: " + b"s" * 40


def test_slowloris_is_cut_off_and_never_delays_other_clients(start_server):
    server = start_server("counting_app:app", "--header-timeout", "2")
    latencies = []
    with ThreadPoolExecutor(5) as pool:
        slow = [pool.submit(dribble, server, b"", SLOW_HEAD) for _ in range(5)]
        while not all(f.done() for f in slow) or len(latencies) < 3:
            started = time.monotonic()
            status, _, _ = exchange(server, request_bytes("GET", "/meanwhile"), timeout=5)
            latencies.append(time.monotonic() - started)
            assert status == b"HTTP/1.1 200 OK"
            wait(slow, timeout=0.3)
        results = [f.result(timeout=15) for f in slow]
    for elapsed, raw in results:
        assert elapsed is not None, "a slowloris client was never cut off"
        assert 1.5 <= elapsed <= 4.0, f"cut off after {elapsed:.2f} s with --header-timeout 2"
        assert answer_or_close(raw), f"slowloris got {raw[:200]!r}"
    assert max(latencies) < 1.0, f"other clients waited: {latencies}"
    assert "/slowloris" not in app_paths(server)


def test_slow_head_of_a_second_keep_alive_request_is_cut_off(start_server):
    server = start_server("counting_app:app", "--header-timeout", "2", "--keep-alive", "30")
    elapsed, raw = dribble(server, request_bytes("GET", "/first"), SLOW_HEAD)
    assert elapsed is not None, "the slow second request was never cut off"
    assert elapsed <= 4.0, f"cut off after {elapsed:.2f} s with --header-timeout 2"
    assert answer_or_close(raw), f"got {raw[:200]!r}"
    assert "/slowloris" not in app_paths(server)


STALLS = [
    pytest.param(request_bytes("POST", "/stall", [("Content-Length", "10")], b"abc"), id="cl"),
    pytest.param(
        request_bytes("POST", "/stall", [("Transfer-Encoding", "chunked")], b"5\r\nhel"),
        id="chunked-mid-chunk",
    ),
    pytest.param(
        request_bytes("POST", "/stall", [("Transfer-Encoding", "chunked")], b"5\r\nhello\r\n"),
        id="chunked-between-chunks",
    ),
]


@pytest.mark.parametrize("data", STALLS)
def test_stalled_body_is_cut_off_and_the_app_is_not_called(start_server, data):
    server = start_server("counting_app:app", "--body-timeout", "2")
    with server.connect() as sock:
        sock.sendall(data)
        started = time.monotonic()
        raw, closed = recv_until_closed(sock, 8)
        elapsed = time.monotonic() - started
    assert closed, f"a stalled body was never cut off; got {raw[:200]!r}"
    assert 1.5 <= elapsed <= 4.0, f"cut off after {elapsed:.2f} s with --body-timeout 2"
    assert answer_or_close(raw), f"got {raw[:200]!r}"
    assert "/stall" not in app_paths(server)


# --- Connection limits ---------------------------------------------------------------------


def test_max_connections_makes_the_next_connection_wait(start_server):
    server = start_server("counting_app:app", "--max-connections", "2", "--keep-alive", "30")
    first, second = server.connect(), server.connect()
    try:
        for sock in (first, second):
            sock.sendall(request_bytes("GET", "/held"))
            assert read_response(sock)[0] == b"HTTP/1.1 200 OK"
        with server.connect() as third:
            third.sendall(request_bytes("GET", "/third"))
            readable, _, _ = select.select([third], [], [], 1.0)
            assert not readable, "a third connection was served (or closed) while 2 were open"
            first.close()
            status, _, body = read_response(third, timeout=5)
            assert (status, json.loads(body)["path"]) == (b"HTTP/1.1 200 OK", "/third")
        second.sendall(request_bytes("GET", "/held"))
        assert read_response(second)[0] == b"HTTP/1.1 200 OK"
    finally:
        first.close()
        second.close()


def listen_backlog(port: int) -> int:
    """The accept-queue length of the listening socket on ``port`` (``ss`` Send-Q)."""
    assert shutil.which("ss"), "this test reads the listen queue with ss (iproute2)"
    out = subprocess.run(
        ["ss", "-ltnH", f"sport = :{port}"], capture_output=True, text=True, timeout=10
    ).stdout
    rows = [line.split() for line in out.splitlines() if line.strip()]
    assert len(rows) == 1, out
    return int(rows[0][2])


def somaxconn() -> int:
    with open("/proc/sys/net/core/somaxconn") as f:
        return int(f.read())


@pytest.mark.parametrize("args, expected", [([], 2048), (["--backlog", "7"], 7)])
def test_backlog_sets_the_listen_queue(start_server, args, expected):
    server = start_server("counting_app:app", *args)
    assert exchange(server, request_bytes("GET", "/"))[0] == b"HTTP/1.1 200 OK"
    assert listen_backlog(server.port) == min(expected, somaxconn())


def head_with(fields: int = 0, field_size: int = 0, target: str = "/") -> bytes:
    """A GET with Host plus ``fields`` more fields, or one ``X-Big`` field line of
    ``field_size`` bytes in all."""
    extra = [(f"X-{i}", "v") for i in range(fields)]
    if field_size:
        extra.append(("X-Big", "b" * (field_size - len("X-Big: "))))
    return request_bytes("GET", target, extra, host="x")


# A request line "GET TARGET HTTP/1.1" is 13 bytes longer than its target: an 87-byte
# target makes a 100-byte line, within a limit of 100 whether the limit counts the line
# or the target; a 101-byte target is past it either way.
LINE_OK, LINE_PAST = head_with(target="/" + "a" * 86), head_with(target="/" + "a" * 100)
FIELD_OK, FIELD_PAST = head_with(field_size=100), head_with(field_size=101)
LIMIT_OPTIONS = [  # option, value, a request within the limit, one past it, its status
    ("--limit-request-line", "100", LINE_OK, LINE_PAST, 414),
    ("--limit-request-fields", "5", head_with(fields=4), head_with(fields=5), 431),
    ("--limit-request-field-size", "100", FIELD_OK, FIELD_PAST, 431),
]


@pytest.mark.parametrize(
    "option, value, at_limit, past_limit, status", LIMIT_OPTIONS, ids=[r[0] for r in LIMIT_OPTIONS]
)
def test_request_limits_are_set_by_their_options(
    start_server, option, value, at_limit, past_limit, status
):
    server = start_server("counting_app:app", option, value)
    assert exchange(server, at_limit)[0] == b"HTTP/1.1 200 OK"
    with server.connect() as sock:
        sock.sendall(past_limit)
        raw, closed = recv_until_closed(sock, 5)
    assert closed and raw.startswith(b"HTTP/1.1 %d " % status), f"got {raw[:200]!r}"


# --- Clients that vanish -------------------------------------------------------------------

BIG_UPLOAD = [("Content-Length", "1000000")]
CHUNKED = [("Transfer-Encoding", "chunked")]
DISCONNECTS = [
    pytest.param(request_bytes("POST", "/upload", BIG_UPLOAD, b"u" * 1000), False, id="mid-body"),
    pytest.param(
        request_bytes("POST", "/upload", CHUNKED, b"400\r\n" + b"u" * 99),
        False,
        id="mid-chunked-body",
    ),
    pytest.param(request_bytes("GET", "/big"), True, id="mid-response-64MiB"),
    pytest.param(request_bytes("GET", "/forever"), True, id="mid-endless-response"),
]


@pytest.mark.parametrize("how", ["fin", "rst"])
@pytest.mark.parametrize("data, in_response", DISCONNECTS)
def test_client_vanishing_costs_nothing_but_its_request(start_server, data, in_response, how):
    server = start_server("counting_app:app", "--threads", "1")
    path = data.split(b" ")[1].decode()
    with server.connect() as sock:
        sock.sendall(data)
        if in_response:
            got = b""
            while b"\r\n\r\n" not in got:
                chunk = sock.recv(65536)
                assert chunk, f"closed before the response head: {got[:200]!r}"
                got += chunk
            assert got.startswith(b"HTTP/1.1 200 ")
        if how == "rst":
            reset_on_close(sock)
    # The only Python thread is free again, and the server goes on serving.
    assert exchange(server, request_bytes("GET", "/next"), timeout=10)[0] == b"HTTP/1.1 200 OK"

    def balanced() -> bool:
        seen = close_calls(server)
        return seen["entered"].get(path, 0) == seen["closed"].get(path, 0)

    assert wait_until(balanced, 10), f"close() not called: {close_calls(server)}"
    entered = close_calls(server)["entered"].get(path, 0)
    assert entered == (1 if in_response else 0), "an incomplete body reached the application"
    bad = [line for line in server.lines if BAD_LOG.search(line)]
    assert not bad, "a vanished client was logged:\n" + "\n".join(bad)


# --- No leaked file descriptors or threads ------------------------------------------------


def serving_pid(server) -> int:
    """The process that holds the connections: the one worker under a master process
    (``--workers 1``, the default), or the server process itself (``--workers 0``)."""
    pid, children = server.proc.pid, []
    for task in os.listdir(f"/proc/{pid}/task"):
        with open(f"/proc/{pid}/task/{task}/children") as f:
            children += f.read().split()
    assert len(children) <= 1, f"expected at most one worker process, found {children}"
    return int(children[0]) if children else pid


def fd_count(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


def thread_count(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/task"))


def settled(measure, timeout: float = 10.0) -> int:
    """``measure()`` once it has not changed for 0.5 s (or after ``timeout`` seconds)."""
    deadline = time.monotonic() + timeout
    value, since = measure(), time.monotonic()
    while time.monotonic() < deadline:
        time.sleep(0.1)
        now = measure()
        if now != value:
            value, since = now, time.monotonic()
        elif time.monotonic() - since >= 0.5:
            break
    return value


def one_client(server, i: int) -> None:
    """One connection in one of several ways: normal, refused, or abandoned."""
    with server.connect() as sock:
        kind = i % 10
        if kind == 3:
            sock.sendall(b"GET /partial HTTP/1.1\r\nHo")
            return
        if kind == 7:
            sock.sendall(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: +5\r\n\r\nhello")
            recv_until_closed(sock, 5)
            return
        sock.sendall(request_bytes("GET", f"/seq/{i}"))
        if kind == 5:
            return
        if kind == 9:
            reset_on_close(sock)
            return
        assert read_response(sock)[0] == b"HTTP/1.1 200 OK"


def many_at_once(server, count: int) -> None:
    """``count`` connections open at the same time, each with a request in flight."""
    socks = [server.connect() for _ in range(count)]
    try:
        for i, sock in enumerate(socks):
            sock.sendall(request_bytes("GET", f"/concurrent/{i}"))
        for i, sock in enumerate(socks):
            if i % 4 == 1:
                reset_on_close(sock)
            elif i % 4 != 2:
                assert read_response(sock)[0] == b"HTTP/1.1 200 OK"
    finally:
        for sock in socks:
            sock.close()


def test_500_sequential_and_200_concurrent_connections_leak_nothing(start_server):
    server = start_server("counting_app:app", "--threads", "4")
    with ThreadPoolExecutor(8) as pool:  # warm up: the thread pools exist from here on
        list(pool.map(lambda i: exchange(server, request_bytes("GET", f"/warm/{i}")), range(16)))
    pid = serving_pid(server)
    fds, threads = settled(lambda: fd_count(pid)), settled(lambda: thread_count(pid))
    for i in range(500):
        one_client(server, i)
    many_at_once(server, 200)
    assert wait_until(lambda: fd_count(pid) <= fds + 5, 20), (
        f"fds: {fds} before, {fd_count(pid)} after"
    )
    assert wait_until(lambda: thread_count(pid) <= threads + 5, 20), (
        f"threads: {threads} before, {thread_count(pid)} after"
    )
    assert exchange(server, request_bytes("GET", "/still"))[0] == b"HTTP/1.1 200 OK"
