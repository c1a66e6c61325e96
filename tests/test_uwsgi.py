"""The uwsgi engine (issue 11): ``--bind uwsgi://HOST:PORT`` and ``uwsgi://unix:PATH``.

A small raw uwsgi client (a packet from a dict of vars and a body; the answer read to
EOF, as nginx's uwsgi module reads it) checks what the application sees and what goes
back on the wire; malformed packets must close the connection and leave the server
serving. Then a real nginx with its own ``uwsgi_params`` in front: the client's address,
a 20 MiB upload and a 4 MiB download with their sha256, a Flask application.

On loopback a client that binds 127.0.0.2 before connecting is "someone else" for the
default ``--proxy-allow-from`` (127.0.0.1, ::1, unix).
"""

from __future__ import annotations

import hashlib
import http.client
import json
import signal
import socket
import struct
import sys
import time
import urllib.parse
from pathlib import Path

import pytest
from conftest import (
    APPS,
    NGINX,
    ServerProcess,
    read_response,
    recv_until_closed,
    split_head,
    wait_until,
)

sys.path.insert(0, str(APPS))
from uwsgi_app import pattern  # noqa: E402

APP = "uwsgi_app:app"
OTHER_LOOPBACK = "127.0.0.2"
MIB = 1 << 20


# --- a raw uwsgi client -------------------------------------------------------------------


def packet(variables: dict[str, str], body: bytes = b"", modifier1: int = 0) -> bytes:
    """One uwsgi request: header (modifier1, datasize LE, modifier2), vars, body."""
    block = b"".join(
        struct.pack("<H", len(k)) + k + struct.pack("<H", len(v)) + v
        for k, v in ((k.encode("latin-1"), v.encode("latin-1")) for k, v in variables.items())
    )
    return struct.pack("<BHB", modifier1, len(block), 0) + block + body


def request_vars(method: str = "GET", target: str = "/", body: bytes = b"", **extra) -> dict:
    """The vars nginx's uwsgi_params send for ``method target``, plus ``extra``."""
    path, _, query = target.partition("?")
    variables = {
        "QUERY_STRING": query,
        "REQUEST_METHOD": method,
        "CONTENT_TYPE": "",
        "CONTENT_LENGTH": str(len(body)) if body else "",
        "REQUEST_URI": target,
        "PATH_INFO": urllib.parse.unquote(path),
        "DOCUMENT_ROOT": "/srv",
        "SERVER_PROTOCOL": "HTTP/1.1",
        "REQUEST_SCHEME": "http",
        "REMOTE_ADDR": "198.51.100.7",
        "REMOTE_PORT": "40123",
        "SERVER_PORT": "8080",
        "SERVER_NAME": "example.test",
        "HTTP_HOST": "example.test:8080",
    }
    variables.update(extra)
    return variables


def connect(server, source: str | None = None, timeout: float = 10.0) -> socket.socket:
    return socket.create_connection(
        (server.host, server.port), timeout, source_address=(source, 0) if source else None
    )


def connect_unix(path: Path, timeout: float = 10.0) -> socket.socket:
    sock = socket.socket(socket.AF_UNIX)
    sock.settimeout(timeout)
    sock.connect(str(path))
    return sock


def answer_on(sock: socket.socket, data: bytes, timeout: float = 10.0):
    """Send ``data``; read to EOF: (status line, headers as in split_head, body)."""
    sock.sendall(data)
    raw, closed = recv_until_closed(sock, timeout)
    assert closed, f"the connection stayed open after the answer: {raw[:300]!r}"
    return split_head(raw)


def ask(server, method="GET", target="/", body=b"", source=None, **extra):
    with connect(server, source) as sock:
        return answer_on(sock, packet(request_vars(method, target, body, **extra), body))


def environ_of(server, target="/env", **extra) -> dict:
    status, _, body = ask(server, "GET", target, **extra)
    assert status == b"HTTP/1.1 200 OK", (status, body[:300])
    return json.loads(body)


