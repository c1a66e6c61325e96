"""HTTP/2 (issue 11): h2c with prior knowledge, ``--http auto|1|2``, limits and floods.

Real clients against the real server: curl (``--http2-prior-knowledge``), h2load
(nghttp2-client), and, for what no ordinary client does (resets, floods, frames
after GOAWAY), the ``h2`` package as a client state machine or frames written by hand
on a raw socket. The application is ``tests/apps/h2_app.py``.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import socket
import struct
import subprocess
import time
import uuid

import h2.config
import h2.connection
import h2.errors
import h2.events
import h2.exceptions
import hpack
import pytest
from conftest import read_response, request_bytes, wait_until

APP = "h2_app:app"
# curl and h2load come with `make deps` (Debian's curl and nghttp2-client); a test that
# needs one fails without it rather than being skipped.
CURL = shutil.which("curl") or "curl"
H2LOAD = shutil.which("h2load") or "h2load"
PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"

# Frame types and flags (RFC 9113 §6).
DATA, HEADERS, RST_STREAM, SETTINGS, PING, GOAWAY, CONTINUATION = 0, 1, 3, 4, 6, 7, 9
END_STREAM, ACK, END_HEADERS = 0x1, 0x1, 0x4
ENHANCE_YOUR_CALM = 11


# --- clients ---------------------------------------------------------------------------


def curl(server, path: str, *args: str, timeout: float = 30) -> subprocess.CompletedProcess:
    """curl with HTTP/2 prior knowledge; stdout is the body, then a last line with
    ``%{http_code} %{http_version}``."""
    return subprocess.run(
        [CURL, "-sS", "--http2-prior-knowledge", "-w", "\n%{http_code} %{http_version}",
         *args, f"{server.url}{path}"],
        capture_output=True, timeout=timeout,
    )  # fmt: skip


def curl_json(server, path: str, *args: str) -> dict:
    done = curl(server, path, *args)
    body, _, last = done.stdout.rpartition(b"\n")
    assert last == b"200 2", (last, done.stderr)
    return json.loads(body)


class Client:
    """An HTTP/2 client connection driven by the ``h2`` package's state machine."""

    def __init__(self, server, timeout: float = 10.0) -> None:
        self.sock = socket.create_connection((server.host, server.port), timeout=timeout)
        self.authority = f"{server.host}:{server.port}"
        config = h2.config.H2Configuration(client_side=True, header_encoding="latin-1")
        self.conn = h2.connection.H2Connection(config)
        self.conn.initiate_connection()
        self.streams: dict[int, dict] = {}
        self.terminated: list[h2.events.ConnectionTerminated] = []
        self.closed = False
        self.flush()

    def flush(self) -> None:
        data = self.conn.data_to_send()
        if data:
            self.sock.sendall(data)

    def request(self, path: str, method: str = "GET", headers=(), body: bytes | None = None,
                end: bool = True) -> int:  # fmt: skip
        sid = self.conn.get_next_available_stream_id()
        fields = [(":method", method), (":scheme", "http"), (":authority", self.authority),
                  (":path", path), *headers]  # fmt: skip
        self.conn.send_headers(sid, fields, end_stream=end and body is None)
        if body is not None:
            self.conn.send_data(sid, body, end_stream=end)
        self.streams[sid] = {"headers": None, "data": bytearray(), "ended": False, "reset": None}
        self.flush()
        return sid

    def pump(self, until, timeout: float = 10.0) -> bool:
        """Reads and handles frames until ``until()`` holds, the connection closes, or
        ``timeout`` passes; returns ``until()``."""
        deadline = time.monotonic() + timeout
        while not until() and not self.closed:
            left = deadline - time.monotonic()
            if left <= 0:
                break
            self.sock.settimeout(left)
            try:
                data = self.sock.recv(65536)
            except (TimeoutError, socket.timeout):
                break
            except OSError:
                data = b""
            if not data:
                self.closed = True
                break
            for event in self.conn.receive_data(data):
                self.on(event)
            self.flush()
        return until()

    def on(self, event) -> None:
        stream = self.streams.get(getattr(event, "stream_id", None) or 0)
        if isinstance(event, h2.events.ResponseReceived) and stream is not None:
            stream["headers"] = dict(event.headers)
        elif isinstance(event, h2.events.DataReceived):
            if stream is not None:
                stream["data"] += event.data
            try:
                self.conn.acknowledge_received_data(event.flow_controlled_length, event.stream_id)
            except h2.exceptions.StreamClosedError:
                pass
        elif isinstance(event, h2.events.StreamEnded) and stream is not None:
            stream["ended"] = True
        elif isinstance(event, h2.events.StreamReset) and stream is not None:
            stream["reset"] = event.error_code
        elif isinstance(event, h2.events.ConnectionTerminated):
            self.terminated.append(event)

    def done(self, sid: int) -> bool:
        s = self.streams[sid]
        return s["ended"] or s["reset"] is not None

    def response(self, sid: int, timeout: float = 10.0) -> tuple[int, dict, bytes]:
        """(status, fields, body) of stream ``sid``; fails on a reset."""
        assert self.pump(lambda: self.done(sid), timeout), f"no answer on stream {sid}"
        s = self.streams[sid]
        # A complete answer before the request body was read ends with
        # RST_STREAM(NO_ERROR) (RFC 9113 §8.1): a success all the same.
        complete = s["ended"] and s["reset"] in (None, h2.errors.ErrorCodes.NO_ERROR)
        assert complete, f"stream {sid} was reset: {s['reset']!r}"
        return int(s["headers"][":status"]), s["headers"], bytes(s["data"])

    def close(self) -> None:
        self.sock.close()


