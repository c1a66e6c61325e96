"""The WSGI environ (PEP 3333 "environ Variables"), key by key, from raw requests."""

import json
import socket

import pytest
from conftest import exchange, read_response, request_bytes


def environ_of(server, raw: bytes) -> dict:
    status, _, body = exchange(server, raw)
    assert status.split(b" ", 1)[1] == b"200 OK", body
    return json.loads(body)


@pytest.fixture(scope="module")
def server(start_module_server):
    return start_module_server("environ_app:app", "--threads", "4")


@pytest.mark.parametrize("method", ["GET", "POST", "PUT", "DELETE", "PATCH", "OPTIONS"])
def test_request_method(server, method):
    body = b"x" if method in ("POST", "PUT", "PATCH") else b""
    assert environ_of(server, request_bytes(method, "/", body=body))["REQUEST_METHOD"] == method


PATHS = [
    ("/", "/", ""),
    ("/plain/path", "/plain/path", ""),
    ("/caf%C3%A9", "/caf\xc3\xa9", ""),
    ("/caf%c3%a9", "/caf\xc3\xa9", ""),
    ("/a%20b", "/a b", ""),
    ("/a+b", "/a+b", ""),
    ("/a%2Fb", "/a/b", ""),
    ("/%E2%82%AC", "/\xe2\x82\xac", ""),
    ("/%FF%FE", "/\xff\xfe", ""),
    ("/what%3F?q=%3F", "/what?", "q=%3F"),
    ("/p?x=1&y=%20z+w", "/p", "x=1&y=%20z+w"),
    ("/p?caf%C3%A9=%C3%A9", "/p", "caf%C3%A9=%C3%A9"),
    ("/p?", "/p", ""),
    ("/p?a=1?b=2", "/p", "a=1?b=2"),
    ("http://127.0.0.1/absolute/form?q=1", "/absolute/form", "q=1"),
]


@pytest.mark.parametrize("target, path_info, query", PATHS)
def test_path_info_is_percent_decoded_latin1_and_query_string_raw(server, target, path_info, query):
    env = environ_of(server, request_bytes("GET", target))
    assert env["PATH_INFO"] == path_info
    assert env.get("QUERY_STRING") == query


def test_script_name_is_empty_at_the_root(server):
    assert environ_of(server, request_bytes("GET", "/x"))["SCRIPT_NAME"] == ""


def test_content_type_and_length_absent_without_a_body(server):
    env = environ_of(server, request_bytes("GET", "/"))
    for key in ("CONTENT_TYPE", "CONTENT_LENGTH", "HTTP_CONTENT_TYPE", "HTTP_CONTENT_LENGTH"):
        assert key not in env


def test_content_type_and_length_present_with_a_body(server):
    raw = request_bytes("POST", "/", [("Content-Type", "text/plain; charset=utf-8")], b"12345")
    env = environ_of(server, raw)
    assert env["CONTENT_TYPE"] == "text/plain; charset=utf-8"
    assert env["CONTENT_LENGTH"] == "5"
    assert "HTTP_CONTENT_TYPE" not in env
    assert "HTTP_CONTENT_LENGTH" not in env


def test_server_name_and_port(server):
    env = environ_of(server, request_bytes("GET", "/", host=f"127.0.0.1:{server.port}"))
    assert env["SERVER_PORT"] == str(server.port)
    assert env["SERVER_NAME"] in {"127.0.0.1", "localhost", socket.gethostname(), socket.getfqdn()}
    assert env["HTTP_HOST"] == f"127.0.0.1:{server.port}"


@pytest.mark.parametrize("version", ["HTTP/1.0", "HTTP/1.1"])
def test_server_protocol(server, version):
    assert environ_of(server, request_bytes(version=version))["SERVER_PROTOCOL"] == version


def test_remote_addr_and_port_are_the_clients(server):
    with server.connect() as sock:
        sock.sendall(request_bytes("GET", "/"))
        _, _, body = read_response(sock)
        client_port = sock.getsockname()[1]
    env = json.loads(body)
    assert env["REMOTE_ADDR"] == "127.0.0.1"
    assert env["REMOTE_PORT"] == str(client_port)


