"""--metrics-bind: Prometheus metrics summed over every worker, past and present,
served by Rust while the application is busy. Counters are checked exactly after a
known sequence of requests."""

from __future__ import annotations

import os
import re
import signal
import socket
import threading
import time

import httpx
import pytest
from conftest import wait_until


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def scrape(port: int) -> dict[str, float]:
    """Every sample of /metrics as ``{'name{labels}': value}``."""
    resp = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=10)
    assert resp.status_code == 200
    assert resp.headers["content-type"].startswith("application/openmetrics-text")
    assert resp.text.endswith("# EOF\n")
    samples = {}
    for line in resp.text.splitlines():
        if line and not line.startswith("#"):
            name, value = line.rsplit(" ", 1)
            samples[name] = float(value)
    return samples


def total(samples: dict[str, float], prefix: str) -> float:
    return sum(v for k, v in samples.items() if k == prefix or k.startswith(prefix + "{"))


def one_request(url: str, method: str = "GET", body: bytes | None = None) -> httpx.Response:
    """On a connection of its own, closed after."""
    with httpx.Client(timeout=10) as client:
        return client.request(method, url, content=body)


def known_sequence(server) -> dict[str, int]:
    """5 hellos, 2 404s, 1 exception (500), 1 echo of 10 bytes, 1 malformed request
    (400 from the server); returns the response body bytes the clients received."""
    sent = 0
    for _ in range(5):
        sent += len(one_request(server.url + "/").content)
    for _ in range(2):
        resp = one_request(server.url + "/missing")
        assert resp.status_code == 404
        sent += len(resp.content)
    resp = one_request(server.url + "/boom")
    assert resp.status_code == 500
    sent += len(resp.content)
    resp = one_request(server.url + "/echo", "POST", b"0123456789")
    assert resp.content == b"0123456789"
    sent += len(resp.content)
    with server.connect() as sock:
        sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\nBad Header\r\n\r\n")
        raw = b""
        while chunk := sock.recv(65536):
            raw += chunk
    assert raw.startswith(b"HTTP/1.1 400 ")
    sent += len(raw.partition(b"\r\n\r\n")[2])
    return {"sent": sent}


@pytest.mark.parametrize("workers, threads", [("1", "1"), ("2", "2"), ("0", "1")])
def test_counters_after_a_known_sequence(start_server, workers, threads):
    port = free_port()
    server = start_server("metrics_app:app", "--workers", workers, "--threads", threads,
                          "--metrics-bind", f"127.0.0.1:{port}")  # fmt: skip
    server.wait_for_log(rf"Metrics at: http://127\.0\.0\.1:{port}/metrics")
    expected = known_sequence(server)
    assert wait_until(lambda: scrape(port)["ferrowsgi_connections_open"] == 0)
    m = scrape(port)
    assert m['ferrowsgi_requests_total{method="GET",status="200"}'] == 5
    assert m['ferrowsgi_requests_total{method="GET",status="404"}'] == 2
    assert m['ferrowsgi_requests_total{method="GET",status="500"}'] == 1
    assert m['ferrowsgi_requests_total{method="POST",status="200"}'] == 1
    assert total(m, "ferrowsgi_requests_total") == 10
    assert sum(v for k, v in m.items() if 'status="400"' in k) == 1
    assert m["ferrowsgi_request_duration_seconds_count"] == 10
    assert m['ferrowsgi_request_duration_seconds_bucket{le="+Inf"}'] == 10
    assert 0 < m["ferrowsgi_request_duration_seconds_sum"] < 10
    assert m["ferrowsgi_application_exceptions_total"] == 1
    assert m["ferrowsgi_request_bytes_total"] == 10
    assert m["ferrowsgi_response_bytes_total"] == expected["sent"]
    # One connection per request, and the start_server fixture's readiness check.
    assert m["ferrowsgi_connections_accepted_total"] == 10 + 1
    assert m["ferrowsgi_requests_in_flight"] == 0
    assert m["ferrowsgi_requests_waiting"] == 0
    assert m["ferrowsgi_workers"] == max(1, int(workers))
    # With more than one thread every application call waits in the queue first.
    queued = 9 if threads != "1" else 0
    assert m["ferrowsgi_request_wait_seconds_count"] == queued
    assert total(m, "ferrowsgi_worker_restarts_total") == 0


