"""The front door side by side: TLS, HTTP/2, and behind nginx (issue 11).

    python benches/frontdoor.py [--requests 20000] [--clients 10] [--streams 10]
                                [--only https-h1,uwsgi_pass,...]
                                [--servers ferrowsgi,granian,...] [--no-build] [--write]

One mode is one way in: ``https-h1`` and ``https-h2`` (TLS, HTTP/1.1 and h2 by
ALPN), ``h2c`` (HTTP/2 with prior knowledge on plain TCP), and nginx in front
with ``proxy_pass`` (HTTP, pooled upstream connections), ``uwsgi_pass`` and
``fastcgi_pass`` (``fastcgi_keep_conn on``). Each server runs ONE worker on
core 0 (``taskset -c 0``) with the hello application; h2load (and nginx, one
worker process) run on core 1. A server takes part in the modes it supports
(``SUPPORT``). h2load sends ``--requests`` requests over ``--clients``
connections (``--streams`` concurrent streams each over HTTP/2); the table
gives requests per second, and the failed or errored requests when any.
``--write`` writes ``benches/FRONTDOOR.md``.

Standard library only, plus h2load (nghttp2-client), nginx and openssl.
"""

from __future__ import annotations

import argparse
import datetime
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benches import harness, install  # noqa: E402
from benches.harness import HOST, BenchError  # noqa: E402

RESULT = install.ROOT / "benches" / "FRONTDOOR.md"
APP = "benches.apps:hello"

# Each server's command per mode: {bin} {ferrowsgi} {host} {port} {cert} {key} {app}.
FERRO = "{ferrowsgi} {app} --bind "
GUNICORN = "{bin}/gunicorn -w 1 --bind {host}:{port} "
GRANIAN = "{bin}/granian --interface wsgi --workers 1 --host {host} --port {port} "
GRANIAN_TLS = "--ssl-certificate {cert} --ssl-keyfile {key} "
UWSGI = "{bin}/uwsgi --processes 1 --need-app --disable-logging --die-on-term --module {app} "
SUPPORT = {
    "ferrowsgi": {
        "https-h1": FERRO + "{host}:{port} --certfile {cert} --keyfile {key}",
        "https-h2": FERRO + "{host}:{port} --certfile {cert} --keyfile {key}",
        "h2c": FERRO + "{host}:{port}",
        "proxy_pass": FERRO + "{host}:{port}",
        "uwsgi_pass": FERRO + "uwsgi://{host}:{port}",
        "fastcgi_pass": FERRO + "fcgi://{host}:{port}",
    },
    "gunicorn": {
        "https-h1": GUNICORN + "--certfile {cert} --keyfile {key} {app}",
        "proxy_pass": GUNICORN + "{app}",
    },
    "granian": {
        "https-h1": GRANIAN + "--http 1 " + GRANIAN_TLS + "{app}",
        "https-h2": GRANIAN + "--http 2 " + GRANIAN_TLS + "{app}",
        "h2c": GRANIAN + "--http 2 {app}",
        "proxy_pass": GRANIAN + "{app}",
    },
    "uwsgi": {
        "uwsgi_pass": UWSGI + "--socket {host}:{port}",
        "fastcgi_pass": UWSGI + "--fastcgi-socket {host}:{port}",
    },
}
MODES = ("https-h1", "https-h2", "h2c", "proxy_pass", "uwsgi_pass", "fastcgi_pass")
BEHIND_NGINX = {
    "proxy_pass": "proxy_pass http://app; proxy_http_version 1.1; "
    'proxy_set_header Connection ""; proxy_set_header Host $host;',
    "uwsgi_pass": "include {params}/uwsgi_params; uwsgi_pass app;",
    "fastcgi_pass": "include {params}/fastcgi_params; fastcgi_pass app; fastcgi_keep_conn on;",
}
NGINX_CONF = """
worker_processes 1;
pid {dir}/nginx.pid;
error_log {dir}/error.log warn;
events {{ worker_connections 1024; }}
http {{
    access_log off;
    upstream app {{ server {host}:{upstream}; keepalive 16; }}
    server {{
        listen {host}:{port};
        location / {{ {location} }}
    }}
}}
"""


def make_certificate(where: Path) -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1 and its PKCS#8 key (openssl)."""
    cert, key = where / "cert.pem", where / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
         "-nodes", "-days", "2", "-subj", "/CN=127.0.0.1", "-addext",
         "subjectAltName=IP:127.0.0.1", "-keyout", str(key), "-out", str(cert)],
        check=True, capture_output=True,
    )  # fmt: skip
    return cert, key


