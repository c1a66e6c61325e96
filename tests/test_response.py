"""Response bodies (PEP 3333 "Buffering and Streaming", "Handling the Content-Length
Header", "Optional Platform-Specific File Handling"): exact lengths, streaming,
backpressure, Content-Length mismatches, close() exactly once, file_wrapper, wsgi.errors."""

import hashlib
import json
import os
import time
import uuid

import pytest
from conftest import (
    Stream,
    exchange,
    fetch_truncated,
    read_response,
    recv_until_closed,
    request_bytes,
    split_head,
    wait_for_log_line,
    wait_until,
)


@pytest.fixture
def server(start_server):
    return start_server("response_apps:app", "--threads", "4", "--graceful-timeout", "2")


def counts(server, key):
    status, _, body = exchange(server, request_bytes("GET", f"/count?id={key}"))
    assert status == b"HTTP/1.1 200 OK"
    return json.loads(body)


def raw_get(server, path, version="HTTP/1.1"):
    with server.connect() as sock:
        sock.sendall(request_bytes("GET", path, [("Connection", "close")], version=version))
        raw, closed = recv_until_closed(sock)
    assert closed
    return split_head(raw)


@pytest.mark.parametrize(
    "path, body", [("/list", b"hello world"), ("/tuple", b"abc"), ("/empty", b"")]
)
def test_list_or_tuple_body_gets_an_exact_content_length(server, path, body):
    status, headers, rest = raw_get(server, path)
    assert status == b"HTTP/1.1 200 OK"
    assert headers["content-length"] == [str(len(body))]
    assert "transfer-encoding" not in headers
    assert rest == body


def test_large_list_body_is_sent_whole(server):
    status, headers, rest = raw_get(server, "/big_list")
    assert status == b"HTTP/1.1 200 OK"
    assert headers["content-length"] == [str(5 << 20)]
    assert rest == b"x" * (5 << 20)


def test_app_content_length_is_used_once_and_kept(server):
    status, headers, rest = raw_get(server, "/gen_with_length")
    assert status == b"HTTP/1.1 200 OK"
    assert headers["content-length"] == ["10"]
    assert "transfer-encoding" not in headers
    assert rest == b"0123456789"


def test_content_length_larger_than_body_closes_the_connection_and_logs(server):
    status, headers, body = fetch_truncated(server, request_bytes("GET", "/too_long"))
    assert status == b"HTTP/1.1 200 OK"
    assert headers["content-length"] == ["100"]
    assert body == b"only ten."
    wait_for_log_line(server, r"(?i)content-length", ignore="/too_long")
    assert exchange(server, request_bytes("GET", "/list"))[2] == b"hello world"


@pytest.mark.parametrize("path", ["/too_short", "/too_short_gen"])
def test_never_more_than_the_declared_content_length(server, path):
    status, headers, rest = raw_get(server, path)
    assert status == b"HTTP/1.1 200 OK"
    assert headers["content-length"] == ["5"]
    assert rest == b"hello"


def test_extra_body_bytes_do_not_leak_into_the_next_response(server):
    with server.connect() as sock:
        sock.sendall(request_bytes("GET", "/too_short"))
        assert read_response(sock)[2] == b"hello"
        sock.settimeout(5)
        try:
            sock.sendall(request_bytes("GET", "/tuple", [("Connection", "close")]))
            raw, _ = recv_until_closed(sock, 5)
        except ConnectionError:
            raw = b""
    assert b" world" not in raw
    if raw:  # the connection may be closed instead; if reused, framing must be exact
        status, headers, rest = split_head(raw)
        assert (status, rest) == (b"HTTP/1.1 200 OK", b"abc")


def test_204_has_no_body_and_the_connection_stays_usable(server):
    with server.connect() as sock:
        sock.sendall(request_bytes("GET", "/no_content"))
        status, headers, _ = read_response(sock)
        assert status == b"HTTP/1.1 204 No Content"
        assert "transfer-encoding" not in headers
        assert "content-length" not in headers  # RFC 9110 section 8.6: MUST NOT
        sock.sendall(request_bytes("GET", "/list"))
        assert read_response(sock)[2] == b"hello world"