def frame(kind: int, flags: int, sid: int, payload: bytes = b"") -> bytes:
    return (
        struct.pack(">I", len(payload))[1:]
        + bytes([kind, flags])
        + struct.pack(">I", sid)
        + payload
    )


class RawConnection:
    """Frames written by hand on a socket, and the server's frames as read: for what
    a well-behaved client cannot send. SETTINGS and PING are acknowledged."""

    def __init__(self, server, timeout: float = 10.0) -> None:
        self.sock = socket.create_connection((server.host, server.port), timeout=timeout)
        self.authority = f"{server.host}:{server.port}"
        self.encoder = hpack.Encoder()
        self.decoder = hpack.Decoder()
        self.heads: dict[int, dict[str, str]] = {}
        self.buf = b""
        self.frames: list[tuple[int, int, int, bytes]] = []
        self.closed = False
        self.sock.sendall(PREFACE + frame(SETTINGS, 0, 0))

    def block(self, path: str, extra=()) -> bytes:
        pseudo = [(":method", "GET"), (":scheme", "http"), (":authority", self.authority)]
        return self.encoder.encode([*pseudo, (":path", path), *extra])

    def get(self, sid: int, path: str) -> None:
        self.sock.sendall(frame(HEADERS, END_HEADERS | END_STREAM, sid, self.block(path)))

    def read(self, until, timeout: float = 10.0) -> bool:
        deadline = time.monotonic() + timeout
        while not until() and not self.closed:
            left = deadline - time.monotonic()
            if left <= 0:
                break
            self.sock.settimeout(left)
            try:
                data = self.sock.recv(65536)
            except (TimeoutError, socket.timeout):
                break
            except OSError:
                data = b""
            if not data:
                self.closed = True
                break
            self.buf += data
            while len(self.buf) >= 9:
                length = int.from_bytes(self.buf[:3], "big")
                if len(self.buf) < 9 + length:
                    break
                kind, flags = self.buf[3], self.buf[4]
                sid = int.from_bytes(self.buf[5:9], "big") & 0x7FFFFFFF
                payload, self.buf = self.buf[9 : 9 + length], self.buf[9 + length :]
                self.frames.append((kind, flags, sid, payload))
                if kind == HEADERS:  # the server sends no padding, priority or CONTINUATION
                    self.heads[sid] = dict(self.decoder.decode(payload))
                if kind in (SETTINGS, PING) and not flags & ACK:
                    try:
                        self.sock.sendall(frame(kind, ACK, 0, payload if kind == PING else b""))
                    except OSError:
                        pass  # the server has closed: what it sent is still read
        return until()

    def goaways(self) -> list[tuple[int, int]]:
        """(last stream id, error code) of each GOAWAY received."""
        return [
            (int.from_bytes(p[:4], "big") & 0x7FFFFFFF, int.from_bytes(p[4:8], "big"))
            for kind, _, _, p in self.frames
            if kind == GOAWAY
        ]

    def on_stream(self, sid: int, kind: int) -> list[tuple[int, int, int, bytes]]:
        return [f for f in self.frames if f[2] == sid and f[0] == kind]


