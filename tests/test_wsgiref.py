"""What a new user hit (issue 10): ``make_server`` as wsgiref's drop-in (the access log,
``handle_request``, ``socket``, ``set_app``, host names), a header of the wrong type,
Ctrl-C on ``--workers 0`` started from a non-interactive shell, ``--max-requests``
exactness, the two kinds of worker timeout, and an application that fails at import.

The ``make_server`` cases run a small script in an interpreter of its own, as a user
would; the others run the ``ferrowsgi`` command (the ``start_server`` fixture). Every
wait has a deadline.
"""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import textwrap
import time

import pytest
from conftest import APPS, ROOT, exchange, request_bytes, wait_for_log_line

RESULT = "RESULT "


# --- helpers ----------------------------------------------------------------------------


def run_script(tmp_path, source: str, *args: str, timeout: float = 15.0):
    """Run ``source`` in a new interpreter: (its RESULT value, other stdout lines, stderr).

    The script prints one line ``RESULT <json>`` on stdout; every other stdout line
    (the access log) is returned apart. The script is killed after ``timeout``.
    """
    path = tmp_path / "script.py"
    path.write_text(textwrap.dedent(source))
    env = dict(os.environ, PYTHONPATH=str(ROOT), PYTHONUNBUFFERED="1")
    proc = subprocess.Popen(
        [sys.executable, str(path), *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        cwd=tmp_path,
    )
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, err = proc.communicate()
        raise AssertionError(f"script did not finish; stdout={out!r} stderr={err!r}") from None
    lines = out.splitlines()
    results = [line[len(RESULT) :] for line in lines if line.startswith(RESULT)]
    assert results, f"no result; status {proc.returncode}; stdout={out!r} stderr={err!r}"
    others = [line for line in lines if not line.startswith(RESULT)]
    return json.loads(results[-1]), others, err


def resolved(name: str) -> set[str]:
    """The addresses ``name`` resolves to (fails the test if it does not resolve)."""
    try:
        infos = socket.getaddrinfo(name, None, type=socket.SOCK_STREAM)
    except socket.gaierror as e:
        raise AssertionError(f"{name!r} does not resolve on this machine: {e}") from None
    return {info[4][0] for info in infos}


def _ignore_sigint() -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def start_with_sigint_ignored(start_server, monkeypatch, *args: str):
    """Start the server as a background job of a non-interactive shell does: with
    SIGINT ignored from before exec. Returns the ready ServerProcess."""
    real_popen = subprocess.Popen

    def popen(*a, **kw):
        return real_popen(*a, preexec_fn=_ignore_sigint, **kw)

    with monkeypatch.context() as patch:
        patch.setattr(subprocess, "Popen", popen)
        server = start_server(*args, ready=False)
    server.wait_ready()
    return server


def wait_exit(server, timeout: float) -> int | None:
    """The exit status within ``timeout`` seconds, or None if it is still running."""
    try:
        return server.proc.wait(timeout)
    except subprocess.TimeoutExpired:
        return None


# --- make_server: the access log ---------------------------------------------------------

ACCESS_LOG = """
import json, sys, threading, urllib.request
from ferrowsgi import make_server

def hello(environ, start_response):
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", "5")])
    return [b"hello"]

httpd = make_server("127.0.0.1", 0, hello, **json.loads(sys.argv[1]))
thread = threading.Thread(target=httpd.serve_forever, daemon=True)
thread.start()
request = urllib.request.Request(
    f"http://127.0.0.1:{httpd.server_port}/hello?x=1",
    headers={"Referer": "http://referer.example/", "User-Agent": "rough-agent/1.0"},
)
with urllib.request.urlopen(request, timeout=10) as resp:
    answer = [resp.status, resp.read().decode()]
httpd.shutdown()
thread.join(10)
httpd.server_close()
print("RESULT " + json.dumps({"answer": answer, "stopped": not thread.is_alive()}), flush=True)
"""

COMBINED = re.compile(
    r"^127\.0\.0\.1 - - \[\d\d/\w{3}/\d{4}:\d\d:\d\d:\d\d [+-]\d{4}\] "
    r'"GET /hello\?x=1 HTTP/1\.1" 200 5 "http://referer\.example/" "rough-agent/1\.0"'
)


def test_make_server_logs_each_request_on_stdout_in_combined_format(tmp_path):
    result, stdout, stderr = run_script(tmp_path, ACCESS_LOG, "{}")
    assert result == {"answer": [200, "hello"], "stopped": True}, stderr
    assert len(stdout) == 1, stdout
    assert COMBINED.search(stdout[0]), stdout
    assert "/hello" not in stderr  # on stdout, as wsgiref prints it, not in the error log


def test_make_server_access_log_none_logs_no_request(tmp_path):
    result, stdout, stderr = run_script(tmp_path, ACCESS_LOG, '{"access_log": null}')
    assert result == {"answer": [200, "hello"], "stopped": True}, stderr
    assert stdout == []
    assert "/hello" not in stderr


# --- make_server: handle_request, set_app, socket -----------------------------------------

HANDLE_REQUEST = """
import json, os, threading, urllib.request
from ferrowsgi import make_server

def named(name):
    def app(environ, start_response):
        body = f"{name} {environ['PATH_INFO']}".encode()
        start_response("200 OK", [("Content-Type", "text/plain"),
                                  ("Content-Length", str(len(body)))])
        return [body]
    return app

httpd = make_server("127.0.0.1", 0, named("first"), access_log=None)
url = f"http://127.0.0.1:{httpd.server_port}"
steps = []

def handle_one(path, app=None):
    if app is not None:
        httpd.set_app(app)
    thread = threading.Thread(target=httpd.handle_request, daemon=True)
    thread.start()
    try:
        with urllib.request.urlopen(url + path, timeout=5) as resp:
            body = resp.read().decode()
    except OSError as e:
        body = repr(e)
    thread.join(5)
    steps.append([body, "returned" if not thread.is_alive() else "still running"])
    return not thread.is_alive()

handle_one("/one") and handle_one("/two", named("second")) and handle_one("/three")
print("RESULT " + json.dumps(steps), flush=True)
os._exit(0)  # not waiting for a handle_request() that did not return
"""


def test_handle_request_serves_one_request_and_returns_each_time_it_is_called(tmp_path):
    steps, _, stderr = run_script(tmp_path, HANDLE_REQUEST)
    assert steps == [
        ["first /one", "returned"],
        ["second /two", "returned"],  # set_app() before it: the new application
        ["second /three", "returned"],
    ], stderr


SET_APP = """
import json, threading, urllib.request
from ferrowsgi import make_server

def named(name):
    def app(environ, start_response):
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [name.encode()]
    return app

httpd = make_server("127.0.0.1", 0, named("first"), access_log=None)
url = f"http://127.0.0.1:{httpd.server_port}/"

def get():
    with urllib.request.urlopen(url, timeout=10) as resp:
        return resp.read().decode()

seen = {}
thread = threading.Thread(target=httpd.serve_forever, daemon=True)
thread.start()
seen["before"] = get()
httpd.set_app(named("second"))
seen["same_run"] = get()
httpd.shutdown()
thread.join(10)
thread = threading.Thread(target=httpd.serve_forever, daemon=True)
thread.start()
seen["next_run"] = get()
try:
    httpd.set_app("not an application")
    seen["not_callable"] = "accepted"
except TypeError as e:
    seen["not_callable"] = str(e)
seen["after_refusal"] = get()
httpd.shutdown()
thread.join(10)
seen["stopped"] = not thread.is_alive()
httpd.server_close()
print("RESULT " + json.dumps(seen), flush=True)
"""


def test_set_app_takes_effect_from_the_next_serve_forever(tmp_path):
    seen, _, stderr = run_script(tmp_path, SET_APP)
    assert seen["before"] == "first", stderr
    assert seen["same_run"] == "first"  # the running serve_forever keeps its application
    assert seen["next_run"] == "second"
    assert "callable" in seen["not_callable"] and "str" in seen["not_callable"]
    assert seen["after_refusal"] == "second"
    assert seen["stopped"] is True


SOCKET = """
import json, socket, threading, urllib.request
from ferrowsgi import make_server

def hello(environ, start_response):
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [b"hello"]

httpd = make_server("127.0.0.1", 0, hello, access_log=None)
sock = httpd.socket
seen = {
    "server_address": list(httpd.server_address),
    "sockname": list(sock.getsockname()),
    "listening": sock.getsockopt(socket.SOL_SOCKET, socket.SO_ACCEPTCONN),
    "type": sock.type == socket.SOCK_STREAM,
    "same_object": httpd.socket is sock,
}
sock.close()  # a duplicate: the server keeps its own socket
thread = threading.Thread(target=httpd.serve_forever, daemon=True)
thread.start()
with urllib.request.urlopen(f"http://127.0.0.1:{httpd.server_port}/", timeout=10) as resp:
    seen["answer"] = resp.read().decode()
httpd.shutdown()
thread.join(10)
httpd.server_close()
try:
    seen["after_close"] = httpd.socket.fileno()  # wsgiref: the closed socket, fileno -1
except ValueError:
    seen["after_close"] = "ValueError"  # ferrowsgi's docstring
print("RESULT " + json.dumps(seen), flush=True)
"""


def test_socket_is_the_listening_socket_at_server_address(tmp_path):
    seen, _, stderr = run_script(tmp_path, SOCKET)
    assert seen["sockname"] == seen["server_address"], stderr
    assert seen["server_address"][0] == "127.0.0.1" and seen["server_address"][1] > 0
    assert seen["listening"] == 1
    assert seen["type"] is True
    assert seen["same_object"] is True
    assert seen["answer"] == "hello"  # closing httpd.socket did not stop the server
    assert seen["after_close"] in (-1, "ValueError")  # no longer a usable socket


HOST_NAME = """
import json, sys, threading, urllib.request
from ferrowsgi import make_server

def hello(environ, start_response):
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [environ["HTTP_HOST"].encode()]

name = sys.argv[1]
httpd = make_server(name, 0, hello, access_log=None)
thread = threading.Thread(target=httpd.serve_forever, daemon=True)
thread.start()
url = f"http://{name}:{httpd.server_port}/"
with urllib.request.urlopen(url, timeout=10) as resp:
    answer = [resp.status, resp.read().decode()]
httpd.shutdown()
thread.join(10)
httpd.server_close()
print("RESULT " + json.dumps({"address": list(httpd.server_address), "answer": answer}))
"""


@pytest.mark.parametrize("which", ["localhost", "hostname"])
def test_make_server_accepts_a_host_name(tmp_path, which):
    # The machine's own name is in /etc/hosts on Debian and Ubuntu (hosts and containers).
    name = "localhost" if which == "localhost" else socket.gethostname()
    addresses = resolved(name)
    seen, _, stderr = run_script(tmp_path, HOST_NAME, name)
    host, port = seen["address"]
    assert host in addresses, (seen, addresses, stderr)
    assert port > 0
    assert seen["answer"] == [200, f"{name}:{port}"]


# --- a header of the wrong type ------------------------------------------------------------


@pytest.mark.parametrize(
    "path, header, types",
    [
        ("/int-length", "('Content-Length', 5)", ("str", "int")),
        ("/bytes-value", "('Content-Type', b'text/plain')", ("str", "bytes")),
    ],
)
def test_a_header_of_the_wrong_type_is_a_500_naming_the_header(start_server, path, header, types):
    server = start_server("rough_header_app:app")
    status, _, body = exchange(server, request_bytes("GET", path))
    assert status == b"HTTP/1.1 500 Internal Server Error", body
    assert b"hello" not in body
    line = wait_for_log_line(server, re.escape(header), ignore=path)
    name_type, value_type = types
    assert f"name of type {name_type}" in line and f"value of type {value_type}" in line, line
    # The server is unharmed: the next request is answered.
    assert exchange(server, request_bytes("GET", "/ok"))[0] == b"HTTP/1.1 200 OK"


# --- --workers 0 and SIGINT ignored by the starting shell ------------------------------------


def test_workers_0_stops_on_sigint_even_when_started_with_sigint_ignored(start_server, monkeypatch):
    server = start_with_sigint_ignored(start_server, monkeypatch, "sleep_app:app", "--workers", "0")
    status, _, body = exchange(server, request_bytes("GET", "/s?ms=1"))
    assert status == b"HTTP/1.1 200 OK", body
    server.proc.send_signal(signal.SIGINT)
    assert wait_exit(server, 10) == 0, server.log
    assert "Shutting down" in server.log


@pytest.mark.parametrize("threads", [None, "4"], ids=["default-threads", "threads-4"])
def test_workers_0_a_second_sigint_exits_while_an_application_call_runs(
    start_server, monkeypatch, threads
):
    extra = ("--threads", threads) if threads else ()
    server = start_with_sigint_ignored(
        start_server, monkeypatch, "sleep_app:app", "--workers", "0", *extra
    )
    with server.connect() as sock:
        sock.sendall(request_bytes("GET", "/s?ms=30000&msg=long-call-began"))
        server.wait_for_log("long-call-began")
        server.proc.send_signal(signal.SIGINT)
        # The first SIGINT is seen within 100 ms (the serving thread checks signals that
        # often); there is no log line to wait for, so give it a bounded half second.
        time.sleep(0.5)
        assert server.proc.poll() is None, "the first SIGINT did not wait for the call"
        started = time.monotonic()
        server.proc.send_signal(signal.SIGINT)
        code = wait_exit(server, 8)
        if code is None:
            server.proc.kill()  # bounded: not the fixture's 15 s SIGTERM wait
    assert code is not None, "still running 8 s after the second SIGINT; log:\n" + server.log
    assert time.monotonic() - started < 5
    assert code == 0, server.log


# --- --max-requests is exact ---------------------------------------------------------------


def pids_of_sequential_requests(server, count: int) -> list[int]:
    """``count`` requests one after the other, each on a new connection; the pid that
    answered each. Every one must succeed (the master keeps the listening socket open)."""
    pids = []
    for i in range(count):
        status, _, body = exchange(server, request_bytes("GET", f"/?n={i}"))
        assert status == b"HTTP/1.1 200 OK", (i, status, body)
        pids.append(json.loads(body)["pid"])
    return pids


def test_max_requests_each_worker_answers_exactly_n_requests(start_server):
    server = start_server("supervised_app:app", "--workers", "1", "--max-requests", "5")
    pids = pids_of_sequential_requests(server, 12)
    runs = [pids[0:5], pids[5:10], pids[10:12]]
    assert [len(set(run)) for run in runs] == [1, 1, 1], pids
    assert len({run[0] for run in runs}) == 3, pids  # three different workers, in turn
    assert server.proc.pid not in pids


def test_a_worker_recycled_by_max_requests_is_not_logged_as_an_error(start_server):
    server = start_server("supervised_app:app", "--workers", "1", "--max-requests", "2")
    pids = pids_of_sequential_requests(server, 6)
    first, second = pids[0], pids[2]
    assert len({first, pids[1]}) == 1 and first != second, pids
    for pid in (first, second):
        line = server.wait_for_log(rf"Worker \(pid {pid}\) exited with status 0").string
        assert "[ERROR]" not in line, f"a planned recycle logged as an error:\n{server.log}"


# --- worker timeouts: stuck call, or stuck without a call ---------------------------------


def test_a_worker_stuck_outside_any_call_is_not_an_application_timeout(start_server):
    # rough_gil_app holds the GIL for 5-10 s, from ~1 s after import, in a thread of its
    # own: the heartbeat stops although no request was ever made.
    server = start_server(
        "rough_gil_app:app", "--timeout", "2", "--workers", "1", "--graceful-timeout", "1"
    )
    line = wait_for_log_line(server, r"WORKER TIMEOUT \(pid \d+\)", timeout=15)
    assert "no application call running" in line, line
    assert "an application call ran longer" not in server.log
    # faulthandler shows where: the thread holding the GIL, not a request.
    server.wait_for_log(r'File ".*rough_gil_app\.py", line \d+ in hold_the_gil')


def test_a_call_longer_than_timeout_is_reported_as_an_application_timeout(start_server):
    server = start_server("supervised_app:app", "--timeout", "2", "--workers", "1")
    with server.connect() as sock:
        sock.sendall(request_bytes("GET", "/sleep?s=6"))
        line = wait_for_log_line(server, r"WORKER TIMEOUT \(pid \d+\)", timeout=10)
    assert "an application call ran longer than --timeout 2s" in line, line
    assert "no application call running" not in server.log
    server.wait_for_log(r'File ".*supervised_app\.py", line \d+ in app')


# --- an application that fails at import -----------------------------------------------------

IMPORT_ERROR_FILE = APPS / "rough_import_error_app.py"


@pytest.mark.parametrize(
    "args",
    [("--workers", "0"), ("--workers", "2"), ("--workers", "1", "--preload")],
    ids=["workers-0", "workers-2", "preload"],
)
def test_an_import_error_is_one_line_and_its_traceback_and_exit_status_1(
    start_server, monkeypatch, args
):
    monkeypatch.delenv("DATABASE_URL", raising=False)
    lineno = next(
        n
        for n, text in enumerate(IMPORT_ERROR_FILE.read_text().splitlines(), 1)
        if 'os.environ["DATABASE_URL"]' in text
    )
    server = start_server("rough_import_error_app:app", *args, ready=False)
    assert wait_exit(server, 15) == 1, server.log
    server.stop()  # joins the log reader
    log = server.log
    assert "--log-level" not in server.args
    one_line = re.compile(
        r"\[ERROR\] Error: failed to import 'rough_import_error_app' "
        rf"\({re.escape(str(IMPORT_ERROR_FILE))}, line {lineno}\): "
        r"KeyError: 'DATABASE_URL'$"
    )
    assert any(one_line.search(line) for line in server.lines), log
    assert "Traceback (most recent call last):" in log
    assert f'File "{IMPORT_ERROR_FILE}", line {lineno}, in <module>' in log
    assert "Listening at" not in log
