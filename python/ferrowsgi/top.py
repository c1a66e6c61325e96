"""``ferrowsgi top [METRICS_URL]``: a live terminal view of a running server, read from
its Prometheus endpoint (``--metrics-bind HOST:PORT`` serves ``/metrics``).

Rules this module keeps:

* Nothing on the serving path imports it: :mod:`ferrowsgi.cli` imports it only when
  the first argument is the word ``top``. It imports nothing else of ferrowsgi, and
  rich (the ``top`` extra, ``pip install 'ferrowsgi[top]'``) only for the screen.
* Three layers, each testable alone: :func:`parse` (exposition text to a
  :class:`Scrape`), :func:`summarize` (two scrapes and the seconds between them to a
  :class:`Summary` of plain numbers) and :func:`render` (a Summary to a rich
  renderable). :func:`watch` is the loop: fetch, render, wait for a key.
* Rates are deltas of counters between two scrapes divided by the seconds between
  them; a counter that went down (the server restarted) counts from zero again, as
  Prometheus's ``rate()`` does. Percentiles are estimated from the delta of the
  duration histogram's buckets as Prometheus's ``histogram_quantile`` does.
* A failed scrape is shown on the screen (never a traceback) and retried each
  interval; ``q`` and Ctrl-C quit at any time, with the terminal restored.

The exposition parser is ours (about 40 lines) rather than ``prometheus_client``'s:
the extra stays one package (rich), and we read samples by name only. The subset
read, of the text format 0.0.4 (and what OpenMetrics adds that the Rust
``prometheus-client`` crate writes): one sample per line, ``name value`` or
``name{label="value",...} value``, then an optional timestamp (ignored); label values
with the escapes ``\\\\``, ``\\"`` and ``\\n``; values as Python's ``float`` reads them
(``+Inf``, ``-Inf``, ``NaN``, ``1e3``); ``#`` lines (``# HELP``, ``# TYPE``, ``# EOF``)
and blank lines skipped; exemplars (after `` # `` on a sample line) ignored.
"""

from __future__ import annotations

import argparse
import contextlib
import math
import os
import re
import signal
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from urllib.parse import urlsplit

try:  # the `top` extra; main() says how to install it when missing
    from rich.console import Console, Group, RenderableType
    from rich.live import Live
    from rich.table import Table
    from rich.text import Text
except ImportError:  # pragma: no cover - exercised by a test with rich hidden
    Console = None  # type: ignore[assignment,misc]

__all__ = ["Scrape", "Summary", "main", "parse", "quantile", "render", "summarize", "watch"]

DEFAULT_URL = "http://127.0.0.1:9100/metrics"
INSTALL = "ferrowsgi top needs rich: pip install 'ferrowsgi[top]'"
QUANTILES = (0.5, 0.9, 0.99)
RESTART_CAUSES = ("crash", "timeout", "max-requests", "memory", "reload")  # the spec's
MAX_BODY = 16 << 20  # bytes read from the endpoint at most
TOP_ROWS = 5  # rows of the status and method tables

Labels = tuple[tuple[str, str], ...]  # sorted (name, value) pairs


# --- parsing ---------------------------------------------------------------------------

_NAME = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*")
_LABEL = re.compile(r'\s*([a-zA-Z_][a-zA-Z0-9_]*)\s*=\s*"((?:[^"\\\n]|\\.)*)"\s*(,?)\s*')
_ESCAPE = re.compile(r"\\(.)")


@dataclass(frozen=True)
class Scrape:
    """One scrape: ``samples[name][labels] = value`` (sample names, ``_total`` kept)."""

    samples: dict[str, dict[Labels, float]]

    def value(self, name: str, **match: str) -> float:
        """The sum of the samples ``name`` whose labels include ``match`` (0 if none)."""
        want = set(match.items())
        return sum(v for k, v in self.samples.get(name, {}).items() if want <= set(k))

    def has(self, name: str) -> bool:
        """True when the scrape holds at least one sample ``name``."""
        return name in self.samples

    def by(self, name: str, label: str) -> dict[str, float]:
        """The samples ``name`` summed by the value of one label."""
        out: dict[str, float] = {}
        for labels, v in self.samples.get(name, {}).items():
            key = dict(labels).get(label, "")
            out[key] = out.get(key, 0.0) + v
        return out

    def buckets(self, histogram: str) -> list[tuple[float, float]]:
        """A histogram's cumulative buckets, ``(upper bound in seconds, count)`` by bound."""
        found = self.by(f"{histogram}_bucket", "le")
        return sorted((float(le), count) for le, count in found.items() if le)