def served(server) -> bool:
    """Another client gets an answer over HTTP/2 at once."""
    client = Client(server, timeout=5)
    try:
        status, _, body = client.response(client.request("/slow?ms=0"), timeout=5)
        return status == 200 and body == b"slept 0"
    finally:
        client.close()


@pytest.fixture(scope="module")
def server(start_module_server):
    """Defaults (--http auto), one process, four Python threads."""
    return start_module_server(APP, "--workers", "0", "--threads", "4")


# --- h2c with prior knowledge ----------------------------------------------------------


def test_get_environ_over_h2c(server):
    env = curl_json(server, "/env?x=1&y=%20")
    assert env["SERVER_PROTOCOL"] == "HTTP/2"
    assert env["REQUEST_METHOD"] == "GET"
    assert env["HTTP_HOST"] == f"127.0.0.1:{server.port}"
    assert env["SERVER_NAME"] == "127.0.0.1"
    assert env["SERVER_PORT"] == str(server.port)
    assert env["PATH_INFO"] == "/env"
    assert env["QUERY_STRING"] == "x=1&y=%20"
    assert env["CONTENT_LENGTH"] is None
    assert env["wsgi.url_scheme"] == "http"
    assert env["REMOTE_ADDR"] == "127.0.0.1"


def test_host_comes_from_the_authority(server):
    done = subprocess.run(
        [CURL, "-sS", "--http2-prior-knowledge", "--connect-to",
         f"app.example:8080:127.0.0.1:{server.port}", "http://app.example:8080/env%2Fx"],
        capture_output=True, timeout=30,
    )  # fmt: skip
    env = json.loads(done.stdout)
    assert env["HTTP_HOST"] == "app.example:8080"
    assert env["SERVER_NAME"] == "app.example"
    assert env["PATH_INFO"] == "/env/x"


def test_a_host_field_naming_another_authority_is_refused(server):
    raw = RawConnection(server)  # the h2 package would not send it
    block = raw.block("/env", [("host", "evil.example")])
    raw.sock.sendall(frame(HEADERS, END_HEADERS | END_STREAM, 1, block))
    raw.get(3, "/env")  # the connection goes on
    assert raw.read(lambda: 1 in raw.heads and 3 in raw.heads)
    assert raw.heads[1][":status"] == "400"
    assert raw.heads[3][":status"] == "200"
    raw.sock.close()


def test_cookie_fields_are_joined_as_http1_sends_them(server):
    client = Client(server)
    crumbs = [("cookie", "a=1"), ("cookie", "b=2"), ("cookie", "c=3")]
    status, _, body = client.response(client.request("/env", headers=crumbs))
    assert status == 200 and json.loads(body)["HTTP_COOKIE"] == "a=1; b=2; c=3"
    client.close()


def test_post_of_a_few_mib_keeps_its_sha256(server, tmp_path):
    data = os.urandom(3 * 1024 * 1024 + 123)  # past body_buffer_size: spilled to a file
    path = tmp_path / "body"
    path.write_bytes(data)
    answer = curl_json(server, "/sha", "--data-binary", f"@{path}")
    assert answer == {"sha256": hashlib.sha256(data).hexdigest(), "length": len(data)}
    # Without Content-Length (a body in DATA frames only), CONTENT_LENGTH is its length.
    client = Client(server)
    sid = client.request("/env", method="POST", body=b"abc")
    status, _, body = client.response(sid)
    assert status == 200 and json.loads(body)["CONTENT_LENGTH"] == "3"
    client.close()


def test_streamed_response_from_a_generator(server):
    done = curl(server, "/stream?n=200&size=7000")
    body, _, last = done.stdout.rpartition(b"\n")
    assert last == b"200 2", done.stderr
    chunk = (b"0123456789" * 700)[:7000]
    assert body == chunk * 200


def test_head_has_no_body(server):
    done = subprocess.run(
        [CURL, "-sS", "--http2-prior-knowledge", "-I", f"{server.url}/stream?n=3"],
        capture_output=True, timeout=30,
    )  # fmt: skip
    head = done.stdout.decode()
    assert head.startswith("HTTP/2 200"), head
    assert "server: ferrowsgi/" in head and "date: " in head
    assert "transfer-encoding" not in head and "connection" not in head