def test_iterator_is_streamed_chunk_by_chunk(server):
    key = uuid.uuid4().hex
    with server.connect() as sock:
        sock.sendall(request_bytes("GET", f"/held?id={key}"))
        sock.settimeout(5)
        received = b""
        while b"first;" not in received:
            data = sock.recv(65536)
            assert data, "closed before the first chunk"
            received += data
        assert b"second" not in received
        exchange(server, request_bytes("GET", f"/release?id={key}"))
        stream = Stream(sock)
        stream.pending = received
        status, _, body = read_response(stream)
    assert status == b"HTTP/1.1 200 OK"
    assert body == b"first;second"


def test_slow_reader_applies_backpressure_to_the_generator(server):
    key = uuid.uuid4().hex
    with server.connect() as sock:
        sock.sendall(request_bytes("GET", f"/counted?id={key}&mode=big"))
        sock.settimeout(5)
        assert sock.recv(1024).startswith(b"HTTP/1.1 200 OK")
        wait_until(lambda: counts(server, key)["produced"] > 0, 5)
        time.sleep(1.0)  # give an unbounded server time to run far ahead
        produced = counts(server, key)["produced"]
        assert produced < 128, f"{produced} MiB produced for a client that read 1 KiB"
    assert wait_until(lambda: counts(server, key)["closed"] == 1, 10)


CLOSE_CASES = [
    pytest.param("GET", "ok", id="success"),
    pytest.param("HEAD", "ok", id="head"),
    pytest.param("GET", "raise", id="exception"),
]


@pytest.mark.parametrize("method, mode", CLOSE_CASES)
def test_close_is_called_exactly_once(server, method, mode):
    key = uuid.uuid4().hex
    with server.connect() as sock:
        sock.sendall(
            request_bytes(method, f"/counted?id={key}&mode={mode}", [("Connection", "close")])
        )
        recv_until_closed(sock, 10)
    assert wait_until(lambda: counts(server, key)["closed"] >= 1, 10), "close() never called"
    time.sleep(0.2)  # a second, late close() would show up here
    assert counts(server, key)["closed"] == 1
    assert exchange(server, request_bytes("GET", "/list"))[2] == b"hello world"


def test_close_is_called_once_when_the_client_disconnects_mid_stream(server):
    key = uuid.uuid4().hex
    with server.connect() as sock:
        sock.sendall(request_bytes("GET", f"/counted?id={key}&mode=big"))
        sock.settimeout(5)
        assert sock.recv(65536).startswith(b"HTTP/1.1 200 OK")
    assert wait_until(lambda: counts(server, key)["closed"] >= 1, 10), "close() never called"
    time.sleep(0.2)
    assert counts(server, key)["closed"] == 1
    assert counts(server, key)["produced"] < 512, "the generator ran to its end for nobody"


def test_file_wrapper_streams_a_real_file(server, tmp_path):
    path = tmp_path / "data.bin"
    payload = os.urandom(3 * 1024 * 1024 + 17)
    path.write_bytes(payload)
    status, headers, body = exchange(server, request_bytes("GET", f"/file?path={path}"), timeout=30)
    assert status == b"HTTP/1.1 200 OK"
    assert headers["content-length"] == str(len(payload))
    assert hashlib.sha256(body).hexdigest() == hashlib.sha256(payload).hexdigest()


def test_file_wrapper_over_a_file_like_object(server):
    status, _, body = exchange(server, request_bytes("GET", "/file_bytesio"))
    assert status == b"HTTP/1.1 200 OK"
    assert body == b"0123456789" * 1000


def test_file_wrapper_is_an_iterable_of_blocks_for_middleware(server):
    status, _, body = exchange(server, request_bytes("GET", "/file_iterated"))
    assert status == b"HTTP/1.1 200 OK"
    assert json.loads(body) == ["abcd", "efgh", "ij"]


def test_file_wrapper_close_closes_the_file_once(server):
    key = uuid.uuid4().hex
    status, _, body = exchange(server, request_bytes("GET", f"/file_close?id={key}"))
    assert (status, body) == (b"HTTP/1.1 200 OK", b"counted file body")
    assert wait_until(lambda: counts(server, key)["closed"] >= 1, 10)
    assert counts(server, key)["closed"] == 1


def test_wsgi_errors_reaches_the_error_log(server):
    status, _, body = exchange(server, request_bytes("GET", "/errors"))
    assert (status, body) == (b"HTTP/1.1 200 OK", b"logged")
    for marker in ("write-marker", "writelines-marker-1", "writelines-marker-2"):
        server.wait_for_log(f"wsgi-errors-{marker}")
