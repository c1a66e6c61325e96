"""``ferrowsgi top``: the exposition parser, the percentile estimate and the rates as
units; then the command itself in a pseudo-terminal, its screen read back, against a
fake exporter (an ``http.server`` whose counters grow with time), against an endpoint
that is down or is not a metrics endpoint, and against a live ``ferrowsgi
--metrics-bind``.
"""

from __future__ import annotations

import fcntl
import http.server
import io
import math
import os
import re
import select
import socket
import struct
import subprocess
import sys
import termios
import threading
import time
import urllib.request

import httpx
import pytest
from conftest import APPS, ROOT, wait_until
from ferrowsgi import top
from rich.console import Console

ANSI = re.compile(r"\x1b\[[0-?]*[ -/]*[@-~]|\x1b[()][0-9A-B]|\x1b[=>78]")
HEADER = "ferrowsgi top  "
BOUNDS = ["0.005", "0.01", "0.025", "0.05", "0.1", "0.25", "0.5", "1.0", "2.5", "5.0", "10.0"]

# --- the parser -----------------------------------------------------------------------

EXPOSITION = r"""# HELP ferrowsgi_requests Requests answered.
# TYPE ferrowsgi_requests counter
ferrowsgi_requests_total{method="GET",status="200"} 12
ferrowsgi_requests_total{status="404",method="GET"} 3 1700000000000
ferrowsgi_requests_total{ method = "POST" , status = "200" , } 1e1
  # a comment, indented

ferrowsgi_workers 2
escaped{path="a \"b\" \\ c\nd"} +Inf
ferrowsgi_request_duration_seconds_bucket{le="0.1"} 4 # {trace_id="abc"} 0.05
ferrowsgi_request_duration_seconds_bucket{le="+Inf"} 5
# EOF
"""


def test_parse_reads_samples_by_name_with_labels_escapes_and_special_values():
    scrape = top.parse(EXPOSITION)
    assert scrape.value("ferrowsgi_requests_total") == 25
    assert scrape.value("ferrowsgi_requests_total", method="GET") == 15
    assert scrape.value("ferrowsgi_requests_total", status="200") == 22
    assert scrape.by("ferrowsgi_requests_total", "method") == {"GET": 15, "POST": 10}
    assert scrape.by("ferrowsgi_requests_total", "status") == {"200": 22, "404": 3}
    assert scrape.value("ferrowsgi_workers") == 2 and scrape.has("ferrowsgi_workers")
    assert scrape.samples["escaped"] == {(("path", 'a "b" \\ c\nd'),): math.inf}
    assert scrape.buckets("ferrowsgi_request_duration_seconds") == [(0.1, 4), (math.inf, 5)]
    assert scrape.value("absent") == 0 and not scrape.has("absent")


@pytest.mark.parametrize(
    "line",
    [
        "name",  # no value
        'name{a="b" 1',  # labels not closed
        "name{a=b} 1",  # value not quoted
        'name{a="b" c="d"} 1',  # no comma between labels
        "1name 2",  # not a name
        'name{a="b"}1',  # no blank before the value
        "name1.5",  # a name running into its value
        "name one",  # not a number
        "<html><body>hello</body></html>",
    ],
)
def test_parse_names_the_first_line_that_is_not_a_sample(line):
    with pytest.raises(ValueError, match=r"^line 3 is not a metric sample"):
        top.parse(f"# TYPE x counter\nok_total 1\n{line}\n")


# --- percentiles and rates ------------------------------------------------------------


def buckets(*pairs: tuple[float, float]) -> list[tuple[float, float]]:
    return [*pairs, (math.inf, pairs[-1][1])]


def test_quantile_interpolates_within_the_bucket_holding_the_rank():
    one_bucket = [(0.005, 0), (0.01, 100), (0.025, 100), (math.inf, 100)]
    assert top.quantile(0.5, one_bucket) == pytest.approx(0.0075)
    assert top.quantile(0.9, one_bucket) == pytest.approx(0.0095)
    assert top.quantile(0.99, one_bucket) == pytest.approx(0.00995)
    spread = buckets((1, 25), (2, 50), (4, 100))
    assert top.quantile(0.5, spread) == pytest.approx(2.0)  # rank 50 ends bucket (1, 2]
    assert top.quantile(0.9, spread) == pytest.approx(3.6)  # 2 + 2 * 40/50
    assert top.quantile(0.5, buckets((0.1, 10))) == pytest.approx(0.05)  # from 0 in the first


