"""start_response rules: invalid statuses and headers, valid edge cases, exc_info, write().

/invalid/NAME and /valid/NAME call start_response with the status and headers of
that entry in INVALID or VALID. The other paths are named for what they do; the
exc_info ones record what happened under /state (this is one process).
"""

import json
import sys
import threading

INVALID = {
    "status_code_only": ("200", []),
    "status_reason_first": ("OK 200", []),
    "status_two_digits": ("20 OK", []),
    "status_four_digits": ("2000 OK", []),
    "status_letters": ("2x0 OK", []),
    "status_bytes": (b"200 OK", []),
    "status_crlf": ("200 OK\r\nX-Injected: yes", []),
    "header_name_space": ("200 OK", [("Bad Name", "v")]),
    "header_name_colon": ("200 OK", [("X-A:B", "v")]),
    "header_name_empty": ("200 OK", [("", "v")]),
    "header_value_crlf": ("200 OK", [("X-A", "a\r\nX-Injected: yes")]),
    "header_value_cr": ("200 OK", [("X-A", "a\rb")]),
    "header_value_lf": ("200 OK", [("X-A", "a\nb")]),
    "header_value_nul": ("200 OK", [("X-A", "a\0b")]),
    "header_value_not_latin1": ("200 OK", [("X-A", "price \u20ac5")]),
    "header_value_bytes": ("200 OK", [("X-A", b"v")]),
    "header_not_a_pair": ("200 OK", ["X-A: v"]),
    "hop_connection": ("200 OK", [("Connection", "close")]),
    "hop_connection_lowercase": ("200 OK", [("connection", "keep-alive")]),
    "hop_transfer_encoding": ("200 OK", [("Transfer-Encoding", "chunked")]),
    "hop_keep_alive": ("200 OK", [("Keep-Alive", "timeout=5")]),
    "hop_upgrade": ("200 OK", [("Upgrade", "websocket")]),
    "hop_te": ("200 OK", [("TE", "trailers")]),
}

VALID = {
    "custom_reason": ("299 Whatever You Like", [("X-A", "v")]),
    "reason_with_spaces": ("404 Not Here At All", [("X-A", "v")]),
    "latin1_value": ("200 OK", [("X-A", "caf\xe9")]),
    "tab_in_value": ("200 OK", [("X-A", "a\tb")]),
    "empty_value": ("200 OK", [("X-A", "")]),
    "token_chars_in_name": ("200 OK", [("X-A!#$%&'*+.^_`|~", "v")]),
}

_state: dict[str, dict] = {}
_lock = threading.Lock()


def _record(key, **values):
    with _lock:
        _state.setdefault(key, {}).update(values)


def lazy(environ, start_response):
    start_response("200 OK", [("Content-Type", "text/plain"), ("X-Lazy", "yes")])
    yield b"started lazily"


def empty_then_raise(environ, start_response):
    start_response("200 OK", [("Content-Type", "text/plain")])
    yield b""
    raise RuntimeError("boom-after-empty-chunk")


def empty_then_exc_info(environ, start_response):
    start_response("200 OK", [("Content-Type", "text/plain")])
    yield b""
    try:
        raise ValueError("replace the headers")
    except ValueError:
        start_response("503 Service Unavailable", [("Content-Type", "text/plain")], sys.exc_info())
    yield b"replaced"


def exc_info_before(environ, start_response):
    start_response("200 OK", [("Content-Type", "text/plain"), ("X-First", "1")])
    try:
        raise ValueError("something went wrong")
    except ValueError:
        headers = [("Content-Type", "text/plain")]
        start_response("500 Internal Server Error", headers, sys.exc_info())
    return [b"custom error page"]


def exc_info_after(environ, start_response):
    key = environ["QUERY_STRING"]
    start_response("200 OK", [("Content-Type", "text/plain")])
    yield b"first chunk"
    original = ValueError("original error")
    try:
        raise original
    except ValueError:
        try:
            start_response("500 Internal Server Error", [], sys.exc_info())
        except BaseException as exc:
            _record(key, reraised=True, same=exc is original)
            raise
    _record(key, reraised=False)
    yield b"start_response with exc_info did not raise"


def twice_caught(environ, start_response):
    start_response("200 OK", [("Content-Type", "text/plain")])
    try:
        start_response("201 Created", [("Content-Type", "text/plain")])
        outcome = "second call accepted"
    except Exception as exc:
        outcome = f"second call raised {type(exc).__name__}"
    return [outcome.encode()]


def write_then_return(environ, start_response):
    write = start_response("200 OK", [("Content-Type", "text/plain")])
    write(b"a")
    write(b"b")
    return [b"c"]


def write_with_length(environ, start_response):
    write = start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", "6")])
    write(b"abc")
    return [b"def"]


def write_only(environ, start_response):
    write = start_response("200 OK", [("Content-Type", "text/plain")])
    write(b"only ")
    write(b"write")
    return []


def write_then_generator(environ, start_response):
    write = start_response("200 OK", [("Content-Type", "text/plain")])
    write(b"written,")

    def rest():
        yield b"yielded"

    return rest()


def state(environ, start_response):
    with _lock:
        body = json.dumps(_state.get(environ["QUERY_STRING"], {})).encode()
    start_response("200 OK", [("Content-Type", "application/json")])
    return [body]


def ok(environ, start_response):
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [b"ok"]


def table_case(table, name, start_response):
    status, headers = table[name]
    start_response(status, headers)
    return [b"body"]


ROUTES = {
    name: func
    for name, func in globals().items()
    if callable(func) and name not in ("app", "table_case", "_record")
}


def app(environ, start_response):
    parts = environ["PATH_INFO"].strip("/").split("/")
    if parts[0] == "invalid":
        return table_case(INVALID, parts[1], start_response)
    if parts[0] == "valid":
        return table_case(VALID, parts[1], start_response)
    return ROUTES[parts[0]](environ, start_response)
