"""The Python thread pool (--threads) and Rust I/O that never holds a Python thread:
many clients at once, slow uploaders and idle connections do not block the app."""

import http.client
import json
import time
from concurrent.futures import ThreadPoolExecutor

from conftest import exchange, read_response, request_bytes


def client(host, port, requests, ms=50):
    """One keep-alive client doing ``requests`` GETs; returns the statuses it saw."""
    conn = http.client.HTTPConnection(host, port, timeout=20)
    statuses = []
    try:
        for i in range(requests):
            conn.request("GET", f"/sleep?ms={ms}&i={i}")
            resp = conn.getresponse()
            body = resp.read()
            statuses.append((resp.status, body == f"/sleep?ms={ms}&i={i}".encode()))
    finally:
        conn.close()
    return statuses


def stats(server):
    return json.loads(exchange(server, request_bytes("GET", "/stats"))[2])


def test_20_clients_x_20_requests_with_4_threads(start_server):
    server = start_server("sleep_app:app", "--threads", "4")
    started = time.monotonic()
    with ThreadPoolExecutor(20) as pool:
        futures = [pool.submit(client, server.host, server.port, 20) for _ in range(20)]
        results = [f.result(timeout=60) for f in futures]
    elapsed = time.monotonic() - started
    assert [r for per_client in results for r in per_client] == [(200, True)] * 400
    # 400 x 50 ms over 4 threads is 5 s; one thread would need 20 s.
    assert elapsed < 15, f"took {elapsed:.1f} s"
    seen = stats(server)
    assert seen["max_inflight"] == 4
    assert seen["threads"] <= 4


def test_requests_run_in_parallel_up_to_the_thread_count(start_server):
    server = start_server("sleep_app:app", "--threads", "4")
    started = time.monotonic()
    with ThreadPoolExecutor(4) as pool:
        futures = [pool.submit(client, server.host, server.port, 1, 500) for _ in range(4)]
        assert all(f.result(timeout=30) == [(200, True)] for f in futures)
    elapsed = time.monotonic() - started
    assert elapsed < 1.5, f"4 x 500 ms on 4 threads took {elapsed:.2f} s"


def test_one_thread_runs_one_request_at_a_time(start_server):
    server = start_server("sleep_app:app", "--threads", "1")
    with ThreadPoolExecutor(5) as pool:
        futures = [pool.submit(client, server.host, server.port, 4, 20) for _ in range(5)]
        assert all(f.result(timeout=30) == [(200, True)] * 4 for f in futures)
    assert stats(server)["max_inflight"] == 1


def test_slow_uploader_does_not_hold_the_only_python_thread(start_server):
    server = start_server("sleep_app:app", "--threads", "1")
    with server.connect() as slow:
        slow.sendall(request_bytes("POST", "/sleep?ms=0", [("Content-Length", "1000")]) + b"x" * 10)
        started = time.monotonic()
        for _ in range(3):
            status, _, _ = exchange(server, request_bytes("GET", "/sleep?ms=0"), timeout=5)
            assert status == b"HTTP/1.1 200 OK"
        assert time.monotonic() - started < 3
        slow.sendall(b"x" * 990)
        status, _, body = read_response(slow)
    assert (status, body) == (b"HTTP/1.1 200 OK", b"/sleep?ms=0")


def test_idle_connections_do_not_block_new_ones(start_server):
    server = start_server("sleep_app:app", "--threads", "2")
    idle = [server.connect() for _ in range(50)]
    try:
        for sock in idle[:25]:
            sock.sendall(request_bytes("GET", "/sleep?ms=0"))
            assert read_response(sock)[0] == b"HTTP/1.1 200 OK"
        started = time.monotonic()
        status, _, _ = exchange(server, request_bytes("GET", "/sleep?ms=0"), timeout=5)
        assert status == b"HTTP/1.1 200 OK"
        assert time.monotonic() - started < 2
    finally:
        for sock in idle:
            sock.close()