def closed_without_answer(sock: socket.socket, data: bytes, timeout: float = 5.0) -> None:
    """Send ``data``; the server must close the connection, having sent nothing."""
    try:
        sock.sendall(data)
    except (BrokenPipeError, ConnectionResetError):
        return
    received, closed = recv_until_closed(sock, timeout)
    assert received == b"", f"the server answered: {received[:300]!r}"
    assert closed, f"the connection was still open after {timeout} s"


def start_uwsgi(
    app: str = APP, *args: str, workers: str = "0", threads: str = "4", bind=None
) -> ServerProcess:
    """A server with one uwsgi listener (TCP on a free port unless ``bind`` says). Four
    Python threads: with one, the application runs inline on the I/O thread, and a
    streamed body is sent only once the application has made all of it."""
    bind = bind or "uwsgi://127.0.0.1:0"
    argv = [app, "--workers", workers, "--threads", threads, "--bind", bind, *args]
    server = ServerProcess(argv)
    if bind.startswith("uwsgi://unix:"):
        server.wait_for_log("Listening at: uwsgi://unix:", 30)
    else:
        server.wait_ready()
    return server


@pytest.fixture(scope="module", params=["0", "1"], ids=["workers0", "workers1"])
def server(request):
    """The test app with ``--workers 0`` (no master) and ``--workers 1``."""
    proc = start_uwsgi(APP, "--log-level", "debug", workers=request.param)
    yield proc
    proc.stop()


@pytest.fixture
def servers():
    """Factory for servers that live for one test."""
    started: list[ServerProcess] = []

    def start(*args, **kwargs) -> ServerProcess:
        proc = start_uwsgi(*args, **kwargs)
        started.append(proc)
        return proc

    yield start
    for proc in started:
        proc.stop()


@pytest.mark.parametrize("workers", ["0", "1"])
def test_the_start_up_line_names_the_protocol(servers, workers):
    server = servers(workers=workers)
    server.wait_for_log(r"Listening at: uwsgi://127\.0\.0\.1:\d+ \(\d+\)$")
    assert "Listening at: http" not in server.log


# --- what the application sees ------------------------------------------------------------


def test_environ_comes_from_the_vars(server):
    env = environ_of(server, "/env/a%20b?x=1&y=2", HTTP_X_CUSTOM="yes", HTTP_ACCEPT="*/*")
    assert env["REQUEST_METHOD"] == "GET"
    assert env["PATH_INFO"] == "/env/a b"
    assert env["QUERY_STRING"] == "x=1&y=2"
    assert env["SCRIPT_NAME"] == ""
    assert (env["SERVER_NAME"], env["SERVER_PORT"]) == ("example.test", "8080")
    assert (env["REMOTE_ADDR"], env["REMOTE_PORT"]) == ("198.51.100.7", "40123")
    assert env["HTTP_HOST"] == "example.test:8080"
    assert env["HTTP_X_CUSTOM"] == "yes"
    assert env["HTTP_ACCEPT"] == "*/*"
    assert env["SERVER_PROTOCOL"] == "HTTP/1.1"
    assert env["DOCUMENT_ROOT"] == "/srv", "a var the server does not know reaches the app"
    assert env["wsgi.url_scheme"] == "http"
    assert "CONTENT_LENGTH" not in env, "no body, no CONTENT_LENGTH"


def test_script_name_from_the_vars(server):
    env = environ_of(server, "/app/env", SCRIPT_NAME="/app", PATH_INFO="/env")
    assert (env["SCRIPT_NAME"], env["PATH_INFO"]) == ("/app", "/env")


@pytest.mark.parametrize(
    "extra", [{"HTTPS": "on"}, {"REQUEST_SCHEME": "https"}, {"UWSGI_SCHEME": "https"}]
)
def test_https_vars_set_the_url_scheme(server, extra):
    if "REQUEST_SCHEME" not in extra:
        extra = {**extra, "REQUEST_SCHEME": ""}
    assert environ_of(server, **extra)["wsgi.url_scheme"] == "https"


