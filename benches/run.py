"""Side-by-side benchmark of ferrowsgi against its peers (issues 5 and 9).

    python benches/run.py [--duration 10] [--passes 2] [--only hello,flask,...]
                          [--servers ferrowsgi,bjoern,...] [--idle 10000]
                          [--smoke] [--write] [--no-build]

Each server runs ONE worker process pinned to core 0 (``taskset -c 0``) on
127.0.0.1 and a free port; ``wrk -t1`` runs pinned to core 1. A fresh server is
started for every (pass, workload, server): it is waited for (a TCP connect,
never a fixed sleep), checked with one request (a fast wrong answer is not a
result), warmed up (``--warmup``, 1 s), loaded for ``--duration`` seconds,
and its worker's RSS and PSS read. The server's CPU time per request is measured
over the load (every process of the server, from /proc). The table shows the
median of the passes, the ratios ferrowsgi / peer, and issues 5 and 9's
targets; ``--write`` also writes ``benches/RESULTS.md``. What each workload
does: benches/workloads.py (``pipelined`` and ``c10k`` included).

Also measured: the no-Python ceiling (``benches/ceiling``, a hyper server),
the kernel floor (``benches/floor_server``, epoll and a fixed answer: the unit
of CPU time per request), and the Python floor (``benches/floor.py``).

``--smoke``: 2 s, one pass, ferrowsgi alone on hello (to keep this script working).
``--no-build``: use the ferrowsgi already in benches/.venv, else the one on PATH,
instead of building a release wheel of the repository (``--smoke --no-build``
is the quick check for CI after ``make install``).
Standard library only, plus wrk (installed with apt-get when missing).
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import shlex
import signal
import statistics
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benches import apps, harness, install, workloads  # noqa: E402
from benches.apps import JSON_BODY  # noqa: E402
from benches.harness import BenchError  # noqa: E402
from benches.report import FERRO, Cell, Report, Sample, body  # noqa: E402
from benches.servers import LABELS, NOTES, SERVERS, server_argv, server_env  # noqa: E402
from benches.workloads import WORKLOADS  # noqa: E402

ROOT = install.ROOT
RESULTS = ROOT / "benches" / "RESULTS.md"


@dataclass(frozen=True)
class Settings:
    """What a run measures, from the command line."""

    seconds: int
    warmup: int
    passes: int
    workloads: list[str]
    servers: list[str]
    smoke: bool
    build: bool  # build ferrowsgi from the repository (not --no-build)
    idle: int = 10_000  # c10k's idle connections

    def nofile(self) -> int:
        """Open files c10k needs, in this process and in the server alike."""
        return self.idle + 1024


def measure(settings: Settings, argv: list[str], port: int, name: str) -> Sample:
    """Start one server, measure it on one workload (benches/workloads.py), stop it."""
    work = WORKLOADS[name]
    nofile = settings.nofile() if work.idle else 0
    server = harness.start(argv, port, ROOT, server_env(), nofile)
    try:
        return workloads.measure(work, server, settings.seconds, settings.warmup, settings.idle)
    finally:
        harness.stop(server)


def run_one(settings: Settings, report: Report, workload: str, server: str, ferro: str) -> None:
    """Measure one (workload, server) pair once; a failure is recorded, not raised."""
    cell = report.cells.setdefault((workload, server), Cell())
    if cell.failure is not None:
        return  # failed in an earlier pass: do not pay its timeout again
    port = harness.free_port()
    argv = server_argv(server, workload, port, ferro, settings.idle)
    name = f"  {workload:<9} {report.label(server):<22}"
    try:
        sample = measure(settings, argv, port, workload)
    except BenchError as exc:
        cell.failure, cell.shown = str(exc), exc.shown
        print(f"{name} FAILED: {exc}", flush=True)
        return
    cell.add(sample)
    print(f"{name} {_summary(sample)}", flush=True)


def _summary(sample: Sample) -> str:
    """One run's figures, on one line."""
    load = sample.load
    line = (
        f"{load.requests_per_s:>10,.0f} req/s  p50 {load.p50_ms:.2f} ms"
        f"  p99 {load.p99_ms:.2f} ms  errors {load.errors}  RSS {sample.rss_kib / 1024:.1f} MiB"
    )
    if sample.pss_kib:
        line += f"  PSS {sample.pss_kib / 1024:.1f} MiB"
    if load.cpu_us is not None:
        line += f"  CPU {load.cpu_us:.2f} µs/req"
    if sample.baseline is not None and sample.idle_kib is not None:
        line += (
            f"  (without idle: {sample.baseline.requests_per_s:,.0f} req/s;"
            f" {sample.idle_kib:.2f} KiB per idle connection)"
        )
    return line