def test_the_endpoint_answers_while_the_only_thread_runs_the_application(start_server):
    port = free_port()
    server = start_server("metrics_app:app", "--threads", "1",
                          "--metrics-bind", f"127.0.0.1:{port}")  # fmt: skip
    slow = threading.Thread(target=one_request, args=(server.url + "/slow?ms=3000",))
    slow.start()
    try:
        assert wait_until(lambda: scrape(port)["ferrowsgi_requests_in_flight"] == 1)
        started = time.monotonic()
        scrape(port)
        assert time.monotonic() - started < 1.0, "a scrape waited for the application"
    finally:
        slow.join()
    assert wait_until(lambda: scrape(port)["ferrowsgi_requests_in_flight"] == 0)


def test_other_paths_and_methods(start_server):
    port = free_port()
    start_server("metrics_app:app", "--metrics-bind", f"127.0.0.1:{port}")
    assert httpx.get(f"http://127.0.0.1:{port}/", timeout=10).status_code == 404
    resp = httpx.post(f"http://127.0.0.1:{port}/metrics", timeout=10)
    assert resp.status_code == 405
    assert resp.headers["allow"] == "GET, HEAD"


def test_figures_of_replaced_workers_are_kept_and_restarts_counted(start_server):
    port = free_port()
    server = start_server("metrics_app:app", "--workers", "1", "--max-requests", "3",
                          "--metrics-bind", f"127.0.0.1:{port}")  # fmt: skip
    for _ in range(7):  # two retirements: after the 3rd and the 6th request
        assert one_request(server.url + "/").status_code == 200
    assert wait_until(
        lambda: scrape(port)['ferrowsgi_worker_restarts_total{cause="max-requests"}'] == 2
    )
    m = scrape(port)
    assert m['ferrowsgi_requests_total{method="GET",status="200"}'] == 7
    assert m["ferrowsgi_workers"] == 1


def test_a_crash_and_a_reload_are_counted(start_server):
    port = free_port()
    server = start_server("metrics_app:app", "--workers", "2",
                          "--metrics-bind", f"127.0.0.1:{port}")  # fmt: skip
    for _ in range(4):
        one_request(server.url + "/")
    pids = [int(p) for p in re.findall(r"Booting worker with pid (\d+)", server.log)]
    os.kill(pids[0], signal.SIGKILL)
    assert wait_until(lambda: scrape(port)['ferrowsgi_worker_restarts_total{cause="crash"}'] == 1)
    assert wait_until(lambda: scrape(port)["ferrowsgi_workers"] == 2, timeout=15)
    os.kill(server.proc.pid, signal.SIGHUP)
    assert wait_until(
        lambda: scrape(port)['ferrowsgi_worker_restarts_total{cause="reload"}'] == 2, timeout=20
    )
    assert wait_until(lambda: scrape(port)["ferrowsgi_workers"] == 2, timeout=15)
    # Counted by the workers that are gone, still there.
    assert scrape(port)['ferrowsgi_requests_total{method="GET",status="200"}'] == 4


def test_a_bad_metrics_address_stops_the_start():
    import subprocess
    import sys

    from conftest import APPS, ROOT

    result = subprocess.run(
        [sys.executable, "-m", "ferrowsgi", "metrics_app:app", "--metrics-bind", "uwsgi://127.0.0.1:1"],
        capture_output=True, text=True, timeout=30, cwd=ROOT,
        env={"PYTHONPATH": f"{APPS}:{ROOT}", "PATH": "/usr/bin:/bin"},
    )  # fmt: skip
    assert result.returncode == 2
    assert "--metrics-bind" in result.stderr and "speaks HTTP" in result.stderr