def test_the_response_is_http_1_1_with_date_and_server_and_closes(server):
    status, headers, body = ask(server, "GET", "/download?10")
    assert status == b"HTTP/1.1 200 OK"
    assert headers["content-length"] == ["10"]
    assert headers["server"][0].startswith("ferrowsgi/")
    assert len(headers["date"]) == 1
    assert "transfer-encoding" not in headers
    assert body == pattern(10)


def test_post_body_reaches_wsgi_input(server):
    body = b"name=value&x=" + b"y" * 5000
    status, _, raw = ask(
        server, "POST", "/upload", body, CONTENT_TYPE="application/x-www-form-urlencoded"
    )
    assert status == b"HTTP/1.1 200 OK", raw[:300]
    got = json.loads(raw)
    assert got["size"] == len(body)
    assert got["sha256"] == hashlib.sha256(body).hexdigest()
    assert got["CONTENT_LENGTH"] == str(len(body))
    assert got["CONTENT_TYPE"] == "application/x-www-form-urlencoded"


def test_a_large_body_in_slow_pieces_is_buffered_whole(server):
    """3 MiB (over the 1 MiB in-memory buffer: spilled to a file), sent in pieces."""
    body = pattern(3 * MIB + 17)
    data = packet(request_vars("PUT", "/upload", body), body)
    with connect(server) as sock:
        for i in range(0, len(data), 700_000):
            sock.sendall(data[i : i + 700_000])
            time.sleep(0.05)
        status, _, raw = answer_on(sock, b"")
    assert status == b"HTTP/1.1 200 OK", raw[:300]
    got = json.loads(raw)
    assert (got["size"], got["sha256"]) == (len(body), hashlib.sha256(body).hexdigest())


def test_head_request_gets_no_body(server):
    status, headers, body = ask(server, "HEAD", "/download?100")
    assert status == b"HTTP/1.1 200 OK"
    assert headers["content-length"] == ["100"]
    assert body == b""


def test_a_streamed_response_goes_out_as_it_comes(server):
    with connect(server) as sock:
        sock.sendall(packet(request_vars("GET", "/slow")))
        started = time.monotonic()
        first = b""
        while b"first\n" not in first:
            piece = sock.recv(65536)
            assert piece, f"closed early: {first!r}"
            first += piece
        first_at = time.monotonic() - started
        rest, closed = recv_until_closed(sock, 10)
        total = time.monotonic() - started
    assert closed
    status, headers, body = split_head(first + rest)
    assert status == b"HTTP/1.1 200 OK"
    assert "transfer-encoding" not in headers and "content-length" not in headers
    assert body == b"first\nsecond\n", "not chunked: the body ends with the connection"
    assert first_at < 0.8 <= total, (first_at, total)


def test_a_big_streamed_response_is_whole(server):
    status, headers, body = ask(server, "GET", "/download-stream?5000000")
    assert status == b"HTTP/1.1 200 OK"
    assert "content-length" not in headers
    assert hashlib.sha256(body).digest() == hashlib.sha256(pattern(5_000_000)).digest()


def test_an_aborted_body_resets_the_connection(server):
    with connect(server) as sock:
        sock.sendall(packet(request_vars("GET", "/raise")))
        received, reset = b"", False
        try:
            while True:
                piece = sock.recv(65536)
                if not piece:
                    break
                received += piece
        except ConnectionResetError:
            reset = True
    assert reset, f"closed cleanly: a proxy would take {received!r} as the whole body"
    assert ask(server, "GET", "/download?3")[2] == pattern(3), "still serving"


def test_an_empty_vars_block_is_answered_400(server):
    with connect(server) as sock:
        status, headers, body = answer_on(sock, packet({}))
    assert status == b"HTTP/1.1 400 Bad Request"
    assert headers["connection"] == ["close"]


