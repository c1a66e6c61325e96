"""nginx in front of ferrowsgi: the site configuration for each upstream protocol, in one
place, and nginx itself as a child process of a test.

The site (an ``upstream`` of ferrowsgi instances with pooled connections and the
``location`` that passes requests to it) is the one a production host would use, and
the one docs/production.md and the README show: ``site()`` renders it, and
tests/test_rolling.py checks that the documents hold exactly the rendered text.

* ``http``: ``proxy_pass http://app;`` over pooled HTTP/1.1 connections; ferrowsgi
  ``--bind 127.0.0.1:PORT``.
* ``uwsgi``: ``uwsgi_pass app;`` with ``include uwsgi_params;``; ferrowsgi
  ``--bind uwsgi://127.0.0.1:PORT``.
* ``fastcgi``: ``fastcgi_pass app;`` with ``include fastcgi_params;`` and
  ``fastcgi_keep_conn on;``; ferrowsgi ``--bind fcgi://127.0.0.1:PORT``.

``Nginx`` runs nginx in the foreground, as one process, with its configuration, pid
file, logs and temporary paths in a test's temporary directory, listening on a free
127.0.0.1 port, and stops it by its pid.
"""

from __future__ import annotations

import shutil
import signal
import socket
import subprocess
from pathlib import Path

import pytest
from conftest import NGINX, wait_until

PROTOCOLS = ("http", "uwsgi", "fastcgi")
UPSTREAM = "app"

# The location block of each protocol. Retrying on another server is nginx's default
# for connection errors and timeouts; http_503 adds an instance that sheds load. None
# of them retries a request that is not idempotent (a POST), as nginx's own default.
LOCATIONS = {
    "http": """\
location / {{
    proxy_pass http://{upstream};
    proxy_http_version 1.1;
    proxy_set_header Connection "";
    proxy_set_header Host $host;
    proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
    proxy_set_header X-Forwarded-Proto $scheme;
    proxy_next_upstream error timeout http_503;
}}""",
    "uwsgi": """\
location / {{
    uwsgi_pass {upstream};
    include uwsgi_params;
    uwsgi_next_upstream error timeout http_503;
}}""",
    "fastcgi": """\
location / {{
    fastcgi_pass {upstream};
    include fastcgi_params;
    fastcgi_keep_conn on;
    fastcgi_next_upstream error timeout http_503;
}}""",
}

# How ferrowsgi binds for each protocol (--bind).
BIND_SCHEMES = {"http": "", "uwsgi": "uwsgi://", "fastcgi": "fcgi://"}


def bind(protocol: str, port: int, host: str = "127.0.0.1") -> str:
    """ferrowsgi's ``--bind`` value for an instance that nginx reaches by ``protocol``."""
    return f"{BIND_SCHEMES[protocol]}{host}:{port}"


def upstream_block(servers: list[str], keepalive: int = 16) -> str:
    """The ``upstream`` of ferrowsgi instances (``HOST:PORT`` each), with a pool of up
    to ``keepalive`` idle connections kept open per nginx worker process."""
    lines = [f"upstream {UPSTREAM} {{"]
    lines += [f"    server {server};" for server in servers]
    lines += [f"    keepalive {keepalive};", "}"]
    return "\n".join(lines)


def location_block(protocol: str) -> str:
    """The ``location /`` that passes every request to the upstream by ``protocol``."""
    return LOCATIONS[protocol].format(upstream=UPSTREAM)


def indent(text: str, by: str = "    ") -> str:
    return "\n".join(by + line if line else line for line in text.splitlines())


def site(protocol: str, servers: list[str], listen: str = "80") -> str:
    """The whole site: the upstream and a server that listens on ``listen``."""
    server = "\n".join(
        [
            "server {",
            f"    listen {listen};",
            indent(location_block(protocol)),
            "}",
        ]
    )
    return upstream_block(servers) + "\n\n" + server


# --- nginx as a test's child process -----------------------------------------------------

# What a test's nginx adds around the site: one foreground process, everything under
# {tmp}, an access log that shows which upstream served each request and how.
NGINX_CONF = """\
daemon off;
master_process off;
worker_processes 1;
pid {tmp}/nginx.pid;
error_log {tmp}/error.log warn;
events {{ worker_connections 512; }}
http {{
    log_format upstreams '$msec $request_time $status "$request" '
                         '$upstream_addr $upstream_status $upstream_response_time';
    access_log {tmp}/access.log upstreams;
    client_body_temp_path {tmp}/client_body;
    proxy_temp_path {tmp}/proxy;
    fastcgi_temp_path {tmp}/fastcgi;
    uwsgi_temp_path {tmp}/uwsgi;
    scgi_temp_path {tmp}/scgi;

{site}
}}
"""

# nginx's own uwsgi_params and fastcgi_params, which `include` finds beside nginx.conf.
PARAMS = ("uwsgi_params", "fastcgi_params")
PARAMS_DIRS = (Path("/etc/nginx"), Path("/usr/local/nginx/conf"), Path("/usr/share/nginx"))


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Nginx:
    """nginx as a foreground, single-process child with everything under ``tmp``,
    serving ``site(protocol, servers, listen="127.0.0.1:PORT")`` on a free port."""

    def __init__(self, tmp: Path, protocol: str, servers: list[str]):
        self.tmp, self.protocol, self.servers = tmp, protocol, servers
        self.proc: subprocess.Popen | None = None
        self.port = 0

    @property
    def error_log(self) -> Path:
        return self.tmp / "error.log"

    @property
    def access_log(self) -> Path:
        return self.tmp / "access.log"

    def errors(self) -> str:
        return self.error_log.read_text() if self.error_log.exists() else ""

    def start(self) -> Nginx:
        assert NGINX is not None, "nginx not found"
        copy_params(self.tmp)
        conf = self.tmp / "nginx.conf"
        for _ in range(3):  # a port found free may be taken before nginx binds it
            self.port = free_port()
            text = site(self.protocol, self.servers, listen=f"127.0.0.1:{self.port}")
            conf.write_text(NGINX_CONF.format(tmp=self.tmp, site=indent(text)))
            self.proc = subprocess.Popen(
                [NGINX, "-p", f"{self.tmp}/", "-e", str(self.error_log), "-c", str(conf)],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            if wait_until(lambda: self.accepts() or self.proc.poll() is not None, 10):
                if self.proc.poll() is None:
                    return self
            self.stop()
        pytest.fail("nginx did not start; error log:\n" + self.errors())

    def accepts(self) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=1):
                return True
        except OSError:
            return False

    def stop(self) -> None:
        """QUIT (graceful: finish, close the upstream connections) to its pid, then wait."""
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGQUIT)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def copy_params(tmp: Path) -> None:
    """Puts nginx's own uwsgi_params and fastcgi_params beside the test's nginx.conf, so
    the site's ``include uwsgi_params;`` reads the very file a packaged nginx ships."""
    for name in PARAMS:
        found = next((d / name for d in PARAMS_DIRS if (d / name).is_file()), None)
        if found is not None:
            shutil.copy(found, tmp / name)
