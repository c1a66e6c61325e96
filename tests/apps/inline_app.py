"""Responses for the inline mode (``--threads 1``): streams and write() output larger
than the server's stream buffer, with numbered chunks so order can be checked, and
iterables that count their close() calls (``/closed?id=ID``)."""

import threading
import time
from urllib.parse import parse_qs

_lock = threading.Lock()
_closed: dict[str, int] = {}


def chunk(i: int, size: int) -> bytes:
    """Chunk number ``i``: its number, then padding, ``size`` bytes in all."""
    return (b"%08d" % i).ljust(size, b".")


class Numbered:
    """Yields ``n`` numbered chunks; counts its close() calls under ``key``."""

    def __init__(self, key: str, n: int, size: int) -> None:
        self.key, self.n, self.size, self.i = key, n, size, 0

    def __iter__(self):
        return self

    def __next__(self) -> bytes:
        if self.i >= self.n:
            raise StopIteration
        self.i += 1
        return chunk(self.i - 1, self.size)

    def close(self) -> None:
        with _lock:
            _closed[self.key] = _closed.get(self.key, 0) + 1


def app(environ, start_response):
    q = {k: v[0] for k, v in parse_qs(environ["QUERY_STRING"]).items()}
    n, size = int(q.get("n", 0)), int(q.get("size", 65536))
    path = environ["PATH_INFO"]
    headers = [("Content-Type", "application/octet-stream")]
    if path == "/stream":
        start_response("200 OK", headers)
        return Numbered(q.get("id", "-"), n, size)
    if path == "/write":
        write = start_response("200 OK", headers)
        for i in range(n):
            write(chunk(i, size))
        return Numbered(q.get("id", "-"), int(q.get("then", 0)), size)
    if path == "/closed":
        start_response("200 OK", [("Content-Type", "text/plain")])
        with _lock:
            return [b"%d" % _closed.get(q["id"], 0)]
    if path == "/sleep":
        time.sleep(float(q["s"]))
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [b"slept"]
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [b"hello"]
