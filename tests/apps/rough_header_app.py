"""Headers a new user writes with the wrong types (tests/test_wsgiref.py).

GET /int-length  → start_response('200 OK', [('Content-Length', 5)]): an int value.
GET /bytes-value → a bytes header value.
GET /ok          → a correct response, "hello".
"""

HEADERS = {
    "/int-length": [("Content-Length", 5)],
    "/bytes-value": [("Content-Type", b"text/plain")],
    "/ok": [("Content-Length", "5")],
}


def app(environ, start_response):
    start_response("200 OK", HEADERS[environ["PATH_INFO"]])
    return [b"hello"]
