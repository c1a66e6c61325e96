"""Tables for benches/run.py: medians, ratios, the issue's targets, RESULTS.md.

Every table is Markdown, printed as is and written to ``benches/RESULTS.md``
with ``--write``. Ratios are always ferrowsgi / peer: above 1 ferrowsgi is
faster, except for RSS, PSS, latency and CPU time where below 1 is better. CPU
time per request is also shown as a multiple of the kernel floor's
(``benches/floor_server``), the least any server can spend.
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass, field

from benches.harness import Load

FERRO = "ferrowsgi"
FLOOR = "floor"  # the kernel floor server, the unit of CPU time per request


@dataclass
class Sample:
    """What one run of one server on one workload measured."""

    load: Load
    rss_kib: int  # the worker's, after the load
    pss_kib: int | None = None  # the same worker's at the same moment (0/None: unreadable)
    baseline: Load | None = None  # c10k: the same load without the idle connections
    idle_kib: float | None = None  # c10k: worker RSS per idle connection, KiB


@dataclass
class Cell:
    """Every pass of one server on one workload."""

    loads: list[Load] = field(default_factory=list)
    rss_kib: list[int] = field(default_factory=list)
    pss_kib: list[int] = field(default_factory=list)  # the passes where PSS could be read
    failure: str | None = None
    shown: str | None = None  # the tables' short text for the failure, else "failed"
    baselines: list[Load] = field(default_factory=list)  # c10k only, as below
    idle_kib: list[float] = field(default_factory=list)

    def add(self, sample: Sample) -> None:
        """Record one pass."""
        self.loads.append(sample.load)
        self.rss_kib.append(sample.rss_kib)
        if sample.pss_kib:
            self.pss_kib.append(sample.pss_kib)
        if sample.baseline is not None and sample.idle_kib is not None:
            self.baselines.append(sample.baseline)
            self.idle_kib.append(sample.idle_kib)

    def _median(self, values: list[float]) -> float | None:
        return statistics.median(values) if values and self.failure is None else None

    def rps(self) -> float | None:
        """Median requests/s over the passes."""
        return self._median([x.requests_per_s for x in self.loads])

    def p50(self) -> float | None:
        """Median of the passes' p50 latency, ms."""
        return self._median([x.p50_ms for x in self.loads])

    def p99(self) -> float | None:
        """Median of the passes' p99 latency, ms."""
        return self._median([x.p99_ms for x in self.loads])

    def rss_mib(self) -> float | None:
        """Median worker RSS after the run, MiB."""
        return self._median([x / 1024 for x in self.rss_kib])

    def pss_mib(self) -> float | None:
        """Median worker PSS after the run, MiB (None if it could never be read)."""
        return self._median([x / 1024 for x in self.pss_kib])

    def cpu_us(self) -> float | None:
        """Median server CPU time per request, µs."""
        return self._median([x.cpu_us for x in self.loads if x.cpu_us is not None])

    def idle_ratio(self) -> float | None:
        """c10k: median over the passes of req/s with the idle connections ÷ without."""
        pairs = zip(self.loads, self.baselines)
        return self._median([x.requests_per_s / b.requests_per_s for x, b in pairs])

    def idle_cpu_ratio(self) -> float | None:
        """c10k: median over the passes of CPU per request with the idle connections ÷ without."""
        pairs = [(x.cpu_us, b.cpu_us) for x, b in zip(self.loads, self.baselines)]
        return self._median([x / b for x, b in pairs if x is not None and b])

    def idle_kib_median(self) -> float | None:
        """c10k: median worker RSS per idle connection, KiB."""
        return self._median(self.idle_kib)