def test_a_bad_method_is_answered_400(server):
    status, _, _ = ask(server, "G ET", "/env")
    assert status == b"HTTP/1.1 400 Bad Request"


def test_a_bad_content_length_is_answered_400(server):
    with connect(server) as sock:
        variables = request_vars("POST", "/upload", CONTENT_LENGTH="12abc")
        status, _, _ = answer_on(sock, packet(variables, b"x" * 12))
    assert status == b"HTTP/1.1 400 Bad Request"


# --- malformed packets: closed without an answer, and the server serves on -------------


def _bad_packets() -> dict[str, bytes]:
    good = packet(request_vars("GET", "/env"))
    vars_block = good[4:]
    overrun = bytearray(good)
    overrun[4:6] = struct.pack("<H", 60000)  # the first name's length runs past the block
    return {
        "modifier1": packet(request_vars("GET", "/env"), modifier1=5),
        "overrun": bytes(overrun),
        "empty-name": packet({"": "x", "REQUEST_METHOD": "GET"}),
        "short-block": struct.pack("<BHB", 0, len(vars_block) - 3, 0) + vars_block[:-3],
    }


@pytest.mark.parametrize("case", sorted(_bad_packets()))
def test_a_malformed_packet_closes_the_connection(server, case):
    with connect(server) as sock:
        closed_without_answer(sock, _bad_packets()[case])
    server.wait_for_log(r"\[DEBUG\] uwsgi: 127\.0\.0\.1:\d+: connection closed: ")
    assert environ_of(server)["REQUEST_METHOD"] == "GET", "the next request is served"


def test_a_truncated_header_closes_the_connection(server):
    with connect(server) as sock:
        sock.sendall(b"\x00\x10")
        sock.shutdown(socket.SHUT_WR)
        received, closed = recv_until_closed(sock, 5)
    assert (received, closed) == (b"", True)
    server.wait_for_log("connection closed: the packet was cut short")
    assert environ_of(server)["REQUEST_METHOD"] == "GET"


def test_head_limits_close_the_connection(servers):
    # A head of at most 100 + 2 + 3 * 102 = 408 bytes, and 2 + 64 vars.
    server = servers(
        APP,
        "--limit-request-line",
        "100",
        "--limit-request-fields",
        "2",
        "--limit-request-field-size",
        "100",
        "--log-level",
        "debug",
    )
    oversize = struct.pack("<BHB", 0, 4000, 0)  # refused before the block is sent
    with connect(server) as sock:
        closed_without_answer(sock, oversize)
    server.wait_for_log("a vars block of 4000 bytes is over the head limit")
    many = {chr(0x41 + i): "" for i in range(67)}  # 67 + 1 vars in 356 bytes
    with connect(server) as sock:
        closed_without_answer(sock, packet({"REQUEST_METHOD": "GET", **many}))
    server.wait_for_log("more vars than --limit-request-fields allows")
    small = {"REQUEST_METHOD": "GET", "PATH_INFO": "/env", "REMOTE_ADDR": "192.0.2.1"}
    with connect(server) as sock:
        status, _, body = answer_on(sock, packet(small))
    assert status == b"HTTP/1.1 200 OK"
    assert json.loads(body)["REMOTE_ADDR"] == "192.0.2.1"


def test_a_packet_that_never_completes_times_out(servers):
    server = servers(APP, "--header-timeout", "1", "--log-level", "debug")
    with connect(server) as sock:
        sock.sendall(packet(request_vars())[:20])
        started = time.monotonic()
        received, closed = recv_until_closed(sock, 5)
    assert (received, closed) == (b"", True)
    assert time.monotonic() - started < 3
    server.wait_for_log("connection closed: the packet was not received in time")


# --- request bodies: limits and timeouts --------------------------------------------------


