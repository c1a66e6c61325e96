"""An application whose import starts a thread that, about a second later, holds the
GIL for several seconds in one C call (a catastrophic regular expression: ``re`` never
releases the GIL), as a C extension stuck outside any request would. No request is
needed: the worker's heartbeat stops while no application call runs.

The length of the subject is calibrated at import so that the match takes about
$ROUGH_GIL_SECONDS seconds (default 7) on this machine: each more "a" doubles the time.
GET / answers "ok".
"""

import math
import os
import re
import threading
import time

PATTERN = re.compile(r"(a+)+$")
SECONDS = float(os.environ.get("ROUGH_GIL_SECONDS", "7"))


def _match_seconds(n: int) -> float:
    started = time.perf_counter()
    PATTERN.match("a" * n + "b")
    return time.perf_counter() - started


def _calibrate() -> int:
    n = 14
    while (took := _match_seconds(n)) < 0.2:
        n += 1
    return n + round(math.log2(SECONDS / took))


LENGTH = _calibrate()


def hold_the_gil() -> None:
    time.sleep(1.0)
    PATTERN.match("a" * LENGTH + "b")


threading.Thread(target=hold_the_gil, name="rough-gil", daemon=True).start()


def app(environ, start_response):
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", "2")])
    return [b"ok"]
