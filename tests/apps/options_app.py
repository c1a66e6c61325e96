"""Answers ``PATH_INFO``, and writes a marker line to stderr per request, so the option
tests can see where the process's stderr goes (``--error-log``)."""

import sys


def app(environ, start_response):
    path = environ["PATH_INFO"]
    print(f"options-app stderr marker {path}", file=sys.stderr, flush=True)
    body = path.encode()
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
    return [body]