@dataclass
class Report:
    """All results of one run, and what is needed to show them."""

    workloads: list[str]
    servers: list[str]
    bytes_per_request: dict[str, int]  # workloads reported in GB/s
    cells: dict[tuple[str, str], Cell] = field(default_factory=dict)
    failures: dict[str, str] = field(default_factory=dict)  # install failures
    labels: dict[str, str] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)  # how to read the numbers
    # Workloads whose CPU time is also shown per MiB of body: the body's bytes.
    per_mib: dict[str, int] = field(default_factory=dict)

    def cell(self, workload: str, server: str) -> Cell | None:
        """The cell, or None when that server does not run that workload."""
        return self.cells.get((workload, server))

    def label(self, server: str) -> str:
        """A server's column name."""
        return self.labels.get(server, server)


def throughput(report: Report, workload: str, rps: float | None) -> str:
    """``31.1k`` req/s, or ``1.39 GB/s`` for the workloads measured in bytes."""
    if rps is None:
        return "—"
    size = report.bytes_per_request.get(workload)
    if size:
        return f"{rps * size / 1e9:.2f} GB/s"
    return f"{rps / 1000:.1f}k" if rps >= 1000 else f"{rps:.0f}"


def _ratio(ours: float | None, theirs: float | None) -> str:
    return f"{ours / theirs:.2f}×" if ours and theirs else "—"


