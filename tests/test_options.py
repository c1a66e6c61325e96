"""The options table (issue 10, ``ferrowsgi.options.SETTINGS``): one set of defaults for
the command line, ``serve()`` and ``make_server()``; the generated stubs and README in
step with it; a worker that never loads the command line; options that need a master
refused with ``--workers 0``; gunicorn config files; bind addresses; API option checks."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
from pathlib import Path

import ferrowsgi
import pytest
from conftest import APPS, LISTENING, ROOT, ServerProcess, exchange, request_bytes, wait_until
from ferrowsgi import _ferrowsgi, options

SETTINGS_LINE = r"server settings: (.*)$"
NEEDS_MASTER = "needs a master process"


def env_with_apps(extra: dict[str, str] | None = None) -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(APPS), str(ROOT)])
    env["PYTHONUNBUFFERED"] = "1"
    env.update(extra or {})
    return env


def run_cli(*args: str, env: dict[str, str] | None = None, timeout: float = 10):
    """Run ``ferrowsgi ARGS`` to completion (it must stop by itself within ``timeout``)."""
    return subprocess.run(
        [sys.executable, "-m", "ferrowsgi", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=ROOT,
        env=env_with_apps(env),
    )


def run_python(code: str, timeout: float = 10) -> subprocess.CompletedProcess:
    """Run ``python -c CODE`` in a fresh interpreter, from a directory without a package."""
    return subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=APPS,
        env=env_with_apps(),
    )


class ScriptProcess(ServerProcess):
    """A ``python -c CODE`` process, read line by line like the server fixture's."""

    def __init__(self, code: str):
        self.args = ["-c", code]
        self.lines = []
        self._cond = threading.Condition()
        self.proc = subprocess.Popen(
            [sys.executable, "-c", code],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            env=env_with_apps(),
            cwd=str(APPS),
            text=True,
            encoding="utf-8",
            errors="replace",
        )
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        self.host, self.port = "127.0.0.1", 0


@pytest.fixture
def start_script():
    started: list[ScriptProcess] = []

    def start(code: str) -> ScriptProcess:
        script = ScriptProcess(code)
        started.append(script)
        return script

    yield start
    for script in started:
        script.stop()


def parse_settings(text: str) -> dict[str, str]:
    """``bind=..., backlog=2048, ...`` → {"bind": "...", "backlog": "2048", ...}."""
    items = re.split(r", (?=[a-z_]+=)", text.strip())
    settings = dict(item.split("=", 1) for item in items)
    assert len(settings) == len(items), f"a key is repeated in {text!r}"
    return settings


def file_match(path: Path, pattern: str, timeout: float = 10.0) -> re.Match[str]:
    """Wait until the file at ``path`` holds a line matching ``pattern``."""
    rx = re.compile(pattern, re.M)
    found = wait_until(lambda: path.exists() and rx.search(path.read_text()), timeout)
    text = path.read_text() if path.exists() else "<no file>"
    assert found, f"{path.name} has no line matching {pattern!r}:\n{text}"
    return found


def get(server, path: str = "/") -> bytes:
    status, _, body = exchange(server, request_bytes("GET", path))
    assert status == b"HTTP/1.1 200 OK", body
    return body


# --- 1. the table, the native core, the stubs and the README agree ----------------------


