"""What our own HTTP/1.1 engine (src/protocols/http1/) puts on the wire, byte for byte:
header names as the application gave them, the status line, bodiless answers, an
immediate 400 for bare LF line ends, and SERVER_PORT from the listening socket."""

from __future__ import annotations

import time

import pytest
from conftest import Stream, read_response, recv_until_closed, request_bytes, split_head


@pytest.fixture(scope="module")
def server(start_module_server):
    return start_module_server("wire_app:app", "--keep-alive", "30", "--header-timeout", "30")


def test_header_names_go_out_as_the_application_gave_them(server):
    with server.connect() as sock:
        sock.sendall(request_bytes("GET", "/case", [("Connection", "close")]))
        raw, closed = recv_until_closed(sock, 5)
    assert closed
    head = raw.split(b"\r\n\r\n", 1)[0]
    assert b"\r\ncontent-type: text/plain\r\n" in head
    assert b"\r\nX-MiXed-Case: v\r\n" in head
    assert raw.endswith(b"\r\n\r\nok")


def test_an_http10_request_gets_an_http11_status_line_and_a_close(server):
    with server.connect() as sock:
        sock.sendall(b"GET / HTTP/1.0\r\n\r\n")
        raw, closed = recv_until_closed(sock, 5)
    assert closed
    status, headers, body = split_head(raw)
    assert status == b"HTTP/1.1 200 OK"
    assert headers["connection"] == ["close"]
    assert headers["content-length"] == ["5"]
    assert body == b"hello"


def test_304_has_no_body_and_no_added_length_and_the_connection_goes_on(server):
    with server.connect() as sock:
        sock.sendall(request_bytes("GET", "/not_modified") + request_bytes("GET", "/"))
        stream = Stream(sock)
        status, headers, body = read_response(stream, head=True)
        assert status == b"HTTP/1.1 304 Not Modified"
        assert "content-length" not in headers and "transfer-encoding" not in headers
        assert body == b""
        status, _, body = read_response(stream)
    assert (status, body) == (b"HTTP/1.1 200 OK", b"hello")


@pytest.mark.parametrize(
    "raw",
    [b"GET / HTTP/1.1\nHost: x\n\n", b"GET / HTTP/1.1\r\nHost: x\n\n"],
    ids=["bare-lf-everywhere", "bare-lf-at-the-end"],
)
def test_bare_lf_line_ends_get_400_at_once(server, raw):
    started = time.monotonic()
    with server.connect() as sock:
        sock.sendall(raw)
        answer, closed = recv_until_closed(sock, 10)
    elapsed = time.monotonic() - started
    assert answer.startswith(b"HTTP/1.1 400 "), answer[:100]
    assert closed
    assert elapsed < 3, f"answered after {elapsed:.1f} s (keep-alive and header timeout are 30 s)"


def test_server_port_is_the_port_the_request_came_in_on(server):
    with server.connect() as sock:
        sock.sendall(request_bytes("GET", "/port", [("Connection", "close")], host="example"))
        _, _, body = read_response(sock)
    assert body == str(server.port).encode()
