"""Responses whose exact bytes on the wire the engine tests check (tests/test_engine.py)."""


def app(environ, start_response):
    path = environ["PATH_INFO"]
    if path == "/case":
        start_response("200 OK", [("content-type", "text/plain"), ("X-MiXed-Case", "v")])
        return [b"ok"]
    if path == "/not_modified":
        start_response("304 Not Modified", [("ETag", '"abc"')])
        return []
    if path == "/port":
        body = environ["SERVER_PORT"].encode()
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [body]
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [b"hello"]
