"""Test matrix: the core gateway and HTTP/1.1 tests on every CPython 3.9-3.13 found here.

Run by ``make matrix`` (with the CI venv's python); stdlib only::

    python tools/matrix.py [-j 2] [--versions 3.9,3.12] [--rebuild] [--tests ...]

For each version it looks for ``python3.X`` on PATH, then in a pyenv root
(``$PYENV_ROOT`` or ``~/.pyenv``: ``versions/3.X.N/bin/python3.X``, newest patch),
and keeps the first candidate that runs and reports that version (a pyenv shim for
a version that is not selected fails to run, and so is skipped). For each
interpreter found it

* makes (or reuses) a venv in ``target/matrix/py3X``;
* installs a wheel for it: the stable-ABI wheel in ``dist/`` (``*-cp39-abi3-*.whl``,
  from ``make wheel WHEEL_ARGS=--features abi3``) when there is one, else ``dist/``'s
  wheel for that very version (``make wheel``'s, for the interpreter running this),
  else one built for that interpreter (``maturin build -i``, without LTO, into
  ``target/matrix/wheels/py3X``, reused while the sources it was built from are
  unchanged). A wheel in ``dist/`` older than the sources is not used;
* installs pytest, pytest-timeout and httpx;
* runs the core test modules (CORE_TESTS) with that venv's python, from the
  repository root, after checking that ``import ferrowsgi`` finds the installed
  wheel and not ``python/`` in the checkout.

A summary table follows: every version, which interpreter and wheel, and
"passed N", "FAILED" or "ABSENT". A version that is not on the machine is
reported ABSENT and never counts as passed. The exit status is 0 only when every
interpreter found passed and the interpreter running this script (the one the
README's ``make test`` uses) was among them.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import glob
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import threading
import time
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
MATRIX = ROOT / "target" / "matrix"
VERSIONS = [(3, 9), (3, 10), (3, 11), (3, 12), (3, 13)]

# The gateway (environ, start_response, response driving, wsgi.input, the
# Python API) and the engine's hand-over to it. On 3.11 here these take about
# 55 s; the two interpreters run side by side keep five of them within a few
# minutes. Left to `make test` (the CI interpreter only): tests/test_errors.py
# (13 s: beyond test_start_response/test_response it checks the error log's
# wording, not the C-API) and tests/test_http1.py (24 s: HTTP/1.1 framing is
# Rust's, the same whatever the Python version).
CORE_TESTS = [
    "tests/test_environ.py",
    "tests/test_start_response.py",
    "tests/test_response.py",
    "tests/test_input.py",
    "tests/test_engine.py",
    "tests/test_api.py",
]
TEST_DEPS = ["pytest", "pytest-timeout", "httpx"]

# What a built wheel depends on; a change to any of them means a rebuild.
WHEEL_INPUTS = [
    "src",
    "python",
    "Cargo.toml",
    "Cargo.lock",
    "pyproject.toml",
    "build.rs",
    "README.md",
    "LICENSE",
]

PROBE = (
    "import json, sys, sysconfig; print(json.dumps({"
    "'version': list(sys.version_info[:3]), 'impl': sys.implementation.name, "
    "'executable': sys.executable, 'venv': sys.prefix != sys.base_prefix, "
    "'free_threaded': bool(sysconfig.get_config_var('Py_GIL_DISABLED'))}))"
)

_print_lock = threading.Lock()
_build_lock = threading.Lock()  # one cargo build at a time (they share a target dir)


def say(msg: str) -> None:
    with _print_lock:
        print(msg, flush=True)


@dataclass
class Result:
    version: tuple[int, int]
    python: str = ""  # the interpreter, "" when absent
    python_version: str = ""  # its x.y.z
    wheel: str = ""
    status: str = "ABSENT"  # ABSENT, passed, FAILED
    detail: str = ""
    passed: int = 0
    skipped: int = 0
    build: str = "-"  # the build column: seconds, "reused" or "dist"
    test_s: float = 0.0
    log: list[str] = field(default_factory=list)

    @property
    def tag(self) -> str:
        return f"py3{self.version[1]}"

    @property
    def name(self) -> str:
        return f"{self.version[0]}.{self.version[1]}"


# --- discovery ---------------------------------------------------------------------------


def probe(python: str) -> dict | None:
    try:
        out = subprocess.run(
            [python, "-c", PROBE], capture_output=True, text=True, timeout=30, check=True
        ).stdout
        return json.loads(out.strip().splitlines()[-1])
    except (OSError, subprocess.SubprocessError, ValueError, IndexError):
        return None


def candidates(version: tuple[int, int]) -> list[str]:
    major, minor = version
    found: list[str] = []
    if sys.version_info[:2] == version:
        # The interpreter running this script (through its venv, if any) comes first.
        found.append(os.path.join(sys.base_prefix, "bin", f"python{major}.{minor}"))
        found.append(getattr(sys, "_base_executable", "") or sys.executable)
    on_path = shutil.which(f"python{major}.{minor}")
    if on_path:
        found.append(on_path)
    root = os.environ.get("PYENV_ROOT") or os.path.expanduser("~/.pyenv")
    pattern = re.compile(rf"^{major}\.{minor}\.(\d+)$")  # not 3.13.0t, 3.12-dev, ...
    patches = []
    for path in glob.glob(os.path.join(root, "versions", f"{major}.{minor}.*")):
        m = pattern.match(os.path.basename(path))
        if m:
            patches.append((int(m.group(1)), path))
    for _, path in sorted(patches, reverse=True):
        found.append(os.path.join(path, "bin", f"python{major}.{minor}"))
    return found


def discover(version: tuple[int, int]) -> tuple[str, list[int]] | None:
    """The first candidate that runs as a (GIL) CPython of ``version``: (path, x.y.z)."""
    seen = set()
    for cand in candidates(version):
        if not cand or cand in seen or not os.access(cand, os.X_OK):
            continue
        seen.add(cand)
        info = probe(cand)
        if (
            info
            and info["impl"] == "cpython"
            and tuple(info["version"][:2]) == version
            and not info["free_threaded"]
        ):
            # A venv's python stands for its base interpreter: the venv module makes
            # the matrix venv from the base either way.
            return (cand if info["venv"] else info["executable"]), info["version"]
    return None


# --- steps -------------------------------------------------------------------------------


class StepFailed(Exception):
    pass


def run(res: Result, what: str, cmd: list[str], timeout: float = 1800, **kw) -> str:
    """Run ``cmd``; its output goes to the result's log. Raises StepFailed on failure."""
    res.log.append(f"$ {' '.join(cmd)}")
    try:
        proc = subprocess.run(
            cmd,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            errors="replace",
            timeout=timeout,
            **kw,
        )
    except subprocess.TimeoutExpired as exc:
        out = exc.stdout or ""
        res.log.append(out if isinstance(out, str) else out.decode("utf-8", "replace"))
        raise StepFailed(f"{what}: timed out after {timeout:.0f} s") from None
    except OSError as exc:
        raise StepFailed(f"{what}: {exc}") from None
    res.log.append(proc.stdout)
    if proc.returncode != 0:
        raise StepFailed(f"{what}: exit status {proc.returncode}")
    return proc.stdout


def sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def sources_digest() -> str:
    h = hashlib.sha256()
    for name in WHEEL_INPUTS:
        top = ROOT / name
        files = sorted(p for p in top.rglob("*") if p.is_file()) if top.is_dir() else [top]
        for path in files:
            if not path.is_file() or "__pycache__" in path.parts:
                continue
            h.update(str(path.relative_to(ROOT)).encode() + b"\0")
            h.update(sha256(path).encode())
    return h.hexdigest()


def newest_source() -> float:
    newest = 0.0
    for name in WHEEL_INPUTS:
        top = ROOT / name
        for path in top.rglob("*") if top.is_dir() else [top]:
            if path.is_file():
                newest = max(newest, path.stat().st_mtime)
    return newest


def dist_wheel(pattern: str) -> Path | None:
    """The newest wheel in dist/ matching ``pattern`` (``make wheel`` leaves one), if it
    was built after the last change to the sources; a stale one is named and not used."""
    wheels = sorted((ROOT / "dist").glob(pattern), key=lambda p: p.stat().st_mtime)
    if not wheels:
        return None
    if wheels[-1].stat().st_mtime < newest_source():
        say(
            f"not using {os.path.relpath(wheels[-1], ROOT)}: the sources changed since it was built"
        )
        return None
    return wheels[-1]