def test_quantile_edges_follow_prometheus():
    in_inf = [(0.1, 0), (1.0, 0), (math.inf, 10)]
    assert top.quantile(0.5, in_inf) == 1.0  # the highest finite bound
    assert top.quantile(0.5, buckets((0.1, 0))) is None  # no observation
    assert top.quantile(0.5, [(0.1, 5), (1.0, 5)]) is None  # no +Inf bucket
    assert top.quantile(0.5, [(math.inf, 5)]) is None
    racing = [(0.1, 6), (1.0, 5), (math.inf, 10)]  # a bucket read mid-update
    assert top.quantile(0.5, racing) == pytest.approx(0.1 * 5 / 6)


def exposition(requests: dict[tuple[str, str], int], hist: dict[str, int], **single) -> str:
    """Exposition text: requests by (method, status), cumulative duration buckets by bound
    (the rest of the bounds carry the last count), plus single samples by name."""
    lines = ["# HELP ferrowsgi_requests Requests answered.", "# TYPE ferrowsgi_requests counter"]
    lines += [
        f'ferrowsgi_requests_total{{method="{m}",status="{s}"}} {n}'
        for (m, s), n in requests.items()
    ]
    count = 0
    for le in [*BOUNDS, "+Inf"]:
        count = hist.get(le, count)
        lines.append(f'ferrowsgi_request_duration_seconds_bucket{{le="{le}"}} {count}')
    lines += [f"{name} {value}" for name, value in single.items()]
    return "\n".join(lines) + "\n# EOF\n"


def test_summarize_rates_over_the_seconds_between_two_scrapes():
    before = top.parse(
        exposition(
            {("GET", "200"): 90, ("GET", "404"): 10},
            {"0.005": 0, "0.01": 100},
            ferrowsgi_request_bytes_total=1000,
            ferrowsgi_response_bytes_total=5000,
            ferrowsgi_application_exceptions_total=1,
            ferrowsgi_connections_accepted_total=4,
        )
    )
    now = top.parse(
        exposition(
            {("GET", "200"): 120, ("GET", "404"): 10, ("POST", "500"): 10},
            {"0.005": 0, "0.01": 100, "0.05": 100, "0.1": 140},
            ferrowsgi_request_bytes_total=3048,
            ferrowsgi_response_bytes_total=5000 + 4 * 1024 * 1024,
            ferrowsgi_application_exceptions_total=3,
            ferrowsgi_connections_accepted_total=10,
            ferrowsgi_requests_in_flight=7,
            ferrowsgi_requests_waiting=2,
            ferrowsgi_connections_open=5,
            ferrowsgi_workers=3,
            **{'ferrowsgi_worker_restarts_total{cause="crash"}': 2},
        )
    )
    s = top.summarize(before, now, 2.0)
    assert (s.requests, s.requests_rate) == (140, 20.0)
    assert (s.accepted_rate, s.bytes_in_rate, s.bytes_out_rate) == (3.0, 1024.0, 2 * 1024 * 1024)
    assert (s.exceptions, s.exceptions_new) == (3, 2)
    assert (s.in_flight, s.waiting, s.connections_open, s.workers) == (7, 2, 5, 3)
    assert s.restarts == {"crash": 2, "timeout": 0, "max-requests": 0, "memory": 0, "reload": 0}
    # the window's 40 requests all took (0.05, 0.1]; since start, 100 of 140 took (0.005, 0.01]
    assert s.latency == pytest.approx((0.075, 0.095, 0.0995))
    assert s.latency_all[0] == pytest.approx(0.005 + 0.005 * 70 / 100)
    assert s.statuses == [("200", 120, 15.0), ("500", 10, 5.0), ("404", 10, 0.0)]
    assert s.methods == [("GET", 130, 15.0), ("POST", 10, 5.0)]


