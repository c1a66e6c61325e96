"""An application wrapped in ``wsgiref.validate.validator`` (the stdlib's PEP 3333
checker): every request must succeed and the checker must never complain, whether by
an AssertionError (500 or a traceback in the log) or a WSGIWarning."""

import pytest
from conftest import exchange, request_bytes

CASES = [
    pytest.param("GET", "/", b"", b"validated GET", id="get"),
    pytest.param("GET", "/?a=1&b=2", b"", b"validated GET", id="get-query"),
    pytest.param("POST", "/echo", b"line one\nrest of it", b"echo:line one\nrest of it", id="post"),
    pytest.param("POST", "/echo", b"", b"echo:", id="post-empty"),
    pytest.param("HEAD", "/", b"", b"", id="head"),
    pytest.param("HEAD", "/stream", b"", b"", id="head-stream"),
    pytest.param("GET", "/stream", b"", b"".join(b"line %d\n" % i for i in range(10)), id="stream"),
    pytest.param("GET", "/write", b"", b"written;returned", id="write"),
    pytest.param("GET", "/file", b"", b"file body " * 100, id="file-wrapper"),
    pytest.param("DELETE", "/", b"", b"validated DELETE", id="delete"),
]

COMPLAINTS = ("AssertionError", "Traceback", "WSGIWarning", "garbage collected without")


@pytest.mark.parametrize("method, path, body, expected", CASES)
@pytest.mark.parametrize("version", ["HTTP/1.1", "HTTP/1.0"])
def test_validator_finds_nothing_wrong(start_server, method, path, body, expected, version):
    server = start_server("validator_app:app", "--threads", "2")
    for _ in range(2):
        raw = request_bytes(method, path, [("Content-Type", "text/plain")], body, version=version)
        if method == "POST" and not body:
            raw = request_bytes(method, path, [("Content-Length", "0")], version=version)
        status, _, answer = exchange(server, raw, head=method == "HEAD")
        assert status.split(b" ", 1)[1] == b"200 OK", answer
        assert answer == expected
    server.stop()
    for complaint in COMPLAINTS:
        assert complaint not in server.log, server.log