def parse(text: str) -> Scrape:
    """Parse the Prometheus text exposition format (the subset in the module docstring).

    Raises ``ValueError`` naming the first line that is not a sample.
    """
    samples: dict[str, dict[Labels, float]] = {}
    for number, line in enumerate(text.splitlines(), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        try:
            name, labels, value = _sample(line)
        except ValueError:
            raise ValueError(f"line {number} is not a metric sample: {line[:80]!r}") from None
        samples.setdefault(name, {})[labels] = value
    return Scrape(samples)


def _sample(line: str) -> tuple[str, Labels, float]:
    m = _NAME.match(line)
    if not m:
        raise ValueError(line)
    pos, labels = m.end(), []
    if line.startswith("{", pos):
        pos += 1
        while not line.startswith("}", pos):
            lm = _LABEL.match(line, pos)
            if not lm:
                raise ValueError(line)
            value = _ESCAPE.sub(lambda e: "\n" if e[1] == "n" else e[1], lm[2])
            labels.append((lm[1], value))
            pos = lm.end()
            if not lm[3] and not line.startswith("}", pos):
                raise ValueError(line)
        pos += 1
    rest = line[pos:].split()
    if not rest or not line[pos : pos + 1].isspace():  # the value, after a blank
        raise ValueError(line)
    return m[0], tuple(sorted(labels)), float(rest[0])


# --- figures from two scrapes ----------------------------------------------------------


def quantile(q: float, buckets: list[tuple[float, float]]) -> float | None:
    """The ``q`` quantile (0 < q < 1) of a histogram's cumulative ``buckets`` (upper bound,
    count; sorted, the last ``+Inf``), in the bounds' unit; None without observations.

    As Prometheus's ``histogram_quantile`` (promql/quantile.go, ``bucketQuantile``): the
    rank ``q * count`` falls in the first bucket whose count reaches it, and the value is
    interpolated linearly between that bucket's bounds (0 below the first, when positive);
    in the ``+Inf`` bucket, the highest finite bound is the answer.
    """
    if len(buckets) < 2 or buckets[-1][0] != math.inf or buckets[-1][1] <= 0:
        return None
    counts = [c for _, c in buckets]
    for i in range(1, len(counts)):  # a scrape racing an update may be off by one
        counts[i] = max(counts[i], counts[i - 1])
    rank = q * counts[-1]
    i = next(i for i, c in enumerate(counts) if c >= rank)
    if i == len(buckets) - 1:
        return buckets[-2][0]
    upper = buckets[i][0]
    if i == 0 and upper <= 0:
        return upper
    lower, below = (0.0, 0.0) if i == 0 else (buckets[i - 1][0], counts[i - 1])
    return lower + (upper - lower) * (rank - below) / (counts[i] - below)


def _delta(now: float, before: float) -> float:
    """A counter's increase; a counter that went down was reset, so it counts from 0."""
    return now - before if now >= before else now


def _delta_buckets(now: list[tuple[float, float]], before: list[tuple[float, float]]):
    old = dict(before)
    if any(count < old.get(le, 0.0) for le, count in now):  # reset: all of `now` is new
        return now
    return [(le, count - old.get(le, 0.0)) for le, count in now]


@dataclass(frozen=True)
class Summary:
    """What the screen shows. Totals are since the server started (summed over its
    workers); ``*_rate`` are per second over ``seconds`` (None on the first scrape);
    latencies are in seconds, None when no request ended in the window."""

    seconds: float | None
    requests: float
    requests_rate: float | None
    latency: tuple[float | None, ...]  # QUANTILES, over the last window
    latency_all: tuple[float | None, ...]  # QUANTILES, since start
    in_flight: float
    waiting: float
    connections_open: float
    accepted_rate: float | None
    bytes_in_rate: float | None
    bytes_out_rate: float | None
    exceptions: float
    exceptions_new: float | None
    workers: float | None
    restarts: dict[str, float]
    statuses: list[tuple[str, float, float | None]]  # (code, total, per second)
    methods: list[tuple[str, float, float | None]]


def summarize(before: Scrape | None, now: Scrape, seconds: float | None) -> Summary:
    """The figures of ``now``, with rates over the ``seconds`` since ``before``."""

    def rate(name: str) -> float | None:
        if before is None or not seconds:
            return None
        return _delta(now.value(name), before.value(name)) / seconds

    window = before is not None and bool(seconds)

    def table(label: str) -> list[tuple[str, float, float | None]]:
        totals = now.by("ferrowsgi_requests_total", label)
        old = before.by("ferrowsgi_requests_total", label) if before is not None else {}
        rows = [
            (key, total, _delta(total, old.get(key, 0.0)) / seconds if window else None)
            for key, total in totals.items()
        ]
        return sorted(rows, key=lambda r: (-(r[2] or 0.0), -r[1], r[0]))[:TOP_ROWS]

    hist = "ferrowsgi_request_duration_seconds"
    recent = now.buckets(hist)
    if before is not None:
        recent = _delta_buckets(recent, before.buckets(hist))
    restarts = dict.fromkeys(RESTART_CAUSES, 0.0)
    restarts.update(now.by("ferrowsgi_worker_restarts_total", "cause"))
    exceptions = now.value("ferrowsgi_application_exceptions_total")
    return Summary(
        seconds=seconds if window else None,
        requests=now.value("ferrowsgi_requests_total"),
        requests_rate=rate("ferrowsgi_requests_total"),
        latency=tuple(quantile(q, recent) if window else None for q in QUANTILES),
        latency_all=tuple(quantile(q, now.buckets(hist)) for q in QUANTILES),
        in_flight=now.value("ferrowsgi_requests_in_flight"),
        waiting=now.value("ferrowsgi_requests_waiting"),
        connections_open=now.value("ferrowsgi_connections_open"),
        accepted_rate=rate("ferrowsgi_connections_accepted_total"),
        bytes_in_rate=rate("ferrowsgi_request_bytes_total"),
        bytes_out_rate=rate("ferrowsgi_response_bytes_total"),
        exceptions=exceptions,
        exceptions_new=None
        if before is None
        else _delta(exceptions, before.value("ferrowsgi_application_exceptions_total")),
        workers=now.value("ferrowsgi_workers") if now.has("ferrowsgi_workers") else None,
        restarts=restarts,
        statuses=table("status"),
        methods=table("method"),
    )


# --- the screen --------------------------------------------------------------------------


def render(url: str, s: Summary, interval: float) -> RenderableType:
    """The screen for one refresh: a header, the figures, the top status codes and methods."""
    window = f"last {s.seconds:.1f} s" if s.seconds else "last interval: from the next scrape"
    restarts = " · ".join(f"{cause} {_count(n)}" for cause, n in s.restarts.items())
    grid = Table.grid(padding=(0, 2))
    grid.add_column(style="bold")
    grid.add_column()
    grid.add_row("Requests", f"{_per_s(s.requests_rate)}   {_count(s.requests)} total")
    grid.add_row("Latency", f"{_percentiles(s.latency)}   ({window})")
    grid.add_row("", f"{_percentiles(s.latency_all)}   (since start)")
    grid.add_row("In flight", f"{_count(s.in_flight)}   waiting for a thread {_count(s.waiting)}")
    grid.add_row(
        "Connections", f"{_count(s.connections_open)} open   {_per_s(s.accepted_rate)} accepted"
    )
    grid.add_row("Traffic", f"in {_bytes(s.bytes_in_rate)}   out {_bytes(s.bytes_out_rate)}")
    new = "" if s.exceptions_new is None else f"   {_count(s.exceptions_new)} in the {window}"
    grid.add_row("Exceptions", f"{_count(s.exceptions)} total{new}")
    workers = "?" if s.workers is None else _count(s.workers)
    grid.add_row("Workers", f"{workers} alive")
    grid.add_row("Restarts", Text(restarts))  # Text: labels from the endpoint, no markup
    tables = Table.grid(padding=(0, 4))
    tables.add_row(_top_table("Status", s.statuses), _top_table("Method", s.methods))
    return Group(_header(url, interval), Text(""), grid, Text(""), tables)


def render_error(url: str, message: str, hint: str, interval: float) -> RenderableType:
    """The screen while the endpoint cannot be read: what went wrong, what to check, and
    that we retry."""
    lines = [_header(url, interval), Text(""), Text(message, style="bold red")]
    lines += [Text(hint)] if hint else []
    return Group(*lines, Text(f"Retrying every {interval:g} s.", style="dim"))


def _header(url: str, interval: float) -> Text:
    return Text.assemble(
        ("ferrowsgi top", "bold"), f"  {url}  ", (f"every {interval:g} s · q quits", "dim")
    )


def _top_table(title: str, rows: list[tuple[str, float, float | None]]) -> Table:
    table = Table(box=None, padding=(0, 1), show_edge=False, header_style="bold")
    table.add_column(title)
    table.add_column("total", justify="right")
    table.add_column("per s", justify="right")
    for key, total, rate in rows:
        table.add_row(Text(key), _count(total), "…" if rate is None else f"{rate:,.1f}")
    return table


def _count(n: float) -> str:
    return f"{n:,.0f}"


def _per_s(rate: float | None) -> str:
    return "…/s" if rate is None else f"{rate:,.1f}/s"


def _percentiles(values: tuple[float | None, ...]) -> str:
    return "   ".join(f"p{q * 100:g} {_duration(v)}" for q, v in zip(QUANTILES, values))


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return "–"
    if seconds >= 1:
        return f"{seconds:.2f} s"
    ms = seconds * 1000
    return f"{ms:.2f} ms" if ms < 10 else f"{ms:.1f} ms" if ms < 100 else f"{ms:.0f} ms"


def _bytes(rate: float | None) -> str:
    if rate is None:
        return "…/s"
    for unit in ("B", "KiB", "MiB", "GiB"):
        if rate < 1024 or unit == "GiB":
            return f"{rate:.0f} B/s" if unit == "B" else f"{rate:.1f} {unit}/s"
        rate /= 1024
    raise AssertionError("unreachable")  # the loop returns at GiB


# --- fetching, keys, the loop ----------------------------------------------------------


class ScrapeError(Exception):
    """The endpoint could not be read, or did not answer with ferrowsgi's metrics:
    ``message`` (what went wrong) and ``hint`` (what to check), shown on the screen."""

    def __init__(self, message: str, hint: str = ""):
        super().__init__(message)
        self.message, self.hint = message, hint


def metrics_url(text: str) -> str:
    """The URL to scrape from ``METRICS_URL``: a URL, ``HOST:PORT``, ``:PORT`` or ``PORT``
    (host 127.0.0.1); ``http://`` and the path ``/metrics`` added when absent.
    Raises ``ValueError`` for anything else."""
    given = text.strip()
    text = f"127.0.0.1:{given}" if given.isdigit() else given
    text = f"127.0.0.1{text}" if text.startswith(":") else text
    parts = urlsplit(text if "://" in text else f"http://{text}")
    try:
        port = parts.port  # ValueError when out of range
    except ValueError:
        port = None
    if parts.scheme not in ("http", "https") or not parts.hostname or port is None:
        raise ValueError(f"not a metrics URL or HOST:PORT: {given!r}")
    return (parts._replace(path="/metrics") if not parts.path else parts).geturl()


def fetch(url: str, timeout: float) -> Scrape:
    """GET ``url`` (directly: proxies are not used, as Prometheus does not by default) and
    parse it. Raises :class:`ScrapeError` with a message for the screen."""
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        with opener.open(url, timeout=timeout) as answer:
            body = answer.read(MAX_BODY)
    except urllib.error.HTTPError as e:
        e.close()
        hint = "ferrowsgi serves its metrics at /metrics." if e.code == 404 else ""
        message = f"{url} answered {e.code} {e.reason}: not a metrics endpoint."
        raise ScrapeError(message, hint) from None
    except urllib.error.URLError as e:
        reason = getattr(e.reason, "strerror", None) or str(e.reason)
        hint = "Is ferrowsgi running with --metrics-bind HOST:PORT?"
        raise ScrapeError(f"Cannot reach {url}: {reason}.", hint) from None
    except (OSError, ValueError) as e:  # timeouts, resets, an answer that is not HTTP
        raise ScrapeError(f"Cannot read {url}: {e or type(e).__name__}.") from None
    try:
        scrape = parse(body.decode("utf-8", "replace"))
    except ValueError as e:
        raise ScrapeError(f"{url} answered, but not with Prometheus metrics: {e}.") from None
    if not scrape.has("ferrowsgi_requests_total") and not scrape.has("ferrowsgi_workers"):
        raise ScrapeError(f"{url} serves metrics, but not ferrowsgi's (no ferrowsgi_* series).")
    return scrape


class _Keys:
    """Single key presses from a terminal on stdin: cbreak mode (no echo, no line
    buffering; Ctrl-C still interrupts) while in the ``with`` block, restored after.
    Without a terminal on stdin, no keys are read (Ctrl-C or a signal quits)."""

    def __init__(self) -> None:
        try:
            self.fd: int | None = sys.stdin.fileno() if sys.stdin and sys.stdin.isatty() else None
        except (OSError, ValueError):
            self.fd = None
        self.saved: list | None = None

    def __enter__(self) -> _Keys:
        import termios
        import tty

        if self.fd is not None:
            self.saved = termios.tcgetattr(self.fd)
            tty.setcbreak(self.fd)
        return self

    def __exit__(self, *exc: object) -> None:
        import termios

        if self.fd is not None and self.saved is not None:
            termios.tcsetattr(self.fd, termios.TCSADRAIN, self.saved)

    def quit_within(self, seconds: float) -> bool:
        """Wait up to ``seconds``; True as soon as ``q`` is pressed."""
        import select

        deadline = time.monotonic() + max(seconds, 0.0)
        while (left := deadline - time.monotonic()) > 0:
            if self.fd is None:
                time.sleep(left)
                return False
            ready, _, _ = select.select([self.fd], [], [], left)
            if ready:
                data = os.read(self.fd, 64)
                if not data:  # the terminal went away
                    self.fd = None
                elif b"q" in data.lower():
                    return True
        return False


def watch(url: str, interval: float, console: Console) -> int:
    """Scrape ``url`` every ``interval`` seconds and show it on ``console`` until ``q``;
    returns 0. Ctrl-C raises KeyboardInterrupt, with the terminal restored. On a terminal
    the view redraws in the alternate screen; elsewhere (a pipe, a file) each view is
    printed after the last."""
    before: tuple[Scrape, float] | None = None
    timeout = min(max(interval, 0.5), 5.0)
    live = Live(console=console, screen=True, auto_refresh=False)
    with _Keys() as keys, live if console.is_terminal else contextlib.nullcontext():
        while True:
            started = time.monotonic()
            try:
                now = fetch(url, timeout)
            except ScrapeError as e:
                view = render_error(url, e.message, e.hint, interval)
                before = None
            else:
                old, seconds = (before[0], started - before[1]) if before else (None, None)
                view = render(url, summarize(old, now, seconds), interval)
                before = (now, started)
            if console.is_terminal:
                live.update(view, refresh=True)
            else:
                console.print(view, "")
            if keys.quit_within(started + interval - time.monotonic()):
                return 0


def main(argv: list[str]) -> int:
    """``ferrowsgi top [METRICS_URL] [--interval SECONDS]``; returns the exit status: 0 on
    ``q`` or Ctrl-C, 2 for bad usage or when rich is not installed."""
    parser = argparse.ArgumentParser(
        prog="ferrowsgi top",
        description="A live view of a running ferrowsgi server, read from its metrics "
        "endpoint (start the server with --metrics-bind HOST:PORT). q or Ctrl-C quits.",
        epilog="Needs rich: pip install 'ferrowsgi[top]'.",
    )
    parser.add_argument(
        "url", nargs="?", default=DEFAULT_URL, metavar="METRICS_URL",
        help=f"the metrics URL, or HOST:PORT (path /metrics) [default: {DEFAULT_URL}]",
    )  # fmt: skip
    parser.add_argument(
        "--interval", type=float, default=1.0, metavar="SECONDS",
        help="seconds between refreshes [default: 1]",
    )  # fmt: skip
    try:
        args = parser.parse_args(argv)
    except SystemExit as e:  # --help, or a usage error (already printed)
        return e.code if isinstance(e.code, int) else 0
    try:
        url = metrics_url(args.url)
        if not 0.1 <= args.interval <= 3600:
            raise ValueError(f"--interval: between 0.1 and 3600 seconds, not {args.interval:g}")
    except ValueError as e:
        print(f"ferrowsgi top: error: {e}", file=sys.stderr)
        return 2
    if Console is None:
        print(INSTALL, file=sys.stderr)
        return 2
    for sig in (signal.SIGTERM, signal.SIGHUP):  # leave through the `with`: terminal restored
        signal.signal(sig, lambda signum, _frame: sys.exit(128 + signum))
    try:
        return watch(url, args.interval, Console())
    except KeyboardInterrupt:
        return 0
