"""An application that needs a setting from the environment at import, as many do:
without DATABASE_URL its import raises KeyError (tests/test_wsgiref.py)."""

import os

DATABASE_URL = os.environ["DATABASE_URL"]


def app(environ, start_response):
    body = DATABASE_URL.encode()
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
    return [body]
