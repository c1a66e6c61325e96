"""Read ``wsgi.input`` the way PATH_INFO says and echo what came back, with lengths.

Paths: /read, /read_n/N (read(N) until EOF), /read_neg (read(-1)), /readline,
/readline_size/N, /readlines, /iter, /mixed (readline(), read(3), read()).
Every mode then reads once more to show EOF stays EOF. The answer is JSON:
``parts`` (latin-1 text, only for bodies up to 64 KiB), ``lengths``, ``sha256``,
``total``, ``after_eof`` and the CONTENT_LENGTH the app saw.
"""

import hashlib
import json


def _until_empty(call):
    parts = []
    while True:
        part = call()
        if not part:
            return parts
        parts.append(part)


def _read_parts(mode, arg, stream):
    if mode == "read":
        return [stream.read()]
    if mode == "read_n":
        return _until_empty(lambda: stream.read(arg))
    if mode == "read_neg":
        return [stream.read(-1)]
    if mode == "readline":
        return _until_empty(stream.readline)
    if mode == "readline_size":
        return _until_empty(lambda: stream.readline(arg))
    if mode == "readlines":
        return stream.readlines()
    if mode == "iter":
        return list(stream)
    if mode == "mixed":
        return [stream.readline(), stream.read(3), stream.read()]
    raise ValueError(f"unknown mode {mode!r}")


def app(environ, start_response):
    _, mode, *rest = environ["PATH_INFO"].split("/")
    arg = int(rest[0]) if rest else None
    stream = environ["wsgi.input"]
    parts = _read_parts(mode, arg, stream)
    whole = b"".join(parts)
    result = {
        "lengths": [len(p) for p in parts],
        "types": sorted({type(p).__name__ for p in parts}),
        "sha256": hashlib.sha256(whole).hexdigest(),
        "total": len(whole),
        "after_eof": [repr(stream.read()), repr(stream.read(10)), repr(stream.readline())],
        "content_length": environ.get("CONTENT_LENGTH"),
    }
    if len(whole) <= 65536:
        result["parts"] = [p.decode("latin-1") for p in parts]
    body = json.dumps(result).encode()
    start_response("200 OK", [("Content-Type", "application/json")])
    return [body]
