"""The Python API (issue 2, "Python API"): ``ferrowsgi.make_server`` as a drop-in for
``wsgiref.simple_server.make_server`` and the blocking ``ferrowsgi.serve``. Each case runs
a small script in its own interpreter, as a user would."""

import json
import os
import signal
import socket
import subprocess
import sys
import textwrap
import urllib.request

from conftest import ROOT, wait_until

MAKE_SERVER_IN_A_THREAD = """
import json, threading, time, urllib.request
from ferrowsgi import make_server

def hello(environ, start_response):
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [b"hello from make_server " + environ["PATH_INFO"].encode()]

httpd = make_server("127.0.0.1", 0, hello)
thread = threading.Thread(target=httpd.serve_forever, daemon=True)
thread.start()
port = httpd.server_port
bodies = []
for path in ("/one", "/two"):
    with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=10) as resp:
        bodies.append([resp.status, resp.read().decode()])
started = time.monotonic()
httpd.shutdown()
thread.join(10)
print(json.dumps({
    "port": port,
    "address": list(httpd.server_address),
    "bodies": bodies,
    "thread_alive": thread.is_alive(),
    "shutdown_seconds": time.monotonic() - started,
}))
"""

WSGIREF_TUTORIAL = """
from ferrowsgi import make_server

def simple_app(environ, start_response):
    status = "200 OK"
    headers = [("Content-type", "text/plain; charset=utf-8")]
    start_response(status, headers)
    return [b"Hello World"]

try:
    with make_server("127.0.0.1", 0, simple_app) as httpd:
        print(f"Serving on port {httpd.server_port}...", flush=True)
        httpd.serve_forever()
except KeyboardInterrupt:
    print("interrupted", flush=True)
"""

SERVE = """
import json, sys
import ferrowsgi

def app(environ, start_response):
    start_response("200 OK", [("Content-Type", "application/json")])
    return [json.dumps({"multithread": environ["wsgi.multithread"]}).encode()]

try:
    ferrowsgi.serve(app, host="127.0.0.1", port=int(sys.argv[1]), threads=2)
except KeyboardInterrupt:
    pass
print("serve returned", flush=True)
"""


def script(tmp_path, source, *args):
    path = tmp_path / "script.py"
    path.write_text(textwrap.dedent(source))
    env = dict(os.environ, PYTHONPATH=str(ROOT), PYTHONUNBUFFERED="1")
    return subprocess.Popen(
        [sys.executable, str(path), *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        cwd=tmp_path,
    )


def finish(proc, timeout=30):
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, err = proc.communicate()
        raise AssertionError(f"script did not finish; stdout={out!r} stderr={err!r}") from None
    return out, err


def test_make_server_serve_forever_in_a_thread_and_shutdown(tmp_path):
    out, err = finish(script(tmp_path, MAKE_SERVER_IN_A_THREAD))
    assert out.strip(), err
    result = json.loads(out.strip().splitlines()[-1])
    assert result["port"] > 0
    assert result["address"] == ["127.0.0.1", result["port"]]
    assert result["bodies"] == [
        [200, "hello from make_server /one"],
        [200, "hello from make_server /two"],
    ]
    assert result["thread_alive"] is False, "serve_forever did not return after shutdown()"
    assert result["shutdown_seconds"] < 5


def test_wsgiref_tutorial_code_runs_with_only_the_import_changed(tmp_path):
    proc = script(tmp_path, WSGIREF_TUTORIAL)
    line = proc.stdout.readline()
    assert line.startswith("Serving on port "), line + proc.stderr.read()
    port = int(line.split()[3].rstrip("."))
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=10) as resp:
        assert (resp.status, resp.read()) == (200, b"Hello World")
    proc.send_signal(signal.SIGINT)
    out, err = finish(proc, 15)
    assert "interrupted" in out, err


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _accepts(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
        return True
    except OSError:
        return False


def test_serve_blocks_serves_and_stops_on_sigint(tmp_path):
    port = _free_port()
    proc = script(tmp_path, SERVE, str(port))
    try:
        assert wait_until(lambda: _accepts(port) or proc.poll() is not None, 30)
        assert proc.poll() is None, proc.stderr.read()
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=10) as resp:
            assert resp.status == 200
            assert json.loads(resp.read()) == {"multithread": True}
    finally:
        proc.send_signal(signal.SIGINT)
        out, err = finish(proc, 15)
    assert proc.returncode == 0, err
    assert "serve returned" in out
