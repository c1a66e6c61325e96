"""An application wrapped in ``wsgiref.validate.validator``: any PEP 3333 slip by the
server raises AssertionError (or prints a WSGIWarning) inside the app.

GET / (list body), POST /echo (reads wsgi.input with read(n) and readline), HEAD /,
GET /stream (generator), GET /write (the write() callable), GET /file (file_wrapper).
"""

import io
from wsgiref.validate import validator


def inner(environ, start_response):
    path = environ["PATH_INFO"]
    headers = [("Content-Type", "text/plain")]
    if path == "/echo":
        length = int(environ.get("CONTENT_LENGTH") or 0)
        first = environ["wsgi.input"].readline(length)
        rest = environ["wsgi.input"].read(length - len(first))
        body = b"echo:" + first + rest
        start_response("200 OK", headers + [("Content-Length", str(len(body)))])
        return [body]
    if path == "/stream":
        start_response("200 OK", headers)
        return (b"line %d\n" % i for i in range(10))
    if path == "/write":
        write = start_response("200 OK", headers)
        write(b"written;")
        return [b"returned"]
    if path == "/file":
        start_response("200 OK", headers)
        return environ["wsgi.file_wrapper"](io.BytesIO(b"file body " * 100), 64)
    start_response("200 OK", headers)
    return [b"validated ", environ["REQUEST_METHOD"].encode()]


app = validator(inner)
