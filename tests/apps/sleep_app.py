"""A route that sleeps, for concurrency tests, and counters of how many ran at once.

GET /sleep?ms=N sleeps N milliseconds (default 50) and answers with its path and query;
GET /stats answers JSON: the most requests ever in the app at once, and how many
distinct threads ran it. GET /log?msg=X writes X to wsgi.errors first, then sleeps.
"""

import json
import threading
import time
from urllib.parse import parse_qs

_lock = threading.Lock()
_inflight = 0
_max_inflight = 0
_threads: set[int] = set()


def app(environ, start_response):
    global _inflight, _max_inflight
    query = parse_qs(environ.get("QUERY_STRING", ""))
    if environ["PATH_INFO"] == "/stats":
        with _lock:
            body = json.dumps({"max_inflight": _max_inflight, "threads": len(_threads)}).encode()
        start_response("200 OK", [("Content-Type", "application/json")])
        return [body]
    if "msg" in query:
        environ["wsgi.errors"].write(query["msg"][0] + "\n")
        environ["wsgi.errors"].flush()
    with _lock:
        _inflight += 1
        _max_inflight = max(_max_inflight, _inflight)
        _threads.add(threading.get_ident())
    try:
        time.sleep(int(query.get("ms", ["50"])[0]) / 1000)
    finally:
        with _lock:
            _inflight -= 1
    body = f"{environ['PATH_INFO']}?{environ.get('QUERY_STRING', '')}".encode()
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [body]
