"""An application for the master/worker tests (tests/test_supervisor.py).

GET /         → JSON: this process's pid, the pid that imported this module, the value
                read at import from the file named by $SUPERVISED_VALUE_FILE (or null),
                and environ['wsgi.multiprocess']. The value "fail-import" makes the
                import fail.
GET /sleep?s=N → sleeps N seconds (default 1), then answers "slept".
GET /hang     → never returns: hang_in_the_application() sleeps in a loop.
GET /grow?mib=N → keeps N MiB more allocated in this process, then answers its size.
GET /crash    → a segmentation fault, as a broken C extension would cause.
"""

import faulthandler
import json
import os
import time
from urllib.parse import parse_qs

IMPORTED_IN = os.getpid()
_path = os.environ.get("SUPERVISED_VALUE_FILE")
VALUE = open(_path).read().strip() if _path else None
if VALUE == "fail-import":
    raise RuntimeError("supervised_app was told to fail its import")
_ballast = []


def hang_in_the_application():
    while True:
        time.sleep(0.1)


def app(environ, start_response):
    path = environ["PATH_INFO"]
    query = parse_qs(environ.get("QUERY_STRING", ""))
    if path == "/sleep":
        time.sleep(float(query.get("s", ["1"])[0]))
        body = b"slept"
    elif path == "/hang":
        hang_in_the_application()
    elif path == "/crash":
        faulthandler._sigsegv()
    elif path == "/grow":
        _ballast.append(bytearray(int(query["mib"][0]) << 20))
        body = str(sum(len(b) for b in _ballast)).encode()
    else:
        info = {
            "pid": os.getpid(),
            "imported_in": IMPORTED_IN,
            "value": VALUE,
            "multiprocess": environ["wsgi.multiprocess"],
        }
        body = json.dumps(info).encode()
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
    return [body]
