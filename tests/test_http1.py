"""HTTP/1.1 on the wire (RFC 9112): keep-alive, pipelining, chunked bodies, 100-continue,
Date/Server, HEAD, response framing, body limits and the idle timeout."""

import email.utils
import hashlib
import json
import os
import time

import pytest
from conftest import (
    Stream,
    exchange,
    is_closed,
    read_response,
    read_responses,
    recv_until_closed,
    request_bytes,
    split_head,
)


def test_http11_keeps_the_connection_open_for_a_second_request(start_server):
    server = start_server("environ_app:app")
    with server.connect() as sock:
        seen = []
        for path in ("/first", "/second"):
            sock.sendall(request_bytes("GET", path))
            status, _, body = read_response(sock)
            assert status == b"HTTP/1.1 200 OK"
            seen.append(json.loads(body)["PATH_INFO"])
        assert seen == ["/first", "/second"]
        assert not is_closed(sock, 0.2)


def test_http11_connection_close_closes_after_the_response(start_server):
    server = start_server("environ_app:app")
    with server.connect() as sock:
        sock.sendall(request_bytes("GET", "/", [("Connection", "close")]))
        status, headers, _ = read_response(sock)
        assert status.endswith(b" 200 OK")
        assert headers.get("connection", "").lower() == "close"
        assert is_closed(sock)


def test_http10_closes_the_connection_by_default(start_server):
    server = start_server("environ_app:app")
    with server.connect() as sock:
        sock.sendall(b"GET /old HTTP/1.0\r\n\r\n")
        status, _, body = read_response(sock)
        assert status.endswith(b" 200 OK")
        assert json.loads(body)["SERVER_PROTOCOL"] == "HTTP/1.0"
        assert is_closed(sock)


def test_http10_keep_alive_keeps_the_connection_open(start_server):
    server = start_server("environ_app:app")
    with server.connect() as sock:
        for path in ("/one", "/two"):
            sock.sendall(f"GET {path} HTTP/1.0\r\nConnection: keep-alive\r\n\r\n".encode())
            status, headers, body = read_response(sock)
            assert status.endswith(b" 200 OK")
            assert headers.get("connection", "").lower() == "keep-alive"
            assert json.loads(body)["PATH_INFO"] == path


