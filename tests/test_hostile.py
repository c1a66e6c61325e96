"""Hostile requests over raw sockets (issue 3, "Framing"), and responses that cannot desync.

``CASES`` is the table: a request as raw bytes, the status it must get, and whether
the connection must close after the answer. Adding a case is one row. Every row
also proves that the bytes *after* the request were handled right:

* ``closes=True``: a valid request for /smuggled is appended to the same bytes. It
  must never reach the application, the answer must be the only response on the
  wire, and the connection must close. A refused request (4xx/5xx) must not reach
  the application either.
* ``closes=False``: a valid request for /after is appended; it must be answered as
  the second response on the same connection, so the first request's framing was
  read exactly right.
* ``closes=None``: nothing is appended and the connection is not checked.

Several bodies embed the smuggled request themselves, so that *either* reading of
an ambiguous framing would let it through on a lax server. The application
(tests/apps/counting_app.py) records every call; the record is read on a new
connection. One server serves the whole module.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass

import pytest
from conftest import (
    ServerProcess,
    Stream,
    exchange,
    read_response,
    recv_until_closed,
    request_bytes,
    split_head,
    wait_until,
)

S = SMUGGLED = b"GET /smuggled HTTP/1.1\r\nHost: x\r\n\r\n"
AFTER = b"GET /after HTTP/1.1\r\nHost: x\r\n\r\n"
ANY_BUT_400 = 0  # as a status: any answer but 400 will do
HELLO = b"5\r\nhello\r\n0\r\n\r\n"  # a valid chunked body
SEES_HELLO = {"body": "hello", "content_length": "5"}  # what the app must see of it
HI2 = "hellohello"


@dataclass(frozen=True)
class Case:
    id: str
    raw: bytes
    status: int  # or ANY_BUT_400
    closes: bool | None = True
    seen: dict | None = None  # items the app's echo of the request must contain


def req(fields: str = "", body: bytes = b"", line: str = "POST / HTTP/1.1", host=True) -> bytes:
    """``line``, ``Host: x`` (unless ``host`` is false), the ``|``-separated ``fields``, an
    empty line, then ``body``. Lines end in CRLF; a CR or LF inside a field stays bare."""
    lines = [line] + (["Host: x"] if host else []) + (fields.split("|") if fields else [])
    return "".join(f"{text}\r\n" for text in lines).encode("latin-1") + b"\r\n" + body


def get(fields: str = "", line: str = "GET / HTTP/1.1", host=True) -> bytes:
    return req(fields, line=line, host=host)


def chunked(body: bytes) -> bytes:
    return req("Transfer-Encoding: chunked", body)


def trailer(field: str) -> bytes:
    """A valid chunked "hello" whose trailer section holds ``field``."""
    return chunked(b"5\r\nhello\r\n0\r\n" + field.encode() + b"\r\n\r\n")


def fields(n: int) -> str:
    return "|".join(f"X-{i}: v" for i in range(n))


CASES = [
    # Content-Length (RFC 9112 §6.1-6.3)
    Case("cl-and-te", req("Content-Length: 40|Transfer-Encoding: chunked", b"0\r\n\r\n" + S), 400),
    Case("te-and-cl", req("Transfer-Encoding: chunked|Content-Length: 40", b"0\r\n\r\n" + S), 400),
    Case("cl-twice-same", req("Content-Length: 5|Content-Length: 5", b"hello"), 400),
    Case("cl-twice-differ", req("Content-Length: 0|Content-Length: 35", S), 400),
    Case("cl-comma-list", req("Content-Length: 5, 5", b"hello"), 400),
    Case("cl-plus", req("Content-Length: +5", b"hello"), 400),
    Case("cl-minus", req("Content-Length: -1"), 400),
    Case("cl-hex", req("Content-Length: 0x5", b"hello"), 400),
    Case("cl-underscore", req("Content-Length: 0_5", b"hello"), 400),
    Case("cl-space-inside", req("Content-Length:  5 5", b"hello"), 400),
    Case("cl-past-2**63", req("Content-Length: 99999999999999999999"), 400),
    Case("cl-leading-zeros-ok", req("Content-Length: 005", b"hello"), 200, False, SEES_HELLO),
    Case("cl-ows-ok", req("Content-Length:5 ", b"hello"), 200, False, SEES_HELLO),
    # Transfer-Encoding (RFC 9112 §6.1, §6.3; RFC 9110 §15.6.2)
    Case("te-chunked-not-last", req("Transfer-Encoding: chunked, gzip", HELLO), 400),
    Case("te-chunked-twice", req("Transfer-Encoding: chunked, chunked", HELLO), 400),
    Case("te-two-fields", req("Transfer-Encoding: chunked|Transfer-Encoding: chunked", HELLO), 400),
    Case("te-unknown-coding", req("Transfer-Encoding: gzip, chunked", HELLO), 501),
    Case("te-xchunked", req("Transfer-Encoding: xchunked", HELLO), 400),  # chunked not last
    Case("te-on-http10", req("Transfer-Encoding: chunked", HELLO, "POST / HTTP/1.0"), 400),
    Case("te-capitalised-ok", req("Transfer-Encoding: Chunked", HELLO), 200, False, SEES_HELLO),
    # Chunked bodies (RFC 9112 §7.1)
    Case("chunk-size-0x", chunked(b"0x5\r\nhello\r\n0\r\n\r\n"), 400),
    Case("chunk-size-plus", chunked(b"+5\r\nhello\r\n0\r\n\r\n"), 400),
    Case("chunk-size-underscore", chunked(b"0_5\r\nhello\r\n0\r\n\r\n"), 400),
    Case("chunk-size-17-digits", chunked(b"10000000000000005\r\nhello\r\n0\r\n\r\n"), 400),
    Case("chunk-ext-bad-quote", chunked(b'5;a="b\r\nhello\r\n0\r\n\r\n'), 400),
    Case("chunk-ext-ok", chunked(b'5;a=b;c="d e"\r\nhello\r\n0\r\n\r\n'), 200, False, SEES_HELLO),
    Case("chunk-hex-ok", chunked(b"00A\r\nhellohello\r\n000\r\n\r\n"), 200, False, {"body": HI2}),
    Case("chunk-line-over-4096", chunked(b"5;a=" + b"b" * 5000 + b"\r\nhello\r\n0\r\n\r\n"), 400),
    Case("chunk-ext-bws-ok", chunked(b"5 ; a = b\r\nhello\r\n0\r\n\r\n"), 200, False, SEES_HELLO),
    Case("chunk-data-no-crlf", chunked(b"5\r\nhello0\r\n\r\n"), 400),
    Case("chunk-data-over-size", chunked(b"3\r\nhello\r\n0\r\n\r\n"), 400),
    Case("chunk-data-bare-lf", chunked(b"5\r\nhello\n0\r\n\r\n"), 400),
    Case("chunk-line-bare-lf", chunked(b"5\nhello\r\n0\r\n\r\n"), 400),
    Case("chunk-line-bare-cr", chunked(b"5\rhello\r\n0\r\n\r\n"), 400),
    Case("last-chunk-bare-lf", chunked(b"5\r\nhello\r\n0\n\r\n"), 400),
    Case("chunked-end-bare-lf", chunked(b"5\r\nhello\r\n0\r\n\n"), 400),
    # Request line (RFC 9112 §3; RFC 9110 §2.5)
    Case("method-not-token", get(line="G(ET / HTTP/1.1"), 400),
    Case("two-spaces", get(line="GET  / HTTP/1.1"), 400),
    Case("tab-separator", get(line="GET\t/ HTTP/1.1"), 400),
    Case("trailing-space", get(line="GET / HTTP/1.1 "), 400),
    Case("no-version", get(line="GET /"), 400),
    Case("version-1.10", get(line="GET / HTTP/1.10"), 400),
    Case("version-lowercase", get(line="GET / http/1.1"), 400),
    Case("version-2.0", get(line="GET / HTTP/2.0"), 505),
    Case("version-3.0", get(line="GET / HTTP/3.0"), 505),
    Case("version-1.2-as-1.1", get(line="GET / HTTP/1.2"), 200, closes=False),
    Case("target-over-limit", get(line=f"GET /{'a' * 8200} HTTP/1.1"), 414),
    Case("target-8000-ok", get(line=f"GET /{'a' * 8000} HTTP/1.1"), 200, closes=False),
    Case("authority-form-get", get(line="GET example.com:80 HTTP/1.1"), 400),
    Case("authority-form-connect", get(line="CONNECT example.com:80 HTTP/1.1"), ANY_BUT_400, None),
    Case("asterisk-form-get", get(line="GET * HTTP/1.1"), 400),
    Case("asterisk-form-options", get(line="OPTIONS * HTTP/1.1"), 200, closes=False),
    Case("absolute-form-ok", get(line="GET http://x/ HTTP/1.1"), 200, closes=False),
    Case("empty-target", get(line="GET  HTTP/1.1"), 400),
    Case("empty-lines-before-ok", b"\r\n\r\n" + get(), 200, closes=False),
    # Header fields (RFC 9112 §5; RFC 9110 §5.5)
    Case("space-before-colon", req("Content-Length : 5", b"hello"), 400),
    Case("tab-before-colon", req("Content-Length\t: 5", b"hello"), 400),
    Case("empty-name", get(": x"), 400),
    Case("name-not-token", get("a(b: c"), 400),
    Case("obs-fold-space", get("X-A: b| c"), 400),
    Case("obs-fold-tab", get("X-A: b|\tc"), 400),
    Case("cr-in-value", get("X-A: b\rc"), 400),
    Case("lf-in-value", get("X-A: b\nc"), 400),
    Case("nul-in-value", get("X-A: b\x00c"), 400),
    Case("ctl-01-in-value", get("X-A: b\x01c"), 400),
    Case("del-in-value", get("X-A: b\x7fc"), 400),
    Case("htab-in-value-ok", get("X-A: b\tc"), 200, closes=False),
    Case("obs-text-in-value-ok", get("X-A: caf\xe9"), 200, closes=False),
    Case("no-host-http11", get(host=False), 400),
    Case("no-host-http10-ok", get(line="GET / HTTP/1.0", host=False), 200),
    Case("two-hosts", get("Host: y"), 400),
    Case("two-hosts-http10", get("Host: y", line="GET / HTTP/1.0"), 400),
    Case("fields-101", get(fields(100)), 431),
    Case("fields-100-ok", get(fields(99)), 200, closes=False),
    Case("field-line-9000", get("X-Big: " + "b" * 9000), 431),
    Case("field-line-8000-ok", get("X-Big: " + "b" * 8000), 200, closes=False),
    # Line endings: bare LF is refused everywhere (the lead's choice, RFC 9112 §2.2)
    Case("bare-lf-everywhere", b"GET / HTTP/1.1\nHost: x\n\n", 400),
    Case("bare-lf-request-line", b"GET / HTTP/1.1\nHost: x\r\n\r\n", 400),
    Case("bare-lf-end-of-head", b"GET / HTTP/1.1\r\nHost: x\r\n\n", 400),
    # Expect (RFC 9110 §10.1.1)
    Case("expect-unknown", get("Expect: foo"), 417),
    Case("expect-unknown-http10-ok", get("Expect: foo", line="GET / HTTP/1.0"), 200),
    # Trailers: fields that must not be trailers are dropped (RFC 9110 §6.5.1)
    Case("trailer-content-length", trailer("Content-Length: 100"), 200, False, SEES_HELLO),
    Case("trailer-te", trailer("Transfer-Encoding: chunked"), 200, False, SEES_HELLO),
    Case("trailer-host", trailer("Host: evil"), 200, False, {"body": "hello", "host": "x"}),
    Case("trailer-space-before-colon", trailer("X-A : b"), 400),
]


@pytest.fixture(scope="module")
def server():
    process = ServerProcess(["counting_app:app", "--bind", "127.0.0.1:0"])
    try:
        process.wait_ready()
        yield process
    finally:
        process.stop()


def app_calls(server) -> list[dict[str, str]]:
    """Every call the application got so far, read on a new connection."""
    status, _, body = exchange(server, request_bytes("GET", "/calls"))
    assert status == b"HTTP/1.1 200 OK", body
    return json.loads(body)


class _Replay:
    """A socket stand-in that gives back bytes already received, then EOF."""

    def __init__(self, data: bytes):
        self.data = data

    def settimeout(self, timeout: float) -> None:
        pass

    def recv(self, size: int) -> bytes:
        data, self.data = self.data, b""
        return data


def parse_all(raw: bytes) -> list[tuple[bytes, dict[str, str], bytes]]:
    """Every complete response in ``raw``; fails on a truncated one or on none at all."""
    assert raw, "the connection closed without an answer"
    replay = _Replay(raw)
    stream = Stream(replay)
    answers = []
    while stream.pending or replay.data:
        answers.append(read_response(stream))
    return answers


def read_answers(sock, closes: bool | None):
    """The responses the case gets, and whether the server closed the connection."""
    if closes is None:
        return [read_response(sock)], None
    if closes:
        raw, closed = recv_until_closed(sock, 5)
        return parse_all(raw), closed
    stream = Stream(sock)
    first = read_response(stream)
    try:
        answers = [first, read_response(stream)]
    except AssertionError as error:
        raise AssertionError(f"after {first[0]!r}, no answer to the next one: {error}") from None
    assert stream.pending == b"", f"bytes after the second response: {stream.pending[:200]!r}"
    return answers, False


def check_status(line: bytes, case: Case) -> None:
    match = re.fullmatch(rb"HTTP/1\.([01]) (\d{3})(?: [^\r\n]*)?", line)
    assert match, f"not a status line: {line[:200]!r}"
    if not case.raw.split(b"\r\n", 1)[0].endswith(b" HTTP/1.0"):
        assert match[1] == b"1", f"an HTTP/1.1 request answered with {line!r}"
    code = int(match[2])
    if case.status == ANY_BUT_400:
        assert code != 400, f"got {line!r}"
    else:
        assert code == case.status, f"expected {case.status}, got {line!r}"


@pytest.mark.parametrize("case", CASES, ids=[case.id for case in CASES])
def test_hostile_request(server, case):
    before = len(app_calls(server))
    follow = {True: SMUGGLED, False: AFTER, None: b""}[case.closes]
    with server.connect() as sock:
        sock.sendall(case.raw + follow)
        answers, closed = read_answers(sock, case.closes)
    status, _, body = answers[0]
    check_status(status, case)
    new = app_calls(server)[before:]
    assert not [c for c in new if c["path"] == "/smuggled"], "the smuggled request was served"
    if case.closes:
        assert closed, "the connection was not closed after the answer"
        assert len(answers) == 1, f"more than one response: {[a[0] for a in answers]}"
    if case.status != ANY_BUT_400 and case.status >= 400:
        assert new == [], f"a refused request reached the application: {new}"
    elif case.closes is not None:
        method = case.raw.lstrip().split(b" ", 1)[0].decode()
        expected = [method] + (["GET"] if case.closes is False else [])
        assert [c["method"] for c in new] == expected, f"application calls: {new}"
        echo = json.loads(body)
        assert {key: echo[key] for key in case.seen or {}} == (case.seen or {}), echo
    if case.closes is False:
        status, _, body = answers[1]
        assert status == b"HTTP/1.1 200 OK", f"the request after it got {status!r}"
        assert json.loads(body)["path"] == "/after"


def test_a_bad_request_after_a_good_one_gets_both_answers_then_a_close(server):
    before = len(app_calls(server))
    good = request_bytes("GET", "/first", host="x")
    with server.connect() as sock:
        sock.sendall(good + req("Content-Length: 5, 5", b"hello") + SMUGGLED)
        raw, closed = recv_until_closed(sock, 5)
    assert closed
    assert [status.split(b" ")[1] for status, _, _ in parse_all(raw)] == [b"200", b"400"]
    assert [call["path"] for call in app_calls(server)[before:]] == ["/first"]


# --- Responses that cannot desync a connection --------------------------------------------


def close_calls(server) -> dict[str, dict[str, int]]:
    status, _, body = exchange(server, request_bytes("GET", "/closes"))
    assert status == b"HTTP/1.1 200 OK", body
    return json.loads(body)


def assert_closed_every_iterable(server, path: str) -> None:
    """Every response iterable the app returned for ``path`` gets close() (bounded wait)."""

    def balanced() -> bool:
        seen = close_calls(server)
        return seen["entered"].get(path, 0) == seen["closed"].get(path, 0)

    assert wait_until(balanced, 10), f"close() not called for {path}: {close_calls(server)}"


def test_short_body_closes_the_connection_and_nothing_is_spliced_in(server):
    with server.connect() as sock:
        sock.sendall(request_bytes("GET", "/short") + request_bytes("GET", "/after"))
        raw, closed = recv_until_closed(sock, 5)
    assert closed, f"connection left open after a short body; got {raw[:300]!r}"
    status, headers, rest = split_head(raw)
    assert status == b"HTTP/1.1 200 OK"
    assert headers["content-length"] == ["100"]
    assert rest == b"0123456789", "bytes after the short body (a spliced response?)"
    assert_closed_every_iterable(server, "/short")


def test_long_body_is_cut_at_the_declared_length(server):
    after = request_bytes("GET", "/after", [("Connection", "close")])
    with server.connect() as sock:
        sock.sendall(request_bytes("GET", "/long") + after)
        raw, closed = recv_until_closed(sock, 5)
    assert closed
    status, headers, rest = split_head(raw)
    assert (status, headers["content-length"]) == (b"HTTP/1.1 200 OK", ["5"])
    assert rest[:5] == b"abcde"
    assert b"FGHIJ" not in raw, "more bytes than declared went out"
    if rest[5:]:  # the connection may close or go on, but only with a whole response
        (status, _, body), *more = parse_all(rest[5:])
        assert (status, json.loads(body)["path"], more) == (b"HTTP/1.1 200 OK", "/after", [])
    assert_closed_every_iterable(server, "/long")


# (path, the pipelined request after the HEAD must be answered too)
HEAD_PATHS = [("/", True), ("/stream", True), ("/short", False), ("/long", False)]


@pytest.mark.parametrize("path, keeps", HEAD_PATHS)
def test_head_never_carries_body_bytes(server, path, keeps):
    after = request_bytes("GET", "/after", [("Connection", "close")])
    with server.connect() as sock:
        sock.sendall(request_bytes("HEAD", path) + after)
        raw, closed = recv_until_closed(sock, 5)
    assert closed
    status, _, rest = split_head(raw)
    assert status == b"HTTP/1.1 200 OK"
    if keeps or rest:
        assert rest.startswith(b"HTTP/1.1 200 "), f"body bytes after a HEAD answer: {rest[:100]!r}"
        [(_, _, body)] = parse_all(rest)
        assert json.loads(body)["path"] == "/after"
    assert_closed_every_iterable(server, path)


INJECTIONS = [
    ("/bad-status", "crlf"),
    ("/bad-status", "lf"),
    ("/bad-status", "cr"),
    ("/bad-header", "value-crlf"),
    ("/bad-header", "value-lf"),
    ("/bad-header", "value-cr"),
    ("/bad-header", "name-crlf"),
]


@pytest.mark.parametrize("path, kind", INJECTIONS)
def test_cr_or_lf_from_the_app_gives_500_and_never_reaches_the_wire(server, path, kind):
    with server.connect() as sock:
        sock.sendall(request_bytes("GET", f"{path}?{kind}", [("Connection", "close")]))
        raw, closed = recv_until_closed(sock, 5)
    assert closed
    status, headers, _ = split_head(raw)
    assert status.startswith(b"HTTP/1.1 500 "), f"got {raw[:300]!r}"
    assert b"injected" not in raw.lower(), f"the app's header reached the wire: {raw[:300]!r}"
    assert "x-fine" not in headers
    assert exchange(server, request_bytes("GET", "/"))[0] == b"HTTP/1.1 200 OK"
    assert_closed_every_iterable(server, path)
