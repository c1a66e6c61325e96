"""The Python floor: the cost of one WSGI call, with no server around it.

One Python thread builds a fresh 25-key environ dict (constant entries copied
from a template, per-request entries set, as a server's gateway does), calls
``benches.apps:hello`` with a minimal ``start_response``, joins the body and
calls ``close()`` if there is one. No WSGI server can answer a request for
less Python work than this, so ``1 / floor`` bounds req/s on one core.

Usage: ``python benches/floor.py [--seconds 2]``; prints µs per call and calls/s.
With ``--json``, prints one JSON object instead (for benches/run.py).
"""

from __future__ import annotations

import argparse
import io
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benches.apps import hello  # noqa: E402

TEMPLATE = {
    "wsgi.version": (1, 0),
    "wsgi.url_scheme": "http",
    "wsgi.errors": sys.stderr,
    "wsgi.multithread": False,
    "wsgi.multiprocess": False,
    "wsgi.run_once": False,
    "wsgi.input_terminated": True,
    "wsgi.file_wrapper": None,
    "SCRIPT_NAME": "",
}


def make_environ() -> dict:
    """A fresh environ: 9 constant entries copied, 16 set per request."""
    env = TEMPLATE.copy()
    env["REQUEST_METHOD"] = "GET"
    env["PATH_INFO"] = "/"
    env["QUERY_STRING"] = ""
    env["SERVER_PROTOCOL"] = "HTTP/1.1"
    env["REMOTE_ADDR"] = "127.0.0.1"
    env["REMOTE_PORT"] = "54321"
    env["SERVER_NAME"] = "127.0.0.1"
    env["SERVER_PORT"] = "8000"
    env["HTTP_HOST"] = "127.0.0.1:8000"
    env["HTTP_USER_AGENT"] = "wrk"
    env["HTTP_ACCEPT"] = "*/*"
    env["HTTP_ACCEPT_ENCODING"] = "gzip, deflate"
    env["HTTP_ACCEPT_LANGUAGE"] = "en-US,en;q=0.9"
    env["HTTP_CONNECTION"] = "keep-alive"
    env["HTTP_CACHE_CONTROL"] = "no-cache"
    env["wsgi.input"] = io.BytesIO(b"")
    return env


def one_call() -> bytes:
    """One request through the app: environ, start_response, body, close()."""
    head: list = []

    def start_response(status: str, headers: list, exc_info: object = None) -> None:
        head.append((status, headers))

    result = hello(make_environ(), start_response)
    try:
        return b"".join(result)
    finally:
        close = getattr(result, "close", None)
        if close is not None:
            close()


def measure(seconds: float) -> float:
    """Seconds per call, from batches of calls run for about ``seconds``."""
    assert len(make_environ()) == 25 and one_call() == b"Hello, World!"
    calls, batch = 0, 10_000
    start = time.perf_counter()
    deadline = start + seconds
    while time.perf_counter() < deadline:
        for _ in range(batch):
            one_call()
        calls += batch
    return (time.perf_counter() - start) / calls


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=2.0)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    per_call = measure(args.seconds)
    if args.json:
        print(json.dumps({"us_per_call": per_call * 1e6, "calls_per_s": 1 / per_call}))
    else:
        print(f"Python floor: {per_call * 1e6:.2f} µs per call, {1 / per_call:,.0f} calls/s")


if __name__ == "__main__":
    main()