def test_h2load_has_no_errors(server):
    done = subprocess.run(
        [H2LOAD, "-n", "2000", "-c", "10", "-m", "10", f"{server.url}/slow?ms=0"],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    assert "2000 succeeded, 0 failed, 0 errored, 0 timeout" in done.stdout, done.stdout
    assert "status codes: 2000 2xx" in done.stdout, done.stdout


def test_many_concurrent_streams_on_one_connection_are_all_answered(server):
    client = Client(server)
    sids = [client.request(f"/slow?ms=20&i={i}") for i in range(100)]
    assert client.pump(lambda: all(client.done(s) for s in sids), timeout=30)
    for sid in sids:
        status, _, body = client.response(sid)
        assert (status, body) == (200, b"slept 20")
    client.close()


def test_client_reset_mid_stream_closes_the_iterable_once(server):
    key = uuid.uuid4().hex
    client = Client(server)
    sid = client.request(f"/endless?id={key}")
    assert client.pump(lambda: len(client.streams[sid]["data"]) >= 100_000, timeout=10)
    client.conn.reset_stream(sid, h2.errors.ErrorCodes.CANCEL)
    client.flush()

    def counts() -> dict:
        return _closed(server, key)

    assert wait_until(lambda: counts()["closed"] == 1, timeout=10), counts()
    time.sleep(0.5)
    final = counts()
    assert final["closed"] == 1
    assert final["produced"] < 4096  # it stopped: backpressure, then the reset
    # The connection itself goes on.
    status, _, _ = client.response(client.request("/env"))
    assert status == 200
    client.close()


def _closed(server, key: str) -> dict:
    client = Client(server)
    try:
        return json.loads(client.response(client.request(f"/closed?id={key}"))[2])
    finally:
        client.close()


def test_a_short_body_resets_the_stream(server):
    client = Client(server)
    sid = client.request("/short")
    assert client.pump(lambda: client.done(sid))
    assert client.streams[sid]["reset"] == h2.errors.ErrorCodes.INTERNAL_ERROR
    sid = client.request("/abort")
    assert client.pump(lambda: client.done(sid))
    assert client.streams[sid]["reset"] == h2.errors.ErrorCodes.INTERNAL_ERROR
    assert not client.streams[sid]["ended"]
    # What was still queued when the stream was reset may be dropped with it.
    assert b"first second ".startswith(client.streams[sid]["data"])
    assert served(server)
    client.close()


# --- limits ----------------------------------------------------------------------------


def test_head_limits_give_414_and_431(server):
    client = Client(server)
    status, _, _ = client.response(client.request("/env?" + "a" * 9000))
    assert status == 414
    status, _, _ = client.response(client.request("/env", headers=[("x-big", "b" * 9000)]))
    assert status == 431
    many = [(f"x-f{i}", "1") for i in range(120)]
    status, _, _ = client.response(client.request("/env", headers=many))
    assert status == 431
    status, _, _ = client.response(client.request("/env"))  # the connection goes on
    assert status == 200
    client.close()


def test_an_oversized_header_list_is_refused(server):
    """Past SETTINGS_MAX_HEADER_LIST_SIZE (64 KiB): h2 answers 431 and refuses the
    stream before the application sees it; the connection and the server go on."""
    client = Client(server)
    fields = [(f"x-pad-{i}", "p" * 8000) for i in range(10)]  # each field is within limits
    sid = client.request("/env", headers=fields)
    assert client.pump(lambda: client.done(sid) or client.terminated)
    stream = client.streams[sid]
    assert stream["headers"] is None or stream["headers"][":status"] == "431", stream
    assert stream["reset"] is not None or stream["headers"] is not None
    assert served(server)
    client.close()


def test_body_too_large_gets_413(start_server):
    server = start_server(APP, "--workers", "0", "--max-body-size", "1K")
    client = Client(server)
    sid = client.request("/sha", method="POST", headers=[("content-length", "5000")], end=False)
    status, _, _ = client.response(sid)
    assert status == 413
    sid = client.request("/sha", method="POST", body=b"z" * 5000)  # no content-length
    status, _, _ = client.response(sid)
    assert status == 413
    sid = client.request("/sha", method="POST", body=b"z" * 1000)
    status, _, body = client.response(sid)
    assert status == 200 and json.loads(body)["length"] == 1000
    client.close()


def test_a_stalled_body_gets_408(start_server):
    server = start_server(APP, "--workers", "0", "--body-timeout", "1")
    client = Client(server)
    sid = client.request("/sha", method="POST", headers=[("content-length", "10")],
                         body=b"abc", end=False)  # fmt: skip
    started = time.monotonic()
    status, _, _ = client.response(sid, timeout=10)
    assert status == 408 and 0.8 < time.monotonic() - started < 5
    status, _, _ = client.response(client.request("/env"))
    assert status == 200
    client.close()


# --- floods ----------------------------------------------------------------------------


def test_rapid_reset_flood_is_cut_off_and_the_server_goes_on(server):
    """CVE-2023-44487: streams opened and reset at once, thousands of them."""
    client = Client(server)
    sent = 0
    try:
        for _ in range(100):
            for _ in range(50):
                sid = client.conn.get_next_available_stream_id()
                client.conn.send_headers(
                    sid,
                    [(":method", "GET"), (":scheme", "http"),
                     (":authority", client.authority), (":path", "/slow?ms=0")],
                    end_stream=True,
                )  # fmt: skip
                client.conn.reset_stream(sid, h2.errors.ErrorCodes.CANCEL)
                sent += 1
            client.flush()
            client.pump(lambda: bool(client.terminated), timeout=0.01)
            if client.terminated or client.closed:
                break
    except (OSError, h2.exceptions.ProtocolError):
        pass  # the server closed the connection under us
    client.pump(lambda: bool(client.terminated), timeout=5)
    assert client.terminated or client.closed, f"{sent} resets were all taken"
    if client.terminated:
        assert client.terminated[-1].error_code == ENHANCE_YOUR_CALM
    assert sent < 5000
    client.close()
    assert server.proc.poll() is None
    assert served(server)


def test_continuation_flood_is_refused(server):
    """CVE-2024-27316 class: a header block that never ends, in small CONTINUATIONs."""
    raw = RawConnection(server)
    block = raw.block("/env", [(f"x-c{i}", "c" * 40) for i in range(2000)])
    pieces = [block[i : i + 64] for i in range(0, len(block), 64)]
    try:
        raw.sock.sendall(frame(HEADERS, END_STREAM, 1, pieces[0]))
        for piece in pieces[1:]:
            raw.sock.sendall(frame(CONTINUATION, 0, 1, piece))
    except OSError:
        pass  # closed under us
    raw.read(lambda: bool(raw.goaways()), timeout=10)
    assert raw.goaways() and raw.goaways()[-1][1] == ENHANCE_YOUR_CALM, raw.frames
    assert not raw.on_stream(1, HEADERS)
    raw.sock.close()
    assert served(server)


def test_ping_and_settings_floods_stall_only_the_flooder(server):
    """PINGs and SETTINGS sent without reading the ACKs: the server stops reading that
    connection once its ACKs cannot be written; everyone else is served."""
    raw = RawConnection(server)
    raw.sock.setblocking(False)
    flood = (frame(PING, 0, 0, b"12345678") + frame(SETTINGS, 0, 0)) * 1000
    sent, deadline = 0, time.monotonic() + 5
    while sent < 200 * len(flood) and time.monotonic() < deadline:
        try:
            sent += raw.sock.send(flood)
        except BlockingIOError:
            time.sleep(0.01)
    started = time.monotonic()
    assert served(server)
    assert time.monotonic() - started < 3
    raw.sock.close()
    assert server.proc.poll() is None


# --- --http auto | 1 | 2 ---------------------------------------------------------------


def test_http1_clients_still_work_under_auto(server):
    with socket.create_connection((server.host, server.port), timeout=10) as sock:
        sock.sendall(request_bytes("GET", "/env"))
        status, headers, body = read_response(sock)
        assert status.startswith(b"HTTP/1.1 200")
        assert json.loads(body)["SERVER_PROTOCOL"] == "HTTP/1.1"
    # A request whose first bytes are also the preface's ("P", "PR") waits for more,
    # then goes to HTTP/1.1.
    with socket.create_connection((server.host, server.port), timeout=10) as sock:
        sock.sendall(b"P")
        time.sleep(0.1)
        sock.sendall(b"OST /sha HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\nhi")
        status, _, body = read_response(sock)
        assert status.startswith(b"HTTP/1.1 200")
        assert json.loads(body)["length"] == 2


def test_http1_mode_answers_the_preface_as_http1(start_server):
    server = start_server(APP, "--workers", "0", "--http", "1")
    with socket.create_connection((server.host, server.port), timeout=10) as sock:
        sock.sendall(PREFACE + frame(SETTINGS, 0, 0))
        sock.settimeout(10)
        answer = sock.recv(65536)
    # The HTTP/1.1 engine reads "PRI * HTTP/2.0" as a request line of a version it
    # does not speak (RFC 9110 §15.6.6).
    assert answer.startswith(b"HTTP/1.1 505 HTTP Version Not Supported\r\n"), answer
    with socket.create_connection((server.host, server.port), timeout=10) as sock:
        sock.sendall(request_bytes("GET", "/env"))
        status, _, _ = read_response(sock)
        assert status.startswith(b"HTTP/1.1 200")


def test_http2_only_mode(start_server):
    server = start_server(APP, "--workers", "0", "--http", "2")
    env = curl_json(server, "/env")
    assert env["SERVER_PROTOCOL"] == "HTTP/2"
    with socket.create_connection((server.host, server.port), timeout=10) as sock:
        sock.sendall(request_bytes("GET", "/env"))
        sock.settimeout(10)
        answer = b""
        try:
            while chunk := sock.recv(65536):
                answer += chunk
        except ConnectionResetError:
            pass
    assert not answer.startswith(b"HTTP/1.1"), answer  # no HTTP/1.1 answer, at most a GOAWAY


def test_bad_http_option_is_refused(start_server):
    server = start_server(APP, "--workers", "0", "--http", "3", ready=False)
    assert server.proc.wait(30) == 2
    assert "--http" in server.log and "auto, 1, 2" in server.log


# --- graceful stop and logs ------------------------------------------------------------


def test_graceful_stop_lets_the_stream_in_flight_finish(start_server):
    server = start_server(APP, "--workers", "0", "--threads", "2", "--graceful-timeout", "10")
    raw = RawConnection(server)
    raw.get(1, "/slow?ms=1500")
    time.sleep(0.4)  # the application has it
    server.proc.send_signal(signal.SIGTERM)
    assert raw.read(lambda: any(last != 0x7FFFFFFF for last, _ in raw.goaways()), timeout=5)
    # After the final GOAWAY (last stream 1), a new stream is not served.
    assert raw.goaways()[-1] == (1, 0), raw.goaways()
    raw.sock.sendall(frame(HEADERS, END_HEADERS | END_STREAM, 3, raw.block("/env")))
    assert raw.read(lambda: any(f[1] & END_STREAM for f in raw.on_stream(1, DATA)), timeout=10)
    body = b"".join(f[3] for f in raw.on_stream(1, DATA))
    assert body == b"slept 1500"
    raw.read(lambda: False, timeout=5)  # until the server closes
    assert raw.closed
    assert not raw.on_stream(3, HEADERS)
    raw.sock.close()
    assert server.proc.wait(15) == 0


def test_access_log_has_one_line_per_stream(start_server):
    server = start_server(APP, "--workers", "0", "--access-log", "-")
    client = Client(server)
    for sid in [client.request("/env?n=1"), client.request("/stream?n=2&size=10")]:
        client.response(sid)
    client.close()
    assert server.wait_for_log(r'"GET /env\?n=1 HTTP/2.0" 200 \d+ "-" "-"')
    assert server.wait_for_log(r'"GET /stream\?n=2&size=10 HTTP/2.0" 200 20 ')


def test_an_idle_connection_is_sent_goaway_after_keep_alive(start_server):
    server = start_server(APP, "--workers", "0", "--keep-alive", "1")
    raw = RawConnection(server)
    raw.get(1, "/env")
    assert raw.read(lambda: 1 in raw.heads)
    answered = time.monotonic()
    raw.read(lambda: False, timeout=6)  # until the server closes
    assert raw.closed and raw.goaways() and raw.goaways()[-1] == (1, 0), raw.goaways()
    assert 0.8 < time.monotonic() - answered < 5
    raw.sock.close()


def test_h2c_on_a_unix_socket(start_server, tmp_path):
    path = tmp_path / "s.sock"
    server = start_server(APP, "--workers", "0", "--bind", f"unix:{path}", bind=False,
                          ready=False)  # fmt: skip
    server.wait_for_log("Listening at: unix:")
    done = subprocess.run(
        [CURL, "-sS", "--http2-prior-knowledge", "--unix-socket", str(path),
         "http://app.example/env"],
        capture_output=True, timeout=30,
    )  # fmt: skip
    env = json.loads(done.stdout)
    assert env["SERVER_PROTOCOL"] == "HTTP/2"
    assert env["HTTP_HOST"] == "app.example" and env["SERVER_NAME"] == "app.example"
