"""An application module named ``top``, for ``ferrowsgi top:app`` (the bare word ``top``
is the live-view subcommand) and for tests/test_top.py's live server.

Routes: ``/missing...`` answers 404; anything else 200 ``top app``.
"""


def app(environ, start_response):
    if environ["PATH_INFO"].startswith("/missing"):
        start_response("404 Not Found", [("Content-Type", "text/plain")])
        return [b"not here"]
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [b"top app"]
