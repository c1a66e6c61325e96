"""Install ferrowsgi the way a user installs a server (issue 14).

The release wheel from ``dist/`` (``make wheel``; built here with the same command
when ``dist/`` has none) goes into a fresh virtualenv with ``pip install --no-index``
and an environment without any Rust toolchain, next to Flask from PyPI; the installed
``ferrowsgi`` command then serves the demo app and a Flask app to real HTTP requests
and stops with status 0 on SIGTERM. The wheel's metadata is read from the archive.
The sdist is built and installed with pip into another virtualenv (that one compiles
the extension, so it needs Rust) and serves the demo app too.

Everything runs from a directory outside the checkout, so the checkout's ``python/``
can never be what gets imported.
"""

from __future__ import annotations

import email.message
import email.parser
import http.client
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import tarfile
import zipfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from conftest import ROOT, ServerProcess

DIST = ROOT / "dist"
# Builds and installs take minutes on a cold cache; every wait below is bounded on
# its own, and any test may be the first to pay for the module's fixtures.
pytestmark = pytest.mark.timeout(900)

SUPPORTED_PYTHONS = ["3.9", "3.10", "3.11", "3.12", "3.13"]
RUST_TOOLS = ("cargo", "rustc", "rustup")

FLASK_SITE = """\
import sys

from flask import Flask, jsonify, request

app = Flask(__name__)


@app.get("/hello/<name>")
def hello(name):
    return f"Hello, {name}, from an installed wheel\\n"


@app.post("/sum")
def total():
    return jsonify(total=sum(request.get_json()["numbers"]))


@app.get("/prefix")
def prefix():
    return sys.prefix
"""


def cargo_version() -> str:
    """``version`` from Cargo.toml's ``[package]`` table (the wheel's version)."""
    text = (ROOT / "Cargo.toml").read_text(encoding="utf-8")
    package = re.search(r"^\[package\]\s*$(.*?)(?=^\[|\Z)", text, re.M | re.S)
    assert package, "Cargo.toml has no [package] table"
    m = re.search(r'^version\s*=\s*"([^"]+)"', package.group(1), re.M)
    assert m, "Cargo.toml's [package] has no version"
    return m.group(1)


def run(
    argv: list[str], env: dict[str, str], cwd: Path, timeout: float
) -> subprocess.CompletedProcess[str]:
    """Run a command to completion within ``timeout`` seconds; fail with its output if
    it exits non-zero."""
    proc = subprocess.run(
        argv,
        env=env,
        cwd=str(cwd),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        encoding="utf-8",
        errors="replace",
        timeout=timeout,
    )
    assert proc.returncode == 0, (
        f"{shlex.join(argv)} exited {proc.returncode}:\n{proc.stdout[-6000:]}"
    )
    return proc


def base_env() -> dict[str, str]:
    """This process's environment without anything that points Python at the checkout
    or at the test runner's virtualenv."""
    drop = {"PYTHONPATH", "PYTHONHOME", "PYTHONSTARTUP", "VIRTUAL_ENV", "PYTHONSAFEPATH"}
    env = {k: v for k, v in os.environ.items() if k not in drop}
    env["PYTHONUNBUFFERED"] = "1"
    env["PIP_DISABLE_PIP_VERSION_CHECK"] = "1"
    return env


def rustless_env(venv: Path) -> dict[str, str]:
    """An environment in which no Rust toolchain can be found: PATH is the venv's bin
    and the system directories /usr/bin and /bin (any of those holding a Rust tool is
    left out), and no CARGO_*/RUSTUP_*/RUSTC* variable is set."""
    env = {
        k: v
        for k, v in base_env().items()
        if not k.startswith(("CARGO", "RUSTUP", "RUSTC", "RUSTFLAGS", "RUSTDOC"))
    }
    system = [
        d
        for d in ("/usr/bin", "/bin")
        if not any(shutil.which(tool, path=d) for tool in RUST_TOOLS)
    ]
    env["PATH"] = os.pathsep.join([str(venv / "bin"), *system])
    env["VIRTUAL_ENV"] = str(venv)
    for tool in RUST_TOOLS:
        assert shutil.which(tool, path=env["PATH"]) is None, f"{tool} is on {env['PATH']}"
    assert "CARGO_HOME" not in env and "RUSTUP_HOME" not in env
    return env


