"""Applications that break PEP 3333 on purpose, one per path; /ok is a good one.

Each bad path is what a real application gets wrong: it raises, returns a str
(as old tutorials do), returns None, yields a str, gives an invalid status or
header, or calls start_response twice without exc_info.
"""


def ok(environ, start_response):
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [b"ok"]


def raise_before(environ, start_response):
    raise RuntimeError("boom-before-start")


def raise_after_start(environ, start_response):
    start_response("200 OK", [("Content-Type", "text/plain")])
    raise RuntimeError("boom-after-start")


def raise_in_first_iteration(environ, start_response):
    start_response("200 OK", [("Content-Type", "text/plain")])
    raise RuntimeError("boom-first-iteration")
    yield b"never"


def raise_after_first_chunk(environ, start_response):
    start_response("200 OK", [("Content-Type", "text/plain")])
    yield b"first chunk"
    raise RuntimeError("boom-mid-stream")


def raise_after_first_chunk_with_length(environ, start_response):
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", "100")])
    yield b"first chunk"
    raise RuntimeError("boom-mid-stream")


def return_str(environ, start_response):
    start_response("200 OK", [("Content-Type", "text/plain")])
    return "Hello from an old tutorial"


def return_none(environ, start_response):
    start_response("200 OK", [("Content-Type", "text/plain")])


def return_int(environ, start_response):
    start_response("200 OK", [("Content-Type", "text/plain")])
    return 42


def yield_str(environ, start_response):
    start_response("200 OK", [("Content-Type", "text/plain")])
    yield "a str chunk"


def list_with_str(environ, start_response):
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [b"bytes first", "then a str"]


def yield_str_after_bytes(environ, start_response):
    start_response("200 OK", [("Content-Type", "text/plain")])
    yield b"first chunk"
    yield "a str chunk"


def bad_status(environ, start_response):
    start_response("200", [("Content-Type", "text/plain")])
    return [b"never sent"]


def crlf_header(environ, start_response):
    start_response("200 OK", [("X-Bad", "a\r\nInjected: yes")])
    return [b"never sent"]


def hop_by_hop(environ, start_response):
    start_response("200 OK", [("Content-Type", "text/plain"), ("Connection", "close")])
    return [b"never sent"]


def start_twice(environ, start_response):
    start_response("200 OK", [("Content-Type", "text/plain")])
    start_response("201 Created", [("Content-Type", "text/plain")])
    return [b"never sent"]


def no_start_response(environ, start_response):
    return [b"start_response was never called"]


ROUTES = {name: func for name, func in globals().items() if callable(func) and name != "app"}


def app(environ, start_response):
    return ROUTES[environ["PATH_INFO"].strip("/")](environ, start_response)