def maturin_cmd() -> list[str]:
    try:
        import maturin  # noqa: F401
    except ImportError:
        exe = shutil.which("maturin")
        if exe is None:
            raise StepFailed("maturin not found (pip install 'maturin>=1.9.4,<2')") from None
        return [exe]
    return [sys.executable, "-m", "maturin"]


def make_venv(res: Result, python: str, venv: Path) -> Path:
    vpy = venv / "bin" / "python"
    if vpy.exists():
        info = probe(str(vpy))
        want = probe(python)
        if info and want and info["version"] == want["version"]:
            return vpy
        res.log.append(f"recreating {venv}: its python is gone or a different version")
    run(res, "venv", [python, "-m", "venv", "--clear", str(venv)], timeout=300)
    for stamp in ("wheel", "deps"):
        (venv / f".matrix-{stamp}").unlink(missing_ok=True)
    return vpy


def build_wheel(res: Result, python: str, digest: str) -> Path:
    out = MATRIX / "wheels" / res.tag
    stamp = out / "SOURCES"
    wheels = sorted(out.glob("ferrowsgi-*.whl"))
    key = f"{digest} {python} {res.python_version}\n"
    if len(wheels) == 1 and stamp.exists() and stamp.read_text() == key:
        res.log.append(f"reusing {wheels[0]} (sources unchanged)")
        res.build = "reused"
        return wheels[0]
    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    env = dict(os.environ)
    env.update(
        CARGO_TARGET_DIR=str(MATRIX / "cargo"),
        CARGO_PROFILE_RELEASE_LTO="false",
        CARGO_PROFILE_RELEASE_CODEGEN_UNITS="16",
    )
    # maturin compiles against the interpreter it is given; nothing from the
    # environment should choose another one.
    for var in ("PYO3_PYTHON", "PYO3_CONFIG_FILE", "PYTHON_SYS_EXECUTABLE", "VIRTUAL_ENV"):
        env.pop(var, None)
    cmd = [*maturin_cmd(), "build", "--release", "-i", python, "--out", str(out)]
    with _build_lock:
        say(f"[{res.tag}] building the wheel (maturin build -i {python})")
        t0 = time.monotonic()
        run(res, "maturin build", cmd, cwd=str(ROOT), env=env)
        res.build = f"{time.monotonic() - t0:.0f}s"
    wheels = sorted(out.glob("ferrowsgi-*.whl"))
    if len(wheels) != 1:
        raise StepFailed(f"maturin build: expected one wheel in {out}, found {len(wheels)}")
    stamp.write_text(key)
    return wheels[0]


def install(res: Result, vpy: Path, venv: Path, wheel: Path) -> None:
    pip = [str(vpy), "-m", "pip", "--disable-pip-version-check", "--no-input"]
    deps_stamp = venv / ".matrix-deps"
    if not deps_stamp.exists():
        run(res, "pip install test deps", [*pip, "install", "--quiet", *TEST_DEPS], timeout=900)
        deps_stamp.write_text(" ".join(TEST_DEPS) + "\n")
    wheel_stamp = venv / ".matrix-wheel"
    digest = sha256(wheel)
    if not wheel_stamp.exists() or wheel_stamp.read_text() != digest:
        wheel_stamp.unlink(missing_ok=True)
        run(
            res,
            "pip install wheel",
            [*pip, "install", "--quiet", "--force-reinstall", "--no-deps", str(wheel)],
            timeout=300,
        )
        wheel_stamp.write_text(digest)


