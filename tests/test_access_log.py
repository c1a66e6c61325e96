"""The access log's formats and the log lines users asked for (issue 13).

Real server subprocesses, real sockets. The access log goes to stdout, the error
log to stderr; the fixture reads both, one line each, in order.
"""

from __future__ import annotations

import base64
import json
import os
import re
import shutil
import signal
import socket
import threading
import time
from datetime import datetime, timezone

from conftest import APPS, exchange, request_bytes, wait_until

APP = "access_app:app"
BASIC = "Basic " + base64.b64encode(b"alice:s3cret:with:colons").decode()


def access_lines(server, start: str = "127.0.0.1 ") -> list[str]:
    return [line for line in server.lines if line.startswith(start)]


def wait_access(server, needle: str, start: str = "127.0.0.1 ") -> str:
    """The first access-log line (starting with ``start``) that contains ``needle``."""
    found: list[str] = []

    def find() -> bool:
        found[:] = [line for line in access_lines(server, start) if needle in line]
        return bool(found)

    assert wait_until(find), f"no access-log line with {needle!r}; log:\n{server.log}"
    return found[0]


def get(server, target: str, headers: list[tuple[str, str]] | None = None):
    status, response_headers, body = exchange(server, request_bytes("GET", target, headers))
    return status, response_headers, body


def test_default_line_is_combined_with_microseconds_atom_by_atom(start_server):
    server = start_server(APP, "--workers", "0", "--access-log", "-")
    before = datetime.now(timezone.utc).replace(microsecond=0)
    headers = [("Referer", "http://ref.example/a"), ("User-Agent", "probe/1.0"),
               ("Authorization", BASIC)]  # fmt: skip
    status, _, body = get(server, "/sleep?ms=60", headers)
    assert status == b"HTTP/1.1 200 OK"
    line = wait_access(server, "/sleep?ms=60")
    clf = r'(\S+) (\S+) (\S+) \[([^\]]+)\] "([^"]*)" (\d+) (\d+) "([^"]*)" "([^"]*)" (\d+)'
    m = re.fullmatch(clf, line)
    assert m, line
    h, ident, u, t, r, s, b, f, a, d = m.groups()
    assert (h, ident, u) == ("127.0.0.1", "-", "alice")
    when = datetime.strptime(t, "%d/%b/%Y:%H:%M:%S %z")
    assert when.utcoffset().total_seconds() == 0
    assert before <= when <= datetime.now(timezone.utc)
    assert r == "GET /sleep?ms=60 HTTP/1.1"
    assert (int(s), int(b)) == (200, len(body))
    assert (f, a) == ("http://ref.example/a", "probe/1.0")
    assert 60_000 <= int(d) < 5_000_000, "request time in microseconds (the app slept 60 ms)"


ATOMS = ["h", "l", "u", "t", "r", "m", "U", "q", "H", "s", "B", "b", "f", "a", "T", "M", "D",
         "L", "p", "{x-foo}i", "{X-FOO}i", "{content-type}o", "{X-Bar}o", "{ACCESS_TEST_VAR}e",
         "{HTTP_X_FOO}e", "{path_info}e", "{QUERY_STRING}e", "{x-absent}i", "zz"]  # fmt: skip
CUSTOM = " | ".join(f"%({atom})s" for atom in ATOMS) + " | 100%%"


