"""Echo the WSGI environ as JSON: every str value, plus what the non-str keys hold.

``NOT_CALLABLE`` exists so the CLI tests can name an attribute that is not callable.
"""

import json

NOT_CALLABLE = 42


def describe(environ):
    """The environ as plain JSON data (str values as-is, the wsgi.* objects described)."""
    data = {k: v for k, v in environ.items() if isinstance(v, str)}
    data["_non_str_cgi_keys"] = sorted(
        k for k, v in environ.items() if "." not in k and not isinstance(v, str)
    )
    data["_environ_type"] = type(environ).__name__
    data["_wsgi_version"] = repr(environ.get("wsgi.version"))
    for key in ("wsgi.multithread", "wsgi.multiprocess", "wsgi.run_once", "wsgi.input_terminated"):
        data[key] = environ.get(key)
    stream = environ.get("wsgi.input")
    data["_input_type"] = type(stream).__name__
    data["_input_methods"] = sorted(
        m for m in ("read", "readline", "readlines", "__iter__") if hasattr(stream, m)
    )
    errors = environ.get("wsgi.errors")
    data["_errors_methods"] = sorted(
        m for m in ("write", "writelines", "flush") if callable(getattr(errors, m, None))
    )
    data["_file_wrapper_callable"] = callable(environ.get("wsgi.file_wrapper"))
    return data


def app(environ, start_response):
    body = json.dumps(describe(environ)).encode()
    start_response(
        "200 OK", [("Content-Type", "application/json"), ("Content-Length", str(len(body)))]
    )
    return [body]