def run_passes(settings: Settings, report: Report, ferro: str) -> None:
    """Every pass over every workload and server, interleaved so noise spreads evenly."""
    for n in range(settings.passes):
        print(f"pass {n + 1}/{settings.passes}", flush=True)
        for workload in settings.workloads:
            for server in settings.servers:
                runs = workload in SERVERS[server].workloads
                if runs and server not in report.failures:
                    run_one(settings, report, workload, server, ferro)


def measure_floor(passes: int) -> str:
    """benches/floor.py on core 0, median of ``passes`` runs of 2 s."""
    argv = ["taskset", "-c", "0", str(install.BIN / "python"), str(ROOT / "benches" / "floor.py")]
    per_call = []
    for _ in range(passes):
        done = subprocess.run(
            [*argv, "--json", "--seconds", "2"], capture_output=True, text=True, timeout=120
        )
        if done.returncode != 0:
            return f"Python floor: failed: {done.stderr.strip()[-300:]}"
        per_call.append(json.loads(done.stdout)["us_per_call"])
    us = statistics.median(per_call)
    return (
        f"Python floor (benches/floor.py): {us:.2f} µs per call with a fresh 25-key environ, "
        f"{1e6 / us:,.0f} calls/s on one core"
    )


def machine() -> str:
    """CPU model and count, nproc, memory, kernel, from /proc."""
    cpuinfo = Path("/proc/cpuinfo").read_text()
    models = [
        line.split(":", 1)[1].strip() for line in cpuinfo.splitlines() if "model name" in line
    ]
    mem_kib = int(Path("/proc/meminfo").read_text().split()[1])
    model = models[0] if models else platform.processor() or "unknown CPU"
    return (
        f"{len(models)} × {model} (nproc {len(os.sched_getaffinity(0))}), "
        f"{mem_kib / 2**20:.0f} GiB, Linux {platform.release()}; a shared VM, noisy"
    )


def _git(*args: str) -> str:
    done = subprocess.run(["git", "-C", str(ROOT), *args], capture_output=True, text=True)
    return done.stdout.strip()


def git_state() -> str:
    """The commit measured, and whether the work tree had uncommitted changes."""
    dirty = _git("status", "--porcelain", "--untracked-files=no")
    return _git("rev-parse", "--short", "HEAD") + (" + uncommitted changes" if dirty else "")


def load_average() -> str:
    """The 1-minute load average: how busy the shared machine was."""
    return Path("/proc/loadavg").read_text().split()[0]


