"""What benches/run.py needs before it measures: wrk, the venv of servers, the Rust servers.

* wrk and libev-dev (for bjoern) come from Debian's packages via apt-get.
* ``benches/.venv`` (gitignored) holds the peers from PyPI and ferrowsgi built
  from this repository (pip builds a release wheel with maturin).
* nginx (for the static workload) is Debian's, found where Debian puts it.
* The no-Python ceiling (``benches/ceiling``) and the kernel floor
  (``benches/floor_server``) are built with ``cargo build --release``.

Nothing here raises for a peer that fails to install: the failure is returned,
so run.py can record it and go on with the others.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import venv
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
VENV = ROOT / "benches" / ".venv"
BIN = VENV / "bin"
CEILING = ROOT / "benches" / "ceiling"
CEILING_BIN = CEILING / "target" / "release" / "ferrowsgi-ceiling"
FLOOR = ROOT / "benches" / "floor_server"
FLOOR_BIN = FLOOR / "target" / "release" / "ferrowsgi-floor"
# The Rust servers run.py builds, by server name: their crate's directory.
CRATES = {"ceiling": CEILING, "floor": FLOOR}
# Distribution names on PyPI, by the server name run.py uses.
PEER_DISTS = {
    "bjoern": "bjoern",
    "granian": "granian",
    "gunicorn": "gunicorn",
    "uwsgi": "uWSGI",
    "waitress": "waitress",
}


def _find_nginx() -> str | None:
    """nginx's binary, when installed (Debian puts it in /usr/sbin, off a user's PATH)."""
    candidates = [shutil.which("nginx"), "/usr/sbin/nginx", "/usr/local/sbin/nginx"]
    return next((p for p in candidates if p and os.access(p, os.X_OK)), None)


NGINX = _find_nginx()
APT_TIMEOUT = 600
PIP_TIMEOUT = 1800


def _last_line(text: str) -> str:
    lines = [line for line in text.strip().splitlines() if line.strip()]
    return lines[-1].strip() if lines else "no output"


def apt_install(*packages: str) -> str | None:
    """``apt-get install -y packages``; returns why it failed, or None."""
    if shutil.which("apt-get") is None:
        return "apt-get is not available"
    if os.geteuid() != 0:
        return "apt-get needs root"
    argv = ["apt-get", "install", "-y", "-qq", *packages]
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    done = subprocess.run(argv, capture_output=True, text=True, env=env, timeout=APT_TIMEOUT)
    if done.returncode != 0:  # a stale package list, most often
        subprocess.run(["apt-get", "update", "-qq"], capture_output=True, timeout=APT_TIMEOUT)
        done = subprocess.run(argv, capture_output=True, text=True, env=env, timeout=APT_TIMEOUT)
    return None if done.returncode == 0 else _last_line(done.stderr)


def ensure_wrk() -> str | None:
    """Make sure wrk is on PATH; returns why it cannot be, or None."""
    if shutil.which("wrk"):
        return None
    print("wrk not found; installing it with apt-get", flush=True)
    why = apt_install("wrk")
    return why if why or not shutil.which("wrk") else None


def ensure_nginx() -> str | None:
    """Make sure nginx is installed (sets :data:`NGINX`); returns why it cannot be, or None."""
    global NGINX
    if NGINX:
        return None
    print("nginx not found; installing it with apt-get", flush=True)
    why = apt_install("nginx")
    NGINX = _find_nginx()
    return why if not NGINX else None


def _pip(*args: str) -> subprocess.CompletedProcess:
    argv = [str(BIN / "python"), "-m", "pip", "--disable-pip-version-check", *args]
    return subprocess.run(argv, capture_output=True, text=True, timeout=PIP_TIMEOUT)


def installed_versions() -> dict[str, str]:
    """Versions of the benchmark's distributions present in the venv."""
    code = (
        "import importlib.metadata as m, json, sys\n"
        "out = {}\n"
        "for d in sys.argv[1:]:\n"
        "    try: out[d] = m.version(d)\n"
        "    except m.PackageNotFoundError: pass\n"
        "print(json.dumps(out))"
    )
    dists = ["ferrowsgi", "flask", *PEER_DISTS.values()]
    done = subprocess.run(
        [str(BIN / "python"), "-c", code, *dists], capture_output=True, text=True, check=True
    )
    return json.loads(done.stdout)


def ensure_venv() -> None:
    """Create ``benches/.venv`` if it does not exist."""
    if not (BIN / "python").exists():
        print(f"creating {VENV}", flush=True)
        venv.create(VENV, with_pip=True)


def install_peers(peers: list[str], need_flask: bool) -> dict[str, str]:
    """Install the missing peers (and Flask); returns {name: why it failed}."""
    have = installed_versions()
    failed: dict[str, str] = {}
    wanted = [(p, PEER_DISTS[p]) for p in peers] + ([("flask", "flask")] if need_flask else [])
    for name, dist in wanted:
        if dist in have:
            continue
        if name == "bjoern" and not Path("/usr/include/ev.h").exists():
            why = apt_install("libev-dev")
            if why:
                failed[name] = f"libev-dev could not be installed: {why}"
                continue
        print(f"installing {dist} from PyPI", flush=True)
        done = _pip("install", "--quiet", dist)
        if done.returncode != 0:
            failed[name] = f"pip install {dist} failed: {_last_line(done.stderr)}"
    return failed


def install_ferrowsgi(build: bool) -> str:
    """Build and install ferrowsgi from this repository (release); returns its command.

    With ``build`` false, the ferrowsgi already in the venv is used, else the
    one on PATH.
    """
    command = BIN / "ferrowsgi"
    if not build:
        if command.exists():
            return str(command)
        found = shutil.which("ferrowsgi")
        if found is None:
            raise RuntimeError("--no-build: no ferrowsgi in benches/.venv nor on PATH")
        return found
    print("building ferrowsgi from the repository (release wheel, takes minutes)", flush=True)
    done = _pip("install", "--quiet", "--force-reinstall", "--no-deps", str(ROOT))
    if done.returncode != 0:
        sys.stderr.write(done.stderr)
        raise RuntimeError("pip install of ferrowsgi from the repository failed")
    return str(command)


def build_crate(name: str) -> str | None:
    """``cargo build --release`` of the Rust server ``name``; returns why it failed, or None."""
    if shutil.which("cargo") is None:
        return "cargo is not on PATH"
    print(f"building the {name} server (cargo build --release)", flush=True)
    manifest = str(CRATES[name] / "Cargo.toml")
    argv = ["cargo", "build", "--release", "--quiet", "--manifest-path", manifest]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=PIP_TIMEOUT)
    return None if done.returncode == 0 else _last_line(done.stderr)