def test_http10_keep_alive_with_a_streamed_body_still_closes(start_server):
    server = start_server("response_apps:app")
    with server.connect() as sock:
        sock.sendall(b"GET /gen HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
        raw, closed = recv_until_closed(sock)
    assert closed, "a close-delimited body needs the close"
    status, headers, rest = split_head(raw)
    assert status.split(b" ", 1)[1] == b"200 OK"
    assert "transfer-encoding" not in headers
    assert rest == b"part0;part1;part2;part3;part4;"


def test_pipelined_requests_are_answered_in_order(start_server):
    server = start_server("sleep_app:app", "--threads", "4")
    with server.connect() as sock:
        sock.sendall(
            request_bytes("GET", "/slow?ms=200")
            + request_bytes("GET", "/fast?ms=0")
            + request_bytes("GET", "/fastest?ms=0")
        )
        answers = read_responses(sock, 3)
    assert [status for status, _, _ in answers] == [b"HTTP/1.1 200 OK"] * 3
    assert [body for _, _, body in answers] == [b"/slow?ms=200", b"/fast?ms=0", b"/fastest?ms=0"]


def test_pipelined_requests_with_bodies_keep_their_framing(start_server):
    server = start_server("input_app:app", "--threads", "4")
    with server.connect() as sock:
        sock.sendall(
            request_bytes("POST", "/read", body=b"first body")
            + request_bytes(
                "POST", "/read", [("Transfer-Encoding", "chunked")], b"6\r\nsecond\r\n0\r\n\r\n"
            )
            + request_bytes("GET", "/read")
            + request_bytes("POST", "/read", body=b"fourth")
        )
        answers = read_responses(sock, 4)
    assert [json.loads(body)["parts"] for _, _, body in answers] == [
        ["first body"],
        ["second"],
        [""],
        ["fourth"],
    ]


@pytest.mark.parametrize(
    "headers, body",
    [
        ([], b"x" * 100_000),
        ([("Transfer-Encoding", "chunked")], b"5\r\nhello\r\n0\r\n\r\n"),
    ],
    ids=["content-length", "chunked"],
)
def test_body_the_app_never_read_does_not_break_the_next_request(start_server, headers, body):
    server = start_server("environ_app:app")
    with server.connect() as sock:
        sock.sendall(request_bytes("POST", "/unread", headers, body))
        status, _, answer = read_response(sock)
        assert status == b"HTTP/1.1 200 OK"
        assert json.loads(answer)["PATH_INFO"] == "/unread"
        sock.sendall(request_bytes("GET", "/next"))
        status, _, answer = read_response(sock)
    assert status == b"HTTP/1.1 200 OK"
    assert json.loads(answer)["PATH_INFO"] == "/next"


CHUNKED_BODIES = [
    pytest.param(b"5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n", b"hello world", id="two-chunks"),
    pytest.param(b"A\r\n0123456789\r\n0\r\n\r\n", b"0123456789", id="hex-size"),
    pytest.param(b"5;name=value\r\nhello\r\n0\r\n\r\n", b"hello", id="chunk-extension"),
    pytest.param(b"5\r\nhello\r\n0\r\nX-Trailer: yes\r\n\r\n", b"hello", id="trailer"),
    pytest.param(b"0\r\n\r\n", b"", id="empty"),
]


@pytest.mark.parametrize("wire, decoded", CHUNKED_BODIES)
def test_chunked_request_body_reaches_the_app_decoded(start_server, wire, decoded):
    server = start_server("input_app:app")
    request = request_bytes("POST", "/read", [("Transfer-Encoding", "chunked")], wire)
    status, _, body = exchange(server, request)
    assert status == b"HTTP/1.1 200 OK"
    data = json.loads(body)
    assert data["parts"] == [decoded.decode("latin-1")]
    assert data["content_length"] in (None, str(len(decoded)))


def test_expect_100_continue_gets_the_interim_response_first(start_server):
    server = start_server("input_app:app")
    with server.connect() as sock:
        sock.sendall(
            request_bytes("POST", "/read", [("Expect", "100-continue"), ("Content-Length", "5")])
        )
        stream = Stream(sock)
        stream.settimeout(5)
        interim = b"HTTP/1.1 100 Continue\r\n\r\n"
        assert stream.take(len(interim)) == interim
        sock.sendall(b"hello")
        status, _, body = read_response(stream)
    assert status == b"HTTP/1.1 200 OK"
    assert json.loads(body)["parts"] == ["hello"]


def test_expect_100_continue_with_too_large_body_is_refused_without_the_body(start_server):
    server = start_server("input_app:app", "--max-body-size", "1000")
    with server.connect() as sock:
        sock.sendall(
            request_bytes("POST", "/read", [("Expect", "100-continue"), ("Content-Length", "5000")])
        )
        status, _, _ = read_response(sock, timeout=5)
    assert status.split(b" ")[1] == b"413"


def test_every_response_has_date_and_server_headers(start_server):
    server = start_server("environ_app:app")
    status, headers, _ = exchange(server, request_bytes("GET", "/"))
    assert status == b"HTTP/1.1 200 OK"
    sent = email.utils.parsedate_to_datetime(headers["date"])
    assert abs(sent.timestamp() - time.time()) < 60
    assert headers["date"].endswith(" GMT")
    assert "ferrowsgi" in headers["server"].lower()


@pytest.mark.parametrize("path", ["/list", "/gen", "/gen_with_length", "/file_bytesio"])
def test_head_sends_the_headers_of_get_and_no_body(start_server, path):
    server = start_server("response_apps:app")
    _, get_headers, _ = exchange(server, request_bytes("GET", path))
    with server.connect() as sock:
        sock.sendall(request_bytes("HEAD", path, [("Connection", "close")]))
        raw, closed = recv_until_closed(sock)
    assert closed
    status, headers, rest = split_head(raw)
    assert status == b"HTTP/1.1 200 OK"
    assert rest == b"", "HEAD answer carried body bytes"
    assert headers.get("content-length") == (
        [get_headers["content-length"]] if "content-length" in get_headers else None
    )


def test_head_then_get_on_one_connection_keeps_framing(start_server):
    server = start_server("response_apps:app")
    with server.connect() as sock:
        sock.sendall(request_bytes("HEAD", "/list"))
        status, headers, _ = read_response(sock, head=True)
        assert status == b"HTTP/1.1 200 OK"
        assert headers["content-length"] == "11"
        sock.sendall(request_bytes("GET", "/list"))
        status, _, body = read_response(sock)
    assert (status, body) == (b"HTTP/1.1 200 OK", b"hello world")


def test_response_without_length_is_chunked_on_http11(start_server):
    server = start_server("response_apps:app")
    with server.connect() as sock:
        sock.sendall(request_bytes("GET", "/gen"))
        status, headers, body = read_response(sock)
        assert status == b"HTTP/1.1 200 OK"
        assert headers.get("transfer-encoding") == "chunked"
        assert "content-length" not in headers
        assert body == b"part0;part1;part2;part3;part4;"
        assert not is_closed(sock, 0.2), "a chunked response must not need a close"


def test_response_without_length_is_close_delimited_on_http10(start_server):
    server = start_server("response_apps:app")
    with server.connect() as sock:
        sock.sendall(b"GET /gen HTTP/1.0\r\n\r\n")
        raw, closed = recv_until_closed(sock)
    assert closed
    status, headers, rest = split_head(raw)
    assert status.split(b" ")[1] == b"200"
    assert "transfer-encoding" not in headers
    assert "content-length" not in headers
    assert rest == b"part0;part1;part2;part3;part4;"


LIMIT_CASES = [
    pytest.param(1000, [], b"200", id="at-limit"),
    pytest.param(1001, [], b"413", id="over-limit"),
    pytest.param(1001, [("Transfer-Encoding", "chunked")], b"413", id="chunked-over-limit"),
]


@pytest.mark.parametrize("size, headers, code", LIMIT_CASES)
def test_max_body_size_is_enforced(start_server, size, headers, code):
    server = start_server("input_app:app", "--max-body-size", "1000")
    payload = b"b" * size
    if headers:
        payload = b"%x\r\n%s\r\n0\r\n\r\n" % (size, payload)
    status, _, body = exchange(server, request_bytes("POST", "/read", headers, payload))
    assert status.split(b" ")[1] == code
    if code == b"200":
        assert json.loads(body)["total"] == size
    status, _, _ = exchange(server, request_bytes("GET", "/read"))
    assert status == b"HTTP/1.1 200 OK", "server stopped serving after a refused body"


@pytest.mark.parametrize("chunked", [False, True], ids=["content-length", "chunked"])
@pytest.mark.parametrize("mode", ["read", "read_n/65536"])
def test_large_body_spilled_beyond_memory_arrives_intact(start_server, chunked, mode):
    server = start_server("input_app:app")
    payload = os.urandom(3 * 1024 * 1024)
    headers, wire = [], payload
    if chunked:
        headers = [("Transfer-Encoding", "chunked")]
        step = 100_000
        wire = b"".join(
            b"%x\r\n%s\r\n" % (len(payload[i : i + step]), payload[i : i + step])
            for i in range(0, len(payload), step)
        )
        wire += b"0\r\n\r\n"
    status, _, body = exchange(server, request_bytes("POST", f"/{mode}", headers, wire), timeout=30)
    assert status == b"HTTP/1.1 200 OK"
    data = json.loads(body)
    assert data["total"] == len(payload)
    assert data["sha256"] == hashlib.sha256(payload).hexdigest()


def test_idle_keep_alive_connection_is_closed_after_the_timeout(start_server):
    server = start_server("environ_app:app", "--keep-alive", "1")
    with server.connect() as sock:
        sock.sendall(request_bytes("GET", "/"))
        status, _, _ = read_response(sock)
        assert status == b"HTTP/1.1 200 OK"
        idle_since = time.monotonic()
        assert not is_closed(sock, 0.3), "closed long before --keep-alive 1 elapsed"
        assert is_closed(sock, 3.0), "idle connection still open 3 s after --keep-alive 1"
        assert time.monotonic() - idle_since >= 0.8


def test_malformed_request_gets_400_and_the_server_keeps_serving(start_server):
    server = start_server("environ_app:app")
    with server.connect() as sock:
        sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\nthis line has no colon\r\n\r\n")
        raw, _ = recv_until_closed(sock, 5)
    assert raw.split(b"\r\n", 1)[0].split(b" ")[1] == b"400"
    status, _, _ = exchange(server, request_bytes("GET", "/"))
    assert status == b"HTTP/1.1 200 OK"