def results_md(report: Report, settings: Settings, bounds: list[str], load: str) -> str:
    """The whole of benches/RESULTS.md; ``load``: the load average when the run began."""
    versions = install.installed_versions()
    now = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    command = "python benches/run.py " + " ".join(map(shlex.quote, sys.argv[1:]))
    lines = [
        "# Benchmark results",
        "",
        "Written by `benches/run.py --write` (overwritten on every such run).",
        "",
        f"- Date: {now}",
        f"- Machine: {machine()}; load average {load} at the start, "
        f"{load_average()} at the end (other work shares the machine)",
        f"- Command: `{command.strip()}`",
        f"- ferrowsgi: {versions.get('ferrowsgi', '?')}, "
        + (f"built from this repository at {git_state()}" if settings.build else "not rebuilt")
        + ("" if FERRO in settings.servers else " (not run)"),
        "- Peers: " + ", ".join(f"{d} {v}" for d, v in sorted(versions.items()) if d != FERRO),
        f"- Python {platform.python_version()}; {settings.passes} pass(es) of "
        f"{settings.seconds:g} s after a {settings.warmup:g} s warm-up, median shown",
        "- Method: one worker process pinned to core 0, `wrk -t1 --latency` pinned to core 1, "
        "keep-alive, a fresh server per run; GB/s counts response body bytes (10^9); "
        "CPU per request: utime + stime of the server's processes over the load ÷ requests "
        "done; RSS and PSS: the worker's, from /proc, after the load; "
        f"c10k with {settings.idle:,} idle connections",
        "",
        *bounds,
        "",
        *body(report),
        "",
        "Where the time goes, step by step, and what would close each gap that remains: "
        "[PROFILE.md](PROFILE.md) (hand-written, from callgrind, perf and strace).",
        "",
    ]
    return "\n".join(lines)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """The command line (see the module docstring)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=int, default=10, help="seconds per load run")
    parser.add_argument("--passes", type=int, default=2, help="passes; the median is shown")
    parser.add_argument("--warmup", type=int, default=1, help="seconds of warm-up per run")
    parser.add_argument("--only", default=",".join(WORKLOADS), help="workloads, comma-separated")
    parser.add_argument("--servers", default=",".join(SERVERS), help="servers, comma-separated")
    parser.add_argument("--idle", type=int, default=10_000, help="c10k's idle connections")
    parser.add_argument("--smoke", action="store_true", help="2 s, 1 pass, ferrowsgi on hello")
    parser.add_argument("--write", action="store_true", help="write benches/RESULTS.md")
    parser.add_argument(
        "--no-build", action="store_true", help="use the installed ferrowsgi, do not rebuild it"
    )
    args = parser.parse_args(argv)
    for option, known in (("only", WORKLOADS), ("servers", SERVERS)):
        unknown = set(getattr(args, option).split(",")) - set(known)
        if unknown:
            names = ", ".join(sorted(unknown))
            parser.error(f"--{option}: unknown {names}; known: {', '.join(known)}")
    return args


def settings_from(args: argparse.Namespace) -> Settings:
    """Settings for the run; --smoke overrides duration, passes, workloads and servers."""
    if args.smoke:
        return Settings(2, args.warmup, 1, ["hello"], [FERRO], True, not args.no_build)
    chosen = [w for w in WORKLOADS if w in args.only.split(",")]
    servers = [s for s in SERVERS if s in args.servers.split(",")]
    return Settings(
        args.duration,
        args.warmup,
        args.passes,
        chosen,
        servers,
        False,
        not args.no_build,
        max(1, args.idle),
    )


def prepare(settings: Settings) -> tuple[Report, str]:
    """Venv, peers, ferrowsgi, Rust servers; returns the empty report and ferrowsgi's command."""
    sizes = {w: WORKLOADS[w].bytes_per_request for w in settings.workloads}
    per_mib = {w: len(JSON_BODY) for w in settings.workloads if w == "gzip"}
    report = Report(
        settings.workloads, settings.servers, sizes, labels=LABELS, notes=NOTES, per_mib=per_mib
    )
    install.ensure_venv()
    peers = [s for s in settings.servers if s in install.PEER_DISTS]
    report.failures.update(install.install_peers(peers, "flask" in settings.workloads))
    for crate in install.CRATES:
        why = install.build_crate(crate) if crate in settings.servers else None
        if why:
            report.failures[crate] = f"cargo build failed: {why}"
    if "static" in settings.workloads:
        apps.write_static_file()
        why = install.ensure_nginx() if "nginx" in settings.servers else None
        if why:
            report.failures["nginx"] = f"nginx could not be installed: {why}"
    if "c10k" in settings.workloads:
        limit = harness.raise_nofile(settings.nofile())
        if limit < settings.nofile():
            print(f"open files limited to {limit}: c10k may fail", flush=True)
    if not any("{ferrowsgi}" in SERVERS[s].argv for s in settings.servers):
        return report, ""  # peers alone: nothing of ferrowsgi to build or find
    return report, install.install_ferrowsgi(settings.build)


def run(args: argparse.Namespace) -> int:
    """Prepare, measure, print (and write); 1 if ferrowsgi failed a run."""
    settings = settings_from(args)
    load = load_average()
    why = install.ensure_wrk()
    if why:
        print(f"SKIPPED: wrk is not installed and could not be installed ({why})")
        return 0
    report, ferro = prepare(settings)
    if ferro:
        print(f"ferrowsgi: {ferro}", flush=True)
    bounds = [] if settings.smoke else [measure_floor(settings.passes)]
    run_passes(settings, report, ferro)
    print("\n" + "\n".join(["", *bounds, "", *body(report)]))
    if args.write:
        RESULTS.write_text(results_md(report, settings, bounds, load))
        print(f"\nwrote {RESULTS.relative_to(ROOT)}")
    failed = any(c.failure for (_, s), c in report.cells.items() if s == FERRO)
    return 1 if failed or FERRO in report.failures else 0


def _terminate(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def main() -> int:
    """Entry point: every server started is stopped, whatever happens."""
    args = parse_args()
    signal.signal(signal.SIGTERM, _terminate)
    try:
        return run(args)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    finally:
        harness.stop_all()


if __name__ == "__main__":
    sys.exit(main())