def test_summarize_first_scrape_has_totals_only_and_a_reset_counts_from_zero():
    text = exposition({("GET", "200"): 50}, {"0.01": 50}, ferrowsgi_workers=1)
    first = top.summarize(None, top.parse(text), None)
    assert (first.requests, first.requests_rate, first.seconds) == (50, None, None)
    assert first.latency == (None, None, None) and first.latency_all[0] == pytest.approx(0.0075)
    assert first.statuses == [("200", 50, None)]
    restarted = top.parse(exposition({("GET", "200"): 6}, {"0.01": 6}, ferrowsgi_workers=1))
    s = top.summarize(top.parse(text), restarted, 2.0)
    assert s.requests_rate == 3.0 and s.statuses == [("200", 6, 3.0)]
    assert s.latency[0] == pytest.approx(0.0075)  # the 6 new ones, not 6 - 50


def test_render_shows_every_figure():
    before = top.parse(exposition({("GET", "200"): 0}, {"0.01": 0}, ferrowsgi_workers=2))
    now = top.parse(
        exposition(
            {("GET", "200"): 1800, ("POST", "503"): 200},
            {"0.005": 0, "0.01": 2000},
            ferrowsgi_workers=2,
            ferrowsgi_requests_in_flight=4,
            ferrowsgi_response_bytes_total=3 * 1024 * 1024,
            **{'ferrowsgi_worker_restarts_total{cause="timeout"}': 1},
        )
    )
    console = Console(record=True, width=100, file=io.StringIO(), color_system=None)
    console.print(top.render("http://h:1/metrics", top.summarize(before, now, 10.0), 1.0))
    shown = console.export_text()
    for expected in [
        r"ferrowsgi top  http://h:1/metrics  every 1 s · q quits",
        r"Requests +200\.0/s +2,000 total",
        r"Latency +p50 7\.50 ms +p90 9\.50 ms +p99 9\.95 ms +\(last 10\.0 s\)",
        r"In flight +4 +waiting for a thread 0",
        r"Traffic +in 0 B/s +out 307\.2 KiB/s",
        r"Workers +2 alive *\n"
        r"Restarts +crash 0 · timeout 1 · max-requests 0 · memory 0 · reload 0 *\n",
        r"200 +1,800 +180\.0 +GET +1,800 +180\.0",
        r"503 +200 +20\.0 +POST +200 +20\.0",
    ]:
        assert re.search(expected, shown), f"{expected!r} not in:\n{shown}"


@pytest.mark.parametrize(
    "given, url",
    [
        ("http://10.0.0.1:9100/metrics", "http://10.0.0.1:9100/metrics"),
        ("10.0.0.1:9100", "http://10.0.0.1:9100/metrics"),
        ("https://example.com:443/custom", "https://example.com:443/custom"),
        ("http://[::1]:9100", "http://[::1]:9100/metrics"),
        (":9200", "http://127.0.0.1:9200/metrics"),
        ("9200", "http://127.0.0.1:9200/metrics"),
    ],
)
def test_metrics_url_accepts_a_url_or_host_port(given, url):
    assert top.metrics_url(given) == url


@pytest.mark.parametrize("given", ["ftp://h:21/metrics", "localhost", "http://h:99999", ""])
def test_metrics_url_refuses_anything_else(given):
    with pytest.raises(ValueError, match="not a metrics URL or HOST:PORT"):
        top.metrics_url(given)


# --- the command in a pseudo-terminal -------------------------------------------------

# The child makes the pty its controlling terminal, so Ctrl-C typed there is a SIGINT.
CTTY = (
    "import fcntl, os, sys, termios; fcntl.ioctl(0, termios.TIOCSCTTY, 0); "
    "os.execv(sys.executable, [sys.executable, '-m', 'ferrowsgi', *sys.argv[1:]])"
)


