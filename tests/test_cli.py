"""The ``ferrowsgi`` command (issue 2, "Command line"): the demo app, --version, --help,
APP forms and their errors, binds, environment variables, the access log and graceful
stop on SIGTERM/SIGINT."""

import importlib.metadata
import json
import re
import signal
import socket
import subprocess
import sys
import sysconfig
import threading
import time
from pathlib import Path

import pytest
from conftest import ROOT, exchange, read_response, request_bytes, wait_until

OPTIONS = [
    "--bind",
    "--threads",
    "--keep-alive",
    "--max-body-size",
    "--graceful-timeout",
    "--access-log",
    "--log-level",
    "--version",
    "--help",
]


def run_cli(*args, timeout=30):
    return subprocess.run(
        [sys.executable, "-m", "ferrowsgi", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=ROOT,
    )


def get(server, path="/"):
    status, headers, body = exchange(server, request_bytes("GET", path))
    assert status == b"HTTP/1.1 200 OK", body
    return body


def failed_start(start_server, *args, **kwargs):
    """Start a server that must refuse to start: (exit status, everything it printed)."""
    server = start_server(*args, ready=False, **kwargs)
    try:
        server.proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        pytest.fail("the server kept running; log:\n" + server.log)
    return server.stop(), server.log


def test_no_app_serves_the_demo_app(start_server):
    server = start_server()
    body = get(server, "/demo?x=1")
    assert b"Hello world!" in body
    assert b"REQUEST_METHOD" in body and b"/demo" in body


def test_version_matches_the_installed_package():
    result = run_cli("--version")
    assert result.returncode == 0
    assert importlib.metadata.version("ferrowsgi") in result.stdout + result.stderr


def test_console_script_is_the_same_command():
    script = Path(sysconfig.get_path("scripts")) / "ferrowsgi"
    result = subprocess.run([str(script), "--version"], capture_output=True, text=True, timeout=30)
    assert result.returncode == 0
    assert importlib.metadata.version("ferrowsgi") in result.stdout + result.stderr


def test_help_lists_every_option():
    result = run_cli("--help")
    assert result.returncode == 0
    for option in OPTIONS:
        assert option in result.stdout, f"--help does not mention {option}"


BAD_APPS = [
    ("no_such_module_xyz:app", "no_such_module_xyz"),
    ("environ_app:no_such_attr", "no_such_attr"),
    ("environ_app:NOT_CALLABLE", "NOT_CALLABLE"),
    ("names_none", "names_none"),
    ("tests/apps/no_such_file.py:app", "no_such_file.py"),
    ("factory_app:no_such_factory()", "no_such_factory"),
]


@pytest.mark.parametrize("app, culprit", BAD_APPS)
def test_wrong_app_exits_1_with_one_clear_line(start_server, app, culprit):
    status, log = failed_start(start_server, app)
    assert status == 1
    assert "Traceback" not in log
    assert not re.search(r'^\s+File "', log, re.M), "a traceback frame was printed"
    # The start-up line "Application: APP" names it too; the error is the other one.
    naming = [
        line for line in log.splitlines() if culprit in line and "] Application: " not in line
    ]
    assert len(naming) == 1, f"want one line naming {culprit!r}; log:\n{log}"
    assert "Listening at" not in log


def test_port_in_use_exits_1_with_one_clear_line(start_server):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        status, log = failed_start(
            start_server, "environ_app:app", "--bind", f"127.0.0.1:{port}", bind=False
        )
    assert status == 1
    assert "Traceback" not in log
    lines = [line for line in log.splitlines() if str(port) in line or "in use" in line]
    assert len(lines) == 1, log


@pytest.mark.parametrize(
    "app, expected",
    [
        ("tests/apps/file_app.py:app", b"loaded from a file"),
        ("tests/apps/file_app.py", b"loaded from a file"),
        ("names_both", b"picked application"),
        ("names_app_only", b"picked app"),
        ("names_both:app", b"picked app"),
    ],
)
def test_app_forms_and_default_names(start_server, app, expected):
    assert get(start_server(app)).startswith(expected)


def test_factory_is_called_once(start_server):
    server = start_server("factory_app:create_app()", "--threads", "2")
    assert {get(server) for _ in range(5)} == {b"factory calls: 1"}


@pytest.mark.parametrize("env, expected", [({}, False), ({"FERROWSGI_THREADS": "4"}, True)])
def test_ferrowsgi_threads_environment_variable(start_server, env, expected):
    server = start_server("environ_app:app", env=env)
    assert json.loads(get(server))["wsgi.multithread"] is expected


def test_chdir_imports_from_and_runs_in_the_directory(start_server, tmp_path):
    (tmp_path / "chdir_probe.py").write_text(
        "import os\n\n\ndef app(environ, start_response):\n"
        "    start_response('200 OK', [('Content-Type', 'text/plain')])\n"
        "    return [os.getcwd().encode()]\n"
    )
    server = start_server("chdir_probe:app", "--chdir", str(tmp_path))
    assert Path(get(server).decode()).resolve() == tmp_path.resolve()


def test_every_bind_is_served(start_server):
    server = start_server("environ_app:app", "-b", "127.0.0.1:0")
    wait_until(lambda: len(re.findall(r"Listening at: http://127\.0\.0\.1:(\d+)", server.log)) >= 2)
    ports = {int(p) for p in re.findall(r"Listening at: http://127\.0\.0\.1:(\d+)", server.log)}
    assert len(ports) == 2
    for port in ports:
        with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
            sock.sendall(request_bytes("GET", "/", host=f"127.0.0.1:{port}"))
            status, _, body = read_response(sock)
        assert status == b"HTTP/1.1 200 OK"
        assert json.loads(body)["SERVER_PORT"] == str(port)


def test_unix_socket_bind(start_server, tmp_path):
    path = tmp_path / "ferrowsgi.sock"
    start_server("environ_app:app", "--bind", f"unix:{path}")
    with socket.socket(socket.AF_UNIX) as sock:
        sock.settimeout(10)
        sock.connect(str(path))
        sock.sendall(request_bytes("GET", "/over-unix"))
        status, _, body = read_response(sock)
    assert status == b"HTTP/1.1 200 OK"
    assert json.loads(body)["PATH_INFO"] == "/over-unix"


ACCESS_LINE = (
    r'^127\.0\.0\.1 - - \[[^\]]+\] "GET /probe\?q=1 HTTP/1\.1" 200 (\d+) '
    r'"http://referer\.example/" "probe-agent/1\.0"\s+(\d+)'
)


def access_probe(server):
    headers = [("Referer", "http://referer.example/"), ("User-Agent", "probe-agent/1.0")]
    status, _, body = exchange(server, request_bytes("GET", "/probe?q=1", headers))
    assert status == b"HTTP/1.1 200 OK"
    return body


def test_access_log_to_stdout_is_combined_format_with_microseconds(start_server):
    server = start_server("sleep_app:app", "--access-log", "-")
    body = access_probe(server)
    m = server.wait_for_log(ACCESS_LINE)
    assert int(m.group(1)) == len(body)
    assert int(m.group(2)) >= 50_000, "request time is not in microseconds (app slept 50 ms)"


def test_access_log_to_a_file(start_server, tmp_path):
    path = tmp_path / "access.log"
    server = start_server("sleep_app:app", "--access-log", str(path))
    access_probe(server)
    assert wait_until(lambda: path.exists() and "/probe?q=1" in path.read_text())
    assert re.search(ACCESS_LINE, path.read_text(), re.M)


def test_access_log_is_off_by_default(start_server):
    server = start_server("sleep_app:app")
    access_probe(server)
    server.stop()
    assert "/probe?q=1" not in server.log


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_stop_signal_lets_the_request_in_flight_finish(start_server, sig):
    server = start_server("sleep_app:app", "--threads", "2", "--graceful-timeout", "10")
    result = {}

    def slow_request():
        result["answer"] = exchange(server, request_bytes("GET", "/s?ms=1500&msg=slow-began"))

    worker = threading.Thread(target=slow_request)
    worker.start()
    server.wait_for_log("slow-began")
    stopped_at = time.monotonic()
    server.proc.send_signal(sig)
    assert wait_until(lambda: not _accepts(server), 5), "still accepting after the stop signal"
    worker.join(15)
    assert result["answer"][0] == b"HTTP/1.1 200 OK"
    assert result["answer"][2] == b"/s?ms=1500&msg=slow-began"
    assert server.proc.wait(15) == 0
    assert time.monotonic() - stopped_at < 6, "waited for the graceful timeout with nothing to do"


@pytest.mark.parametrize("workers", ["0", "1"])
def test_a_connection_accepted_before_the_stop_gets_its_first_request_answered(
    start_server, workers
):
    """A client that connected just before a graceful stop (a reload, a recycled worker)
    and sends its request a moment later is answered, not closed unanswered."""
    server = start_server("sleep_app:app", "--workers", workers, "--graceful-timeout", "10")
    with server.connect() as sock:
        time.sleep(0.3)  # accepted by the server, no byte sent yet
        server.proc.send_signal(signal.SIGTERM)
        time.sleep(0.2)
        sock.sendall(request_bytes("GET", "/s?ms=0&msg=late"))
        status, _, body = read_response(sock)
    assert status == b"HTTP/1.1 200 OK"
    assert body == b"/s?ms=0&msg=late"
    assert server.proc.wait(15) == 0


def test_graceful_timeout_bounds_the_stop(start_server):
    server = start_server("sleep_app:app", "--threads", "2", "--graceful-timeout", "1")
    with server.connect() as sock:
        sock.sendall(request_bytes("GET", "/s?ms=20000&msg=stuck-began"))
        server.wait_for_log("stuck-began")
        stopped_at = time.monotonic()
        server.proc.send_signal(signal.SIGTERM)
        server.proc.wait(15)
        assert time.monotonic() - stopped_at < 5, "the stop outlasted --graceful-timeout 1"


def _accepts(server) -> bool:
    try:
        with socket.create_connection((server.host, server.port), timeout=1) as sock:
            sock.sendall(request_bytes("GET", "/s?ms=0"))
            sock.settimeout(1)
            return sock.recv(1) != b""
    except OSError:
        return False
