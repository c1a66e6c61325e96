"""Overload: what ``--max-queue`` does for the requests that are served (issue 13).

    python benches/overload.py [--threads 4] [--duration 10] [--max-queue 4]
                               [--no-build] [--write]

The application waits 10 ms per request (``benches.apps:io``, an I/O-bound
view), so ferrowsgi with ``--threads T`` serves at most ``T / 10 ms`` requests
per second. Closed-loop clients (a thread and a keep-alive connection each)
send GET requests for ``--duration`` seconds: ``T`` clients is the unloaded
case; ``3 T`` clients is 3× overload, run without and with ``--max-queue``. A
client answered 503 waits 10 ms (a client honouring Retry-After would wait
longer) and asks again. The table gives, per run, the requests served, their
p50 and p99 latency, the 503s, and the errors (resets, timeouts: must be 0).
Target (issue 13): under 3× overload with ``--max-queue``, the p99 of served
requests within 2× of the unloaded p99. ``--write`` writes
``benches/OVERLOAD.md``.

Standard library only.
"""

from __future__ import annotations

import argparse
import datetime
import http.client
import statistics
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benches import harness, install  # noqa: E402
from benches.harness import HOST  # noqa: E402
from benches.servers import server_env  # noqa: E402

RESULT = install.ROOT / "benches" / "OVERLOAD.md"
BACKOFF = 0.010  # seconds a shed client waits before asking again
TIMEOUT = 10.0  # seconds: a request slower than this counts as an error


class Tally:
    """What the clients of one run saw."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.served: list[float] = []
        self.shed = 0
        self.errors = 0


def client(port: int, until: float, tally: Tally) -> None:
    """One closed-loop client: GET / until ``until`` (monotonic seconds)."""
    conn = http.client.HTTPConnection(HOST, port, timeout=TIMEOUT)
    while time.monotonic() < until:
        started = time.monotonic()
        try:
            conn.request("GET", "/")
            resp = conn.getresponse()
            resp.read()
            status = resp.status
        except (OSError, http.client.HTTPException):
            with tally.lock:
                tally.errors += 1
            conn.close()
            conn = http.client.HTTPConnection(HOST, port, timeout=TIMEOUT)
            continue
        elapsed = time.monotonic() - started
        with tally.lock:
            if status == 200:
                tally.served.append(elapsed)
            elif status == 503:
                tally.shed += 1
            else:
                tally.errors += 1
        if status == 503:
            time.sleep(BACKOFF)
    conn.close()


def run(command: str, args: argparse.Namespace, clients: int, max_queue: int) -> dict:
    port = harness.free_port()
    argv = [command, "benches.apps:io", "--bind", f"{HOST}:{port}",
            "--threads", str(args.threads), "--max-queue", str(max_queue)]  # fmt: skip
    server = harness.start(argv, port, install.ROOT, server_env())
    try:
        tally = Tally()
        until = time.monotonic() + args.duration
        threads = [threading.Thread(target=client, args=(port, until, tally))
                   for _ in range(clients)]  # fmt: skip
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    finally:
        harness.stop(server)
    served = sorted(tally.served)
    p99 = served[int(len(served) * 0.99) - 1] if served else float("nan")
    return {
        "clients": clients,
        "max_queue": max_queue,
        "served": len(served),
        "p50": statistics.median(served) * 1000 if served else float("nan"),
        "p99": p99 * 1000,
        "shed": tally.shed,
        "errors": tally.errors,
    }


def table(rows: list[dict], threads: int) -> str:
    lines = ["| clients | --max-queue | served | p50 (ms) | p99 (ms) | p99 / unloaded | 503s "
             "| errors |", "|---:|---:|---:|---:|---:|---:|---:|---:|"]  # fmt: skip
    unloaded = rows[0]["p99"]
    for r in rows:
        shown = r["max_queue"] or "off"
        lines.append(
            f"| {r['clients']} ({r['clients'] // threads}×) | {shown} | {r['served']} "
            f"| {r['p50']:.1f} | {r['p99']:.1f} | {r['p99'] / unloaded:.2f} | {r['shed']} "
            f"| {r['errors']} |"
        )
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--threads", type=int, default=4)
    parser.add_argument("--duration", type=float, default=10.0)
    parser.add_argument("--max-queue", type=int, default=4)
    parser.add_argument("--no-build", action="store_true")
    parser.add_argument("--write", action="store_true")
    args = parser.parse_args()
    command = install.install_ferrowsgi(build=not args.no_build)
    t = args.threads
    rows = [run(command, args, t, 0), run(command, args, 3 * t, 0),
            run(command, args, 3 * t, args.max_queue)]  # fmt: skip
    text = table(rows, t)
    print(text)
    if args.write:
        when = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
        RESULT.write_text(
            "# Overload: `--max-queue` (issue 13)\n\n"
            f"`python benches/overload.py --threads {t} --duration {args.duration:g} "
            f"--max-queue {args.max_queue}`, {when}: ferrowsgi, one worker, "
            f"`--threads {t}`, an application that waits 10 ms per request "
            f"(capacity about {t * 100} requests per second). What each column means: "
            "the script's docstring.\n\n" + text + "\n"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
