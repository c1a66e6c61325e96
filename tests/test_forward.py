"""``--forward PREFIX=URL[,URL...]`` (issue 12): requests under a prefix go to backends.

Real servers only: two other ferrowsgi processes (``backend_app:app``, each naming
itself through BACKEND_NAME) are the backends, and the front ferrowsgi forwards
``/api`` to them and answers every other path with its own application
(``backend_app:front``). Clients are httpx and raw sockets. Backends run with
``--workers 0`` so that killing the process kills the server.
"""

from __future__ import annotations

import hashlib
import re
import socket
import threading
import time

import httpx
import pytest
from apps.backend_app import pattern
from conftest import ServerProcess, read_response, recv_until_closed, split_head

MIB = 1 << 20


def start_backend(start, name: str) -> ServerProcess:
    return start("backend_app:app", "--workers", "0", "--threads", "8", env={"BACKEND_NAME": name})


def backends_arg(*servers: ServerProcess | int) -> str:
    ports = [s if isinstance(s, int) else s.port for s in servers]
    return ",".join(f"http://127.0.0.1:{port}" for port in ports)


def dead_port() -> int:
    """A port nothing listens on (bound, then closed: connecting is refused)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_front(start, *args: str) -> ServerProcess:
    return start("backend_app:front", "--workers", "0", "--threads", "4", *args)


@pytest.fixture(scope="module")
def pair(start_module_server):
    """Backends "a" and "b", and a front forwarding /api to both."""
    a = start_backend(start_module_server, "a")
    b = start_backend(start_module_server, "b")
    front = start_front(start_module_server, "--forward", f"/api={backends_arg(a, b)}")
    return a, b, front


def peak_rss(server: ServerProcess) -> int:
    """The process's peak resident set (VmHWM), bytes."""
    with open(f"/proc/{server.proc.pid}/status") as status:
        kib = re.search(r"VmHWM:\s+(\d+) kB", status.read())
    assert kib
    return int(kib.group(1)) * 1024


# --- routing ---------------------------------------------------------------------------


def test_round_robin_spreads_requests_and_keeps_path_and_query(pair):
    _, _, front = pair
    with httpx.Client(base_url=front.url, timeout=10) as client:
        seen = [client.get("/api/items/7", params={"q": "a b", "n": "1"}).json() for _ in range(10)]
    assert [s["name"] for s in seen].count("a") == 5
    assert [s["name"] for s in seen].count("b") == 5
    # Alternating: the pool never sends two in a row to the same backend.
    assert all(x["name"] != y["name"] for x, y in zip(seen, seen[1:]))
    assert {s["path"] for s in seen} == {"/api/items/7"}
    assert {s["query"] for s in seen} == {"q=a+b&n=1"}


def test_prefix_matches_whole_segments_only(pair):
    _, _, front = pair
    with httpx.Client(base_url=front.url, timeout=10) as client:
        assert client.get("/apix/y").text == "front /apix/y"
        assert client.get("/").text == "front /"
        assert client.get("/api").json()["path"] == "/api"
        assert client.get("/api/").json()["path"] == "/api/"


def test_backend_url_path_is_put_in_front(start_server, pair):
    a, _, _ = pair
    front = start_front(start_server, "--forward", f"/api=http://127.0.0.1:{a.port}/base/")
    seen = httpx.get(f"{front.url}/api/x?y=1", timeout=10).json()
    assert (seen["path"], seen["query"]) == ("/base/api/x", "y=1")


def test_a_backend_name_is_resolved(start_server, pair):
    a, _, _ = pair
    front = start_front(start_server, "--forward", f"/api=http://localhost:{a.port}")
    assert httpx.get(f"{front.url}/api/who", timeout=10).json()["name"] == "a"


# --- headers -----------------------------------------------------------------------------


def test_forwarded_fields_reach_the_backend(pair):
    _, _, front = pair
    headers = {
        "Host": "site.example:8443",
        "X-Forwarded-Host": "forged.example",
        "X-Forwarded-Proto": "gopher",
        "Connection": "X-Drop",
        "X-Drop": "hop-by-hop",
        "TE": "trailers",
    }
    seen = httpx.get(f"{front.url}/api/who", headers=headers, timeout=10).json()
    assert seen["host"] == "site.example:8443"  # the client's Host is kept
    assert seen["xfh"] == "site.example:8443"
    assert seen["xfp"] == "http"
    assert seen["xff"] == "127.0.0.1"
    assert seen["drop"] is None and seen["te"] is None


def test_x_forwarded_for_appends_an_untrusted_client(pair):
    """From 127.0.0.2 (not trusted by the front), a claimed X-Forwarded-For is kept and
    the real peer appended; the backend (trusting the front) takes the real peer."""
    _, _, front = pair
    transport = httpx.HTTPTransport(local_address="127.0.0.2")
    with httpx.Client(transport=transport, timeout=10) as client:
        seen = client.get(f"{front.url}/api/who", headers={"X-Forwarded-For": "6.6.6.6"}).json()
    assert seen["xff"] == "6.6.6.6, 127.0.0.2"
    assert seen["remote_addr"] == "127.0.0.2"