HEADER_CASES = [
    ([("X-Custom-Header", "v1")], {"HTTP_X_CUSTOM_HEADER": "v1"}),
    ([("user-agent", "lower/1.0")], {"HTTP_USER_AGENT": "lower/1.0"}),
    ([("X-Multi", "a"), ("X-Multi", "b"), ("X-Multi", "c")], {"HTTP_X_MULTI": "a,b,c"}),
    (
        [("Accept", "text/html"), ("Accept", "application/json")],
        {"HTTP_ACCEPT": "text/html,application/json"},
    ),
    ([("X-Empty", "")], {"HTTP_X_EMPTY": ""}),
    ([("X-Spaces", "  padded value  ")], {"HTTP_X_SPACES": "padded value"}),
    ([("X-Latin", "caf\xe9")], {"HTTP_X_LATIN": "caf\xe9"}),
    ([("X-Utf8", "caf\xc3\xa9")], {"HTTP_X_UTF8": "caf\xc3\xa9"}),
]


@pytest.mark.parametrize("headers, expected", HEADER_CASES)
def test_http_headers_become_http_keys(server, headers, expected):
    env = environ_of(server, request_bytes("GET", "/", headers))
    for key, value in expected.items():
        assert env[key] == value


def test_header_with_underscore_is_dropped(server):
    raw = request_bytes(
        "GET", "/", [("X-Forwarded-For", "10.0.0.1"), ("X_Forwarded_For", "6.6.6.6")]
    )
    env = environ_of(server, raw)
    assert env["HTTP_X_FORWARDED_FOR"] == "10.0.0.1"
    assert "6.6.6.6" not in json.dumps(env)
    only = environ_of(server, request_bytes("GET", "/", [("X_Auth_User", "admin")]))
    assert not any("AUTH_USER" in key for key in only)


def test_cgi_values_are_native_strings_and_environ_is_a_dict(server):
    env = environ_of(server, request_bytes("POST", "/?a=b", [("X-A", "1")], b"body"))
    assert env["_non_str_cgi_keys"] == []
    assert env["_environ_type"] == "dict"


@pytest.mark.parametrize(
    "key, expected",
    [
        ("_wsgi_version", "(1, 0)"),
        ("wsgi.url_scheme", "http"),
        ("wsgi.multiprocess", False),
        ("wsgi.run_once", False),
        ("wsgi.input_terminated", True),
        ("_file_wrapper_callable", True),
        ("_input_methods", ["__iter__", "read", "readline", "readlines"]),
        ("_errors_methods", ["flush", "write", "writelines"]),
    ],
)
def test_wsgi_keys(server, key, expected):
    assert environ_of(server, request_bytes("GET", "/"))[key] == expected


@pytest.mark.parametrize("threads, expected", [("1", False), ("4", True)])
def test_multithread_follows_threads(start_server, threads, expected):
    server = start_server("environ_app:app", "--threads", threads)
    assert environ_of(server, request_bytes("GET", "/"))["wsgi.multithread"] is expected


def test_process_environment_never_leaks(start_server):
    server = start_server("environ_app:app", env={"FOO_SECRET": "hunter2-do-not-leak"})
    env = environ_of(server, request_bytes("GET", "/"))
    assert "FOO_SECRET" not in env
    assert "hunter2-do-not-leak" not in json.dumps(env)
    for key in ("PATH", "HOME", "PYTHONPATH", "PWD"):
        assert key not in env
    cgi_keys = {k for k in env if not k.startswith(("_", "wsgi.", "HTTP_"))}
    assert cgi_keys <= {
        "REQUEST_METHOD",
        "SCRIPT_NAME",
        "PATH_INFO",
        "QUERY_STRING",
        "CONTENT_TYPE",
        "CONTENT_LENGTH",
        "SERVER_NAME",
        "SERVER_PORT",
        "SERVER_PROTOCOL",
        "REMOTE_ADDR",
        "REMOTE_PORT",
        "REMOTE_HOST",
        "SERVER_SOFTWARE",
        "GATEWAY_INTERFACE",
        "REQUEST_URI",
        "RAW_URI",
    }


def test_each_request_gets_a_fresh_environ(server):
    with server.connect() as sock:
        sock.sendall(request_bytes("GET", "/a", [("X-Only-First", "1")]))
        first = json.loads(read_response(sock)[2])
        sock.sendall(request_bytes("GET", "/b"))
        second = json.loads(read_response(sock)[2])
    assert first["HTTP_X_ONLY_FIRST"] == "1"
    assert "HTTP_X_ONLY_FIRST" not in second
    assert second["PATH_INFO"] == "/b"
