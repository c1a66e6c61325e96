"""The workloads of benches/run.py, and how one started server is measured on one.

Every workload: one request checked (a fast wrong answer is not a result), a
warm-up, then a wrk load whose server CPU time per request is measured too.
Two have more to them:

* ``pipelined``: wrk writes ``PIPELINE_DEPTH`` hello GETs at once
  (benches/pipelined.lua). Before that, one raw write of as many GETs must get
  every answer back; a server that answers fewer fails the run with what it
  answered ("answers 1/16") and is not ranked.
* ``c10k``: hello at 50 connections without idle connections, then with
  ``idle`` keep-alive connections open (each answered once, then left idle),
  then without again once they are closed; the run with them is compared with
  the mean of the two without (so a machine getting busier or quieter meanwhile
  cancels out). The worker's RSS is read before and after opening them. A
  server that closes any of them before the end fails the run.
* ``gzip``: a 100 KiB JSON body asked for with ``Accept-Encoding: gzip``
  (benches/gzip.lua); the check requires a gzip answer that decodes to it.
  ferrowsgi compresses it with ``--compress``, every other server (ferrowsgi
  without ``--compress`` among them) through a Python gzip middleware
  (``benches.apps:json_gzip``).
* ``static``: a 1 MiB file at ``/static/file.bin``, which ferrowsgi serves with
  ``--static`` (its application never sees the request), the ``file_wrapper``
  server through the application's ``wsgi.file_wrapper``, and nginx itself.
"""

from __future__ import annotations

import gzip
import json
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from benches import harness, wire
from benches.apps import BIG_SIZE, HELLO, JSON_BODY, STATIC_PATH, STATIC_SIZE
from benches.harness import BenchError, Load, Server
from benches.report import Sample

BENCHES = Path(__file__).resolve().parent
POST_BODY = b"x" * 65536
PIPELINE_DEPTH = 16


@dataclass(frozen=True)
class Workload:
    """One load: the app (``module:callable``), wrk's connections, the answer to expect."""

    app: str
    connections: int
    check: Callable[[bytes], bool]
    post: bool = False  # POST 64 KiB (wrk script benches/post.lua)
    bytes_per_request: int = 0  # report GB/s of this many body bytes per request
    pipeline: int = 1  # requests per write (wrk script benches/pipelined.lua)
    idle: bool = False  # c10k: load again with idle connections open
    gzip: bool = False  # ask for gzip (wrk script benches/gzip.lua) and check it came
    path: str = "/"  # the URL path requested

    def script(self) -> tuple[Path | None, tuple]:
        """wrk's script and its arguments, if any."""
        if self.post:
            return BENCHES / "post.lua", ()
        if self.pipeline > 1:
            return BENCHES / "pipelined.lua", (self.pipeline,)
        if self.gzip:
            return BENCHES / "gzip.lua", ()
        return None, ()


def _is_hello(body: bytes) -> bool:
    return body == HELLO


WORKLOADS = {
    "hello": Workload("benches.apps:hello", 50, _is_hello),
    "flask": Workload("benches.flask_app:app", 50, lambda b: json.loads(b).get("id") == 42),
    "big": Workload(
        "benches.apps:big", 10, lambda b: len(b) == BIG_SIZE, bytes_per_request=BIG_SIZE
    ),
    "post": Workload(
        "benches.apps:post", 10, lambda b: b == str(len(POST_BODY)).encode(), post=True
    ),
    "io": Workload("benches.apps:io", 100, _is_hello),
    "pipelined": Workload("benches.apps:hello", 50, _is_hello, pipeline=PIPELINE_DEPTH),
    "c10k": Workload("benches.apps:hello", 50, _is_hello, idle=True),
    "gzip": Workload("benches.apps:json_gzip", 10, lambda b: b == JSON_BODY, gzip=True),
    "static": Workload(
        "benches.apps:file_wrapper",
        10,
        lambda b: len(b) == STATIC_SIZE,
        bytes_per_request=STATIC_SIZE,
        path=STATIC_PATH,
    ),
}


def check(work: Workload, port: int) -> None:
    """One request (and one pipelined batch) answered right, or BenchError."""
    try:
        if work.gzip:
            status, answer = _fetch_gzip(port)
        else:
            status, answer = harness.fetch(port, POST_BODY if work.post else None, work.path)
        if status != 200 or not work.check(answer):
            raise BenchError(f"wrong answer: {status} {answer[:80]!r}")
    except (OSError, ValueError, EOFError) as exc:  # urllib, JSON or gzip errors
        raise BenchError(f"check request failed: {exc}") from exc
    if work.pipeline > 1:
        answered = wire.pipelined_answers(port, work.pipeline)
        if answered < work.pipeline:
            message = f"answers {answered} of {work.pipeline} requests sent in one write"
            raise BenchError(message, shown=f"answers {answered}/{work.pipeline}")


def _fetch_gzip(port: int) -> tuple[int, bytes]:
    """One request to ``/`` accepting gzip: (status, the body gunzipped); a body
    that did not come gzipped is a ValueError."""
    req = urllib.request.Request(f"http://{harness.HOST}:{port}/")
    req.add_header("Accept-Encoding", "gzip")
    with urllib.request.urlopen(req, timeout=10) as resp:
        coding = resp.headers.get("Content-Encoding")
        if coding != "gzip":
            raise ValueError(f"answered with Content-Encoding {coding!r}, not gzip")
        return resp.status, gzip.decompress(resp.read())


def measure(work: Workload, server: Server, seconds: int, warmup: int, idle: int) -> Sample:
    """Check, warm up and load ``server``; ``idle``: the idle connections of c10k."""
    check(work, server.port)
    script, args = work.script()
    if warmup > 0:
        harness.run_wrk(server.port, work.connections, warmup, script, args, work.path)
    if work.idle:
        return _with_idle(work, server, seconds, idle)
    load = harness.load(server, work.connections, seconds, script, args, work.path)
    rss, pss = harness.worker_memory_kib(server)
    return Sample(load, rss, pss)


def _with_idle(work: Workload, server: Server, seconds: int, idle: int) -> Sample:
    """c10k: load without, with, and again without the idle connections; RSS per one."""
    first = harness.load(server, work.connections, seconds, None)
    before = harness.worker_rss_kib(server)
    with wire.IdleConnections(server.port, idle) as connections:
        after, pss = harness.worker_memory_kib(server)
        load = harness.load(server, work.connections, seconds, None)
        closed = connections.closed()
        if closed:
            message = f"closed {closed} of the {idle} idle connections during the run"
            raise BenchError(message, shown=f"closed {closed} idle")
    last = harness.load(server, work.connections, seconds, None)
    return Sample(load, after, pss, _mean(first, last), (after - before) / idle)


def _mean(a: Load, b: Load) -> Load:
    """Two loads as one: rates, latencies and CPU averaged, counts added."""
    cpu = None if a.cpu_us is None or b.cpu_us is None else (a.cpu_us + b.cpu_us) / 2
    return Load(
        (a.requests_per_s + b.requests_per_s) / 2,
        (a.p50_ms + b.p50_ms) / 2,
        (a.p99_ms + b.p99_ms) / 2,
        a.errors + b.errors,
        a.requests + b.requests,
        cpu,
    )