def test_custom_format_every_atom(start_server):
    server = start_server(APP, "--workers", "0", "--access-log", "-",
                          "--access-log-format", CUSTOM,
                          env={"ACCESS_TEST_VAR": "from-env"})  # fmt: skip
    headers = [("X-Foo", 'fo"o'), ("Authorization", BASIC), ("Referer", "r"),
               ("User-Agent", "ua")]  # fmt: skip
    status, _, body = get(server, "/sleep/caf%C3%A9?ms=30&x=1", headers)
    assert status == b"HTTP/1.1 200 OK"
    line = wait_access(server, "/sleep/caf")
    values = dict(zip(ATOMS + ["literal"], line.split(" | "), strict=True))
    assert values["h"] == "127.0.0.1" and values["l"] == "-" and values["u"] == "alice"
    assert re.fullmatch(r"\[\d\d/\w{3}/\d{4}:\d\d:\d\d:\d\d \+0000\]", values["t"])
    assert values["r"] == "GET /sleep/caf%C3%A9?ms=30&x=1 HTTP/1.1"
    assert values["m"] == "GET"
    assert values["U"] == "/sleep/café", "U is PATH_INFO: percent-decoded"
    assert values["q"] == "ms=30&x=1" and values["H"] == "HTTP/1.1"
    assert values["s"] == "200"
    assert values["B"] == values["b"] == str(len(body))
    assert values["f"] == "r" and values["a"] == "ua"
    micros = int(values["D"])
    assert micros >= 30_000
    assert values["T"] == str(micros // 1_000_000)
    assert values["M"] == str(micros // 1_000)
    assert values["L"] == f"{micros // 1_000_000}.{micros % 1_000_000:06d}"
    assert values["p"] == f"<{server.proc.pid}>"
    assert values["{x-foo}i"] == values["{X-FOO}i"] == 'fo\\"o', "escaped, any case"
    assert values["{content-type}o"] == "text/plain; charset=utf-8"
    assert values["{X-Bar}o"] == "baz"
    assert values["{ACCESS_TEST_VAR}e"] == "from-env"
    assert values["{HTTP_X_FOO}e"] == 'fo\\"o'
    assert values["{path_info}e"] == "/sleep/café"
    assert values["{QUERY_STRING}e"] == "ms=30&x=1"
    assert values["{x-absent}i"] == "-" and values["zz"] == "-", "gunicorn: unknown is '-'"
    assert values["literal"] == "100%"


def test_user_is_a_dash_without_basic_credentials(start_server):
    fmt = "%(u)s %(r)s"
    server = start_server(APP, "--workers", "0", "--access-log", "-",
                          "--access-log-format", fmt)  # fmt: skip
    cases = {"/bearer": "Bearer abc", "/garbage": "Basic %%%", "/none": None,
             "/empty-user": "Basic " + base64.b64encode(b":pw").decode()}  # fmt: skip
    for path, value in cases.items():
        get(server, path, [("Authorization", value)] if value else [])
    for path in cases:
        line = wait_access(server, f"GET {path} ", start="")
        assert line.split(" ", 1)[0] in ("-", ""), line
    assert wait_access(server, "GET /empty-user ", start="").startswith(" GET")


def test_json_access_log(start_server):
    server = start_server(APP, "--workers", "0", "--access-log", "-",
                          "--access-log-format", "json")  # fmt: skip
    headers = [("Referer", "http://ref/"), ("User-Agent", 'agent "7"'),
               ("X-Request-ID", "req-42"), ("Authorization", BASIC)]  # fmt: skip
    _, _, body = get(server, "/sleep/x%20y?ms=20&a=b", headers)
    get(server, "/plain")
    assert wait_until(lambda: len([ln for ln in server.lines if ln.startswith("{")]) >= 2)
    lines = [json.loads(line) for line in server.lines if line.startswith("{")]
    first, second = lines[:2]
    assert list(first) == ["time", "remote_addr", "user", "method", "path", "query",
                           "protocol", "status", "bytes", "duration", "referer",
                           "user_agent", "request_id"]  # fmt: skip
    when = datetime.fromisoformat(first["time"].replace("Z", "+00:00"))
    assert abs((datetime.now(timezone.utc) - when).total_seconds()) < 60
    assert first["remote_addr"] == "127.0.0.1" and first["user"] == "alice"
    assert (first["method"], first["path"], first["query"]) == ("GET", "/sleep/x%20y", "ms=20&a=b")
    assert first["protocol"] == "HTTP/1.1"
    assert first["status"] == 200 and first["bytes"] == len(body)
    assert 0.02 <= first["duration"] < 5
    assert first["referer"] == "http://ref/" and first["user_agent"] == 'agent "7"'
    assert first["request_id"] == "req-42"
    assert second["path"] == "/plain" and second["query"] == ""
    assert second["referer"] is None and second["user"] is None
    assert "request_id" not in second, "only when the request had one"


def test_json_error_log_keeps_the_traceback_in_one_field(start_server):
    server = start_server(APP, "--workers", "0", "--log-format", "json")
    status, _, _ = get(server, "/boom")
    assert status == b"HTTP/1.1 500 Internal Server Error"
    assert wait_until(lambda: any("traceback" in line for line in server.lines))
    server.stop()
    entries = [json.loads(line) for line in server.lines if line.strip()]  # every line is JSON
    error = next(e for e in entries if "traceback" in e)
    assert error["level"] == "ERROR"
    assert error["message"] == "Error handling request GET /boom"
    assert error["traceback"].startswith("Traceback (most recent call last):")
    assert "RuntimeError: boom!" in error["traceback"]
    assert error["pid"] == server.proc.pid
    assert {"time", "level", "pid", "message"} <= set(entries[0])
    assert any(e["message"].startswith("Listening at: http://") for e in entries)


def send_raw(server, data: bytes) -> bytes:
    with server.connect() as sock:
        sock.sendall(data)
        sock.shutdown(socket.SHUT_WR)
        chunks = []
        while chunk := sock.recv(65536):
            chunks.append(chunk)
    return b"".join(chunks)


def test_refused_requests_are_in_the_access_log(start_server):
    server = start_server(APP, "--workers", "0", "--access-log", "-",
                          "--limit-request-fields", "5", "--max-body-size", "100")  # fmt: skip
    many = "".join(f"X-{i}: v\r\n" for i in range(10))
    answer = send_raw(server, f"GET /many HTTP/1.1\r\nHost: x\r\n{many}\r\n".encode())
    assert answer.startswith(b"HTTP/1.1 431 ")
    line = wait_access(server, '" 431 ')
    assert re.fullmatch(r'127\.0\.0\.1 - - \[[^\]]+\] "-" 431 \d+ "-" "-" \d+', line), line
    answer = send_raw(server, b"BAD REQUEST LINE\r\n\r\n")
    assert answer.startswith(b"HTTP/1.1 400 ")
    assert re.search(r'"-" 400 \d+ ', wait_access(server, '" 400 '))
    big = request_bytes("POST", "/upload", [("Content-Length", "1000")])
    assert send_raw(server, big).startswith(b"HTTP/1.1 413 ")
    line = wait_access(server, '" 413 ')
    assert '"POST /upload HTTP/1.1" 413 ' in line, "the head was read: its request line is known"
    status, _, _ = get(server, "/after")
    assert status == b"HTTP/1.1 200 OK", "still serving"


def test_startup_states_application_workers_threads_listeners(start_server):
    server = start_server(APP, "--workers", "2", "--threads", "3")
    server.wait_for_log(r"\[INFO\] Application: access_app:app$")
    server.wait_for_log(rf"\[INFO\] Workers: 2 \(master pid {server.proc.pid}\)$")
    server.wait_for_log(r"\[INFO\] Threads: 3 per worker$")
    server.wait_for_log(rf"\[INFO\] Listening at: http://127\.0\.0\.1:{server.port} \(\d+\)$")
    one = start_server(APP, "--workers", "0")
    one.wait_for_log(r"\[INFO\] Workers: 0 \(this process serves; no master\)$")
    one.wait_for_log(r"\[INFO\] Threads: 1 per worker \(the I/O thread calls the application\)$")


def test_workers_0_logs_the_graceful_stop_when_it_begins(start_server):
    server = start_server(APP, "--workers", "0", "--threads", "2", "--graceful-timeout", "7")
    result = {}

    def slow() -> None:
        result["status"] = get(server, "/sleep?ms=1500")[0]

    thread = threading.Thread(target=slow)
    thread.start()
    time.sleep(0.3)  # the request is in the application (it sleeps 1.5 s)
    server.proc.send_signal(signal.SIGTERM)
    server.wait_for_log(r"\[INFO\] Stopping gracefully \(SIGTERM, up to 7s\)$", 1.0)
    assert thread.is_alive(), "logged when the stop began, not after the drain"
    thread.join(10)
    assert result["status"] == b"HTTP/1.1 200 OK"
    server.wait_for_log(r"Shutting down")
    assert server.log.index("Stopping gracefully") < server.log.index("Shutting down")


def test_reload_names_the_changed_file(start_server, tmp_path):
    shutil.copy(APPS / "access_app.py", tmp_path / "reloaded_app.py")
    server = start_server("reloaded_app:app", "--reload", cwd=tmp_path,
                          env={"PYTHONPATH": str(tmp_path)})  # fmt: skip
    time.sleep(1.2)  # past the reloader's first scan
    path = tmp_path / "reloaded_app.py"
    path.write_text(path.read_text() + "\n# changed\n")
    os.utime(path, (time.time() + 5, time.time() + 5))  # a new mtime, whatever the clock
    server.wait_for_log(
        rf"\[INFO\] Reloading: {re.escape(str(path))} changed, restarting workers", 15
    )


def test_gunicorn_config_file_access_log_settings(start_server, tmp_path):
    config = tmp_path / "gunicorn.conf.py"
    config.write_text("accesslog = '-'\n"
                      "access_log_format = '%(h)s %(s)s \"%(r)s\" %({x-foo}i)s'\n")  # fmt: skip
    server = start_server(APP, "--workers", "0", "-c", str(config))
    get(server, "/from-config", [("X-Foo", "bar")])
    assert wait_access(server, "/from-config") == '127.0.0.1 200 "GET /from-config HTTP/1.1" bar'
    flag = start_server(APP, "--workers", "0", "--access-log", "-",
                        "--access-logformat", "%(m)s:%(U)s")  # fmt: skip
    get(flag, "/gunicorn-flag")
    assert wait_access(flag, "GET:/gunicorn-flag", start="GET:") == "GET:/gunicorn-flag"


def test_a_bad_format_is_refused_at_start_up(start_server):
    server = start_server(APP, "--access-log-format", "%(h)s 100% sure", ready=False)
    assert server.proc.wait(30) == 2
    server.wait_for_log(r"ferrowsgi: error: --access-log-format: '%' at offset 9 starts no")


def test_refused_http2_stream_is_in_the_access_log(start_server):
    import httpx

    server = start_server(APP, "--workers", "0", "--access-log", "-",
                          "--limit-request-fields", "5")  # fmt: skip
    many = {f"x-{i}": "v" for i in range(10)}
    with httpx.Client(http1=False, http2=True, timeout=10) as client:
        refused = client.get(f"{server.url}/h2-many", headers=many)
        served = client.get(f"{server.url}/h2-after")
    assert refused.status_code == 431 and served.status_code == 200
    line = wait_access(server, "/h2-many")
    assert '"GET /h2-many HTTP/2.0" 431 ' in line, line
    wait_access(server, '"GET /h2-after HTTP/2.0" 200 ')
