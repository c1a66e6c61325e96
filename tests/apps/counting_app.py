"""An application that records every call, for hostile-client and smuggling tests.

Every request except the two read-only reports below is appended to a call log
*when the application is entered* (before the body is read), so a test can prove
that a request never reached the application.

Reports (not recorded):
  GET /calls   JSON list of ``{"method", "path"}``, one per call, in order.
  GET /closes  JSON ``{"entered": {path: N}, "closed": {path: N}}``: how many
               response iterables were returned per path and how many of them
               had close() called (the server must call it even when the client
               went away).

Routes (anything else is the echo route):
  /short          declares Content-Length 100, sends 10 bytes.
  /long           declares Content-Length 5, yields 20 bytes.
  /stream         a body without Content-Length (a generator).
  /upload         reads the whole body, answers with its length.
  /big            64 MiB in 1 MiB pieces, Content-Length declared.
  /forever        64 KiB pieces every 10 ms, never ends (until close()).
  /bad-status?K   a status line with CR/LF in it (K picks which), see BAD_STATUS.
  /bad-header?K   a header name or value with CR or LF in it, see BAD_HEADERS.
  echo            reads the whole body and answers 200 with JSON: method, path,
                  protocol, the body (latin-1), CONTENT_LENGTH, HTTP_HOST and the
                  HTTP_* keys. CONNECT is answered 405 with the same JSON.
"""

import json
import threading
import time

_lock = threading.Lock()
_calls: list[dict[str, str]] = []
_entered: dict[str, int] = {}
_closed: dict[str, int] = {}
MIB = b"m" * (1 << 20)

BAD_STATUS = {
    "crlf": "200 OK\r\nX-Injected: yes",
    "lf": "200 OK\nX-Injected: yes",
    "cr": "200 OK\rX-Injected: yes",
}
BAD_HEADERS = {
    "value-crlf": ("X-Fine", "a\r\nX-Injected: yes"),
    "value-lf": ("X-Fine", "a\nX-Injected: yes"),
    "value-cr": ("X-Fine", "a\rX-Injected: yes"),
    "name-crlf": ("X-Fine\r\nX-Injected", "yes"),
}


class Counted:
    """A response iterable that counts its close() calls under its path."""

    def __init__(self, path, pieces):
        self.path, self.pieces = path, pieces
        with _lock:
            _entered[path] = _entered.get(path, 0) + 1

    def __iter__(self):
        return iter(self.pieces)

    def close(self):
        with _lock:
            _closed[self.path] = _closed.get(self.path, 0) + 1


def _forever():
    piece = b"f" * 65536
    while True:
        yield piece
        time.sleep(0.01)


def _json(start_response, status, data):
    body = json.dumps(data).encode()
    headers = [("Content-Type", "application/json"), ("Content-Length", str(len(body)))]
    start_response(status, headers)
    return [body]


def _echo(environ, start_response):
    body = environ["wsgi.input"].read()
    seen = {
        "method": environ["REQUEST_METHOD"],
        "path": environ.get("PATH_INFO", ""),
        "protocol": environ.get("SERVER_PROTOCOL"),
        "body": body.decode("latin-1"),
        "content_length": environ.get("CONTENT_LENGTH"),
        "host": environ.get("HTTP_HOST"),
        "headers": sorted(k for k in environ if k.startswith("HTTP_")),
    }
    status = "405 Method Not Allowed" if seen["method"] == "CONNECT" else "200 OK"
    return _json(start_response, status, seen)


def app(environ, start_response):
    path = environ.get("PATH_INFO", "")
    query = environ.get("QUERY_STRING", "")
    if path == "/calls":
        with _lock:
            return _json(start_response, "200 OK", list(_calls))
    if path == "/closes":
        with _lock:
            return _json(start_response, "200 OK", {"entered": _entered, "closed": _closed})
    with _lock:
        _calls.append({"method": environ["REQUEST_METHOD"], "path": path})
    if path == "/short":
        start_response("200 OK", [("Content-Length", "100")])
        return Counted(path, [b"0123456789"])
    if path == "/long":
        start_response("200 OK", [("Content-Length", "5")])
        return Counted(path, [b"abcde", b"FGHIJ", b"KLMNO", b"PQRST"])
    if path == "/stream":
        start_response("200 OK", [("Content-Type", "text/plain")])
        return Counted(path, (b"part%d;" % i for i in range(5)))
    if path == "/big":
        start_response("200 OK", [("Content-Length", str(64 * len(MIB)))])
        return Counted(path, (MIB for _ in range(64)))
    if path == "/forever":
        start_response("200 OK", [("Content-Type", "application/octet-stream")])
        return Counted(path, _forever())
    if path == "/upload":
        size = len(environ["wsgi.input"].read())
        start_response("200 OK", [("Content-Type", "text/plain")])
        return Counted(path, [b"%d" % size])
    if path == "/bad-status":
        start_response(BAD_STATUS[query], [("Content-Length", "2")])
        return Counted(path, [b"ok"])
    if path == "/bad-header":
        start_response("200 OK", [BAD_HEADERS[query], ("Content-Length", "2")])
        return Counted(path, [b"ok"])
    return _echo(environ, start_response)