def test_a_trusted_proxy_client_is_passed_on_once(pair):
    """From 127.0.0.1 (trusted by the front), the client it names is the client."""
    _, _, front = pair
    headers = {"X-Forwarded-For": "203.0.113.7", "X-Forwarded-Proto": "https"}
    seen = httpx.get(f"{front.url}/api/who", headers=headers, timeout=10).json()
    assert seen["xff"] == "203.0.113.7"
    assert seen["xfp"] == "https"
    assert seen["remote_addr"] == "203.0.113.7"


# --- bodies ------------------------------------------------------------------------------


def test_20_mib_upload_keeps_its_sha256_without_a_second_copy(start_server, pair):
    a, b, _ = pair
    front = start_front(start_server, "--forward", f"/api={backends_arg(a, b)}")
    data = pattern(20 * MIB)
    before = peak_rss(front)
    answer = httpx.post(f"{front.url}/api/upload", content=data, timeout=60).json()
    assert answer["length"] == len(data)
    assert answer["sha256"] == hashlib.sha256(data).hexdigest()
    # Spilled to a file by the front and read back in pieces: not held whole.
    assert peak_rss(front) - before < 12 * MIB


def test_20_mib_download_keeps_its_sha256(pair):
    _, _, front = pair
    digest, length = hashlib.sha256(), 0
    url = f"{front.url}/api/big?size={20 * MIB}"
    with httpx.stream("GET", url, timeout=60) as response:
        assert response.headers["content-length"] == str(20 * MIB)
        for chunk in response.iter_bytes():
            digest.update(chunk)
            length += len(chunk)
    assert length == 20 * MIB
    assert digest.hexdigest() == hashlib.sha256(pattern(20 * MIB)).hexdigest()


def test_post_echoes_its_body(pair):
    _, _, front = pair
    seen = httpx.post(f"{front.url}/api/form", content=b"k=v&x=1", timeout=10).json()
    assert (seen["method"], seen["body"]) == ("POST", "k=v&x=1")


def test_chunked_and_http2_requests_go_out_with_a_length(pair):
    """A chunked upload (decoded by the front) and HTTP/2 (h2c) requests are sent to
    the backend as HTTP/1.1 with Content-Length."""
    _, _, front = pair
    seen = httpx.post(f"{front.url}/api/form", content=iter([b"k=v", b"&x=1"]), timeout=10)
    assert seen.json()["body"] == "k=v&x=1"
    with httpx.Client(http1=False, http2=True, timeout=10) as client:
        answer = client.post(f"{front.url}/api/upload", content=pattern(300_000))
        assert answer.http_version == "HTTP/2"
        assert answer.json()["sha256"] == hashlib.sha256(pattern(300_000)).hexdigest()
        seen = client.get(f"{front.url}/api/who?x=1").json()
        assert (seen["path"], seen["query"], seen["xfh"]) == ("/api/who", "x=1", front.url[7:])


def test_head_gets_the_length_and_no_body(pair):
    _, _, front = pair
    with front.connect() as sock:
        sock.sendall(b"HEAD /api/big?size=1000 HTTP/1.1\r\nHost: x\r\n\r\n")
        status, headers, body = read_response(sock, head=True)
        assert status.startswith(b"HTTP/1.1 200")
        assert headers["content-length"] == "1000" and body == b""
        # The connection is still in step: the next answer is the next request's.
        sock.sendall(b"GET /other HTTP/1.1\r\nHost: x\r\n\r\n")
        assert read_response(sock)[2] == b"front /other"


def test_a_chunked_backend_answer_is_streamed(pair):
    _, _, front = pair
    started = time.monotonic()
    arrivals = []
    url = f"{front.url}/api/chunks?n=5&ms=300"
    with httpx.stream("GET", url, timeout=10) as response:
        assert "content-length" not in response.headers
        for line in response.iter_lines():
            arrivals.append((time.monotonic() - started, line))
    assert [line for _, line in arrivals] == [f"chunk-{i}" for i in range(5)]
    assert arrivals[0][0] < 0.9  # long before the last chunk is made (1.2 s)
    assert arrivals[-1][0] >= 1.1


def test_a_backend_that_dies_mid_body_closes_the_client_connection(pair):
    _, _, front = pair
    with front.connect() as sock:
        sock.sendall(b"GET /api/cut HTTP/1.1\r\nHost: x\r\n\r\n")
        raw, closed = recv_until_closed(sock, timeout=10)
    status, headers, body = split_head(raw)
    assert status.startswith(b"HTTP/1.1 200")
    assert headers["content-length"] == ["1000000"]
    assert closed and 0 < len(body) < 1_000_000


# --- failures ----------------------------------------------------------------------------