def test_a_body_over_max_body_size_is_answered_413(servers):
    server = servers("counting_app:app", "--max-body-size", "1000")
    body = b"x" * 1001
    with connect(server) as sock:
        variables = request_vars("POST", "/upload", body)
        status, headers, _ = answer_on(sock, packet(variables, body))
    assert status == b"HTTP/1.1 413 Payload Too Large"
    assert headers["connection"] == ["close"]
    # Answered before the body is sent; the body is then read and dropped, so the
    # connection ends with a FIN, not a reset that would lose the answer.
    big = b"z" * (4 * MIB)
    with connect(server) as sock:
        sock.sendall(packet(request_vars("POST", "/upload", big)))
        answer = b""
        while not answer.endswith(b"413 Payload Too Large\n"):
            piece = sock.recv(65536)
            assert piece, answer
            answer += piece
        sock.sendall(big)
        sock.settimeout(10)
        assert sock.recv(1) == b"", "a FIN (a reset raises ConnectionResetError)"
    status, _, raw = ask(server, "POST", "/upload", b"y" * 1000)
    assert status == b"HTTP/1.1 200 OK", "1000 bytes are allowed"
    _, _, calls = ask(server, "GET", "/calls")
    assert json.loads(calls) == [{"method": "POST", "path": "/upload"}], "413: never called"


def test_a_body_that_stops_arriving_is_answered_408(servers):
    server = servers(APP, "--body-timeout", "1")
    with connect(server) as sock:
        sock.sendall(packet(request_vars("POST", "/upload", b"x" * 10), b"xyz"))
        status, _, _ = answer_on(sock, b"")
    assert status == b"HTTP/1.1 408 Request Timeout"


def test_a_body_cut_short_closes_the_connection(servers):
    server = servers("counting_app:app", "--log-level", "debug")
    with connect(server) as sock:
        sock.sendall(packet(request_vars("POST", "/upload", b"x" * 10), b"xyz"))
        sock.shutdown(socket.SHUT_WR)
        assert recv_until_closed(sock, 5) == (b"", True)
    server.wait_for_log("connection closed: the body was cut short")
    assert json.loads(ask(server, "GET", "/calls")[2]) == []


# --- the proxy going away, trust, unix sockets, access log, graceful stop --------------


def test_a_proxy_that_goes_away_gets_close_called_once(servers):
    server = servers("counting_app:app", workers="1")
    with connect(server) as sock:
        sock.sendall(packet(request_vars("GET", "/forever")))
        got = b""
        while len(got) < 200_000:
            piece = sock.recv(65536)
            assert piece
            got += piece
    assert got.startswith(b"HTTP/1.1 200 OK\r\n")

    def closes():
        return json.loads(ask(server, "GET", "/closes")[2])

    assert wait_until(lambda: closes()["closed"].get("/forever") == 1, 10), closes()
    time.sleep(0.3)
    assert closes() == {"entered": {"/forever": 1}, "closed": {"/forever": 1}}


def test_a_peer_not_in_proxy_allow_from_is_refused(servers):
    server = servers("counting_app:app", "--proxy-allow-from", "127.0.0.1", workers="1")
    with connect(server, OTHER_LOOPBACK) as sock:
        closed_without_answer(sock, packet(request_vars("GET", "/sneaky")))
    server.wait_for_log(r"connection from 127\.0\.0\.2:\d+ refused: not in --proxy-allow-from")
    assert json.loads(ask(server, "GET", "/calls")[2]) == [], "nothing reached the app"


def test_the_default_trusts_127_0_0_1_and_not_others(servers):
    server = servers(APP)
    assert environ_of(server)["REMOTE_ADDR"] == "198.51.100.7"
    with connect(server, OTHER_LOOPBACK) as sock:
        closed_without_answer(sock, packet(request_vars("GET", "/env")))


def test_a_unix_socket(servers, tmp_path):
    path = tmp_path / "app.sock"
    server = servers(APP, workers="1", bind=f"uwsgi://unix:{path}")
    with connect_unix(path) as sock:
        status, _, body = answer_on(sock, packet(request_vars("GET", "/env?u=1")))
    assert status == b"HTTP/1.1 200 OK"
    env = json.loads(body)
    assert (env["QUERY_STRING"], env["REMOTE_ADDR"]) == ("u=1", "198.51.100.7")
    assert server.proc.poll() is None


