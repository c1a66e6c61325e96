"""wsgi.input (PEP 3333 "Input and Error Streams"): read(), read(n), readline(),
readline(size), readlines(), iteration and EOF, for bodies in memory and spilled
to a temporary file."""

import hashlib
import json
import os

import pytest
from conftest import exchange, request_bytes

EOF_REPRS = ["b''", "b''", "b''"]


@pytest.fixture(scope="module")
def server(start_module_server):
    return start_module_server("input_app:app")


def post(server, path, body, headers=None, timeout=30.0):
    status, _, answer = exchange(
        server, request_bytes("POST", path, headers, body), timeout=timeout
    )
    assert status == b"HTTP/1.1 200 OK", answer
    return json.loads(answer)


READS = [
    ("/read", b"hello world", ["hello world"]),
    ("/read_neg", b"hello world", ["hello world"]),
    ("/read_n/3", b"0123456789", ["012", "345", "678", "9"]),
    ("/read_n/4", b"01234567", ["0123", "4567"]),
    ("/read_n/100", b"short", ["short"]),
    ("/readline", b"a\nbb\n\nccc", ["a\n", "bb\n", "\n", "ccc"]),
    ("/readline", b"one\r\ntwo\n", ["one\r\n", "two\n"]),
    ("/readline_size/2", b"abcd\nef\n", ["ab", "cd", "\n", "ef", "\n"]),
    ("/readline_size/10", b"abc\ndefghijklmnop\n", ["abc\n", "defghijklm", "nop\n"]),
    ("/readlines", b"x\ny\nz", ["x\n", "y\n", "z"]),
    ("/readlines", b"x\ny\n", ["x\n", "y\n"]),
    ("/iter", b"1\n22\n333", ["1\n", "22\n", "333"]),
    ("/mixed", b"line1\nabcdef", ["line1\n", "abc", "def"]),
    ("/read", b"\x00\xff\r\n\x80binary", ["\x00\xff\r\n\x80binary"]),
]


@pytest.mark.parametrize("path, body, parts", READS)
def test_input_methods_return_the_body_in_the_expected_parts(server, path, body, parts):
    data = post(server, path, body)
    assert data["parts"] == parts
    assert data["types"] == ["bytes"]
    assert data["after_eof"] == EOF_REPRS
    assert data["content_length"] == str(len(body))


@pytest.mark.parametrize("path", ["/read", "/read_n/5", "/readline", "/readlines", "/iter"])
def test_empty_body_is_immediately_at_eof(server, path):
    status, _, answer = exchange(server, request_bytes("GET", path))
    assert status == b"HTTP/1.1 200 OK"
    data = json.loads(answer)
    assert data["total"] == 0
    assert data["parts"] in ([], [""])
    assert data["after_eof"] == EOF_REPRS
    assert data["content_length"] in (None, "0")


def lines_payload(size: int) -> bytes:
    """``size`` random-ish bytes cut into lines of varying length."""
    rnd = os.urandom(size)
    return bytes(b if i % 97 else 10 for i, b in enumerate(rnd))


BIG_MODES = ["/read", "/read_n/65536", "/read_n/1000", "/readline", "/readline_size/500", "/iter"]


@pytest.mark.parametrize("path", BIG_MODES)
def test_spilled_body_reads_back_intact(server, path):
    payload = lines_payload(3 * 1024 * 1024)
    data = post(server, path, payload)
    assert data["total"] == len(payload)
    assert data["sha256"] == hashlib.sha256(payload).hexdigest()
    assert data["after_eof"] == EOF_REPRS
    if path.startswith("/read_n/"):
        size = int(path.rsplit("/", 1)[1])
        assert all(n == size for n in data["lengths"][:-1])
        assert 0 < data["lengths"][-1] <= size
    if path.startswith("/readline"):
        limit = int(path.rsplit("/", 1)[1]) if "size" in path else None
        assert len(data["lengths"]) >= payload.count(b"\n")
        if limit:
            assert max(data["lengths"]) <= limit


def test_spilled_body_mixed_readline_and_read(server):
    payload = b"first line\n" + lines_payload(2 * 1024 * 1024)
    data = post(server, "/mixed", payload)
    assert data["lengths"][:2] == [len(b"first line\n"), 3]
    assert data["sha256"] == hashlib.sha256(payload).hexdigest()


def test_lines_keep_their_newlines_across_a_large_body(server):
    lines = [b"line %d %s\n" % (i, b"x" * (i % 50)) for i in range(40_000)]
    payload = b"".join(lines)
    data = post(server, "/readline", payload)
    assert data["lengths"] == [len(line) for line in lines]
    assert data["sha256"] == hashlib.sha256(payload).hexdigest()


def test_chunked_body_is_read_like_any_other(server):
    wire = b"4\r\nab\nc\r\n3\r\nd\nE\r\n0\r\n\r\n"
    data = post(server, "/readline", wire, [("Transfer-Encoding", "chunked")])
    assert data["parts"] == ["ab\n", "cd\n", "E"]
    assert data["after_eof"] == EOF_REPRS
