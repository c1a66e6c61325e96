"""Defines only ``app``: the loader falls back to it when there is no ``application``."""


def app(environ, start_response):
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [b"picked app"]