class Screen:
    """``ferrowsgi ARGS`` on a 100x30 pseudo-terminal; what it draws is read all along."""

    def __init__(self, *args: str, env: dict[str, str] | None = None):
        self.master, self.slave = os.openpty()
        fcntl.ioctl(self.slave, termios.TIOCSWINSZ, struct.pack("HHHH", 30, 100, 0, 0))
        full_env = dict(os.environ, TERM="xterm", COLUMNS="100", LINES="30")
        full_env["PYTHONPATH"] = os.pathsep.join([str(APPS), str(ROOT)])
        full_env.update(env or {})
        self.proc = subprocess.Popen(
            [sys.executable, "-c", CTTY, *args],
            stdin=self.slave,
            stdout=self.slave,
            stderr=self.slave,
            env=full_env,
            start_new_session=True,
        )
        self.raw = b""
        self._stop = False
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        while not self._stop:
            if select.select([self.master], [], [], 0.05)[0]:
                try:
                    self.raw += os.read(self.master, 65536)
                except OSError:
                    return

    def text(self) -> str:
        """Everything drawn so far, escape sequences removed."""
        return ANSI.sub("", self.raw.decode("utf-8", "replace")).replace("\r", "")

    def frames(self) -> list[str]:
        """Each screen drawn so far (the header starts one), trailing blanks removed."""
        parts = self.text().split(HEADER)[1:]
        return ["\n".join(line.rstrip() for line in (HEADER + p).splitlines()) for p in parts]

    def wait_for(self, pattern: str, timeout: float = 15.0, words: bool = False) -> re.Match:
        """The first screen where ``pattern`` matches; fails after ``timeout`` seconds.
        ``words``: match the screen's words joined by one space (long lines wrap)."""
        rx = re.compile(pattern)

        def find() -> re.Match[str] | None:
            frames = [" ".join(f.split()) if words else f for f in self.frames()]
            return next((m for f in frames if (m := rx.search(f))), None)

        found = wait_until(find, timeout)
        last = (self.frames() or [self.text()])[-1]
        assert found, f"no screen matching {pattern!r}; last screen:\n{last}"
        return found

    def press(self, keys: bytes) -> None:
        os.write(self.master, keys)

    def exit_status(self, timeout: float = 5.0) -> int:
        return self.proc.wait(timeout)

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        self._stop = True
        self._reader.join(2)
        os.close(self.master)
        os.close(self.slave)


@pytest.fixture
def screen():
    """Factory: ``screen("top", URL)`` → a running :class:`Screen`, closed at the end."""
    opened: list[Screen] = []

    def start(*args: str, env: dict[str, str] | None = None) -> Screen:
        opened.append(Screen(*args, env=env))
        return opened[-1]

    yield start
    for s in opened:
        s.close()


def fake_metrics(seconds: float) -> str:
    """A ferrowsgi exposition whose counters grow with ``seconds``: 180 GET 200 and 20
    POST 500 a second, all taking (5, 10] ms; 10 KiB/s in, 2 MiB/s out; 3 connections
    and 20 exceptions a second."""
    ok, failed = int(180 * seconds), int(20 * seconds)
    return exposition(
        {("GET", "200"): ok, ("POST", "500"): failed},
        {"0.005": 0, "0.01": ok + failed},
        ferrowsgi_requests_in_flight=7,
        ferrowsgi_requests_waiting=2,
        ferrowsgi_request_bytes_total=int(10 * 1024 * seconds),
        ferrowsgi_response_bytes_total=int(2 * 1024 * 1024 * seconds),
        ferrowsgi_connections_open=5,
        ferrowsgi_connections_accepted_total=int(3 * seconds),
        ferrowsgi_application_exceptions_total=failed,
        ferrowsgi_workers=4,
        **{
            'ferrowsgi_worker_restarts_total{cause="crash"}': 2,
            'ferrowsgi_worker_restarts_total{cause="max-requests"}': 5,
        },
    )


ANSWERS = {
    "/metrics": lambda t: (200, "text/plain; version=0.0.4", fake_metrics(t)),
    "/html": lambda t: (200, "text/html", "<html><body>hello</body></html>"),
    "/other": lambda t: (200, "text/plain", "# TYPE up gauge\nup 1\n"),
}


