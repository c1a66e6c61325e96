"""Bad applications get a clear answer and the server keeps serving (issue 2, "Bad
applications"): exceptions, wrong return types, non-bytes chunks, invalid status or
headers, start_response misuse. Before the headers went out: 500 and a log line.
After: the connection is closed so the client can tell the body is incomplete."""

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
    return start_server("bad_apps:app", "--threads", "2")


def pep3333_line(type_name: str) -> str:
    """An [ERROR] line naming the returned type and what PEP 3333 requires."""
    return rf"(?i)^(?=.*\[ERROR\])(?=.*\b{type_name}\b)(?=.*PEP.?3333)(?=.*iterable)(?=.*byte)"


TRACEBACK = r"^Traceback \(most recent call last\):"

BEFORE_HEADERS = [
    pytest.param("raise_before", [TRACEBACK, r"^RuntimeError: boom-before-start"], id="raise"),
    pytest.param(
        "raise_after_start", [TRACEBACK, r"^RuntimeError: boom-after-start"], id="raise-after-sr"
    ),
    pytest.param(
        "raise_in_first_iteration",
        [TRACEBACK, r"^RuntimeError: boom-first-iteration"],
        id="raise-in-first-next",
    ),
    pytest.param("return_str", [pep3333_line("str")], id="return-str"),
    pytest.param("return_none", [pep3333_line("None(Type)?")], id="return-none"),
    pytest.param("return_int", [pep3333_line("int")], id="return-int"),
    pytest.param("yield_str", [pep3333_line("str")], id="yield-str"),
    pytest.param("list_with_str", [pep3333_line("str")], id="list-with-str"),
    pytest.param("bad_status", [r"(?i)\bstatus\b.*200"], id="status-200-without-reason"),
    pytest.param("crlf_header", [r"(?i)header.*X-Bad"], id="crlf-in-header"),
    pytest.param("hop_by_hop", [r"(?i)(hop-by-hop|hop by hop).*Connection"], id="hop-by-hop"),
    pytest.param("start_twice", [r"(?i)start_response.*(exc_info|twice|second)"], id="sr-twice"),
    pytest.param("no_start_response", [r"(?i)start_response"], id="no-start-response"),
]


@pytest.mark.parametrize("route, log_patterns", BEFORE_HEADERS)
def test_error_before_headers_gives_500_a_log_line_and_serving_goes_on(server, route, log_patterns):
    with server.connect() as sock:
        sock.sendall(request_bytes("GET", f"/{route}", [("Connection", "close")]))
        raw, closed = recv_until_closed(sock)
    assert closed
    status, headers, body = split_head(raw)
    assert status == b"HTTP/1.1 500 Internal Server Error"
    assert "content-length" in headers or "transfer-encoding" in headers
    for leak in (b"Traceback", b"boom", b"tutorial", b"never sent", b"a str chunk"):
        assert leak not in body, f"the 500 page leaks {leak!r}"
    assert "injected" not in headers
    for pattern in log_patterns:
        wait_for_log_line(server, pattern, ignore=f"/{route}")
    for _ in range(3):
        assert exchange(server, request_bytes("GET", "/ok"))[2] == b"ok"


def test_traceback_names_the_application_frame(server):
    exchange(server, request_bytes("GET", "/raise_before"))
    server.wait_for_log(r"^RuntimeError: boom-before-start")
    server.wait_for_log(r'File ".*bad_apps\.py", line \d+, in raise_before')


AFTER_HEADERS = [
    pytest.param(
        "raise_after_first_chunk",
        [TRACEBACK, r"^RuntimeError: boom-mid-stream"],
        id="raise-chunked",
    ),
    pytest.param(
        "raise_after_first_chunk_with_length",
        [TRACEBACK, r"^RuntimeError: boom-mid-stream"],
        id="raise-with-length",
    ),
    pytest.param("yield_str_after_bytes", [pep3333_line("str")], id="str-after-bytes"),
]


@pytest.mark.parametrize("route, log_patterns", AFTER_HEADERS)
def test_error_after_headers_closes_the_connection(server, route, log_patterns):
    status, _, body = fetch_truncated(server, request_bytes("GET", f"/{route}"))
    assert status == b"HTTP/1.1 200 OK"
    assert body == b"first chunk"
    for pattern in log_patterns:
        wait_for_log_line(server, pattern, ignore=f"/{route}")
    assert exchange(server, request_bytes("GET", "/ok"))[2] == b"ok"


def test_many_failures_in_a_row_do_not_wear_the_server_down(server):
    for _ in range(30):
        for route in ("raise_before", "return_str", "raise_after_first_chunk"):
            with server.connect() as sock:
                sock.sendall(request_bytes("GET", f"/{route}", [("Connection", "close")]))
                raw, closed = recv_until_closed(sock)
            assert closed and raw.startswith(b"HTTP/1.1 ")
    assert exchange(server, request_bytes("GET", "/ok"))[2] == b"ok"
    assert server.proc.poll() is None