def test_all_backends_down_is_502_and_the_front_still_serves(start_server):
    dead = [dead_port(), dead_port()]
    front = start_front(start_server, "--forward", f"/api={backends_arg(*dead)}")
    with httpx.Client(base_url=front.url, timeout=10) as client:
        for _ in range(2):  # the second time, both are skipped yet still tried
            answer = client.get("/api/x")
            assert answer.status_code == 502
            assert answer.text == "502 Bad Gateway\n"
        assert client.get("/other").text == "front /other"
    for port in dead:
        front.wait_for_log(rf"WARN.*backend http://127\.0\.0\.1:{port}/ unreachable")


def test_a_post_goes_to_the_live_backend_when_the_other_refuses(start_server, pair):
    a, _, _ = pair
    front = start_front(start_server, "--forward", f"/api={backends_arg(dead_port(), a)}")
    with httpx.Client(base_url=front.url, timeout=10) as client:
        for i in range(4):
            answer = client.post("/api/form", content=f"n={i}".encode())
            assert answer.status_code == 200
            assert answer.json()["body"] == f"n={i}"


def test_a_slow_backend_is_504_and_a_post_is_not_retried(start_server, pair):
    a, b, _ = pair
    front = start_front(
        start_server, "--forward-timeout", "1", "--forward", f"/api={backends_arg(a, b)}"
    )
    with httpx.Client(base_url=front.url, timeout=10) as client:
        started = time.monotonic()
        answer = client.post("/api/sleep?s=3", content=b"x")
        post_took = time.monotonic() - started
        assert answer.status_code == 504
        assert answer.text == "504 Gateway Timeout\n"
        assert post_took < 1.9  # one backend tried, not two
        started = time.monotonic()
        assert client.get("/api/sleep?s=3").status_code == 504
        assert 1.9 < time.monotonic() - started < 4  # a GET tries both
        assert client.get("/other").text == "front /other"
        # Both backends are left out now, yet still tried: a quick request works.
        assert client.get("/api/who").status_code == 200
    front.wait_for_log(
        r"WARN.*POST /api/sleep\?s=3: backend http://127\.0\.0\.1:\d+/ gave no "
        r"response head within 1s \(--forward-timeout\); not retried"
    )


def test_a_backend_killed_mid_run_fails_no_get(start_server):
    a = start_backend(start_server, "a")
    b = start_backend(start_server, "b")
    front = start_front(start_server, "--forward", f"/api={backends_arg(a, b)}")
    results: list[int | str] = []
    lock = threading.Lock()

    def client_loop() -> None:
        with httpx.Client(base_url=front.url, timeout=10) as client:
            for _ in range(75):
                try:
                    answer = client.get("/api/sleep?s=0.01")
                    outcome: int | str = answer.status_code
                except httpx.HTTPError as e:
                    outcome = repr(e)
                with lock:
                    results.append(outcome)

    threads = [threading.Thread(target=client_loop) for _ in range(4)]
    for thread in threads:
        thread.start()
    assert wait_until_count(results, lock, 60)
    b.proc.kill()  # SIGKILL: in-flight requests are cut, then connections refused
    for thread in threads:
        thread.join(60)
    assert len(results) == 300
    assert [r for r in results if r != 200] == []
    front.wait_for_log(rf"WARN.*backend http://127\.0\.0\.1:{b.port}/")


def wait_until_count(results: list, lock: threading.Lock, count: int) -> bool:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        with lock:
            if len(results) >= count:
                return True
        time.sleep(0.01)
    return False


def test_hop_by_hop_fields_of_the_answer_stay_behind(start_server):
    """A hand-written backend answers with hop-by-hop fields; the client gets none."""
    answer = (
        b"HTTP/1.1 200 OK\r\nConnection: close, X-Secret\r\nX-Secret: 1\r\n"
        b"Keep-Alive: timeout=5\r\nX-Kept: 2\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"5\r\nhello\r\n0\r\n\r\n"
    )
    with socket.create_server(("127.0.0.1", 0)) as listener:
        listener.settimeout(10)

        def serve_once() -> None:
            conn, _ = listener.accept()
            with conn:
                conn.recv(65536)
                conn.sendall(answer)

        thread = threading.Thread(target=serve_once)
        thread.start()
        port = listener.getsockname()[1]
        front = start_front(start_server, "--forward", f"/api=http://127.0.0.1:{port}")
        with front.connect() as sock:
            sock.sendall(b"GET /api/x HTTP/1.1\r\nHost: x\r\n\r\n")
            status, headers, body = read_response(sock)
            assert (status, body) == (b"HTTP/1.1 200 OK", b"hello")
            assert headers["x-kept"] == "2"
            assert not {"x-secret", "keep-alive", "connection"} & set(headers)
            # The client's connection stays open for the next request.
            sock.sendall(b"GET /other HTTP/1.1\r\nHost: x\r\n\r\n")
            assert read_response(sock)[2] == b"front /other"
        thread.join(10)