def make_venv(path: Path) -> Path:
    run([sys.executable, "-m", "venv", str(path)], base_env(), path.parent, timeout=120)
    assert (path / "bin" / "python").exists()
    return path


def only_wheel() -> Path:
    wheels = sorted(DIST.glob("ferrowsgi-*.whl"))
    assert len(wheels) == 1, f"expected exactly one wheel in {DIST} (run `make wheel`): {wheels}"
    return wheels[0]


@pytest.fixture(scope="module")
def wheel() -> Path:
    """The one release wheel in dist/, built like ``make wheel`` does when there is none."""
    if not list(DIST.glob("ferrowsgi-*.whl")):
        argv = [sys.executable, "-m", "maturin", "build", "--release", "--out", str(DIST)]
        argv += ["--interpreter", sys.executable, *shlex.split(os.environ.get("WHEEL_ARGS", ""))]
        run(argv, base_env(), ROOT, timeout=840)
    return only_wheel()


@pytest.fixture(scope="module")
def installed(wheel: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict, Path]:
    """(venv, its Rust-free environment, a working directory outside the checkout) with
    the wheel installed from the file alone and Flask from PyPI."""
    home = tmp_path_factory.mktemp("wheel-install")
    venv = make_venv(home / "venv")
    env = rustless_env(venv)
    python = str(venv / "bin" / "python")
    run([python, "-m", "pip", "install", "--no-index", str(wheel)], env, home, timeout=300)
    run([python, "-m", "pip", "install", "flask"], env, home, timeout=600)
    (home / "flask_site.py").write_text(FLASK_SITE, encoding="utf-8")
    return venv, env, home


@contextmanager
def serving(argv: list[str], env: dict[str, str], cwd: Path) -> Iterator[tuple[ServerProcess, int]]:
    """Start the installed command (``argv[0]``) in exactly ``env``; wait for its port; it
    is stopped (killed at worst) on the way out."""
    server = ServerProcess(argv[1:], cwd=cwd, command=argv[:1], whole_env=env)
    try:
        server.wait_ready()
        assert server.host == "127.0.0.1", server.log
        yield server, server.port
    finally:
        server.stop()