def test_one_access_log_record_per_request(servers):
    server = servers(APP, "--access-log", "-")
    ask(server, "GET", "/download?7", HTTP_USER_AGENT="probe/1", REMOTE_ADDR="203.0.113.9")
    line = server.wait_for_log(r"203\.0\.113\.9 .*GET /download\?7 HTTP/1\.1.* 200 7 ")
    assert "probe/1" in line.string
    time.sleep(0.3)
    assert sum("/download?7" in line for line in server.lines) == 1


def test_graceful_stop_finishes_the_request_in_progress(servers):
    server = servers(APP, "--graceful-timeout", "10", workers="1")
    with connect(server) as sock:
        sock.sendall(packet(request_vars("GET", "/slow")))
        head = sock.recv(65536)
        assert head.startswith(b"HTTP/1.1 200 OK")
        server.proc.send_signal(signal.SIGTERM)
        rest, closed = recv_until_closed(sock, 10)
    assert closed
    assert split_head(head + rest)[2] == b"first\nsecond\n"
    assert server.proc.wait(15) == 0


def test_graceful_stop_serves_a_connection_that_sends_within_the_drain(servers):
    """--keep-alive 1: the drain period is 1 s. A connection that sent nothing yet when
    the stop began is served if its request comes within it, closed if not."""
    server = servers(APP, "--keep-alive", "1", "--graceful-timeout", "10")
    with connect(server) as early, connect(server) as silent:
        time.sleep(0.3)  # both accepted
        server.proc.send_signal(signal.SIGTERM)
        time.sleep(0.2)  # ("Shutting down" is logged once the drain is over)
        status, _, body = answer_on(early, packet(request_vars("GET", "/env")))
        assert status == b"HTTP/1.1 200 OK", body[:300]
        started = time.monotonic()
        assert recv_until_closed(silent, 5) == (b"", True)
        assert time.monotonic() - started < 2
    assert server.proc.wait(10) == 0


# --- through a real nginx -----------------------------------------------------------------


NGINX_CONF = """\
daemon off;
master_process off;
worker_processes 1;
pid {tmp}/nginx.pid;
error_log {tmp}/error.log warn;
events {{ worker_connections 64; }}
http {{
    access_log off;
    client_max_body_size 64m;
    client_body_temp_path {tmp}/client_body;
    proxy_temp_path {tmp}/proxy;
    fastcgi_temp_path {tmp}/fastcgi;
    uwsgi_temp_path {tmp}/uwsgi;
    scgi_temp_path {tmp}/scgi;
    server {{
        listen 127.0.0.1:{port};
        location / {{
            include /etc/nginx/uwsgi_params;
            uwsgi_pass {upstream};
            uwsgi_read_timeout 10s;
        }}
    }}
}}
"""

needs_nginx = pytest.mark.skipif(
    NGINX is None or not Path("/etc/nginx/uwsgi_params").exists(),
    reason="nginx (and its /etc/nginx/uwsgi_params) not found (`make deps` installs it)",
)


@pytest.fixture
def nginx_in_front(run_nginx):
    """Factory: ``nginx_in_front("127.0.0.1:PORT" or "unix:PATH")`` → nginx's port."""
    return lambda upstream: run_nginx(NGINX_CONF, upstream=upstream)


def via_nginx(port: int, method="GET", target="/", body=None, headers=None, source=None):
    """(status, headers, body) of one request to nginx, from ``source`` when given."""
    conn = http.client.HTTPConnection(
        "127.0.0.1", port, timeout=20, source_address=(source, 0) if source else None
    )
    try:
        conn.request(method, target, body=body, headers=headers or {})
        response = conn.getresponse()
        return response.status, response.headers, response.read()
    finally:
        conn.close()