def test_generated_stubs_and_readme_match_the_table():
    result = subprocess.run(
        [sys.executable, "tools/gen_options.py", "--check"],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    readme = (ROOT / "README.md").read_text()
    table = readme.split("<!-- BEGIN options table")[1].split("<!-- END options table")[0]
    stub = (ROOT / "python/ferrowsgi/_ferrowsgi.pyi").read_text()
    server_config = stub.split("class ServerConfig(")[1].split("# END generated")[0]
    for s in options.SETTINGS:
        if s.flag:
            assert f"{s.flag} " in table or f"{s.flag}`" in table, f"README table lacks {s.flag}"
        if s.rust:
            assert f"    {s.name}: " in server_config, f"ServerConfig stub lacks {s.name}"


def test_rust_knows_exactly_the_options_marked_rust():
    rust = {s.name for s in options.SETTINGS if s.rust}
    assert rust, "no option is marked rust"
    assert set(_ferrowsgi.SERVER_OPTIONS) == rust


# --- 2. one set of defaults, whatever the entry point ------------------------------------


def test_defaults_are_the_same_from_the_command_line_serve_and_make_server(
    start_server, start_script
):
    lines = {}
    for workers in ("0", "1"):
        server = start_server("options_app:app", "--workers", workers, "--log-level", "debug")
        lines[f"--workers {workers}"] = server.wait_for_log(SETTINGS_LINE).group(1)

    serving = start_script(
        "import ferrowsgi\nfrom options_app import app\n"
        "ferrowsgi.serve(app, port=0, log_level='debug')\n"
    )
    lines["serve()"] = serving.wait_for_log(SETTINGS_LINE).group(1)
    serving.wait_for_log(LISTENING.pattern)
    assert serving.stop() == 0, serving.log

    made = run_python(
        "import ferrowsgi\nfrom options_app import app\n"
        "server = ferrowsgi.make_server('127.0.0.1', 0, app, log_level='debug')\n"
        "print('made', server.server_port)\nserver.server_close()\n"
    )
    assert made.returncode == 0, made.stderr
    m = re.search(SETTINGS_LINE, made.stdout + made.stderr, re.M)
    assert m, made.stdout + made.stderr
    lines["make_server()"] = m.group(1)

    parsed = {source: parse_settings(line) for source, line in lines.items()}
    for source, settings in parsed.items():
        assert set(settings) == set(_ferrowsgi.SERVER_OPTIONS), source
        assert settings["multiprocess"] == "false", source
        del settings["bind"]
    reference = parsed["--workers 0"]
    assert reference["backlog"] == "2048" and reference["threads"] == "1"
    for source, settings in parsed.items():
        assert settings == reference, f"{source} runs with other settings than --workers 0"


# --- 3. layers: the worker and the library never load the command line ------------------


@pytest.mark.parametrize("module", ["ferrowsgi.worker", "ferrowsgi"])
def test_importing_does_not_load_the_command_line(module):
    result = run_python(
        f"import json, sys\nimport {module}\n"
        "print(json.dumps({name: name in sys.modules for name in "
        f"({module!r}, 'ferrowsgi.cli', 'argparse')}}))\n"
    )
    assert result.returncode == 0, result.stderr
    loaded = json.loads(result.stdout)
    assert loaded[module] is True
    assert loaded["ferrowsgi.cli"] is False, f"import {module} imported ferrowsgi.cli"
    assert loaded["argparse"] is False, f"import {module} imported argparse"


# --- 4. --workers 0: what needs a master is refused, never ignored -----------------------


@pytest.mark.parametrize(
    "flag, value",
    [
        ("--reload", None),
        ("--timeout", "2"),
        ("--timeout", "30"),  # the default value, given: still not silently ignored
        ("--max-requests-jitter", "3"),
        ("--max-worker-memory", "100"),
    ],
)
def test_workers_0_refuses_options_that_need_a_master(flag, value):
    args = [flag] if value is None else [flag, value]
    result = run_cli("options_app:app", "--workers", "0", *args, "--bind", "127.0.0.1:0")
    assert result.returncode == 2, result.stdout + result.stderr
    lines = [line for line in result.stderr.splitlines() if flag in line and NEEDS_MASTER in line]
    assert len(lines) == 1, result.stderr
    assert "Listening at" not in result.stdout + result.stderr


def test_workers_0_preload_warns_and_serves(start_server):
    server = start_server("options_app:app", "--workers", "0", "--preload")
    assert get(server, "/preloaded") == b"/preloaded"
    server.wait_for_log(r"\[WARNING\] .*--preload has no effect with --workers 0")


def test_workers_0_max_requests_answers_exactly_that_many_then_exits(start_server):
    server = start_server("options_app:app", "--workers", "0", "--max-requests", "3")
    for n in range(3):
        assert server.proc.poll() is None, f"exited after {n} requests; log:\n{server.log}"
        assert get(server, f"/r{n}") == f"/r{n}".encode()
    try:
        status = server.proc.wait(timeout=8)
    except subprocess.TimeoutExpired:
        pytest.fail("still running after --max-requests 3 requests; log:\n" + server.log)
    assert status == 0, server.log


# --- 5. --threads bounds ------------------------------------------------------------------


def test_threads_above_the_maximum_is_refused():
    result = run_cli("options_app:app", "--threads", "100000", "--bind", "127.0.0.1:0")
    assert result.returncode == 2
    assert "--threads" in result.stderr and "at most 1024" in result.stderr, result.stderr


def test_threads_0_is_refused():
    result = run_cli("options_app:app", "--threads", "0", "--bind", "127.0.0.1:0")
    assert result.returncode == 2
    assert "--threads" in result.stderr, result.stderr


# --- 6. a gunicorn config file -------------------------------------------------------------


def count(path: Path, text: str) -> int:
    return path.read_text().count(text) if path.exists() else 0


def test_gunicorn_config_file(start_server, tmp_path):
    access, error, pidfile = tmp_path / "access.log", tmp_path / "error.log", tmp_path / "pid"
    conf = tmp_path / "gunicorn_conf.py"
    conf.write_text(
        f"accesslog = {str(access)!r}\n"
        "loglevel = 'debug'\n"
        "keepalive = 2\n"
        f"errorlog = {str(error)!r}\n"
        "worker_connections = 50\n"
        "preload_app = False\n"
        f"pidfile = {str(pidfile)!r}\n"
        "\n\ndef post_fork(server, worker):\n    pass\n\n\n"
        "thread = 4\n"
    )
    server = start_server(
        "options_app:app", "-c", str(conf), "--graceful-timeout", "1", ready=False
    )
    listening = file_match(error, LISTENING.pattern)
    server.port = int(listening.group(2))

    assert get(server, "/first") == b"/first"
    assert get(server, "/second") == b"/second"
    file_match(access, r'"GET /first HTTP/1\.1" 200 ')
    file_match(access, r'"GET /second HTTP/1\.1" 200 ')
    assert len(access.read_text().splitlines()) == 2, access.read_text()

    # The error log has the server's lines, the application's stderr and the aliases' effect.
    file_match(error, r"options-app stderr marker /second")
    settings = parse_settings(file_match(error, SETTINGS_LINE).group(1))
    assert settings["keep_alive"] == "2" and settings["max_connections"] == "50", settings
    file_match(error, r"\[DEBUG\] config: preload = False \(config file ")
    assert "Listening at" not in server.log, "stderr was not redirected to the error log"
    assert "options-app stderr marker" not in server.log

    assert pidfile.read_text().strip() == str(server.proc.pid)

    hook = "server hook 'post_fork' is not run"
    typo = "unknown setting 'thread' ignored; did you mean 'threads'?"
    file_match(error, r"\[WARNING\] .*" + re.escape(hook))
    file_match(error, r"\[WARNING\] .*" + re.escape(typo))
    assert (count(error, hook), count(error, typo)) == (1, 1), error.read_text()

    # SIGHUP re-reads the file: its warnings are logged again.
    server.proc.send_signal(signal.SIGHUP)
    file_match(error, r"Reloading: SIGHUP")
    again = wait_until(lambda: count(error, hook) == 2 and count(error, typo) == 2, 5)
    assert again, "the config file's warnings were not logged on reload:\n" + error.read_text()
    assert get(server, "/after-reload") == b"/after-reload"
    assert server.stop() == 0


# --- 7. bind addresses ----------------------------------------------------------------------


def test_bind_with_an_unknown_scheme_lists_the_accepted_forms():
    result = run_cli("options_app:app", "--bind", "http2://127.0.0.1:3031")
    assert result.returncode == 2
    lines = [line for line in result.stderr.splitlines() if "unknown scheme" in line]
    assert len(lines) == 1, result.stderr
    assert (
        "--bind" in lines[0]
        and "unix:PATH" in lines[0]
        and "fd://N" in lines[0]
        and "uwsgi://" in lines[0]
    )


def test_bind_with_a_bare_ipv6_address_suggests_brackets():
    result = run_cli("options_app:app", "--bind", "::1:80")
    assert result.returncode == 2
    assert "brackets" in result.stderr and "[::1]" in result.stderr, result.stderr


@pytest.mark.parametrize("workers", ["0", "1"])
def test_bind_a_host_name(start_server, workers):
    server = start_server(
        "options_app:app", "--workers", workers, "--bind", "localhost:0", bind=False, ready=False
    )
    m = server.wait_for_log(r"Listening at: http://127\.0\.0\.1:(\d+)")
    server.port = int(m.group(1))
    assert get(server, "/by-name") == b"/by-name"


def test_bind_from_the_environment_names_the_variable():
    result = run_cli("options_app:app", env={"FERROWSGI_BIND": "h3://127.0.0.1:3031"})
    assert result.returncode == 2
    assert "unknown scheme" in result.stderr and "FERROWSGI_BIND" in result.stderr, result.stderr


# --- 8. the Python API checks its options by the same table -------------------------------


def app(environ, start_response):  # never called: every call below fails before binding
    start_response("200 OK", [])
    return [b""]


def test_serve_with_a_typo_suggests_the_option():
    with pytest.raises(TypeError, match=r"did you mean 'threads'"):
        ferrowsgi.serve(app, thread=4)


def test_serve_refuses_a_master_only_option():
    with pytest.raises(TypeError, match="workers"):
        ferrowsgi.serve(app, workers=2)


def test_make_server_names_the_option_with_a_bad_value():
    with pytest.raises(ValueError, match="keep_alive"):
        ferrowsgi.make_server("127.0.0.1", 0, app, keep_alive="x")


# --- --unix-socket-mode: who may connect to a unix socket ------------------------------


@pytest.mark.parametrize("workers", ["0", "1"])
@pytest.mark.parametrize("mode, expected", [(None, 0o660), ("600", 0o600), ("0o666", 0o666)])
def test_unix_socket_mode_sets_the_socket_files_permissions(
    start_server, tmp_path, workers, mode, expected
):
    path = tmp_path / "app.sock"
    args = ["options_app:app", "--workers", workers, "--bind", f"unix:{path}"]
    if mode is not None:
        args += ["--unix-socket-mode", mode]
    server = start_server(*args, bind=False, ready=False)
    server.wait_for_log(r"Listening at: unix:")
    assert (path.stat().st_mode & 0o777) == expected
    client = socket.socket(socket.AF_UNIX)
    client.settimeout(5)
    client.connect(str(path))
    client.sendall(b"GET /over-unix HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    answer = b""
    while chunk := client.recv(65536):
        answer += chunk
    client.close()
    assert answer.startswith(b"HTTP/1.1 200") and answer.endswith(b"/over-unix")


@pytest.mark.parametrize("mode", ["999", "rw-rw----", "1777"])
def test_unix_socket_mode_refuses_what_is_not_permission_bits(mode):
    result = run_cli("options_app:app", "--unix-socket-mode", mode, "--bind", "127.0.0.1:0")
    assert result.returncode == 2, result.stderr
    assert "--unix-socket-mode" in result.stderr and "octal" in result.stderr


# --- 9. checking a deployment: --check-config, --print-config -----------------------------


def test_check_config_imports_the_app_and_binds_nothing():
    with socket.socket() as taken:  # the port is in use: binding it would fail
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = run_cli("options_app:app", "--check-config", "--bind", f"127.0.0.1:{port}")
    assert result.returncode == 0, result.stderr
    assert "application options_app:app loaded" in result.stderr
    assert "Listening at" not in result.stderr and "Starting" not in result.stderr


def test_check_config_names_what_is_wrong():
    broken = run_cli("rough_import_error_app:app", "--check-config")
    assert broken.returncode == 1
    first = [line for line in broken.stderr.splitlines() if "Error:" in line][0]
    assert "rough_import_error_app" in first and "KeyError: 'DATABASE_URL'" in first, first
    bad = run_cli("options_app:app", "--check-config", "--threads", "0")
    assert bad.returncode == 2
    assert bad.stderr.strip() == "ferrowsgi: error: --threads: must be at least 1, got 0"
    tls = run_cli("options_app:app", "--check-config", "--certfile", "/nonexistent/cert.pem",
                  "--keyfile", "/nonexistent/key.pem")  # fmt: skip
    assert tls.returncode == 2 and "/nonexistent/cert.pem" in tls.stderr, tls.stderr


def test_print_config_says_where_each_value_came_from(tmp_path):
    conf = tmp_path / "conf.py"
    conf.write_text("keep_alive = 7\nthreads = 2\n")
    result = run_cli(
        "options_app:app", "--print-config", "--threads", "4", "-c", str(conf),
        env={"FERROWSGI_WORKERS": "3"},
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    lines = {line.split("=")[0].strip(): line for line in result.stdout.splitlines()}
    assert lines["app"].endswith("'options_app:app'")
    assert lines["threads"].endswith("= 4  (command line)")  # beats the config file
    assert lines["workers"].endswith("= 3  (FERROWSGI_WORKERS)")
    assert lines["keep_alive"].endswith(f"= 7.0  (config file {conf})"), lines["keep_alive"]
    assert lines["backlog"].endswith("= 2048  (default)")
    assert lines["unix_socket_mode"].endswith("= 0o660  (default)")
    assert "Listening at" not in result.stderr
