"""Tables for benches/run.py: medians, ratios, the issue's targets, RESULTS.md.

Every table is Markdown, printed as is and written to ``benches/RESULTS.md``
with ``--write``. Ratios are always ferrowsgi / peer: above 1 ferrowsgi is
faster, except for RSS and latency where below 1 is better.
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass, field

from benches.harness import Load

FERRO = "ferrowsgi"


@dataclass
class Cell:
    """Every pass of one server on one workload."""

    loads: list[Load] = field(default_factory=list)
    rss_kib: list[int] = field(default_factory=list)
    failure: str | None = None

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


def _value(report: Report, workload: str, server: str, metric: str) -> str:
    cell = report.cell(workload, server)
    if cell is None:
        return "—"
    if cell.failure is not None:
        return "failed"
    if metric == "rss":
        return f"{cell.rss_mib():.1f} MiB" if cell.rss_kib else "—"
    if metric == "p99":
        return f"{cell.p99():.2f} ms"
    return throughput(report, workload, cell.rps())


def _rows(report: Report) -> list[tuple[str, str, str]]:
    """(row label, workload, metric) of the summary and ratio tables."""
    rows = [(w, w, "rps") for w in report.workloads]
    if "hello" in report.workloads:
        rows += [("hello p99", "hello", "p99"), ("RSS after hello", "hello", "rss")]
    return rows


def summary_table(report: Report) -> list[str]:
    """Workloads down, servers across: req/s (GB/s for big), p99, RSS."""
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
    return {"rps": cell.rps, "p99": cell.p99, "rss": cell.rss_mib}[metric]()


def ratio_table(report: Report) -> list[str]:
    """ferrowsgi / peer for every workload and peer."""
    peers = [s for s in report.servers if s != FERRO]
    header = ["ferrowsgi / peer", *map(report.label, peers)]
    rows = []
    for label, w, metric in _rows(report):
        ours = _metric(report, w, FERRO, metric)
        rows.append([label, *(_ratio(ours, _metric(report, w, p, metric)) for p in peers)])
    return _table(header, rows)


def detail_table(report: Report) -> list[str]:
    """One row per run: throughput, p50, p99, errors, each pass's req/s."""
    header = ["workload", "server", "throughput", "p50", "p99", "errors", "req/s per pass"]
    rows = []
    for w in report.workloads:
        for s in report.servers:
            cell = report.cell(w, s)
            if cell is not None:
                rows.append([w, report.label(s), *_detail(report, w, cell)])
    return _table(header, rows)


def _detail(report: Report, workload: str, cell: Cell) -> list[str]:
    if cell.failure is not None:
        return ["failed: " + cell.failure.replace("|", "/")[:200], "", "", "", ""]
    passes = ", ".join(f"{x.requests_per_s:.0f}" for x in cell.loads)
    errors = max(x.errors for x in cell.loads)
    return [
        throughput(report, workload, cell.rps()),
        f"{cell.p50():.2f} ms",
        f"{cell.p99():.2f} ms",
        str(errors),
        passes,
    ]


BEST_PEER = "best peer"
# Issue 5's targets: (text, workload, metric, peer | BEST_PEER | None, factor).
# rps: ours ≥ factor × peer (or ≥ factor req/s when peer is None);
# rss and p99: ours ≤ factor × peer.
TARGETS = [
    ("hello ≥ 1.2 × bjoern", "hello", "rps", "bjoern", 1.2),
    ("flask ≥ 1.1 × bjoern", "flask", "rps", "bjoern", 1.1),
    ("big ≥ 1.2 × the best peer", "big", "rps", BEST_PEER, 1.2),
    ("post ≥ 1.2 × granian", "post", "rps", "granian", 1.2),
    ("io ≥ 8.5k req/s", "io", "rps", None, 8500),
    ("io ≥ 1.2 × granian", "io", "rps", "granian", 1.2),
    ("RSS after hello ≤ 1.3 × bjoern", "hello", "rss", "bjoern", 1.3),
    ("hello p99 ≤ bjoern's", "hello", "p99", "bjoern", 1.0),
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
    if peer is None:
        if not ours:
            return [text, "not measured", "—"]
        return [text, f"{ours:,.0f} req/s", "yes" if ours >= factor else "**no**"]
    theirs = _reference(report, workload, metric, peer)
    if not ours or not theirs:
        return [text, "not measured", "—"]
    ratio = ours / theirs
    met = ratio >= factor if metric == "rps" else ratio <= factor
    return [text, f"{ratio:.2f}×", "yes" if met else "**no**"]


def targets_table(report: Report) -> list[str]:
    """Each target of issue 5 with the measured ratio and whether it is met."""
    rows = [_target_row(report, t) for t in TARGETS if t[1] in report.workloads]
    return _table(["target (issue 5)", "measured", "met"], rows)


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
        "## ferrowsgi / peer (above 1 is better for throughput, below 1 for p99 and RSS)",
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
        "## Failures",
        "",
        *failures_list(report),
        "",
        "## Notes",
        "",
        *(f"- {note}" for note in report.notes),
    ]