class FakeExporter(http.server.BaseHTTPRequestHandler):
    """``/metrics`` as :func:`fake_metrics` (from the server's start), ``/html`` a web page,
    ``/other`` someone else's metrics; anything else 404."""

    def do_GET(self) -> None:
        answer = ANSWERS.get(self.path)
        t = time.monotonic() - self.server.started  # type: ignore[attr-defined]
        status, ctype, text = answer(t) if answer else (404, "text/plain", "not found")
        body = text.encode()
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def exporter():
    """Factory: ``exporter(port=0)`` → the port of a running fake exporter."""
    servers: list[http.server.ThreadingHTTPServer] = []

    def start(port: int = 0) -> int:
        server = http.server.ThreadingHTTPServer(("127.0.0.1", port), FakeExporter)
        server.daemon_threads = True
        server.started = time.monotonic()  # type: ignore[attr-defined]
        threading.Thread(target=server.serve_forever, daemon=True).start()
        servers.append(server)
        return server.server_address[1]

    yield start
    for server in servers:
        server.shutdown()
        server.server_close()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_top_shows_rates_and_percentiles_of_a_fake_exporter_and_quits_on_q(exporter, screen):
    port = exporter()
    s = screen("top", f"127.0.0.1:{port}")
    s.wait_for(rf"ferrowsgi top  http://127\.0\.0\.1:{port}/metrics  every 1 s · q quits")
    assert not termios.tcgetattr(s.slave)[3] & (termios.ICANON | termios.ECHO), "not cbreak"
    m = s.wait_for(r"Requests +([\d,.]+)/s +[\d,]+ total")
    assert 160 <= float(m[1].replace(",", "")) <= 240, m[0]  # 200 a second
    shown = s.wait_for(r"Latency +p50 7\.50 ms +p90 9\.50 ms +p99 9\.95 ms +\(last 1\.\d s\)")
    frame = next(f for f in s.frames() if shown[0] in f)
    for expected in [
        r"p50 7\.50 ms +p90 9\.50 ms +p99 9\.95 ms +\(since start\)",
        r"In flight +7 +waiting for a thread 2",
        r"Connections +5 open +[23]\.\d/s accepted",
        r"Traffic +in (9|10|11)\.\d KiB/s +out (1\.[7-9]|2\.[0-3]) MiB/s",
        r"Exceptions +[\d,]+ total +(1[6-9]|2[0-4]) in the last 1\.\d s",
        r"Workers +4 alive\nRestarts +crash 2 · timeout 0 · max-requests 5 · memory 0 · reload 0\n",
        r"Status +total +per s +Method +total +per s",
        r"\n 200 +[\d,]+ +1[4-9]\d\.\d +GET +[\d,]+ +1[4-9]\d\.\d",
        r"\n 500 +[\d,]+ +(1[6-9]|2[0-4])\.\d +POST +[\d,]+ +(1[6-9]|2[0-4])\.\d",
    ]:
        assert re.search(expected, frame), f"{expected!r} not in:\n{frame}"
    s.press(b"q")
    assert s.exit_status() == 0
    assert s.raw.endswith(b"\x1b[?25h\x1b[?1049l"), "cursor and main screen not restored"
    lflag = termios.tcgetattr(s.slave)[3]
    assert lflag & termios.ICANON and lflag & termios.ECHO, "terminal left in cbreak mode"


def test_ctrl_c_quits_and_restores_the_terminal(exporter, screen):
    s = screen("top", f"http://127.0.0.1:{exporter()}/metrics", "--interval", "0.2")
    s.wait_for(r"Requests +[\d,.]+/s")
    s.press(b"\x03")
    assert s.exit_status() == 0
    assert s.raw.endswith(b"\x1b[?25h\x1b[?1049l")
    assert termios.tcgetattr(s.slave)[3] & termios.ECHO


def test_unreachable_endpoint_is_said_on_screen_retried_and_q_quits(exporter, screen):
    port = free_port()
    s = screen("top", f"127.0.0.1:{port}", "--interval", "0.3")
    s.wait_for(
        rf"\nCannot reach http://127\.0\.0\.1:{port}/metrics: Connection refused\.\n"
        r"Is ferrowsgi running with --metrics-bind HOST:PORT\?\nRetrying every 0\.3 s\.\n"
    )
    assert "Traceback" not in s.text()
    exporter(port)  # it comes up: the next try shows the figures
    s.wait_for(r"Workers +4 alive")
    s.press(b"q")
    assert s.exit_status() == 0


