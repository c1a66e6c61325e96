"""Raw-socket clients for benches/run.py: a pipelined batch, and idle keep-alive connections.

Rules kept here:

* Everything is bounded: every socket has a timeout, every loop a count, and
  opening the idle connections a deadline.
* Answers are parsed, never guessed: a head up to ``\\r\\n\\r\\n``, then exactly
  Content-Length body bytes, which must be hello's. An answer without
  Content-Length (chunked, or delimited by a close) counts as a wrong one:
  every server here sends it for hello.
* Idle connections are closed with a reset (``SO_LINGER`` 0), so 10,000 of them
  leave no TIME_WAIT sockets holding local ports for the next runs.
"""

from __future__ import annotations

import selectors
import socket
import struct
import time

from benches.apps import HELLO
from benches.harness import HOST, BenchError

ANSWER_TIMEOUT = 5.0  # seconds for any one recv
OPEN_TIMEOUT = 120.0  # seconds to open all the idle connections


def hello_request(port: int) -> bytes:
    """The GET that wrk sends (``wrk.format()``): request line, Host, nothing else."""
    return f"GET / HTTP/1.1\r\nHost: {HOST}:{port}\r\n\r\n".encode()


class Reader:
    """HTTP/1.1 answers read one after the other from one socket."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.buffer = b""

    def _fill(self) -> None:
        data = self.sock.recv(65536)
        if not data:
            raise ConnectionError("closed by the server")
        self.buffer += data

    def answer(self) -> tuple[int, bytes]:
        """The next answer's (status, body); OSError or ValueError if there is none."""
        while (end := self.buffer.find(b"\r\n\r\n")) < 0:
            self._fill()
        lines = self.buffer[:end].decode("latin-1").split("\r\n")
        status = int(lines[0].split()[1])
        lengths = [
            int(value)
            for name, _, value in (line.partition(":") for line in lines[1:])
            if name.strip().lower() == "content-length"
        ]
        if len(lengths) != 1:
            raise ValueError(f"answer with {len(lengths)} Content-Length headers")
        total = end + 4 + lengths[0]
        while len(self.buffer) < total:
            self._fill()
        body, self.buffer = self.buffer[end + 4 : total], self.buffer[total:]
        return status, body


def pipelined_answers(port: int, depth: int) -> int:
    """Send ``depth`` hello GETs in one write; how many right answers came back, in order."""
    with socket.create_connection((HOST, port), timeout=ANSWER_TIMEOUT) as sock:
        sock.sendall(hello_request(port) * depth)
        reader, good = Reader(sock), 0
        try:
            while good < depth and reader.answer() == (200, HELLO):
                good += 1
        except (OSError, ValueError):
            pass  # a close, a timeout or a malformed answer ends the count
        return good


class IdleConnections:
    """``count`` keep-alive connections, each answered once, then left idle.

    A context manager: every connection is closed (reset) on exit.
    """

    def __init__(self, port: int, count: int) -> None:
        self.port = port
        self.count = count
        self.socks: list[socket.socket] = []

    def __enter__(self) -> IdleConnections:
        try:
            self._open()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _open(self) -> None:
        """Open them one at a time: connect, one GET, its answer read whole."""
        request = hello_request(self.port)
        deadline = time.monotonic() + OPEN_TIMEOUT
        for n in range(self.count):
            if time.monotonic() > deadline:
                message = f"opened only {n} idle connections in {OPEN_TIMEOUT:.0f} s"
                raise BenchError(message, shown=f"held {n} idle")
            try:
                sock = socket.create_connection((HOST, self.port), timeout=ANSWER_TIMEOUT)
                self.socks.append(sock)
                sock.sendall(request)
                answer = Reader(sock).answer()
            except (OSError, ValueError) as exc:
                message = f"idle connection {n + 1} of {self.count}: {exc!r}"
                raise BenchError(message, shown=f"held {n} idle") from exc
            if answer != (200, HELLO):
                raise BenchError(f"idle connection {n + 1}: wrong answer {answer!r:.80}")

    def closed(self) -> int:
        """How many the server has closed (or written to) since they were opened."""
        with selectors.DefaultSelector() as selector:
            for sock in self.socks:
                selector.register(sock, selectors.EVENT_READ)
            return len(selector.select(timeout=0))

    def close(self) -> None:
        """Reset every connection (no TIME_WAIT left behind)."""
        linger = struct.pack("ii", 1, 0)
        for sock in self.socks:
            try:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, linger)
            except OSError:
                pass  # already reset by the server: close() is all it needs
            sock.close()
        self.socks.clear()