def http_request(
    port: int, method: str, path: str, body: bytes | None = None, headers: dict | None = None
) -> tuple[int, dict[str, str], bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        conn.request(method, path, body=body, headers=headers or {})
        response = conn.getresponse()
        return response.status, {k.lower(): v for k, v in response.getheaders()}, response.read()
    finally:
        conn.close()


def assert_stops_cleanly(server: ServerProcess) -> None:
    status = server.stop()
    assert status == 0, f"exit status {status} after SIGTERM; stderr:\n{server.log}"


def assert_serves_demo(venv: Path, env: dict[str, str], cwd: Path) -> None:
    argv = [str(venv / "bin" / "ferrowsgi"), "--bind", "127.0.0.1:0"]
    with serving(argv, env, cwd) as (server, port):
        status, headers, body = http_request(port, "GET", "/installed?x=1")
        assert status == 200, (status, body[:300], server.log)
        assert headers["content-type"] == "text/plain; charset=utf-8"
        assert body.startswith(b"Hello world!"), body[:300]
        assert b"QUERY_STRING = 'x=1'" in body
        assert_stops_cleanly(server)


# --- the wheel, installed without Rust --------------------------------------------------


def test_installed_from_the_wheel_not_the_checkout(installed) -> None:
    venv, env, cwd = installed
    code = "import ferrowsgi, ferrowsgi._ferrowsgi as e; print(ferrowsgi.__file__, e.__file__)"
    out = run([str(venv / "bin" / "python"), "-c", code], env, cwd, timeout=60).stdout.split()
    assert len(out) == 2, out
    for path in out:
        assert Path(path).resolve().is_relative_to(venv.resolve()), (path, venv)
        assert not Path(path).resolve().is_relative_to(ROOT), path
    assert Path(out[1]).name.startswith("_ferrowsgi.") and Path(out[1]).suffix == ".so"


def test_wheel_serves_the_demo_app(installed) -> None:
    venv, env, cwd = installed
    assert_serves_demo(venv, env, cwd)


def test_wheel_serves_a_flask_app(installed) -> None:
    venv, env, cwd = installed
    argv = [str(venv / "bin" / "ferrowsgi"), str(cwd / "flask_site.py:app")]
    argv += ["--bind", "127.0.0.1:0", "--threads", "2"]
    with serving(argv, env, cwd) as (server, port):
        status, _, body = http_request(port, "GET", "/hello/wheel")
        assert (status, body) == (200, b"Hello, wheel, from an installed wheel\n"), server.log
        payload = json.dumps({"numbers": [1, 2, 39]}).encode()
        status, headers, body = http_request(
            port, "POST", "/sum", payload, {"Content-Type": "application/json"}
        )
        assert status == 200 and headers["content-type"] == "application/json", body
        assert json.loads(body) == {"total": 42}
        status, _, body = http_request(port, "GET", "/prefix")
        assert status == 200 and Path(body.decode()).resolve() == venv.resolve(), body
        status, _, _ = http_request(port, "GET", "/missing")
        assert status == 404
        assert_stops_cleanly(server)


def test_versions_agree_with_cargo_toml(installed) -> None:
    venv, env, cwd = installed
    expected = cargo_version()
    shown = run([str(venv / "bin" / "ferrowsgi"), "--version"], env, cwd, timeout=60)
    assert shown.stdout.strip() == f"ferrowsgi {expected}", shown.stdout
    code = "import ferrowsgi; print(ferrowsgi.__version__)"
    imported = run([str(venv / "bin" / "python"), "-c", code], env, cwd, timeout=60)
    assert imported.stdout.strip() == expected


# --- the wheel as a file ----------------------------------------------------------------


def test_wheel_is_manylinux(wheel: Path) -> None:
    name, version, python_tag, abi_tag, platform_tag = wheel.stem.split("-")
    assert (name, version) == ("ferrowsgi", cargo_version())
    assert platform_tag.startswith("manylinux"), wheel.name
    if "abi3" in os.environ.get("WHEEL_ARGS", ""):
        assert (python_tag, abi_tag) == ("cp39", "abi3"), wheel.name
    shown = run([sys.executable, "-m", "auditwheel", "show", str(wheel)], base_env(), ROOT, 120)
    text = " ".join(shown.stdout.split())
    m = re.search(r'consistent with the following platform tag: "(manylinux_2_(\d+)_\w+)"', text)
    assert m, shown.stdout
    have = re.match(r"manylinux_2_(\d+)", platform_tag)
    assert have and int(have.group(1)) >= int(m.group(2)), (wheel.name, m.group(1))


def wheel_files(wheel: Path) -> tuple[str, list[str]]:
    """(the wheel's ``*.dist-info`` directory name, every file name in the archive)."""
    with zipfile.ZipFile(wheel) as zf:
        names = zf.namelist()
    infos = {n.split("/")[0] for n in names if n.split("/")[0].endswith(".dist-info")}
    assert len(infos) == 1, infos
    return infos.pop(), names


def wheel_metadata(wheel: Path) -> email.message.Message:
    info, _ = wheel_files(wheel)
    with zipfile.ZipFile(wheel) as zf:
        text = zf.read(f"{info}/METADATA").decode("utf-8")
    return email.parser.Parser().parsestr(text)


def test_wheel_contents(wheel: Path) -> None:
    info, names = wheel_files(wheel)
    for needed in ("__init__.py", "cli.py", "demo.py", "py.typed", "_ferrowsgi.pyi"):
        assert f"ferrowsgi/{needed}" in names, (needed, names)
    assert [n for n in names if re.fullmatch(r"ferrowsgi/_ferrowsgi\.[^/]*so", n)], names
    with zipfile.ZipFile(wheel) as zf:
        entry_points = zf.read(f"{info}/entry_points.txt").decode()
    assert re.search(r"^ferrowsgi\s*=\s*ferrowsgi\.cli:main$", entry_points, re.M), entry_points
    stray = [n for n in names if n.split("/")[0] not in ("ferrowsgi", info)]
    assert not stray, stray


def test_wheel_metadata_name_version_python(wheel: Path) -> None:
    meta = wheel_metadata(wheel)
    assert meta["Name"] == "ferrowsgi"
    assert meta["Version"] == cargo_version()
    assert meta["Requires-Python"] == ">=3.9"


def test_wheel_metadata_classifiers(wheel: Path) -> None:
    classifiers = wheel_metadata(wheel).get_all("Classifier") or []
    missing = [
        f"Programming Language :: Python :: {v}"
        for v in SUPPORTED_PYTHONS
        if f"Programming Language :: Python :: {v}" not in classifiers
    ]
    assert not missing, f"missing classifiers {missing}; has {classifiers}"


def test_wheel_metadata_project_urls(wheel: Path) -> None:
    urls = wheel_metadata(wheel).get_all("Project-URL") or []
    assert urls, "no Project-URL in the wheel's METADATA"
    for entry in urls:
        label, _, url = entry.partition(",")
        assert label.strip() and re.match(r"https?://\S+$", url.strip()), entry


def test_wheel_has_a_license_file(wheel: Path) -> None:
    info, names = wheel_files(wheel)
    licenses = [n for n in names if n in (f"{info}/licenses/LICENSE", f"{info}/LICENSE")]
    assert licenses, f"no licenses/LICENSE or LICENSE in {info}: {names}"


# --- the sdist, built by pip (with Rust) ------------------------------------------------


def test_sdist_builds_installs_and_serves(tmp_path: Path) -> None:
    out = tmp_path / "sdist"
    run([sys.executable, "-m", "maturin", "sdist", "--out", str(out)], base_env(), ROOT, 300)
    sdists = list(out.glob("ferrowsgi-*.tar.gz"))
    assert len(sdists) == 1, sdists
    sdist = sdists[0]
    top = f"ferrowsgi-{cargo_version()}"
    assert sdist.name == f"{top}.tar.gz"
    with tarfile.open(sdist) as tf:
        members = tf.getnames()
    for needed in (
        "PKG-INFO",
        "pyproject.toml",
        "Cargo.toml",
        "Cargo.lock",
        "src/lib.rs",
        "python/ferrowsgi/cli.py",
    ):
        assert f"{top}/{needed}" in members, (needed, members[:50])
    stray = [m for m in members if re.search(r"/(target|\.venv|dist|\.git)(/|$)", m)]
    assert not stray, stray[:20]

    venv = make_venv(tmp_path / "venv")
    env = base_env()
    env["PATH"] = os.pathsep.join([str(venv / "bin"), env.get("PATH", "")])
    env["VIRTUAL_ENV"] = str(venv)
    # A quicker build than the release profile's fat LTO, in a target directory of its
    # own that a rerun finds again.
    env["CARGO_PROFILE_RELEASE_LTO"] = "false"
    env["CARGO_PROFILE_RELEASE_CODEGEN_UNITS"] = "16"
    env["CARGO_TARGET_DIR"] = str(ROOT / "target" / "sdist-check")
    assert shutil.which("cargo", path=env["PATH"]), "building the sdist needs cargo on PATH"
    python = str(venv / "bin" / "python")
    run([python, "-m", "pip", "install", str(sdist)], env, tmp_path, timeout=780)

    code = "import ferrowsgi; print(ferrowsgi.__file__)"
    where = run([python, "-c", code], env, tmp_path, timeout=60).stdout.strip()
    assert Path(where).resolve().is_relative_to(venv.resolve()), where
    assert_serves_demo(venv, env, tmp_path)