@needs_nginx
@pytest.mark.parametrize("workers", ["0", "1"])
def test_behind_nginx_the_client_is_the_remote_addr(servers, nginx_in_front, workers):
    server = servers(APP, workers=workers)
    port = nginx_in_front(f"127.0.0.1:{server.port}")
    with socket.create_connection(("127.0.0.1", port), source_address=(OTHER_LOOPBACK, 0)) as s:
        client_port = s.getsockname()[1]
        s.sendall(b"GET /env/x%20y?q=1 HTTP/1.1\r\nHost: site.test\r\nX-Hello: 1\r\n\r\n")
        status, headers, body = read_response(s)
    assert status == b"HTTP/1.1 200 OK", body[:300]
    env = json.loads(body)
    assert (env["REMOTE_ADDR"], env["REMOTE_PORT"]) == (OTHER_LOOPBACK, str(client_port))
    assert (env["PATH_INFO"], env["QUERY_STRING"]) == ("/env/x y", "q=1")
    assert env["REQUEST_URI"] == "/env/x%20y?q=1"
    assert (env["SERVER_NAME"], env["SERVER_PORT"]) == ("", str(port))
    assert (env["HTTP_HOST"], env["HTTP_X_HELLO"]) == ("site.test", "1")
    assert env["wsgi.url_scheme"] == "http"


@needs_nginx
def test_behind_nginx_a_20_mib_upload_and_a_4_mib_download(servers, nginx_in_front):
    server = servers(APP, "--max-body-size", str(32 * MIB), workers="1")
    port = nginx_in_front(f"127.0.0.1:{server.port}")
    body = pattern(20 * MIB)
    status, _, raw = via_nginx(
        port, "POST", "/upload", body, {"Content-Type": "application/octet-stream"}
    )
    assert status == 200, raw[:300]
    got = json.loads(raw)
    assert (got["size"], got["sha256"]) == (len(body), hashlib.sha256(body).hexdigest())
    want = hashlib.sha256(pattern(4 * MIB)).hexdigest()
    for route in ("/download", "/download-stream"):
        status, headers, raw = via_nginx(port, "GET", f"{route}?{4 * MIB}")
        assert status == 200
        assert (len(raw), hashlib.sha256(raw).hexdigest()) == (4 * MIB, want), route


@needs_nginx
def test_behind_nginx_over_a_unix_socket_with_413(servers, nginx_in_front, tmp_path):
    path = tmp_path / "up.sock"
    server = servers(APP, "--max-body-size", "1000", bind=f"uwsgi://unix:{path}")
    port = nginx_in_front(f"unix:{path}")
    status, _, raw = via_nginx(port, "POST", "/upload", b"a" * 1000)
    assert status == 200 and json.loads(raw)["size"] == 1000
    status, _, _ = via_nginx(port, "POST", "/upload", b"a" * 1001)
    assert status == 413
    assert server.proc.poll() is None


@needs_nginx
def test_behind_nginx_an_aborted_body_is_not_passed_off_as_whole(servers, nginx_in_front):
    server = servers(APP)
    port = nginx_in_front(f"127.0.0.1:{server.port}")
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        s.sendall(b"GET /raise HTTP/1.1\r\nHost: x\r\n\r\n")
        raw, closed = recv_until_closed(s, 10)
    assert closed
    status, headers, rest = split_head(raw)
    assert status == b"HTTP/1.1 200 OK"
    assert headers.get("transfer-encoding") == ["chunked"]
    assert not rest.endswith(b"0\r\n\r\n"), f"nginx ended the body cleanly: {rest!r}"


