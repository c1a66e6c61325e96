"""The FastCGI engine (issue 11): ``--bind fcgi://HOST:PORT`` and ``fcgi://unix:PATH``.

Two kinds of client, both real:

- a raw FastCGI client (tests/fcgi_client.py) that writes records as nginx or Apache
  would, or malformed ones, and checks every record the server answers with;
- a real nginx with ``include /etc/nginx/fastcgi_params; fastcgi_pass`` to an upstream
  with ``keepalive 8`` and ``fastcgi_keep_conn on``, as the README's site config.

The application (tests/apps/fcgi_app.py) echoes its environ, hashes uploads, streams
(recording its ``close()`` calls in a file), and serves a Flask route.
"""

from __future__ import annotations

import hashlib
import http.client
import json
import re
import signal
import socket
import subprocess
import threading
import time
from pathlib import Path

import pytest
from conftest import NGINX, ServerProcess, wait_until
from fcgi_client import (
    ABORT_REQUEST,
    AUTHORIZER,
    CANT_MPX_CONN,
    END_REQUEST,
    GET_VALUES,
    GET_VALUES_RESULT,
    PARAMS,
    REQUEST_COMPLETE,
    STDERR,
    STDIN,
    STDOUT,
    UNKNOWN_ROLE,
    UNKNOWN_TYPE,
    Reader,
    base_params,
    begin,
    pairs,
    parse_pairs,
    record,
    request_bytes,
    stream,
)

APP = "fcgi_app:app"
OTHER_LOOPBACK = "127.0.0.2"  # not in the default --proxy-allow-from
CHUNK = bytes(range(256)) * 256  # as fcgi_app.pattern makes its downloads


