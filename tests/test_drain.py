"""Graceful stop without the keep-alive race (issue 9), on raw sockets.

On SIGTERM a worker stops accepting, answers every request it has already read, and
keeps each idle keep-alive connection open for a drain period (the keep-alive timeout,
never past --graceful-timeout): a request that arrives on it meanwhile is answered with
``Connection: close`` and the connection is closed once that response is written; only
when the drain period ends are the connections still idle closed. Closing them at once
is the race a proxy with pooled connections loses (tests/test_nginx.py shows it through
nginx). Each case runs with ``--workers 0`` (one process, no master) and ``--workers 1``
(the master forwards the signal to its worker).

Sleeps here only order events (a stop that has begun before the next byte is sent);
readiness is always waited for by connecting.
"""

from __future__ import annotations

import signal
import time

import pytest
from conftest import is_closed, read_response, request_bytes

APP = "sleep_app:app"
WORKERS = pytest.mark.parametrize("workers", ["0", "1"], ids=["workers0", "workers1"])


def connection_tokens(headers: dict[str, str]) -> set[str]:
    """The lower-cased tokens of a response's Connection header."""
    return {t.strip().lower() for t in headers.get("connection", "").split(",") if t.strip()}


def keep_alive_request(sock, path: str = "/s?ms=0") -> None:
    """One request answered 200 on ``sock``, which the server keeps open afterwards."""
    sock.sendall(request_bytes("GET", path))
    status, headers, body = read_response(sock)
    assert status == b"HTTP/1.1 200 OK", body
    assert body == path.encode()
    assert "close" not in connection_tokens(headers), headers
    assert not is_closed(sock, 0.05), "the server closed a keep-alive connection at once"


def stop(server) -> float:
    """Send SIGTERM and return when it was sent (time.monotonic())."""
    server.proc.send_signal(signal.SIGTERM)
    return time.monotonic()


@WORKERS
def test_a_request_on_an_idle_connection_after_sigterm_is_served_with_connection_close(
    start_server, workers
):
    server = start_server(APP, "--workers", workers, "--keep-alive", "10")
    with server.connect() as sock:
        keep_alive_request(sock)
        stop(server)
        time.sleep(0.3)  # the stop has begun; the connection is idle in its drain period
        sock.sendall(request_bytes("GET", "/s?ms=0&after=stop"))
        status, headers, body = read_response(sock)
        assert status == b"HTTP/1.1 200 OK", body
        assert body == b"/s?ms=0&after=stop"
        assert "close" in connection_tokens(headers), headers
        assert is_closed(sock, 5.0), "connection still open after a Connection: close response"
        closed_at = time.monotonic()
    assert server.proc.wait(15) == 0, server.log
    # Its last connection closed, nothing is left to drain: no wait for --keep-alive 10.
    assert time.monotonic() - closed_at < 4, "waited out the drain period with no connection"


@WORKERS
def test_an_idle_connection_is_kept_open_then_closed_when_the_drain_period_ends(
    start_server, workers
):
    server = start_server(APP, "--workers", workers, "--keep-alive", "1")
    with server.connect() as sock:
        keep_alive_request(sock)
        stopped_at = stop(server)
        assert not is_closed(sock, 0.3), "an idle keep-alive connection was closed at once"
        assert is_closed(sock, 4.0), "idle connection still open 4 s after a drain period of 1 s"
        assert time.monotonic() - stopped_at < 4
    assert server.proc.wait(10) == 0, server.log
    assert time.monotonic() - stopped_at < 5


def test_graceful_timeout_shorter_than_keep_alive_bounds_the_drain_period(start_server):
    server = start_server(APP, "--workers", "1", "--keep-alive", "20", "--graceful-timeout", "1")
    with server.connect() as sock:
        keep_alive_request(sock)
        stopped_at = stop(server)
        assert not is_closed(sock, 0.3), "an idle keep-alive connection was closed at once"
        assert is_closed(sock, 5.0), "the drain outlasted --graceful-timeout 1 (--keep-alive 20)"
    assert server.proc.wait(10) == 0, server.log
    assert time.monotonic() - stopped_at < 6, "the stop outlasted --graceful-timeout 1"


@WORKERS
def test_a_request_in_flight_at_sigterm_is_answered_completely_with_connection_close(
    start_server, workers
):
    server = start_server(APP, "--workers", workers, "--graceful-timeout", "10")
    with server.connect() as sock:
        keep_alive_request(sock)
        path = "/s?ms=1000&msg=in-flight-began"
        sock.sendall(request_bytes("GET", path))
        server.wait_for_log("in-flight-began")
        stop(server)
        status, headers, body = read_response(sock)
        assert status == b"HTTP/1.1 200 OK", body
        assert body == path.encode()
        assert "close" in connection_tokens(headers), headers
        assert is_closed(sock, 5.0), "connection still open after a Connection: close response"
    assert server.proc.wait(15) == 0, server.log
