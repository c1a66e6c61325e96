"""The inline mode (issue 5): with ``--threads 1`` the I/O thread calls the application
itself. What must still hold: a stream or write() output larger than the stream buffer
arrives whole and in order at the client's pace, close() runs once, requests that
arrive meanwhile are answered in turn, and a stop signal never interrupts the
application (it runs off the main thread)."""

import signal
import socket
import threading
import time
import uuid

import pytest
from conftest import Stream, exchange, read_response, request_bytes, wait_until

CHUNK = 65536


def expected(n: int, size: int = CHUNK) -> bytes:
    return b"".join((b"%08d" % i).ljust(size, b".") for i in range(n))


@pytest.fixture(scope="module")
def server(start_module_server):
    return start_module_server("inline_app:app", "--threads", "1", "--workers", "0")


def closed(server, key: str) -> int:
    return int(exchange(server, request_bytes("GET", f"/closed?id={key}"))[2])


def slow_read(sock: socket.socket, timeout: float = 20.0) -> tuple[bytes, bytes]:
    """Read one response in small pieces with pauses (a slow client)."""
    sock.settimeout(timeout)
    status, _, body = read_response(Trickle(sock), timeout)
    return status, body


def slow_get(server, path: str) -> tuple[bytes, bytes]:
    """GET ``path`` on a new connection and read the answer as a slow client."""
    with server.connect() as sock:
        sock.sendall(request_bytes("GET", path))
        return slow_read(sock)


class Trickle(Stream):
    """A Stream that reads at most 16 KiB at a time, pausing every 64 reads."""

    def __init__(self, sock: socket.socket):
        super().__init__(sock)
        self.reads = 0

    def fill(self) -> None:
        self.reads += 1
        if self.reads % 64 == 0:
            time.sleep(0.05)
        data = self.sock.recv(16384)
        if not data:
            raise AssertionError("connection closed mid-response")
        self.pending += data


def test_a_stream_larger_than_the_buffer_arrives_whole_and_in_order(server):
    key = uuid.uuid4().hex
    with server.connect() as sock:
        sock.sendall(request_bytes("GET", f"/stream?n=200&id={key}"))
        status, body = slow_read(sock)
        assert status == b"HTTP/1.1 200 OK"
        assert body == expected(200)
        sock.sendall(request_bytes("GET", "/"))  # the connection is still usable
        assert read_response(sock)[2] == b"hello"
    assert wait_until(lambda: closed(server, key) == 1, 5)
    time.sleep(0.2)
    assert closed(server, key) == 1, "close() called more than once"


def test_write_output_larger_than_the_buffer_arrives_whole_and_in_order(server):
    status, body = slow_get(server, "/write?n=100")
    assert status == b"HTTP/1.1 200 OK"
    assert body == expected(100)


def test_write_then_an_iterable_keeps_the_order(server):
    key = uuid.uuid4().hex
    status, body = slow_get(server, f"/write?n=40&then=40&id={key}")
    assert status == b"HTTP/1.1 200 OK"
    assert body == expected(40) + expected(40)
    assert wait_until(lambda: closed(server, key) == 1, 5)


def test_a_client_gone_mid_stream_gets_close_called_once(server):
    key = uuid.uuid4().hex
    with server.connect() as sock:
        sock.sendall(request_bytes("GET", f"/stream?n=2000&id={key}"))
        sock.settimeout(5)
        assert sock.recv(65536).startswith(b"HTTP/1.1 200 OK")
    assert wait_until(lambda: closed(server, key) == 1, 10), "close() never called"
    time.sleep(0.2)
    assert closed(server, key) == 1


def test_requests_arriving_during_a_long_stream_are_answered_in_turn(server):
    with server.connect() as streaming, server.connect() as other:
        streaming.sendall(request_bytes("GET", "/stream?n=300"))
        streaming.settimeout(5)
        assert streaming.recv(1024).startswith(b"HTTP/1.1 200 OK")
        answers = {}

        def ask():
            other.sendall(request_bytes("GET", "/"))
            answers["other"] = read_response(other, timeout=30)

        asking = threading.Thread(target=ask)
        asking.start()
        body = b""
        while len(body) < 300 * CHUNK - 1024:
            body += streaming.recv(65536)
        asking.join(30)
    assert answers["other"][2] == b"hello"


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_a_stop_signal_does_not_interrupt_the_application(start_server, sig):
    """The signal handler runs on the main thread, never inside the application: the
    call in flight finishes with its 200 and the server then exits cleanly."""
    server = start_server("inline_app:app", "--threads", "1", "--workers", "0")
    result = {}

    def slow():
        result["answer"] = exchange(server, request_bytes("GET", "/sleep?s=1.5"), timeout=15)

    asking = threading.Thread(target=slow)
    asking.start()
    time.sleep(0.5)
    server.proc.send_signal(sig)
    asking.join(15)
    assert result["answer"][0] == b"HTTP/1.1 200 OK"
    assert result["answer"][2] == b"slept"
    assert server.proc.wait(15) == 0
    assert "Traceback" not in server.log, server.log


def test_a_slow_reader_holds_back_the_generator(start_server):
    """Past the stream buffer, the generator runs at the client's pace (on a Python
    thread), instead of filling memory on the I/O thread."""
    server = start_server("response_apps:app", "--threads", "1", "--workers", "0")
    key = uuid.uuid4().hex

    def produced() -> int:
        status, _, body = exchange(server, request_bytes("GET", f"/count?id={key}"))
        return int(body.split(b'"produced": ')[1].rstrip(b"}"))

    with server.connect() as sock:
        sock.sendall(request_bytes("GET", f"/counted?id={key}&mode=big"))
        sock.settimeout(5)
        assert sock.recv(1024).startswith(b"HTTP/1.1 200 OK")
        time.sleep(1.0)  # an unbounded server would run far ahead meanwhile
    # With one thread, /count is answered once the stream has ended (client gone).
    assert produced() < 128, f"{produced()} MiB produced for a client that read 1 KiB"
