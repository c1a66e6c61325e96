"""--max-queue N: beyond N requests waiting for a Python thread, the next one gets
503 Service Unavailable with Retry-After at once, and the server keeps serving."""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest


def fire(server, count: int, ms: int) -> list[tuple[int, str | None, float]]:
    """``count`` concurrent GET /sleep?ms=ms, each on its own connection; returns
    (status, Retry-After, seconds taken) per request."""

    def one(i: int) -> tuple[int, str | None, float]:
        started = time.monotonic()
        # Staggered a little so that the running ones are taken first.
        time.sleep(i * 0.05)
        resp = httpx.get(f"{server.url}/sleep?ms={ms}&i={i}", timeout=30)
        return resp.status_code, resp.headers.get("retry-after"), time.monotonic() - started

    with ThreadPoolExecutor(count) as pool:
        return list(pool.map(one, range(count)))


@pytest.mark.parametrize("threads", ["1", "2"])
def test_requests_beyond_the_queue_get_503_at_once(start_server, threads):
    server = start_server("sleep_app:app", "--threads", threads, "--max-queue", "2")
    capacity = int(threads) + 2  # running + waiting
    results = fire(server, capacity + 3, ms=1500)
    served = [r for r in results if r[0] == 200]
    shed = [r for r in results if r[0] == 503]
    assert len(served) == capacity, results
    assert len(shed) == 3, results
    for _, retry_after, seconds in shed:
        assert retry_after == "1"
        assert seconds < 1.0, "a shed request was answered at once, not after waiting"
    # The server keeps serving once the load is gone.
    assert httpx.get(f"{server.url}/sleep?ms=1", timeout=10).status_code == 200


def test_without_max_queue_every_request_waits_its_turn(start_server):
    server = start_server("sleep_app:app", "--threads", "2")
    results = fire(server, 5, ms=300)
    assert [r[0] for r in results] == [200] * 5


def test_shed_requests_keep_the_connection(start_server):
    server = start_server("sleep_app:app", "--threads", "1", "--max-queue", "1")
    with ThreadPoolExecutor(2) as pool:
        busy = [pool.submit(httpx.get, f"{server.url}/sleep?ms=1500", timeout=30)]
        time.sleep(0.2)
        busy.append(pool.submit(httpx.get, f"{server.url}/sleep?ms=10", timeout=30))
        time.sleep(0.2)
        with httpx.Client(base_url=server.url, timeout=10) as client:
            first = client.get("/sleep?ms=10")
            assert first.status_code == 503
            assert first.text == "503 Service Unavailable\n"
            # Same connection, once there is room again.
            for f in busy:
                assert f.result().status_code == 200
            assert client.get("/sleep?ms=10").status_code == 200
