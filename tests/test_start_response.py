"""start_response (PEP 3333): status and header validation, lazy calls, the "headers go
out with the first non-empty chunk" rule, exc_info, and the write() callable."""

import json

import pytest
from conftest import (
    exchange,
    fetch_truncated,
    recv_until_closed,
    request_bytes,
    split_head,
    wait_for_log_line,
)


@pytest.fixture
def server(start_server):
    return start_server("start_response_apps:app")


def assert_still_serving(server):
    status, _, body = exchange(server, request_bytes("GET", "/ok"))
    assert (status, body) == (b"HTTP/1.1 200 OK", b"ok")


# What the log line must say (see conftest.wait_for_log_line).
STATUS_LOG = r"(?i)\bstatus\b"
HEADER_LOG = r"(?i)header"
HOP_LOG = r"(?i)hop-by-hop|hop by hop|header"

INVALID = [
    ("status_code_only", STATUS_LOG),
    ("status_reason_first", STATUS_LOG),
    ("status_two_digits", STATUS_LOG),
    ("status_four_digits", STATUS_LOG),
    ("status_letters", STATUS_LOG),
    ("status_bytes", STATUS_LOG),
    ("status_crlf", STATUS_LOG),
    ("header_name_space", HEADER_LOG),
    ("header_name_colon", HEADER_LOG),
    ("header_name_empty", HEADER_LOG),
    ("header_value_crlf", HEADER_LOG),
    ("header_value_cr", HEADER_LOG),
    ("header_value_lf", HEADER_LOG),
    ("header_value_nul", HEADER_LOG),
    ("header_value_not_latin1", HEADER_LOG),
    ("header_value_bytes", HEADER_LOG),
    ("header_not_a_pair", HEADER_LOG),
    ("hop_connection", HOP_LOG),
    ("hop_connection_lowercase", HOP_LOG),
    ("hop_transfer_encoding", HOP_LOG),
    ("hop_keep_alive", HOP_LOG),
    ("hop_upgrade", HOP_LOG),
    ("hop_te", HOP_LOG),
]


@pytest.mark.parametrize("case, log_pattern", INVALID)
def test_invalid_status_or_header_gives_500_and_a_log_line(server, case, log_pattern):
    with server.connect() as sock:
        sock.sendall(request_bytes("GET", f"/invalid/{case}", [("Connection", "close")]))
        raw, closed = recv_until_closed(sock)
    assert closed
    status, headers, body = split_head(raw)
    assert status == b"HTTP/1.1 500 Internal Server Error"
    assert b"Injected" not in raw, "an invalid header reached the wire"
    assert "x-injected" not in headers
    assert b"body" not in body
    wait_for_log_line(server, log_pattern, ignore=f"/invalid/{case}")
    assert_still_serving(server)


VALID = [
    ("custom_reason", b"HTTP/1.1 299 Whatever You Like", "x-a", "v"),
    ("reason_with_spaces", b"HTTP/1.1 404 Not Here At All", "x-a", "v"),
    ("latin1_value", b"HTTP/1.1 200 OK", "x-a", "caf\xe9"),
    ("tab_in_value", b"HTTP/1.1 200 OK", "x-a", "a\tb"),
    ("empty_value", b"HTTP/1.1 200 OK", "x-a", ""),
    ("token_chars_in_name", b"HTTP/1.1 200 OK", "x-a!#$%&'*+.^_`|~", "v"),
]


@pytest.mark.parametrize("case, status_line, name, value", VALID)
def test_valid_status_and_headers_go_out_exactly(server, case, status_line, name, value):
    with server.connect() as sock:
        sock.sendall(request_bytes("GET", f"/valid/{case}", [("Connection", "close")]))
        raw, closed = recv_until_closed(sock)
    assert closed
    status, headers, body = split_head(raw)
    assert status == status_line
    assert headers[name] == [value]
    assert body == b"body"


def test_start_response_may_be_called_in_the_first_iteration(server):
    status, headers, body = exchange(server, request_bytes("GET", "/lazy"))
    assert status == b"HTTP/1.1 200 OK"
    assert headers["x-lazy"] == "yes"
    assert body == b"started lazily"


def test_headers_wait_for_the_first_non_empty_chunk(server):
    status, _, body = exchange(server, request_bytes("GET", "/empty_then_raise"))
    assert status == b"HTTP/1.1 500 Internal Server Error"
    server.wait_for_log(r"RuntimeError: boom-after-empty-chunk")
    assert_still_serving(server)


def test_exc_info_after_only_empty_chunks_replaces_the_status(server):
    status, _, body = exchange(server, request_bytes("GET", "/empty_then_exc_info"))
    assert status == b"HTTP/1.1 503 Service Unavailable"
    assert body == b"replaced"


def test_exc_info_before_headers_were_sent_replaces_status_and_headers(server):
    status, headers, body = exchange(server, request_bytes("GET", "/exc_info_before"))
    assert status == b"HTTP/1.1 500 Internal Server Error"
    assert body == b"custom error page"
    assert "x-first" not in headers


def test_exc_info_after_headers_were_sent_reraises_and_closes(server):
    status, _, body = fetch_truncated(server, request_bytes("GET", "/exc_info_after?k1"))
    assert status == b"HTTP/1.1 200 OK"
    assert b"first chunk" in body
    assert b"did not raise" not in body
    _, _, state = exchange(server, request_bytes("GET", "/state?k1"))
    assert json.loads(state) == {"reraised": True, "same": True}
    assert_still_serving(server)


def test_second_call_without_exc_info_raises(server):
    status, _, body = exchange(server, request_bytes("GET", "/twice_caught"))
    assert status == b"HTTP/1.1 200 OK", "the first call's status must stand"
    assert body.startswith(b"second call raised "), body


WRITE_CASES = [
    ("write_then_return", b"abc", None),
    ("write_with_length", b"abcdef", "6"),
    ("write_only", b"only write", None),
    ("write_then_generator", b"written,yielded", None),
]


@pytest.mark.parametrize("path, expected, length", WRITE_CASES)
@pytest.mark.parametrize("version", ["HTTP/1.1", "HTTP/1.0"])
def test_write_callable_sends_its_bytes_before_the_returned_body(
    server, path, expected, length, version
):
    status, headers, body = exchange(server, request_bytes("GET", f"/{path}", version=version))
    assert status.split(b" ", 1)[1] == b"200 OK"
    assert body == expected
    if length is not None:
        assert headers["content-length"] == length
