"""Response bodies: lists, tuples, generators, Content-Length mismatches, file_wrapper,
wsgi.errors, held streams and iterables that count their close() calls.

Counters live in this process (one worker): /count?ID answers JSON
``{"closed": N, "produced": N}`` for the iterable created with that ID.
"""

import io
import json
import threading
from urllib.parse import parse_qs

_lock = threading.Lock()
_counts: dict[str, dict[str, int]] = {}
_events: dict[str, threading.Event] = {}
MIB = b"x" * (1 << 20)


def _bump(key, field):
    with _lock:
        entry = _counts.setdefault(key, {"closed": 0, "produced": 0})
        entry[field] += 1


def _event(key):
    with _lock:
        return _events.setdefault(key, threading.Event())


class Counted:
    """An iterable whose close() calls are counted; mode ok | raise | big."""

    def __init__(self, key, mode):
        self.key, self.mode, self.sent = key, mode, 0

    def __iter__(self):
        return self

    def __next__(self):
        limit = 512 if self.mode == "big" else 3
        if self.sent == 1 and self.mode == "raise":
            raise RuntimeError("boom-counted")
        if self.sent >= limit:
            raise StopIteration
        self.sent += 1
        _bump(self.key, "produced")
        return MIB if self.mode == "big" else b"chunk%d;" % self.sent

    def close(self):
        _bump(self.key, "closed")


class CountingFile(io.BytesIO):
    def __init__(self, key, data):
        super().__init__(data)
        self.key = key

    def close(self):
        _bump(self.key, "closed")
        super().close()


def _query(environ):
    return {k: v[0] for k, v in parse_qs(environ.get("QUERY_STRING", "")).items()}


def route(environ, start_response, path, q):
    text = [("Content-Type", "text/plain")]
    if path == "/list":
        start_response("200 OK", text)
        return [b"hello ", b"world"]
    if path == "/tuple":
        start_response("200 OK", text)
        return (b"a", b"bc")
    if path == "/empty":
        start_response("200 OK", text)
        return []
    if path == "/big_list":
        start_response("200 OK", text)
        return [MIB * 5]
    if path == "/gen":
        start_response("200 OK", text)
        return (b"part%d;" % i for i in range(5))
    if path == "/gen_with_length":
        start_response("200 OK", text + [("Content-Length", "10")])
        return iter([b"01234", b"56789"])
    if path == "/too_long":
        start_response("200 OK", text + [("Content-Length", "100")])
        return iter([b"only ", b"ten."])
    if path == "/too_short":
        start_response("200 OK", text + [("Content-Length", "5")])
        return [b"hello world"]
    if path == "/too_short_gen":
        start_response("200 OK", text + [("Content-Length", "5")])
        return iter([b"hel", b"lo world"])
    if path == "/no_content":
        start_response("204 No Content", [])
        return []
    return route_more(environ, start_response, path, q)


def route_more(environ, start_response, path, q):
    wrapper = environ["wsgi.file_wrapper"]
    if path == "/file":
        fh = open(q["path"], "rb")  # closed by the wrapper's close()
        size = fh.seek(0, 2)
        fh.seek(0)
        start_response(
            "200 OK", [("Content-Type", "application/octet-stream"), ("Content-Length", str(size))]
        )
        return wrapper(fh, 8192)
    if path == "/file_bytesio":
        start_response("200 OK", [("Content-Type", "text/plain")])
        return wrapper(io.BytesIO(b"0123456789" * 1000), 100)
    if path == "/file_iterated":
        wrapped = wrapper(io.BytesIO(b"abcdefghij"), 4)
        chunks = [chunk.decode() for chunk in wrapped]
        wrapped.close()
        start_response("200 OK", [("Content-Type", "application/json")])
        return [json.dumps(chunks).encode()]
    if path == "/file_close":
        start_response("200 OK", [("Content-Type", "text/plain")])
        return wrapper(CountingFile(q["id"], b"counted file body"), 4)
    if path == "/errors":
        errors = environ["wsgi.errors"]
        errors.write("wsgi-errors-write-marker\n")
        errors.writelines([f"wsgi-errors-writelines-marker-{i}\n" for i in (1, 2)])
        errors.flush()
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [b"logged"]
    if path == "/held":
        start_response("200 OK", [("Content-Type", "text/plain")])
        return _held(q["id"])
    if path == "/release":
        _event(q["id"]).set()
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [b"released"]
    if path == "/counted":
        start_response("200 OK", [("Content-Type", "text/plain")])
        return Counted(q["id"], q.get("mode", "ok"))
    if path == "/count":
        with _lock:
            body = json.dumps(_counts.get(q["id"], {"closed": 0, "produced": 0})).encode()
        start_response("200 OK", [("Content-Type", "application/json")])
        return [body]
    start_response("404 Not Found", [("Content-Type", "text/plain")])
    return [b"no such route"]


def _held(key):
    yield b"first;"
    released = _event(key).wait(10)
    yield b"second" if released else b"timed-out"


def app(environ, start_response):
    return route(environ, start_response, environ["PATH_INFO"], _query(environ))
