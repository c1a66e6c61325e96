"""A small raw FastCGI 1.0 client, for the FastCGI engine's tests (tests/test_fastcgi.py).

It writes records byte by byte as the spec lays them out (8-byte header, content,
padding) and reads them back, so a test can send exactly what nginx or Apache would,
or something malformed, and check every record the server answers with.
"""

from __future__ import annotations

import socket
import struct
from dataclasses import dataclass, field

BEGIN_REQUEST, ABORT_REQUEST, END_REQUEST, PARAMS, STDIN, STDOUT, STDERR = range(1, 8)
GET_VALUES, GET_VALUES_RESULT, UNKNOWN_TYPE = 9, 10, 11
RESPONDER, AUTHORIZER = 1, 2
KEEP_CONN = 1
REQUEST_COMPLETE, CANT_MPX_CONN, OVERLOADED, UNKNOWN_ROLE = range(4)


def record(kind: int, request_id: int, content: bytes = b"", padding: int | None = None) -> bytes:
    """One record; padded to 8 bytes unless ``padding`` says how much."""
    if padding is None:
        padding = -len(content) % 8
    header = struct.pack("!BBHHBx", 1, kind, request_id, len(content), padding)
    return header + content + b"\0" * padding


def pair(name: bytes, value: bytes) -> bytes:
    """One name-value pair (1-byte lengths below 128, else 4 bytes with the high bit)."""

    def length(n: int) -> bytes:
        return bytes([n]) if n < 128 else struct.pack("!I", n | 0x8000_0000)

    return length(len(name)) + length(len(value)) + name + value


def pairs(items) -> bytes:
    return b"".join(pair(_b(n), _b(v)) for n, v in items)


def _b(text) -> bytes:
    return text if isinstance(text, bytes) else str(text).encode("latin-1")


def stream(kind: int, request_id: int, data: bytes, size: int = 65535) -> bytes:
    """``data`` as records of at most ``size`` bytes, then the empty record."""
    out = [record(kind, request_id, data[i : i + size]) for i in range(0, len(data), size)]
    return b"".join(out) + record(kind, request_id)


def begin(request_id: int = 1, role: int = RESPONDER, flags: int = 0) -> bytes:
    return record(BEGIN_REQUEST, request_id, struct.pack("!HB5x", role, flags))


def base_params(method: str = "GET", uri: str = "/", **extra) -> dict[str, str]:
    """The variables nginx's stock fastcgi_params send for ``method uri``."""
    path, _, query = uri.partition("?")
    params = {
        "QUERY_STRING": query,
        "REQUEST_METHOD": method,
        "CONTENT_TYPE": "",
        "CONTENT_LENGTH": "",
        "SCRIPT_NAME": path,
        "REQUEST_URI": uri,
        "DOCUMENT_URI": path,
        "SERVER_PROTOCOL": "HTTP/1.1",
        "REQUEST_SCHEME": "http",
        "GATEWAY_INTERFACE": "CGI/1.1",
        "SERVER_SOFTWARE": "nginx/test",
        "REMOTE_ADDR": "192.0.2.10",
        "REMOTE_PORT": "40000",
        "SERVER_ADDR": "127.0.0.1",
        "SERVER_PORT": "8080",
        "SERVER_NAME": "example.test",
        "HTTP_HOST": "example.test",
    }
    params.update(extra)
    return params


def request_bytes(
    request_id: int = 1,
    params: dict | None = None,
    body: bytes = b"",
    keep_conn: bool = False,
    stdin_size: int = 65535,
) -> bytes:
    """A whole request: BEGIN_REQUEST, the PARAMS stream, the STDIN stream."""
    params = base_params() if params is None else params
    return (
        begin(request_id, flags=KEEP_CONN if keep_conn else 0)
        + stream(PARAMS, request_id, pairs(params.items()))
        + stream(STDIN, request_id, body, stdin_size)
    )


@dataclass
class Record:
    kind: int
    request_id: int
    content: bytes


@dataclass
class Response:
    """What came back for one request."""

    request_id: int
    stdout: bytes = b""
    stderr: bytes = b""
    records: list[Record] = field(default_factory=list)
    end: tuple[int, int] | None = None  # (appStatus, protocolStatus)

    @property
    def head(self) -> bytes:
        return self.stdout.partition(b"\r\n\r\n")[0]

    @property
    def body(self) -> bytes:
        return self.stdout.partition(b"\r\n\r\n")[2]

    @property
    def status(self) -> int:
        for line in self.head.split(b"\r\n"):
            if line.lower().startswith(b"status:"):
                return int(line.split()[1])
        return 200

    def header(self, name: str) -> str | None:
        for line in self.head.split(b"\r\n"):
            key, _, value = line.partition(b":")
            if key.strip().lower() == name.lower().encode():
                return value.strip().decode("latin-1")
        return None


class Reader:
    """Reads records off a socket."""

    def __init__(self, sock: socket.socket):
        self.sock = sock
        self.buf = b""

    def _take(self, n: int) -> bytes | None:
        while len(self.buf) < n:
            chunk = self.sock.recv(1 << 20)
            if not chunk:
                return None
            self.buf += chunk
        out, self.buf = self.buf[:n], self.buf[n:]
        return out

    def record(self) -> Record | None:
        """The next record; None when the server closed the connection."""
        header = self._take(8)
        if header is None:
            return None
        version, kind, request_id, length, padding = struct.unpack("!BBHHBx", header)
        assert version == 1, header
        content = self._take(length + padding)
        assert content is not None, "connection closed inside a record"
        return Record(kind, request_id, content[:length])

    def response(self, request_id: int = 1) -> Response:
        """Records up to END_REQUEST for ``request_id`` (or the connection's end)."""
        response = Response(request_id)
        while True:
            rec = self.record()
            if rec is None:
                return response
            response.records.append(rec)
            if rec.request_id != request_id:
                continue
            if rec.kind == STDOUT:
                response.stdout += rec.content
            elif rec.kind == STDERR:
                response.stderr += rec.content
            elif rec.kind == END_REQUEST:
                app_status, protocol_status = struct.unpack("!IB3x", rec.content)
                response.end = (app_status, protocol_status)
                return response


def parse_pairs(block: bytes) -> dict[bytes, bytes]:
    out = {}
    i = 0

    def length() -> int:
        nonlocal i
        if block[i] < 128:
            i += 1
            return block[i - 1]
        i += 4
        return struct.unpack("!I", block[i - 4 : i])[0] & 0x7FFF_FFFF

    while i < len(block):
        n, v = length(), length()
        out[block[i : i + n]] = block[i + n : i + n + v]
        i += n + v
    return out
