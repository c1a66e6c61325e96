"""Shared fixtures: the real ``ferrowsgi`` server as a subprocess on an ephemeral port.

The server is started with ``--bind 127.0.0.1:0``; the port is read from its
"Listening at: http://HOST:PORT" log line, so there is no race on a "free" port
and no fixed sleep. Its stderr is collected line by line so tests can assert on
the error log.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
APPS = Path(__file__).resolve().parent / "apps"
LISTENING = re.compile(r"Listening at: (?:https?|uwsgi|fcgi)://([^\s]+):(\d+)")


def find_nginx() -> str | None:
    """nginx's binary: on PATH, or where Debian puts it (/usr/sbin, off a user's PATH)."""
    found = shutil.which("nginx")
    candidates = [found] if found else []
    candidates += ["/usr/sbin/nginx", "/usr/local/sbin/nginx", "/usr/local/nginx/sbin/nginx"]
    return next((p for p in candidates if p and os.access(p, os.X_OK)), None)


NGINX = find_nginx()  # tests/test_nginx.py and test_proxy.py run it when found


@pytest.fixture
def run_nginx(tmp_path):
    """Factory: ``run_nginx(conf, **fields)`` starts nginx (in the foreground, one
    process) with ``conf``, a template whose ``{tmp}`` (a temporary directory) and
    ``{port}`` (a free 127.0.0.1 port) are filled in with ``fields``; returns the port
    once nginx accepts on it. Every nginx started is stopped by pid at the end."""
    procs: list[subprocess.Popen] = []

    def start(conf_template: str, **fields: object) -> int:
        for _ in range(3):  # a port found free may be taken before nginx binds it
            with socket.socket() as s:
                s.bind(("127.0.0.1", 0))
                port = s.getsockname()[1]
            conf = tmp_path / "nginx.conf"
            conf.write_text(conf_template.format(tmp=tmp_path, port=port, **fields))
            proc = subprocess.Popen(
                [NGINX, "-p", f"{tmp_path}/", "-e", str(tmp_path / "error.log"), "-c", str(conf)],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            procs.append(proc)

            def up(port=port, proc=proc) -> bool:
                if proc.poll() is not None:
                    return True
                try:
                    with socket.create_connection(("127.0.0.1", port), timeout=1):
                        return True
                except OSError:
                    return False

            if wait_until(up, 10) and proc.poll() is None:
                return port
        log = tmp_path / "error.log"
        pytest.fail("nginx did not start: " + (log.read_text() if log.exists() else ""))

    yield start
    for proc in procs:
        if proc.poll() is None:
            proc.send_signal(signal.SIGQUIT)
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


class ServerProcess:
    """A running ``ferrowsgi`` process and what it has logged so far."""

    def __init__(
        self,
        args: list[str],
        env: dict[str, str] | None = None,
        cwd: Path = ROOT,
        *,
        command: list[str] | None = None,
        whole_env: dict[str, str] | None = None,
    ):
        """``command`` (default: this Python's ``-m ferrowsgi``) with ``args``. The
        environment is this one plus ``env``, with tests/apps and the checkout on
        PYTHONPATH; or exactly ``whole_env`` when given (an installed copy alone)."""
        if whole_env is None:
            full_env = dict(os.environ)
            full_env["PYTHONPATH"] = os.pathsep.join([str(APPS), str(ROOT)])
            full_env["PYTHONUNBUFFERED"] = "1"
            full_env.update(env or {})
        else:
            full_env = dict(whole_env)
        self.args = args
        self.lines: list[str] = []
        self._cond = threading.Condition()
        self.proc = subprocess.Popen(
            [*(command or [sys.executable, "-m", "ferrowsgi"]), *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            env=full_env,
            cwd=str(cwd),
            text=True,
            encoding="utf-8",
            errors="replace",
        )
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        self.host = "127.0.0.1"
        self.port = 0

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            with self._cond:
                self.lines.append(line.rstrip("\n"))
                self._cond.notify_all()
        with self._cond:
            self._cond.notify_all()

    @property
    def log(self) -> str:
        """Everything the server wrote to stdout and stderr so far."""
        with self._cond:
            return "\n".join(self.lines)

    def wait_for_log(self, pattern: str, timeout: float = 10.0) -> re.Match[str]:
        """Wait until a line matching the regex ``pattern`` is logged; fail otherwise."""
        rx = re.compile(pattern)
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                for line in self.lines:
                    m = rx.search(line)
                    if m:
                        return m
                left = deadline - time.monotonic()
                if left <= 0 or (self.proc.poll() is not None and not self._reader.is_alive()):
                    raise AssertionError(f"no log line matching {pattern!r}; log:\n" + self.log)
                self._cond.wait(min(left, 0.1))

    def wait_ready(self, timeout: float = 30.0) -> None:
        """Wait for the listening line, then for the port to accept a connection."""
        m = self.wait_for_log(LISTENING.pattern, timeout)
        self.host, self.port = m.group(1).strip("[]"), int(m.group(2))
        with socket.create_connection((self.host, self.port), timeout=5):
            pass

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def connect(self, timeout: float = 10.0) -> socket.socket:
        """A new raw TCP connection to the server."""
        return socket.create_connection((self.host, self.port), timeout=timeout)

    def stop(self, timeout: float = 15.0) -> int:
        """SIGTERM, then wait; returns the exit status (kills after ``timeout``)."""
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._reader.join(5)
        return self.proc.returncode


@pytest.fixture
def start_server() -> Iterator:
    """Factory: ``start_server("app_module:app", "--threads", "4")`` → a ready ServerProcess.

    Pass ``ready=False`` to get the process without waiting (for start-up failures).
    Every server started is stopped at the end of the test.
    """
    started: list[ServerProcess] = []

    def start(
        *args: str,
        ready: bool = True,
        env: dict[str, str] | None = None,
        bind: bool = True,
        cwd: Path = ROOT,
    ) -> ServerProcess:
        argv = list(args)
        if bind:
            argv += ["--bind", "127.0.0.1:0"]
        server = ServerProcess(argv, env=env, cwd=cwd)
        started.append(server)
        if ready:
            server.wait_ready()
        return server

    yield start
    for server in started:
        server.stop()


def recv_all(sock: socket.socket, timeout: float = 10.0) -> bytes:
    """Read until the peer closes the connection (or ``timeout`` seconds pass)."""
    sock.settimeout(timeout)
    chunks = []
    while True:
        try:
            data = sock.recv(65536)
        except (TimeoutError, socket.timeout):
            break
        except ConnectionResetError:
            break
        if not data:
            break
        chunks.append(data)
    return b"".join(chunks)


def read_response(
    sock, timeout: float = 10.0, head: bool = False
) -> tuple[bytes, dict[str, str], bytes]:
    """Read exactly one final HTTP/1.1 response: (status line, lower-cased headers, body).

    Interim 1xx responses are skipped. Understands Content-Length and chunked
    framing; with neither, reads to EOF. Repeated headers are joined with ", ".
    ``head=True`` reads the answer to a HEAD request (no body whatever the headers).
    Fails if bytes follow the response on a plain socket (use read_responses()
    for pipelining).
    """
    stream = sock if isinstance(sock, Stream) else Stream(sock)
    stream.settimeout(timeout)
    while True:
        status, headers, body = _read_one(stream, head)
        if not status.split(b" ")[1].startswith(b"1"):
            break
    if stream.pending and stream is not sock:
        raise AssertionError(f"bytes after the response: {stream.pending[:200]!r}")
    return status, headers, body


def read_responses(sock: socket.socket, count: int, timeout: float = 10.0):
    """Read ``count`` pipelined responses from one connection, in order."""
    stream = Stream(sock)
    return [read_response(stream, timeout) for _ in range(count)]


class Stream:
    """A socket with a push-back buffer, so one response's extra bytes feed the next."""

    def __init__(self, sock: socket.socket):
        self.sock, self.pending = sock, b""

    def settimeout(self, t: float) -> None:
        self.sock.settimeout(t)

    def fill(self) -> None:
        data = self.sock.recv(65536)
        if not data:
            raise AssertionError(f"connection closed mid-response; have {self.pending[:200]!r}")
        self.pending += data

    def take(self, n: int) -> bytes:
        while len(self.pending) < n:
            self.fill()
        data, self.pending = self.pending[:n], self.pending[n:]
        return data

    def line(self) -> bytes:
        while b"\r\n" not in self.pending:
            self.fill()
        data, _, self.pending = self.pending.partition(b"\r\n")
        return data

    def rest(self, timeout: float) -> bytes:
        data, self.pending = self.pending + recv_all(self.sock, timeout), b""
        return data


def _read_one(stream: Stream, head: bool) -> tuple[bytes, dict[str, str], bytes]:
    status = stream.line()
    headers: dict[str, str] = {}
    while True:
        line = stream.line()
        if not line:
            break
        name, _, value = line.decode("latin-1").partition(":")
        key = name.strip().lower()
        headers[key] = f"{headers[key]}, {value.strip()}" if key in headers else value.strip()
    code = status.split(b" ")[1]
    if head or code.startswith(b"1") or code in (b"204", b"304"):
        return status, headers, b""
    if "content-length" in headers:
        return status, headers, stream.take(int(headers["content-length"]))
    if "chunked" in headers.get("transfer-encoding", ""):
        body = b""
        while True:
            size = int(stream.line().split(b";")[0], 16)
            if size == 0:
                while stream.line():
                    pass
                return status, headers, body
            body += stream.take(size)
            assert stream.take(2) == b"\r\n", "chunk data not followed by CRLF"
    return status, headers, stream.rest(10.0)


def is_closed(sock: socket.socket, timeout: float = 5.0) -> bool:
    """True when the peer closed the connection (EOF or reset) within ``timeout``."""
    sock.settimeout(timeout)
    try:
        return sock.recv(1) == b""
    except ConnectionResetError:
        return True
    except (TimeoutError, socket.timeout):
        return False


# --- helpers added for the test modules (the ones above are unchanged) -------------------


def request_bytes(
    method: str = "GET",
    target: str = "/",
    headers: list[tuple[str, str]] | None = None,
    body: bytes = b"",
    version: str = "HTTP/1.1",
    host: str | None = "127.0.0.1",
) -> bytes:
    """One HTTP request as raw bytes. Adds Host (unless ``host=None``) and, when a body is
    given and no framing header was, Content-Length."""
    headers = list(headers or [])
    names = {name.lower() for name, _ in headers}
    if host is not None and "host" not in names:
        headers.insert(0, ("Host", host))
    if body and "content-length" not in names and "transfer-encoding" not in names:
        headers.append(("Content-Length", str(len(body))))
    head = f"{method} {target} {version}\r\n" + "".join(f"{n}: {v}\r\n" for n, v in headers)
    return head.encode("latin-1") + b"\r\n" + body


def exchange(server, data: bytes, head: bool = False, timeout: float = 10.0):
    """Send ``data`` on a new connection and read one response: (status, headers, body)."""
    with server.connect(timeout) as sock:
        sock.sendall(data)
        return read_response(sock, timeout, head=head)


def recv_until_closed(sock: socket.socket, timeout: float = 10.0) -> tuple[bytes, bool]:
    """Read until the peer closes: (bytes received, True if it closed within ``timeout``)."""
    sock.settimeout(timeout)
    deadline = time.monotonic() + timeout
    chunks = []
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            return b"".join(chunks), False
        sock.settimeout(left)
        try:
            data = sock.recv(65536)
        except (TimeoutError, socket.timeout):
            return b"".join(chunks), False
        except ConnectionResetError:
            return b"".join(chunks), True
        if not data:
            return b"".join(chunks), True
        chunks.append(data)


def split_head(raw: bytes) -> tuple[bytes, dict[str, list[str]], bytes]:
    """Split raw response bytes at the end of the head: (status line, headers, rest).

    Headers map lower-cased names to every value sent, in order, so duplicates show.
    """
    head, sep, rest = raw.partition(b"\r\n\r\n")
    assert sep, f"no end of head in {raw[:300]!r}"
    status, *lines = head.split(b"\r\n")
    headers: dict[str, list[str]] = {}
    for line in lines:
        name, _, value = line.decode("latin-1").partition(":")
        headers.setdefault(name.strip().lower(), []).append(value.strip())
    return status, headers, rest


def wait_until(predicate, timeout: float = 10.0, interval: float = 0.05) -> bool:
    """Poll ``predicate()`` until it is true or ``timeout`` seconds pass; returns its last value."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value or time.monotonic() >= deadline:
            return value
        time.sleep(interval)


def decode_chunked(data: bytes) -> tuple[bytes, bool]:
    """Decode as much chunked framing as ``data`` holds: (body so far, saw the last chunk)."""
    body = b""
    while True:
        line, sep, rest = data.partition(b"\r\n")
        if not sep:
            return body, False
        size = int(line.split(b";")[0], 16)
        if size == 0:
            return body, True
        if len(rest) < size + 2:
            return body + rest[:size], False
        body, data = body + rest[:size], rest[size + 2 :]


def fetch_truncated(server, raw_request: bytes, timeout: float = 10.0):
    """Send a request whose response must break off after the head went out.

    Asserts the server closed the connection within ``timeout`` and that the framing
    shows the body is incomplete (a client can tell it was cut off), then returns
    (status line, headers as in split_head, body bytes received).
    """
    with server.connect(timeout) as sock:
        sock.sendall(raw_request)
        raw, closed = recv_until_closed(sock, timeout)
    assert closed, f"connection not closed after a failed body; got {raw[:300]!r}"
    status, headers, rest = split_head(raw)
    if headers.get("transfer-encoding") == ["chunked"]:
        body, complete = decode_chunked(rest)
        assert not complete, "a broken response ended with a clean last chunk"
    else:
        assert "content-length" in headers, "a cut-off body must be detectable by its framing"
        body = rest
        assert len(body) < int(headers["content-length"][0])
    return status, headers, body


def wait_for_log_line(server, pattern: str, ignore: str = "", timeout: float = 10.0) -> str:
    """Wait for a log line that starts in column 0 (not a quoted source line of a
    traceback) and matches ``pattern`` once every ``ignore`` text is removed from it, so
    a request path that happens to contain the keyword cannot be what matched."""
    rx = re.compile(pattern)

    def find() -> str | None:
        for line in list(server.lines):
            text = line.replace(ignore, "") if ignore else line
            if text[:1].strip() and rx.search(text):
                return line
        return None

    found = wait_until(find, timeout)
    assert found, f"no log line matching {pattern!r} (ignoring {ignore!r}); log:\n{server.log}"
    return found


@pytest.fixture(scope="module")
def start_module_server() -> Iterator:
    """Like ``start_server``, but each server lives until the end of the test module.

    For modules whose tests only read from one server (the environ and wsgi.input
    echoes), so they do not pay a server start each. Tests that assert on the log or
    stop the server use ``start_server``.
    """
    started: list[ServerProcess] = []

    def start(*args: str, env: dict[str, str] | None = None, cwd: Path = ROOT) -> ServerProcess:
        server = ServerProcess([*args, "--bind", "127.0.0.1:0"], env=env, cwd=cwd)
        started.append(server)
        server.wait_ready()
        return server

    yield start
    for server in started:
        server.stop()
