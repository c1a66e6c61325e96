"""Defines neither ``application`` nor ``app``: loading it without a name must fail."""


def handler(environ, start_response):
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [b"never found by default"]