def start_nginx(mode: str, upstream: int, where: Path) -> tuple[subprocess.Popen, int]:
    """nginx (one worker, on core 1) in front of ``upstream``; returns it and its port."""
    nginx = shutil.which("nginx") or "/usr/sbin/nginx"
    port = harness.free_port()
    location = BEHIND_NGINX[mode].format(params="/etc/nginx")
    conf = where / "nginx.conf"
    conf.write_text(
        NGINX_CONF.format(dir=where, host=HOST, upstream=upstream, port=port, location=location)
    )
    proc = subprocess.Popen(
        ["taskset", "-c", "1", nginx, "-c", str(conf), "-p", str(where), "-g", "daemon off;"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.STDOUT,
    )
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            socket.create_connection((HOST, port), timeout=1).close()
            return proc, port
        except OSError:
            time.sleep(0.05)  # poll interval, not a readiness guess
    proc.kill()
    raise BenchError(f"nginx did not start: {(where / 'error.log').read_text()[-300:]}")


def h2load(
    url: str, mode: str, args: argparse.Namespace, warmup: bool = False
) -> tuple[float, int]:
    """Runs h2load on core 1; returns (requests per second, failed + errored).

    ``warmup``: a tenth of the requests, whose figures are thrown away (a master
    binds before its worker is ready: the first requests wait in the backlog).
    """
    count = max(args.requests // 10, args.clients) if warmup else args.requests
    argv = ["taskset", "-c", "1", "h2load", "-n", str(count), "-c", str(args.clients)]
    argv += ["-m", str(args.streams)] if mode in ("https-h2", "h2c") else ["--h1"]
    done = subprocess.run([*argv, url], capture_output=True, text=True, timeout=300)
    rate = re.search(r"finished in [\d.]+\w+, ([\d.]+) req/s", done.stdout)
    counts = re.search(r"requests: \d+ total, \d+ started, \d+ done, (\d+) succeeded, "
                       r"(\d+) failed, (\d+) errored", done.stdout)  # fmt: skip
    if not rate or not counts:
        raise BenchError(f"h2load: {(done.stdout + done.stderr).strip()[-300:]}")
    if mode in ("https-h2", "h2c") and "h2" not in done.stdout.split("Application protocol:")[-1]:
        raise BenchError("h2load did not speak HTTP/2", shown="no h2")
    succeeded = int(counts.group(1))
    if succeeded == 0:
        raise BenchError("no request succeeded", shown="0 ok")
    return float(rate.group(1)), int(counts.group(2)) + int(counts.group(3))


def measure(server: str, mode: str, ferrowsgi: str, args: argparse.Namespace) -> str:
    """One cell of the table: a fresh server (and nginx), one h2load run."""
    with tempfile.TemporaryDirectory(prefix="ferrowsgi-frontdoor-") as tmp:
        where = Path(tmp)
        cert, key = make_certificate(where)
        port = harness.free_port()
        argv = SUPPORT[server][mode].format(
            bin=install.BIN, ferrowsgi=ferrowsgi, host=HOST, port=port, cert=cert, key=key, app=APP
        )
        env = {"PATH": f"{install.BIN}:/usr/bin:/bin", "PYTHONPATH": str(install.ROOT)}
        proc = harness.start(["taskset", "-c", "0", *argv.split()], port, install.ROOT, env)
        nginx = None
        try:
            if mode in BEHIND_NGINX:
                nginx, front = start_nginx(mode, port, where)
                url = f"http://{HOST}:{front}/"
            else:
                scheme = "https" if mode.startswith("https") else "http"
                url = f"{scheme}://{HOST}:{port}/"
            h2load(url, mode, args, warmup=True)  # the worker is up, connections made
            rate, bad = h2load(url, mode, args)
        except BenchError as e:
            print(f"  {server} {mode}: {e}", flush=True)
            return e.shown or "failed"
        finally:
            if nginx is not None:
                nginx.send_signal(signal.SIGQUIT)
                nginx.wait(timeout=10)
            harness.stop(proc)
    cell = f"{rate:,.0f}"
    return cell + (f" ({bad} failed)" if bad else "")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=20000)
    parser.add_argument("--clients", type=int, default=10)
    parser.add_argument("--streams", type=int, default=10)
    parser.add_argument("--only", default=",".join(MODES))
    parser.add_argument("--servers", default=",".join(SUPPORT))
    parser.add_argument("--no-build", action="store_true")
    parser.add_argument("--write", action="store_true")
    args = parser.parse_args()
    modes = [m for m in args.only.split(",") if m]
    servers = [s for s in args.servers.split(",") if s]
    install.ensure_venv()
    failed = install.install_peers([s for s in servers if s in install.PEER_DISTS], False)
    ferrowsgi = install.install_ferrowsgi(build=not args.no_build)
    rows = []
    try:
        for mode in modes:
            cells = []
            for server in servers:
                if mode not in SUPPORT[server]:
                    cells.append("—")
                elif server in failed:
                    cells.append("not installed")
                else:
                    cells.append(measure(server, mode, ferrowsgi, args))
                    print(f"{mode:14} {server:10} {cells[-1]}", flush=True)
            rows.append((mode, cells))
    finally:
        harness.stop_all()
    table = report(rows, servers, args)
    print(table)
    if args.write:
        RESULT.write_text(table)
    return 0


def report(rows: list[tuple[str, list[str]]], servers: list[str], args: argparse.Namespace) -> str:
    """The Markdown table: requests per second by mode and server."""
    lines = [
        "# The front door: requests per second (hello, one worker)",
        "",
        f"{datetime.date.today()}, `python benches/frontdoor.py --requests {args.requests} "
        f"--clients {args.clients} --streams {args.streams}`. Server on core 0, h2load and "
        "nginx on core 1. —: the server has no such mode.",
        "",
        "| mode | " + " | ".join(servers) + " |",
        "|---|" + "---:|" * len(servers),
    ]
    lines += [f"| {mode} | " + " | ".join(cells) + " |" for mode, cells in rows]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.exit(main())