def pattern(size: int) -> bytes:
    """The ``size`` bytes fcgi_app's ``/download?size=N`` answers with."""
    return (CHUNK * (size // len(CHUNK) + 1))[:size]


# --- helpers ---------------------------------------------------------------------------


class FcgiServer:
    """A ferrowsgi serving FastCGI only, and where its app records close() calls."""

    def __init__(self, tmp_path, *args: str, bind: str = "fcgi://127.0.0.1:0", app=APP):
        self.close_log = tmp_path / "closed.log"
        self.close_log.write_text("")
        self.process = ServerProcess(
            [app, "--bind", bind, *args], env={"FCGI_CLOSE_LOG": str(self.close_log)}
        )
        if bind.startswith("fcgi://unix:"):
            self.process.wait_for_log("Listening at", 30)
            self.port = 0
        else:
            self.process.wait_ready()
            self.port = self.process.port

    def connect(self, source: str | None = None, timeout: float = 10.0) -> socket.socket:
        return socket.create_connection(
            ("127.0.0.1", self.port), timeout, source_address=(source, 0) if source else None
        )

    def closes(self) -> int:
        return self.close_log.read_text().count("closed")

    def alive(self) -> bool:
        return self.process.proc.poll() is None


@pytest.fixture
def fcgi_server(tmp_path):
    """Factory: ``fcgi_server("--workers", "0")`` → a ready FcgiServer (stopped after)."""
    servers: list[FcgiServer] = []

    def start(*args: str, **kw) -> FcgiServer:
        server = FcgiServer(tmp_path, *args, **kw)
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.process.stop()


@pytest.fixture(scope="module")
def shared_server(tmp_path_factory):
    """One server (a master and one worker) for the tests that only exchange requests."""
    server = FcgiServer(tmp_path_factory.mktemp("fcgi"), "--workers", "1")
    yield server
    server.process.stop()


def ask(sock, request_id=1, params=None, body=b"", keep_conn=False, stdin_size=65535):
    sock.sendall(request_bytes(request_id, params, body, keep_conn, stdin_size))
    return Reader(sock).response(request_id)


def environ(response) -> dict:
    assert response.end == (0, REQUEST_COMPLETE), response
    assert response.status == 200, response.stdout[:500]
    return json.loads(response.body)


def is_closed(sock: socket.socket, timeout: float = 5.0) -> bool:
    """Whether the server closed ``sock`` (end of stream, no bytes) within ``timeout``."""
    sock.settimeout(timeout)
    try:
        return sock.recv(1) == b""
    except ConnectionResetError:
        return True
    except TimeoutError:
        return False


def closed_without_answer(sock: socket.socket, data: bytes) -> None:
    try:
        sock.sendall(data)
    except (BrokenPipeError, ConnectionResetError):
        return
    sock.settimeout(5)
    try:
        got = sock.recv(65536)
    except ConnectionResetError:
        return
    assert got == b"", f"answered: {got[:200]!r}"


# --- the environ from PARAMS ------------------------------------------------------------


@pytest.mark.parametrize("workers", ["0", "1"])
def test_the_start_up_line_names_the_protocol(start_server, workers):
    server = start_server(APP, "--workers", workers, "--bind", "fcgi://127.0.0.1:0", bind=False)
    server.wait_for_log(r"Listening at: fcgi://127\.0\.0\.1:\d+ \(\d+\)$")
    assert "Listening at: http" not in server.log


@pytest.mark.parametrize("workers", ["0", "1"])
def test_environ_from_nginx_params(fcgi_server, workers):
    server = fcgi_server("--workers", workers)
    params = base_params(
        "GET",
        "/some/path?x=1&y=%20",
        HTTPS="on",
        HTTP_USER_AGENT="raw-client",
        HTTP_X_CUSTOM_THING="a b",
        HTTP_ACCEPT="*/*",
    )
    with server.connect() as sock:
        env = environ(ask(sock, 7, params))
    assert env["REQUEST_METHOD"] == "GET"
    assert env["PATH_INFO"] == "/some/path"
    assert env["SCRIPT_NAME"] == "", "nginx's SCRIPT_NAME is the whole path: ours is used"
    assert env["QUERY_STRING"] == "x=1&y=%20"
    assert env["SERVER_NAME"] == "example.test"
    assert env["SERVER_PORT"] == "8080"
    assert env["REMOTE_ADDR"] == "192.0.2.10"
    assert env["REMOTE_PORT"] == "40000"
    assert env["HTTP_HOST"] == "example.test"
    assert env["HTTP_USER_AGENT"] == "raw-client"
    assert env["HTTP_X_CUSTOM_THING"] == "a b"
    assert env["HTTP_ACCEPT"] == "*/*"
    assert env["wsgi.url_scheme"] == "https"
    assert env["SERVER_PROTOCOL"] == "HTTP/1.1"
    assert env["DOCUMENT_URI"] == "/some/path", "other variables reach the environ as sent"
    assert "CONTENT_LENGTH" not in env or env["CONTENT_LENGTH"] in ("", "0")


def test_uwsgi_style_params_and_plain_http_scheme(shared_server):
    params = {
        "REQUEST_METHOD": "PUT",
        "SCRIPT_NAME": "/mount",
        "PATH_INFO": "/caf\xe9 x",
        "QUERY_STRING": "q=1",
        "SERVER_NAME": "svc",
        "SERVER_PORT": "81",
        "REMOTE_ADDR": "2001:db8::7",
        "REMOTE_PORT": "1234",
        "CONTENT_TYPE": "text/plain",
        "CONTENT_LENGTH": "3",
    }
    with shared_server.connect() as sock:
        env = environ(ask(sock, 1, params, b"abc"))
    assert env["SCRIPT_NAME"] == "/mount"
    assert env["PATH_INFO"] == "/caf\xe9 x"
    assert env["REMOTE_ADDR"] == "2001:db8::7"
    assert env["wsgi.url_scheme"] == "http"
    assert env["CONTENT_TYPE"] == "text/plain"
    assert env["CONTENT_LENGTH"] == "3"
    assert env["_body_len"] == 3


def test_post_body_over_many_stdin_records(shared_server):
    small = bytes(range(256)) * 1200  # 300 KiB in 1000-byte records
    large = pattern(3 * 1024 * 1024)  # past --body-buffer-size: spilled to a file
    for body, size in ((small, 1000), (large, 65535)):
        params = base_params("POST", "/upload", CONTENT_LENGTH=str(len(body)))
        with shared_server.connect() as sock:
            env = environ(ask(sock, 3, params, body, stdin_size=size))
        assert env["_body_len"] == len(body)
        assert env["_body_sha256"] == hashlib.sha256(body).hexdigest()
        assert env["CONTENT_LENGTH"] == str(len(body))


def test_large_download_split_into_records(shared_server):
    size = 1024 * 1024 + 3
    with shared_server.connect() as sock:
        sock.sendall(request_bytes(1, base_params("GET", f"/download?size={size}")))
        reader = Reader(sock)
        response = reader.response(1)
        sizes = [len(r.content) for r in response.records if r.kind == STDOUT]
    assert response.end == (0, REQUEST_COMPLETE)
    assert response.body == pattern(size)
    assert response.header("Content-Length") == str(size)
    assert max(sizes) <= 65535 and sizes[-1] == 0, "an empty STDOUT ends the stream"


def test_head_has_no_body(shared_server):
    with shared_server.connect() as sock:
        response = ask(sock, 1, base_params("HEAD", "/download?size=1000"))
    assert response.end == (0, REQUEST_COMPLETE)
    assert response.status == 200
    assert response.body == b""
    assert response.header("Content-Length") == "1000"


def test_head_of_a_streamed_response_closes_the_iterable(fcgi_server):
    server = fcgi_server("--workers", "0")
    with server.connect() as sock:
        response = ask(sock, 1, base_params("HEAD", "/stream?n=3"), keep_conn=True)
        assert response.end == (0, REQUEST_COMPLETE)
        assert response.body == b""
        assert response.header("Content-Length") is None, "the length is not known"
        assert wait_until(lambda: server.closes() == 1, 5)
        assert environ(ask(sock, 2, base_params(), keep_conn=True))["REQUEST_METHOD"] == "GET"


# --- connections: FCGI_KEEP_CONN, one request at a time -------------------------------------


def test_keep_conn_serves_many_requests_on_one_connection(shared_server):
    with shared_server.connect() as sock:
        for i in range(1, 21):
            params = base_params("GET", f"/n/{i}", REMOTE_PORT=str(1000 + i))
            env = environ(ask(sock, i % 3 + 1, params, keep_conn=True))
            assert env["PATH_INFO"] == f"/n/{i}"
            assert env["REMOTE_PORT"] == str(1000 + i)
        assert not is_closed(sock, 0.3), "FCGI_KEEP_CONN: the connection stays open"


def test_without_keep_conn_the_connection_closes_after_end_request(shared_server):
    with shared_server.connect() as sock:
        response = ask(sock, 1, base_params(), keep_conn=False)
        assert response.end == (0, REQUEST_COMPLETE)
        assert is_closed(sock), "closed after END_REQUEST"


def test_a_second_request_at_once_is_refused_cant_mpx_conn(shared_server):
    with shared_server.connect() as sock:
        first = begin(1, flags=1) + stream(PARAMS, 1, pairs(base_params("GET", "/one").items()))
        sock.sendall(first + begin(2, flags=1) + stream(STDIN, 1, b""))
        reader = Reader(sock)
        response = reader.response(1)
        assert environ(response)["PATH_INFO"] == "/one"
        refused = [r for r in response.records if r.kind == END_REQUEST and r.request_id == 2]
        assert len(refused) == 1
        assert refused[0].content[4] == CANT_MPX_CONN
        # Records for an id that is not active are ignored; the connection serves on.
        sock.sendall(record(STDIN, 9, b"stray") + record(ABORT_REQUEST, 9))
        env = environ(ask(sock, 4, base_params("GET", "/two"), keep_conn=True))
        assert env["PATH_INFO"] == "/two"


# --- management records, roles, unknown types ---------------------------------------------


def test_get_values(shared_server):
    query = pairs([("FCGI_MAX_CONNS", ""), ("FCGI_MAX_REQS", ""), ("FCGI_MPXS_CONNS", "")])
    with shared_server.connect() as sock:
        sock.sendall(record(GET_VALUES, 0, query))
        answer = Reader(sock).record()
        assert answer is not None and answer.kind == GET_VALUES_RESULT
        values = parse_pairs(answer.content)
        assert values[b"FCGI_MPXS_CONNS"] == b"0"
        assert int(values[b"FCGI_MAX_CONNS"]) >= 1
        assert int(values[b"FCGI_MAX_REQS"]) >= 1
        # The connection is still good for a request.
        assert environ(ask(sock, 1, base_params()))["REQUEST_METHOD"] == "GET"


def test_unknown_role_is_refused_and_the_connection_serves_on(shared_server):
    with shared_server.connect() as sock:
        sock.sendall(begin(5, role=AUTHORIZER, flags=1))
        refused = Reader(sock).response(5)
        assert refused.end == (0, UNKNOWN_ROLE)
        assert refused.stdout == b""
        assert environ(ask(sock, 6, base_params(), keep_conn=True))["REQUEST_METHOD"] == "GET"
    with shared_server.connect() as sock:
        sock.sendall(begin(5, role=3))  # FILTER, no KEEP_CONN: closed after the answer
        assert Reader(sock).response(5).end == (0, UNKNOWN_ROLE)
        assert is_closed(sock)


def test_unknown_record_type(shared_server):
    with shared_server.connect() as sock:
        sock.sendall(record(99, 0, b"whatever"))
        answer = Reader(sock).record()
        assert answer is not None and answer.kind == UNKNOWN_TYPE
        assert answer.content[0] == 99
        assert environ(ask(sock, 1, base_params()))["REQUEST_METHOD"] == "GET"


# --- abort, cut bodies ------------------------------------------------------------------


def test_abort_request_during_a_streamed_response_closes_the_iterable_once(fcgi_server):
    server = fcgi_server("--workers", "0", "--threads", "2")
    with server.connect() as sock:
        sock.sendall(request_bytes(1, base_params("GET", "/stream?n=500"), keep_conn=True))
        reader = Reader(sock)
        body = b""
        while b"chunk 2\n" not in body:
            rec = reader.record()
            assert rec is not None and rec.kind == STDOUT, rec
            body += rec.content
        sock.sendall(record(ABORT_REQUEST, 1))
        response = reader.response(1)
        assert response.end == (0, REQUEST_COMPLETE), "ABORT_REQUEST answered by END_REQUEST"
        assert b"chunk 499" not in response.stdout
        assert wait_until(lambda: server.closes() >= 1, 5), "close() not called"
        time.sleep(0.3)
        assert server.closes() == 1, "close() called more than once"
        # The pooled connection serves the next request.
        assert environ(ask(sock, 2, base_params(), keep_conn=True))["REQUEST_METHOD"] == "GET"


def test_web_server_going_away_closes_the_iterable_once(fcgi_server):
    server = fcgi_server("--workers", "0")
    sock = server.connect()
    sock.sendall(request_bytes(1, base_params("GET", "/stream?n=500")))
    assert Reader(sock).record().kind == STDOUT
    sock.close()
    assert wait_until(lambda: server.closes() >= 1, 10), "close() not called"
    time.sleep(0.3)
    assert server.closes() == 1
    with server.connect() as sock:
        assert environ(ask(sock, 1, base_params()))["REQUEST_METHOD"] == "GET"


def test_a_body_that_cannot_be_completed_closes_without_end_request(shared_server):
    with shared_server.connect() as sock:
        response = ask(sock, 1, base_params("GET", "/cut"), keep_conn=True)
        assert response.end is None, "no END_REQUEST: the web server must see it cut"
        assert response.header("Content-Length") == "100"
        assert response.body == b"short"


# --- limits, malformed input ---------------------------------------------------------------


def test_body_over_max_body_size_is_answered_413(fcgi_server):
    server = fcgi_server("--workers", "0", "--max-body-size", "1000")
    body = b"x" * 5000
    with server.connect() as sock:
        params = base_params("POST", "/", CONTENT_LENGTH=str(len(body)))
        response = ask(sock, 1, params, body, keep_conn=True, stdin_size=700)
        assert response.end == (0, REQUEST_COMPLETE)
        assert response.status == 413
        params = base_params("POST", "/", CONTENT_LENGTH="")  # undeclared: counted as it comes
        response = ask(sock, 2, params, body, keep_conn=True, stdin_size=700)
        assert response.status == 413
        assert environ(ask(sock, 3, base_params(), keep_conn=True))["_body_len"] == 0


def test_params_over_the_limits_are_answered_431(fcgi_server):
    server = fcgi_server("--workers", "0", "--limit-request-fields", "5")
    many = {f"HTTP_X_{i}": "v" for i in range(6)}
    with server.connect() as sock:
        response = ask(sock, 1, base_params(**many), keep_conn=True)
        assert response.status == 431
        huge = {"HTTP_X_BIG": "v" * 70000}  # PARAMS over several records, past max_head
        few = {f"HTTP_X_{i}": "v" for i in range(4)}
        assert environ(ask(sock, 2, base_params(**few), keep_conn=True))["HTTP_X_3"] == "v"
    server = fcgi_server(
        "--workers", "0", "--limit-request-field-size", "100", "--limit-request-line", "100"
    )
    with server.connect() as sock:
        assert ask(sock, 1, base_params(**huge), keep_conn=True).status == 431
        bad = base_params(REQUEST_METHOD="G ET")
        assert ask(sock, 2, bad, keep_conn=True).status == 400
        assert environ(ask(sock, 3, base_params(), keep_conn=True))["REQUEST_METHOD"] == "GET"


@pytest.mark.parametrize(
    "garbage",
    [
        b"GET / HTTP/1.1\r\nHost: x\r\n\r\n",
        record(PARAMS, 0)[:1].replace(b"\x01", b"\x02") + record(PARAMS, 0)[1:],
        begin(1) + record(STDIN, 1, b"body before params"),
        record(1, 1, b"\x00\x01"),  # BEGIN_REQUEST too short
    ],
    ids=["http", "version-2", "stdin-before-params", "short-begin"],
)
def test_malformed_input_closes_the_connection_and_the_server_serves_on(shared_server, garbage):
    with shared_server.connect() as sock:
        sock.sendall(garbage)
        sock.settimeout(5)
        got = b""
        try:
            while chunk := sock.recv(65536):
                got += chunk
        except ConnectionResetError:
            pass
        assert got == b"", got[:300]
    assert shared_server.alive()
    with shared_server.connect() as sock:
        assert environ(ask(sock, 1, base_params()))["REQUEST_METHOD"] == "GET"


def test_malformed_input_is_logged_at_debug_level(fcgi_server):
    server = fcgi_server("--workers", "0", "--log-level", "debug")
    with server.connect() as sock:
        closed_without_answer(sock, b"\x02" + record(PARAMS, 1)[1:])
    server.process.wait_for_log(r"fastcgi: 127\.0\.0\.1:\d+: connection closed: record version")
    with server.connect() as sock:
        sock.sendall(begin(1, role=AUTHORIZER))
        assert Reader(sock).response(1).end == (0, UNKNOWN_ROLE)
    server.process.wait_for_log(r"fastcgi: request 1 refused: role 2")
    assert server.alive()


def test_broken_name_value_pairs_are_answered_400(shared_server):
    broken = pairs(base_params().items()) + b"\x05\x7fAB"  # a pair longer than its block
    with shared_server.connect() as sock:
        sock.sendall(begin(1, flags=1) + stream(PARAMS, 1, broken) + stream(STDIN, 1, b"xyz"))
        response = Reader(sock).response(1)
        assert response.end == (0, REQUEST_COMPLETE)
        assert response.status == 400
        assert environ(ask(sock, 2, base_params(), keep_conn=True))["REQUEST_METHOD"] == "GET"


def test_records_in_small_pieces_and_pairs_across_records(shared_server):
    """PARAMS in 7-byte records (pairs split across them), the whole request written in
    small pieces with pauses, odd padding: what matters is the byte stream."""
    body = b"0123456789" * 300
    params = base_params("POST", "/pieces?x=y", CONTENT_LENGTH=str(len(body)), HTTP_X_A="b")
    block = pairs(params.items())
    data = begin(1, flags=1)
    data += b"".join(
        record(PARAMS, 1, block[i : i + 7], padding=i % 5) for i in range(0, len(block), 7)
    )
    data += record(PARAMS, 1)
    data += b"".join(
        record(STDIN, 1, body[i : i + 333], padding=3) for i in range(0, len(body), 333)
    )
    data += record(STDIN, 1)
    with shared_server.connect() as sock:
        for i in range(0, len(data), 97):
            sock.sendall(data[i : i + 97])
            if i % 970 == 0:
                time.sleep(0.01)
        env = environ(Reader(sock).response(1))
    assert env["PATH_INFO"] == "/pieces" and env["QUERY_STRING"] == "x=y"
    assert env["HTTP_X_A"] == "b"
    assert env["_body_sha256"] == hashlib.sha256(body).hexdigest()


def test_abort_while_the_application_runs_and_while_stdin_comes(fcgi_server):
    server = fcgi_server("--workers", "0", "--threads", "2")
    with server.connect() as sock:
        sock.sendall(request_bytes(1, base_params("GET", "/slow?ms=1500"), keep_conn=True))
        time.sleep(0.3)
        start = time.monotonic()
        sock.sendall(record(ABORT_REQUEST, 1))
        response = Reader(sock).response(1)
        assert response.end == (0, REQUEST_COMPLETE) and response.stdout == b""
        assert time.monotonic() - start < 1.0, "answered at once, not when the app is done"
        # During STDIN: nothing reaches the application; END_REQUEST at once.
        partial = begin(2, flags=1) + stream(PARAMS, 2, pairs(base_params("POST", "/").items()))
        sock.sendall(partial + record(STDIN, 2, b"part") + record(ABORT_REQUEST, 2))
        response = Reader(sock).response(2)
        assert response.end == (0, REQUEST_COMPLETE) and response.stdout == b""
        env = environ(ask(sock, 3, base_params("GET", "/after"), keep_conn=True))
        assert env["PATH_INFO"] == "/after"


def test_a_connection_that_sends_nothing_is_closed(fcgi_server):
    server = fcgi_server("--workers", "0", "--header-timeout", "1")
    with server.connect() as sock:
        start = time.monotonic()
        assert is_closed(sock, 5)
        assert 0.8 < time.monotonic() - start < 4


def test_params_not_received_in_time(fcgi_server):
    server = fcgi_server("--workers", "0", "--header-timeout", "1")
    with server.connect() as sock:
        sock.sendall(begin(1) + record(PARAMS, 1, pairs([("REQUEST_METHOD", "GET")])))
        start = time.monotonic()
        response = Reader(sock).response(1)
        assert response.status == 408
        assert time.monotonic() - start < 5
        assert is_closed(sock)


# --- who may connect, listeners, graceful stop ---------------------------------------------


def test_a_peer_not_in_proxy_allow_from_is_refused(shared_server):
    with shared_server.connect(source=OTHER_LOOPBACK) as sock:
        closed_without_answer(sock, request_bytes(1, base_params()))
    shared_server.process.wait_for_log(r"fcgi: connection from 127\.0\.0\.2:\d+ refused")
    with shared_server.connect() as sock:
        assert environ(ask(sock, 1, base_params()))["REQUEST_METHOD"] == "GET"


def test_allowed_by_proxy_allow_from(fcgi_server):
    server = fcgi_server("--workers", "0", "--proxy-allow-from", "127.0.0.2")
    with server.connect(source=OTHER_LOOPBACK) as sock:
        assert environ(ask(sock, 1, base_params()))["REMOTE_ADDR"] == "192.0.2.10"
    with server.connect() as sock:
        closed_without_answer(sock, request_bytes(1, base_params()))


def test_unix_socket_listener(fcgi_server, tmp_path):
    path = tmp_path / "fcgi.sock"
    server = fcgi_server("--workers", "1", bind=f"fcgi://unix:{path}")
    assert wait_until(path.exists, 10)
    with socket.socket(socket.AF_UNIX) as sock:
        sock.settimeout(10)
        sock.connect(str(path))
        env = environ(ask(sock, 1, base_params("GET", "/u?z=9"), keep_conn=True))
        assert env["PATH_INFO"] == "/u" and env["QUERY_STRING"] == "z=9"
        assert env["REMOTE_ADDR"] == "192.0.2.10", "the proxy's REMOTE_ADDR"
        assert environ(ask(sock, 2, base_params(), keep_conn=True))["REQUEST_METHOD"] == "GET"
    assert server.alive()


def test_graceful_stop_drains_an_idle_pooled_connection(fcgi_server):
    server = fcgi_server("--workers", "0", "--keep-alive", "3")
    with server.connect() as sock:
        environ(ask(sock, 1, base_params(), keep_conn=True))
        server.process.proc.send_signal(signal.SIGTERM)
        time.sleep(0.5)
        # A request in the drain period is answered, then the connection closes.
        sock.sendall(request_bytes(2, base_params("GET", "/late"), keep_conn=True))
        reader = Reader(sock)
        assert environ(reader.response(2))["PATH_INFO"] == "/late"
        assert_closing_notice(reader, 2)
    assert server.process.proc.wait(15) == 0


def assert_closing_notice(reader: Reader, request_id: int) -> None:
    """After the END_REQUEST of a pooled connection that closes: an empty STDERR record
    (so nginx does not keep the connection: see fastcgi::Conn::end_request), then the
    connection's end."""
    notice = reader.record()
    assert notice is not None, "closed without the notice"
    assert (notice.kind, notice.request_id, notice.content) == (STDERR, request_id, b"")
    assert reader.record() is None, "the connection stayed open"


def test_graceful_stop_finishes_a_request_in_progress_then_closes(fcgi_server):
    server = fcgi_server("--workers", "0", "--keep-alive", "3")
    with server.connect() as sock:
        sock.sendall(request_bytes(1, base_params("GET", "/slow?ms=800"), keep_conn=True))
        time.sleep(0.3)
        server.process.proc.send_signal(signal.SIGTERM)
        reader = Reader(sock)
        response = reader.response(1)
        assert response.end == (0, REQUEST_COMPLETE)
        assert response.body == b"slept"
        assert_closing_notice(reader, 1)  # closed though FCGI_KEEP_CONN was set
    assert server.process.proc.wait(15) == 0


def test_graceful_stop_closes_an_idle_pooled_connection_after_the_drain(fcgi_server):
    server = fcgi_server("--workers", "0", "--keep-alive", "1")
    with server.connect() as sock:
        environ(ask(sock, 1, base_params(), keep_conn=True))
        start = time.monotonic()
        server.process.proc.send_signal(signal.SIGTERM)
        assert is_closed(sock, 10)
        assert time.monotonic() - start < 5
    assert server.process.proc.wait(15) == 0


# --- through a real nginx ---------------------------------------------------------------

NGINX_CONF = """\
daemon off;
master_process off;
worker_processes 1;
pid {tmp}/nginx.pid;
error_log {tmp}/error.log warn;
events {{ worker_connections 256; }}
http {{
    access_log off;
    client_body_temp_path {tmp}/client_body;
    proxy_temp_path {tmp}/proxy;
    fastcgi_temp_path {tmp}/fastcgi;
    uwsgi_temp_path {tmp}/uwsgi;
    scgi_temp_path {tmp}/scgi;
    client_max_body_size 64m;
    upstream app {{
        server 127.0.0.1:{upstream};
        keepalive 8;
    }}
    server {{
        listen 127.0.0.1:{port};
        location / {{
            include /etc/nginx/fastcgi_params;
            fastcgi_pass app;
            fastcgi_keep_conn on;
            fastcgi_read_timeout 20s;
        }}
    }}
}}
"""

needs_nginx = pytest.mark.skipif(NGINX is None, reason="nginx not found (`make deps`)")


@pytest.fixture
def nginx_fastcgi(run_nginx):
    """Factory: ``nginx_fastcgi(upstream_port)`` → the port nginx listens on."""
    return lambda upstream: run_nginx(NGINX_CONF, upstream=upstream)


def http_request(port, method, target, body=None, source=None, conn=None, headers=None):
    own = conn is None
    if own:
        conn = http.client.HTTPConnection(
            "127.0.0.1", port, timeout=30, source_address=(source, 0) if source else None
        )
    try:
        conn.request(method, target, body=body, headers=headers or {})
        response = conn.getresponse()
        return response.status, dict(response.getheaders()), response.read()
    finally:
        if own:
            conn.close()


def established(port: int) -> int:
    """ESTABLISHED TCP connections whose local port is ``port`` (the server's side)."""
    out = subprocess.run(
        ["ss", "-Htn", "state", "established", f"( sport = :{port} )"],
        capture_output=True,
        text=True,
        timeout=10,
        check=True,
    ).stdout
    return len([line for line in out.splitlines() if line.strip()])


@needs_nginx
def test_nginx_remote_addr_upload_and_download(fcgi_server, nginx_fastcgi):
    server = fcgi_server("--workers", "1", "--threads", "4")
    port = nginx_fastcgi(server.port)
    status, _, body = http_request(port, "GET", "/who?a=1", source=OTHER_LOOPBACK)
    assert status == 200, body[:300]
    env = json.loads(body)
    assert env["REMOTE_ADDR"] == OTHER_LOOPBACK, "the client's, not nginx's"
    assert env["PATH_INFO"] == "/who" and env["QUERY_STRING"] == "a=1"
    assert env["SERVER_PORT"] == str(port)
    assert env["wsgi.url_scheme"] == "http"
    upload = pattern(20 * 1024 * 1024)
    headers = {"Content-Type": "application/octet-stream"}
    status, _, body = http_request(port, "POST", "/upload", upload, headers=headers)
    assert status == 200, body[:300]
    env = json.loads(body)
    assert env["_body_len"] == len(upload)
    assert env["_body_sha256"] == hashlib.sha256(upload).hexdigest()
    size = 4 * 1024 * 1024
    status, headers, body = http_request(port, "GET", f"/download?size={size}")
    assert status == 200
    assert hashlib.sha256(body).hexdigest() == hashlib.sha256(pattern(size)).hexdigest()


@needs_nginx
def test_nginx_keep_conn_pools_upstream_connections(fcgi_server, nginx_fastcgi):
    server = fcgi_server("--workers", "1", "--threads", "4")
    port = nginx_fastcgi(server.port)
    statuses = []
    for _ in range(4):  # four client connections, 25 keep-alive requests each
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        try:
            for i in range(25):
                status, _, body = http_request(port, "GET", f"/k/{i}", conn=conn)
                statuses.append(status)
                assert json.loads(body)["PATH_INFO"] == f"/k/{i}"
        finally:
            conn.close()
    assert statuses == [200] * 100
    assert 1 <= established(server.port) <= 8, "nginx's pool of upstream connections"


@needs_nginx
def test_nginx_flask_route_with_stock_params(fcgi_server, nginx_fastcgi):
    server = fcgi_server("--workers", "0", app="fcgi_app:flask_app")
    port = nginx_fastcgi(server.port)
    status, headers, body = http_request(port, "GET", "/hello/world")
    assert status == 200, body[:300]
    assert json.loads(body) == {"hello": "world", "script_name": "", "path": "/hello/world"}
    status, _, _ = http_request(port, "GET", "/nope")
    assert status == 404


def test_access_log_has_one_line_per_request_with_the_proxys_client(fcgi_server, tmp_path):
    path = tmp_path / "access.log"
    server = fcgi_server("--workers", "0", "--access-log", str(path))
    with server.connect() as sock:
        params = base_params("GET", "/logged?q=1", HTTP_USER_AGENT="ua/1", HTTP_REFERER="r")
        response = ask(sock, 1, params, keep_conn=True)
        ask(sock, 2, base_params("GET", "/download?size=1234"), keep_conn=True)
    assert wait_until(lambda: path.exists() and "/download" in path.read_text())
    lines = path.read_text().splitlines()
    assert len(lines) == 2, lines
    n = len(response.body)
    first = rf'192\.0\.2\.10 - - \[.*\] "GET /logged\?q=1 HTTP/1.1" 200 {n} "r" "ua/1" '
    assert re.match(first, lines[0]), lines[0]
    assert re.search(r'"GET /download\?size=1234 HTTP/1.1" 200 1234 ', lines[1]), lines[1]


@needs_nginx
def test_nginx_reload_under_load_loses_no_request(fcgi_server, nginx_fastcgi, tmp_path):
    """Pooled FastCGI connections drain on a reload (HUP): 4 keep-alive clients through
    nginx for 3 s, the workers replaced meanwhile; every request answered 200, and
    nginx logs no upstream connection closed or reset under it."""
    server = fcgi_server("--workers", "2", "--threads", "2", "--keep-alive", "1")
    port = nginx_fastcgi(server.port)
    failures: list[str] = []
    counts: list[int] = []

    def client() -> None:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=15)
        n = 0
        deadline = time.monotonic() + 3.0
        while time.monotonic() < deadline and n < 20_000:
            try:
                conn.request("GET", f"/load/{n}")
                response = conn.getresponse()
                body = response.read()
                if response.status != 200 or f"/load/{n}".encode() not in body:
                    failures.append(f"{response.status} {body[:100]!r}")
            except (OSError, http.client.HTTPException) as e:
                failures.append(repr(e))
                conn.close()
                conn = http.client.HTTPConnection("127.0.0.1", port, timeout=15)
            n += 1
        conn.close()
        counts.append(n)

    threads = [threading.Thread(target=client) for _ in range(4)]
    for t in threads:
        t.start()
    time.sleep(0.8)
    server.process.proc.send_signal(signal.SIGHUP)
    for t in threads:
        t.join(30)
    assert not failures, failures[:5]
    assert sum(counts) > 100, counts
    server.process.wait_for_log(r"Reloading", 10)

    def replaced() -> bool:
        return len(re.findall(r"Worker \(pid \d+\) ready", server.process.log)) >= 4

    assert wait_until(replaced, 20), "the workers were not replaced:\n" + server.process.log
    errors = (tmp_path / "error.log").read_text() if (tmp_path / "error.log").exists() else ""
    assert not re.search(r"prematurely closed|reset by peer|no live upstreams", errors), errors


# --- through Apache's mod_proxy_fcgi ------------------------------------------------------

APACHE = next(
    (p for p in ("/usr/sbin/apache2", "/usr/sbin/httpd") if Path(p).exists()),
    None,
)
APACHE_MODULES = next(
    (p for p in ("/usr/lib/apache2/modules", "/usr/lib64/httpd/modules") if Path(p).exists()),
    None,
)
APACHE_CONF = """\
ServerRoot "{tmp}"
ServerName localhost
PidFile {tmp}/httpd.pid
Listen 127.0.0.1:{port}
ErrorLog {tmp}/apache-error.log
LogLevel warn
LoadModule mpm_event_module {modules}/mod_mpm_event.so
LoadModule authz_core_module {modules}/mod_authz_core.so
LoadModule proxy_module {modules}/mod_proxy.so
LoadModule proxy_fcgi_module {modules}/mod_proxy_fcgi.so
User nobody
Group nogroup
ProxyPass "/" "fcgi://127.0.0.1:{upstream}/" enablereuse=on
"""


@pytest.mark.skipif(APACHE is None, reason="Apache httpd not found (apt-get install apache2)")
def test_apache_mod_proxy_fcgi(fcgi_server, tmp_path):
    server = fcgi_server("--workers", "1", "--threads", "4")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    conf = tmp_path / "httpd.conf"
    conf.write_text(
        APACHE_CONF.format(tmp=tmp_path, port=port, upstream=server.port, modules=APACHE_MODULES)
    )
    proc = subprocess.Popen(
        [APACHE, "-X", "-f", str(conf)], stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT
    )
    try:

        def up() -> bool:
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=1):
                    return True
            except OSError:
                return proc.poll() is not None

        assert wait_until(up, 10) and proc.poll() is None, "Apache did not start"
        status, _, body = http_request(port, "GET", "/some/path?x=1", source=OTHER_LOOPBACK)
        assert status == 200, body[:300]
        env = json.loads(body)
        assert env["REMOTE_ADDR"] == OTHER_LOOPBACK
        assert env["PATH_INFO"] == "/some/path" and env["QUERY_STRING"] == "x=1"
        upload = pattern(4 * 1024 * 1024 + 5)
        status, _, body = http_request(port, "POST", "/upload", upload)
        assert json.loads(body)["_body_sha256"] == hashlib.sha256(upload).hexdigest()
        status, _, body = http_request(port, "GET", "/download?size=3000000")
        assert body == pattern(3_000_000)
        statuses = [http_request(port, "GET", f"/n/{i}")[0] for i in range(20)]
        assert statuses == [200] * 20
        assert established(server.port) <= 4, "enablereuse=on: pooled connections"
    finally:
        proc.terminate()
        proc.wait(10)