@needs_nginx
def test_behind_nginx_a_flask_app(servers, nginx_in_front):
    server = servers("flask_app:app", workers="1")
    port = nginx_in_front(f"127.0.0.1:{server.port}")
    form = "name=ada&tag=a&tag=b"
    status, _, raw = via_nginx(
        port, "POST", "/form", form, {"Content-Type": "application/x-www-form-urlencoded"}
    )
    assert status == 200, raw[:300]
    assert json.loads(raw) == {"name": "ada", "tags": ["a", "b"]}
    boundary = "XyZ"
    content = pattern(300_000)
    multipart = (
        (
            f"--{boundary}\r\nContent-Disposition: form-data; name=note\r\n\r\nhi\r\n"
            f"--{boundary}\r\nContent-Disposition: form-data; name=file; filename=a.bin\r\n"
            "Content-Type: application/octet-stream\r\n\r\n"
        ).encode()
        + content
        + f"\r\n--{boundary}--\r\n".encode()
    )
    status, _, raw = via_nginx(
        port,
        "POST",
        "/upload",
        multipart,
        {"Content-Type": f"multipart/form-data; boundary={boundary}"},
    )
    assert status == 200, raw[:300]
    got = json.loads(raw)
    assert (got["filename"], got["size"], got["note"]) == ("a.bin", len(content), "hi")
    assert got["sha256"] == hashlib.sha256(content).hexdigest()
    status, _, raw = via_nginx(port, "GET", "/stream")
    assert status == 200
    assert raw == "".join(f"line {i}\n" for i in range(100)).encode()
    status, headers, _ = via_nginx(
        port, "POST", "/login", "user=ada", {"Content-Type": "application/x-www-form-urlencoded"}
    )
    assert status == 200
    cookie = headers["Set-Cookie"].split(";")[0]
    status, _, raw = via_nginx(port, "GET", "/whoami", headers={"Cookie": cookie})
    assert json.loads(raw) == {"user": "ada"}


@needs_nginx
def test_behind_nginx_a_chunked_upload(servers, nginx_in_front):
    """nginx reads a chunked request body whole and sends its length as CONTENT_LENGTH."""
    server = servers(APP)
    port = nginx_in_front(f"127.0.0.1:{server.port}")
    body = pattern(300_000)
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        head = b"POST /upload HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
        chunks = b"".join(
            b"%x\r\n%s\r\n" % (len(body[i : i + 70_000]), body[i : i + 70_000])
            for i in range(0, len(body), 70_000)
        )
        s.sendall(head + chunks + b"0\r\n\r\n")
        status, _, raw = read_response(s)
    assert status == b"HTTP/1.1 200 OK", raw[:300]
    got = json.loads(raw)
    assert (got["size"], got["sha256"]) == (len(body), hashlib.sha256(body).hexdigest())
    assert got["CONTENT_LENGTH"] == str(len(body))


@needs_nginx
def test_behind_nginx_a_large_body_over_the_limit_gets_413(servers, nginx_in_front):
    server = servers(APP, "--max-body-size", str(MIB))
    port = nginx_in_front(f"127.0.0.1:{server.port}")
    status, _, _ = via_nginx(port, "POST", "/upload", pattern(8 * MIB))
    assert status == 413
    status, _, raw = via_nginx(port, "POST", "/upload", pattern(MIB))
    assert (status, json.loads(raw)["size"]) == (200, MIB)


@needs_nginx
def test_behind_nginx_a_client_that_goes_away_gets_close_called_once(servers, nginx_in_front):
    server = servers("counting_app:app", workers="1")
    port = nginx_in_front(f"127.0.0.1:{server.port}")
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        s.sendall(b"GET /forever HTTP/1.1\r\nHost: x\r\n\r\n")
        got = b""
        while len(got) < 300_000:
            piece = s.recv(65536)
            assert piece
            got += piece
    assert got.startswith(b"HTTP/1.1 200 OK\r\n")

    def closes():
        return json.loads(via_nginx(port, "GET", "/closes")[2])

    assert wait_until(lambda: closes()["closed"].get("/forever") == 1, 15), closes()
    time.sleep(0.3)
    assert closes() == {"entered": {"/forever": 1}, "closed": {"/forever": 1}}