def check_import(res: Result, vpy: Path, venv: Path) -> None:
    """The tests must import the installed wheel: run from where, and with the
    PYTHONPATH, the tests and the servers they start use."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT / "tests" / "apps"), str(ROOT)])
    code = "import ferrowsgi as f, ferrowsgi._ferrowsgi as m; print(f.__file__); print(m.__file__)"
    out = run(res, "import check", [str(vpy), "-c", code], cwd=str(ROOT), env=env, timeout=60)
    paths = [p for p in out.strip().splitlines() if p]
    site = str(venv.resolve())
    bad = [p for p in paths if not os.path.realpath(p).startswith(site + os.sep)]
    if len(paths) != 2 or bad:
        raise StepFailed(f"import check: ferrowsgi imported from outside the venv: {bad or out}")


def run_tests(res: Result, vpy: Path, venv: Path, tests: list[str]) -> None:
    junit = venv / "junit.xml"
    junit.unlink(missing_ok=True)
    env = dict(os.environ)
    for var in ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV", "PYTEST_ADDOPTS"):
        env.pop(var, None)
    env["PATH"] = os.pathsep.join([str(venv / "bin"), env.get("PATH", "")])
    cmd = [str(vpy), "-m", "pytest", *tests, "-q", "-p", "no:cacheprovider"]
    cmd += ["-rfEs", f"--junitxml={junit}"]
    t0 = time.monotonic()
    try:
        run(res, "pytest", cmd, cwd=str(ROOT), env=env, timeout=1800)
    finally:
        res.test_s = time.monotonic() - t0
        if junit.exists():
            total = failures = errors = skipped = 0
            for suite in ET.parse(junit).getroot().iter("testsuite"):
                total += int(suite.get("tests", 0))
                failures += int(suite.get("failures", 0))
                errors += int(suite.get("errors", 0))
                skipped += int(suite.get("skipped", 0))
            res.passed = total - failures - errors - skipped
            res.skipped = skipped
            if failures or errors:
                res.detail = f"{failures} failed, {errors} errors, {res.passed} passed"
    if res.passed == 0:
        raise StepFailed("pytest: no test ran")


def check_version(
    res: Result, python: str, digest: str, wheel: Path | None, tests: list[str]
) -> Result:
    """Venv, wheel (``wheel``, or one built for ``python``), test deps, tests."""
    venv = MATRIX / res.tag
    try:
        vpy = make_venv(res, python, venv)
        if wheel is None:
            wheel = build_wheel(res, python, digest)
        else:
            res.build = "dist"
        res.wheel = os.path.relpath(wheel, ROOT)
        install(res, vpy, venv, wheel)
        check_import(res, vpy, venv)
        say(f"[{res.tag}] running {len(tests)} test modules")
        run_tests(res, vpy, venv, tests)
        res.status = "passed"
    except StepFailed as exc:
        res.status = "FAILED"
        res.detail = f"{exc}" + (f" ({res.detail})" if res.detail else "")
    except Exception as exc:  # a bug here must not read as a pass
        res.status = "FAILED"
        res.detail = f"matrix.py: {type(exc).__name__}: {exc}"
    log = venv / "matrix.log" if venv.exists() else None
    if log is not None:
        log.write_text("\n".join(res.log))
    say(f"[{res.tag}] {res.status} {res.detail}".rstrip())
    return res


# --- main --------------------------------------------------------------------------------


def parse_version(text: str) -> tuple[int, int]:
    m = re.fullmatch(r"(\d+)\.(\d+)", text.strip())
    if not m:
        raise argparse.ArgumentTypeError(f"not a MAJOR.MINOR version: {text!r}")
    return int(m.group(1)), int(m.group(2))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument(
        "--versions",
        type=lambda s: [parse_version(v) for v in s.split(",") if v.strip()],
        default=VERSIONS,
        help="comma-separated MAJOR.MINOR versions (default: 3.9 to 3.13)",
    )
    ap.add_argument(
        "-j", "--jobs", type=int, default=2, help="interpreters tested at once (default 2)"
    )
    ap.add_argument("--rebuild", action="store_true", help="rebuild the wheels even if unchanged")
    ap.add_argument("--tests", nargs="+", default=CORE_TESTS, help="test paths for pytest")
    args = ap.parse_args(argv)

    started = time.monotonic()
    here = sys.version_info[:2]
    # The interpreter running this is always in the matrix (when it is supported).
    versions = sorted(set(args.versions) | ({here} if here >= (3, 9) else set()))
    MATRIX.mkdir(parents=True, exist_ok=True)

    if args.rebuild:
        shutil.rmtree(MATRIX / "wheels", ignore_errors=True)
    abi3 = None if args.rebuild else dist_wheel("ferrowsgi-*-cp39-abi3-*.whl")
    if abi3 is not None:
        say(f"using the stable-ABI wheel {os.path.relpath(abi3, ROOT)} for every interpreter")
    digest = sources_digest()

    results: list[Result] = []
    todo: list[tuple[Result, Path | None]] = []
    for version in versions:
        res = Result(version)
        results.append(res)
        found = discover(version)
        if found is None:
            say(f"[{res.tag}] ABSENT: no CPython {res.name} on PATH or in a pyenv root")
            continue
        res.python, full = found
        res.python_version = ".".join(map(str, full))
        say(f"[{res.tag}] CPython {res.python_version}: {res.python}")
        # Without an abi3 wheel, `make wheel`'s own wheel (for the interpreter running
        # this) serves its version, when it is up to date; the others are built here.
        wheel = abi3
        if wheel is None and not args.rebuild:
            wheel = dist_wheel(f"ferrowsgi-*-cp3{version[1]}-cp3{version[1]}-*.whl")
        todo.append((res, wheel))

    with concurrent.futures.ThreadPoolExecutor(max_workers=max(1, args.jobs)) as pool:
        futures = [
            pool.submit(check_version, r, r.python, digest, wheel, args.tests) for r, wheel in todo
        ]
        for fut in futures:
            fut.result()

    failed = [r for r in results if r.status == "FAILED"]
    for res in failed:
        say(f"\n===== {res.tag} ({res.python}): {res.detail}; end of its log:")
        say("\n".join("\n".join(res.log).splitlines()[-60:]))
        say(f"(whole log: {os.path.relpath(MATRIX / res.tag / 'matrix.log', ROOT)})")

    rows = [("version", "interpreter", "wheel", "result", "build", "tests")]
    for res in results:
        if res.status == "ABSENT":
            result = "ABSENT"
        elif res.status == "passed":
            result = f"passed {res.passed}" + (f" ({res.skipped} skipped)" if res.skipped else "")
        else:
            result = "FAILED" + (f" ({res.detail})" if res.detail else "")
        rows.append(
            (
                res.python_version or res.name,
                res.python or "-",
                res.wheel or "-",
                result,
                res.build,
                f"{res.test_s:.0f}s" if res.test_s else "-",
            )
        )
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    say("")
    for i, row in enumerate(rows):
        say("  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip())
        if i == 0:
            say("  ".join("-" * w for w in widths))

    ran = [r for r in results if r.status != "ABSENT"]
    absent = [r.name for r in results if r.status == "ABSENT"]
    say(
        f"\n{len(ran)} interpreter(s) ran, {len(ran) - len(failed)} passed, "
        f"{len(failed)} failed; absent: {', '.join(absent) or 'none'}; "
        f"{time.monotonic() - started:.0f} s in all"
    )
    own = f"{here[0]}.{here[1]}"
    ok = True
    if failed:
        say(f"FAIL: {', '.join(r.name for r in failed)} failed")
        ok = False
    if not any(r.version == here and r.status == "passed" for r in results):
        if here < (3, 9):
            say(f"FAIL: this interpreter ({own}) is older than 3.9, the oldest supported")
        else:
            say(f"FAIL: the interpreter running this ({own}, the README's) did not pass")
        ok = False
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
