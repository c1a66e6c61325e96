"""Loaded by file path (``tests/apps/file_app.py:app``) rather than by module name."""


def app(environ, start_response):
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [f"loaded from a file as {__name__}".encode()]