def _table(header: list[str], rows: list[list[str]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return lines + ["| " + " | ".join(row) + " |" for row in rows]


# How each metric is shown; "rps" is shown by throughput().
_FORMATS = {
    "p99": "{:.2f} ms",
    "rss": "{:.1f} MiB",
    "pss": "{:.1f} MiB",
    "cpu": "{:.2f} µs",
    "cpu_floor": "{:.1f}×",
    "idle_ratio": "{:.2f}×",
    "idle_cpu_ratio": "{:.2f}×",
    "idle_kib": "{:.2f} KiB",
}
# Metrics where less is better (the others: more is better).
LOWER_IS_BETTER = ("p99", "rss", "pss", "cpu", "cpu_floor", "idle_cpu_ratio", "idle_kib")


def _value(report: Report, workload: str, server: str, metric: str) -> str:
    cell = report.cell(workload, server)
    if cell is None:
        return "—"
    if cell.failure is not None:
        return cell.shown or "failed"
    if metric == "rps":
        return throughput(report, workload, cell.rps())
    value = _metric(report, workload, server, metric)
    return "—" if value is None else _FORMATS[metric].format(value)


def _rows(report: Report) -> list[tuple[str, str, str]]:
    """(row label, workload, metric) of the summary and ratio tables."""
    rows = [(w, w, "rps") for w in report.workloads]
    if "hello" in report.workloads:
        rows += [
            ("hello p99", "hello", "p99"),
            ("RSS after hello", "hello", "rss"),
            ("PSS after hello", "hello", "pss"),
            ("hello: server CPU per request", "hello", "cpu"),
            ("hello: CPU per request ÷ floor's", "hello", "cpu_floor"),
        ]
    if "pipelined" in report.workloads:
        rows += [
            ("pipelined: server CPU per request", "pipelined", "cpu"),
            ("pipelined: CPU per request ÷ floor's", "pipelined", "cpu_floor"),
        ]
    if "c10k" in report.workloads:
        rows += [
            ("c10k: req/s ÷ the same without idle connections", "c10k", "idle_ratio"),
            ("c10k: CPU per request ÷ the same without", "c10k", "idle_cpu_ratio"),
            ("c10k: worker RSS per idle connection", "c10k", "idle_kib"),
        ]
    return rows


def summary_table(report: Report) -> list[str]:
    """Workloads down, servers across: req/s (GB/s for big), p99, RSS, PSS."""
    header = ["workload", *map(report.label, report.servers)]
    rows = [
        [label, *(_value(report, w, s, metric) for s in report.servers)]
        for label, w, metric in _rows(report)
    ]
    return _table(header, rows)


def _metric(report: Report, workload: str, server: str, metric: str) -> float | None:
    cell = report.cell(workload, server)
    if cell is None:
        return None
    if metric == "cpu_floor":
        ours, floor = cell.cpu_us(), _metric(report, workload, FLOOR, "cpu")
        return ours / floor if ours is not None and floor else None
    getters = {
        "rps": cell.rps,
        "p99": cell.p99,
        "rss": cell.rss_mib,
        "pss": cell.pss_mib,
        "cpu": cell.cpu_us,
        "idle_ratio": cell.idle_ratio,
        "idle_cpu_ratio": cell.idle_cpu_ratio,
        "idle_kib": cell.idle_kib_median,
    }
    return getters[metric]()


# Metrics compared as ferrowsgi / peer (the others are ratios or near-zero already).
_RATIO_METRICS = ("rps", "p99", "rss", "pss", "cpu")


def ratio_table(report: Report) -> list[str]:
    """ferrowsgi / peer for every workload and peer."""
    peers = [s for s in report.servers if s != FERRO]
    header = ["ferrowsgi / peer", *map(report.label, peers)]
    rows = []
    for label, w, metric in _rows(report):
        if metric not in _RATIO_METRICS:
            continue
        ours = _metric(report, w, FERRO, metric)
        rows.append([label, *(_ratio(ours, _metric(report, w, p, metric)) for p in peers)])
    return _table(header, rows)


def detail_table(report: Report) -> list[str]:
    """One row per run: throughput, p50, p99, errors, CPU, each pass's req/s."""
    header = ["workload", "server", "throughput", "p50", "p99", "errors", "CPU / request"]
    header.append("req/s per pass (c10k: with idle connections / without)")
    rows = []
    for w in report.workloads:
        for s in report.servers:
            cell = report.cell(w, s)
            if cell is not None:
                rows.append([w, report.label(s), *_detail(report, w, cell)])
    return _table(header, rows)


def _detail(report: Report, workload: str, cell: Cell) -> list[str]:
    if cell.failure is not None:
        return ["failed: " + cell.failure.replace("|", "/")[:200], "", "", "", "", ""]
    passes = [f"{x.requests_per_s:.0f}" for x in cell.loads]
    if cell.baselines:
        passes = [f"{x} / {b.requests_per_s:.0f}" for x, b in zip(passes, cell.baselines)]
    errors = max(x.errors for x in cell.loads)
    cpu = cell.cpu_us()
    return [
        throughput(report, workload, cell.rps()),
        f"{cell.p50():.2f} ms",
        f"{cell.p99():.2f} ms",
        str(errors),
        "—" if cpu is None else f"{cpu:.2f} µs",
        ", ".join(passes),
    ]


BEST_PEER = "best peer"
# Issues 5 and 9's targets: (text, workload, metric, peer | BEST_PEER | None, factor).
# With a peer: ours ≥ factor × peer's, or ≤ for the LOWER_IS_BETTER metrics.
# Without (None): ours ≥ factor itself, or ≤ for the LOWER_IS_BETTER metrics.
# BEST_PEER is the fastest Python peer that did not fail: a server that does
# not answer every pipelined request failed that run, so it is never ranked.
TARGETS = [
    ("hello ≥ 1.2 × bjoern", "hello", "rps", "bjoern", 1.2),
    ("flask ≥ 1.05 × bjoern", "flask", "rps", "bjoern", 1.05),  # issue 9 (issue 5: 1.1)
    ("big ≥ 1.2 × the best peer", "big", "rps", BEST_PEER, 1.2),
    ("post ≥ 1.2 × granian", "post", "rps", "granian", 1.2),
    ("io ≥ 8.5k req/s", "io", "rps", None, 8500),
    ("io ≥ 1.2 × granian", "io", "rps", "granian", 1.2),
    ("RSS after hello ≤ 1.2 × bjoern", "hello", "rss", "bjoern", 1.2),
    ("hello p99 ≤ bjoern's", "hello", "p99", "bjoern", 1.0),
    (
        "pipelined ≥ 1.2 × the best peer that answers every request",
        "pipelined",
        "rps",
        BEST_PEER,
        1.2,
    ),
    ("c10k: hello ≥ 0.9 × the same without idle connections", "c10k", "idle_ratio", None, 0.9),
    ("c10k: ≤ 1 KiB worker RSS per idle connection", "c10k", "idle_kib", None, 1.0),
    # Issue 12: --static beside the same file through the application, and nginx.
    ("static ≥ 1.5 × ferrowsgi file_wrapper", "static", "rps", "file_wrapper", 1.5),
    ("static ≥ 0.8 × nginx", "static", "rps", "nginx", 0.8),
]
_PYTHON_PEERS = ("bjoern", "granian", "uwsgi", "gunicorn", "waitress")


def _reference(report: Report, workload: str, metric: str, peer: str) -> float | None:
    if peer != BEST_PEER:
        return _metric(report, workload, peer, metric)
    values = [_metric(report, workload, p, metric) for p in _PYTHON_PEERS]
    return max((v for v in values if v), default=None)


def _target_row(report: Report, target: tuple) -> list[str]:
    text, workload, metric, peer, factor = target
    ours = _metric(report, workload, FERRO, metric)
    if ours is None:
        return [text, "not measured", "—"]
    if peer is None:
        value = ours
        shown = f"{ours:,.0f} req/s" if metric == "rps" else _FORMATS[metric].format(ours)
    else:
        theirs = _reference(report, workload, metric, peer)
        if not ours or not theirs:
            return [text, "not measured", "—"]
        value = ours / theirs
        shown = f"{value:.2f}×"
    met = value <= factor if metric in LOWER_IS_BETTER else value >= factor
    return [text, shown, "yes" if met else "**no**"]


def targets_table(report: Report) -> list[str]:
    """Each target of issues 5 and 9 with the measured value and whether it is met."""
    rows = [_target_row(report, t) for t in TARGETS if t[1] in report.workloads]
    return _table(["target (issues 5, 9, 12)", "measured", "met"], rows)


def per_mib_table(report: Report) -> list[str]:
    """CPU time per MiB of body (the gzip workload: per MiB compressed)."""
    rows = []
    for w in report.workloads:
        size = report.per_mib.get(w)
        for s in report.servers if size else []:
            cell = report.cell(w, s)
            cpu = None if cell is None or cell.failure else cell.cpu_us()
            if cpu is not None:
                per = cpu / (size / 2**20) / 1000
                rows.append([w, report.label(s), f"{cpu:.0f} µs", f"{per:.2f} ms"])
    if not rows:
        return []
    header = ["workload", "server", "CPU / request", "CPU / MiB of body"]
    return ["## CPU per MiB of body", "", *_table(header, rows), ""]


def failures_list(report: Report) -> list[str]:
    """Peers that failed to install, and runs that failed, one line each."""
    lines = [f"- {report.label(s)}: not installed: {why}" for s, why in report.failures.items()]
    for (w, s), cell in report.cells.items():
        if cell.failure is not None:
            lines.append(f"- {report.label(s)} on {w}: {cell.failure}")
    return lines or ["- none"]


def body(report: Report) -> list[str]:
    """The tables and failures, as printed and as written in RESULTS.md."""
    return [
        "## Throughput (median of the passes)",
        "",
        *summary_table(report),
        "",
        "## ferrowsgi / peer (above 1 is better for throughput, below 1 for p99, RSS, PSS, CPU)",
        "",
        *ratio_table(report),
        "",
        "## Targets",
        "",
        *targets_table(report),
        "",
        "## Every run",
        "",
        *detail_table(report),
        "",
        *per_mib_table(report),
        "## Failures",
        "",
        *failures_list(report),
        "",
        "## Notes",
        "",
        *(f"- {note}" for note in report.notes),
    ]