@pytest.mark.parametrize(
    "path, message",
    [
        ("/nope", r"answered 404 Not Found: not a metrics endpoint\. ferrowsgi serves its "
                  r"metrics at /metrics\. Retrying every 1 s\."),
        ("/html", r"answered, but not with Prometheus metrics: line 1 is not a metric sample: "
                  r"'<html><body>hello</body></html>'\. Retrying"),
        ("/other", r"serves metrics, but not ferrowsgi's \(no ferrowsgi_\* series\)\. Retrying"),
    ],
)  # fmt: skip
def test_an_endpoint_that_is_not_ferrowsgi_metrics_is_named_on_screen(
    exporter, screen, path, message
):
    url = f"http://127.0.0.1:{exporter()}{path}"
    s = screen("top", url)
    s.wait_for(re.escape(url) + " " + message, words=True)
    assert "Traceback" not in s.text()
    s.press(b"q")
    assert s.exit_status() == 0


def test_top_against_a_live_server_shows_its_requests_and_workers(start_server, screen):
    port = free_port()
    server = start_server("top:app", "--metrics-bind", f"127.0.0.1:{port}")
    url = f"http://127.0.0.1:{port}/metrics"

    def scrape() -> str:
        try:
            with urllib.request.urlopen(url, timeout=5) as answer:
                return answer.read().decode()
        except OSError:
            return ""

    assert wait_until(scrape, 10), f"{url} does not answer; log:\n{server.log}"
    with httpx.Client(base_url=server.url, timeout=10) as client:
        assert [client.get("/").status_code for _ in range(20)] == [200] * 20
        assert [client.get(f"/missing/{i}").status_code for i in range(3)] == [404] * 3
    s = screen("top", url)
    s.wait_for(r"Requests +[\d,.…]+/s +23 total")
    frame = s.wait_for(r"Workers +1 alive\nRestarts +crash 0 · timeout 0")[0]
    s.wait_for(r"\n 200 +20 +\S+ +GET +23 ")
    s.wait_for(r"\n 404 +3 ")
    s.press(b"q")
    assert s.exit_status() == 0, frame


# --- the command's edges --------------------------------------------------------------


def ferrowsgi(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    full_env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(APPS), str(ROOT)]))
    full_env.update(env or {})
    return subprocess.run(
        [sys.executable, "-m", "ferrowsgi", *args],
        capture_output=True, text=True, env=full_env, timeout=30,
    )  # fmt: skip


def test_without_rich_top_says_how_to_install_it(tmp_path):
    hidden = tmp_path / "rich"
    hidden.mkdir()
    (hidden / "__init__.py").write_text("raise ImportError('rich is not installed')\n")
    path = os.pathsep.join([str(tmp_path), str(APPS), str(ROOT)])
    done = ferrowsgi("top", "127.0.0.1:1", env={"PYTHONPATH": path})
    assert done.returncode == 2
    assert done.stderr == "ferrowsgi top needs rich: pip install 'ferrowsgi[top]'\n"


def test_top_help_and_bad_usage():
    helped = ferrowsgi("top", "--help")
    assert helped.returncode == 0
    assert "usage: ferrowsgi top [-h] [--interval SECONDS] [METRICS_URL]" in helped.stdout
    assert "pip install 'ferrowsgi[top]'" in helped.stdout
    bad = ferrowsgi("top", "ftp://h:21/")
    assert (bad.returncode, bad.stderr) == (
        2, "ferrowsgi top: error: not a metrics URL or HOST:PORT: 'ftp://h:21/'\n"
    )  # fmt: skip
    bad = ferrowsgi("top", "--interval", "0")
    assert bad.returncode == 2 and "--interval: between 0.1 and 3600 seconds" in bad.stderr


def test_serving_imports_neither_top_nor_rich():
    code = (
        "import sys, ferrowsgi.cli, ferrowsgi.master, ferrowsgi.worker; "
        "print(sorted(m for m in sys.modules if m == 'ferrowsgi.top' or m.startswith('rich')))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert (done.returncode, done.stdout) == (0, "[]\n"), done.stderr


def test_an_application_module_named_top_is_still_served_as_top_colon_app(start_server):
    server = start_server("top:app")
    answer = httpx.get(server.url + "/", timeout=10)
    assert (answer.status_code, answer.text) == (200, "top app")
    assert httpx.get(server.url + "/missing", timeout=10).status_code == 404
