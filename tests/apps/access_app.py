"""For the access-log tests: known answers, a known wait, and an exception.

GET /sleep[/...]?ms=N sleeps N milliseconds, then answers 200 "slept\n" with
Content-Type text/plain and X-Bar: baz. GET /boom raises RuntimeError("boom!").
Anything else answers 200 "hello access log\n" (same fields).
"""

import time
from urllib.parse import parse_qs

HEADERS = [("Content-Type", "text/plain; charset=utf-8"), ("X-Bar", "baz")]


def app(environ, start_response):
    path = environ["PATH_INFO"]
    if path == "/boom":
        raise RuntimeError("boom!")
    if path.startswith("/sleep"):
        ms = int(parse_qs(environ.get("QUERY_STRING", "")).get("ms", ["50"])[0])
        time.sleep(ms / 1000)
        start_response("200 OK", HEADERS)
        return [b"slept\n"]
    start_response("200 OK", HEADERS)
    return [b"hello access log\n"]
