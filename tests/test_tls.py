"""TLS (issue 11): ``--certfile``/``--keyfile``, client certificates, ``--ssl-min-version``,
ALPN, and clear start-up errors for bad files.

What a user checks, with real clients: curl and Python's ``ssl`` over real sockets to
the real server. The certificates are made by ``openssl`` once per session in a
temporary directory: a CA, a server certificate for localhost and 127.0.0.1 whose key
is written in the three PEM forms (PKCS#8, PKCS#1 RSA, and a SEC1 EC key with its own
certificate), a client certificate from the same CA and one from another CA.
"""

from __future__ import annotations

import hashlib
import http.client
import json
import os
import re
import shutil
import signal
import socket
import ssl
import struct
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import (
    APPS,
    ROOT,
    decode_chunked,
    recv_until_closed,
    split_head,
    wait_for_log_line,
    wait_until,
)

APP = "tls_app:app"
OPENSSL = shutil.which("openssl")
CURL = shutil.which("curl")
H2LOAD = shutil.which("h2load")
pytestmark = pytest.mark.skipif(OPENSSL is None, reason="openssl is needed to make certificates")

SERVER_EXT = """basicConstraints=critical,CA:FALSE
keyUsage=critical,digitalSignature,keyEncipherment
extendedKeyUsage=serverAuth
subjectAltName=DNS:localhost,IP:127.0.0.1
"""
CLIENT_EXT = """basicConstraints=critical,CA:FALSE
keyUsage=critical,digitalSignature
extendedKeyUsage=clientAuth
"""


def openssl(*args: str, cwd: Path) -> None:
    subprocess.run([OPENSSL, *args], cwd=cwd, check=True, capture_output=True, timeout=60)


def make_ca(d: Path, name: str) -> None:
    openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", f"{name}.key",
            "-out", f"{name}.pem", "-days", "2", "-subj", f"/CN={name}",
            "-addext", "basicConstraints=critical,CA:TRUE",
            "-addext", "keyUsage=critical,keyCertSign,cRLSign", cwd=d)  # fmt: skip


def sign(d: Path, name: str, key: str, subject: str, ext: str, ca: str = "ca") -> None:
    """``name``.pem: a certificate for the key file ``key``, signed by ``ca``."""
    (d / f"{name}.ext").write_text(ext)
    openssl("req", "-new", "-key", key, "-out", f"{name}.csr", "-subj", subject, cwd=d)
    openssl("x509", "-req", "-in", f"{name}.csr", "-CA", f"{ca}.pem", "-CAkey", f"{ca}.key",
            "-CAcreateserial", "-days", "2", "-extfile", f"{name}.ext", "-out", f"{name}.pem",
            cwd=d)  # fmt: skip


@pytest.fixture(scope="session")
def pki(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("pki")
    make_ca(d, "ca")
    make_ca(d, "other-ca")
    # The server's RSA key as PKCS#8 ("PRIVATE KEY") and as PKCS#1 ("RSA PRIVATE KEY").
    openssl("genpkey", "-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048",
            "-out", "server.key", cwd=d)  # fmt: skip
    openssl("rsa", "-in", "server.key", "-traditional", "-out", "server-rsa.key", cwd=d)
    sign(d, "server", "server.key", "/CN=localhost", SERVER_EXT)
    # An EC server key in SEC1 form ("EC PRIVATE KEY"), with its own certificate.
    openssl("ecparam", "-name", "prime256v1", "-genkey", "-noout", "-out", "server-ec.key", cwd=d)
    sign(d, "server-ec", "server-ec.key", "/CN=localhost", SERVER_EXT)
    openssl("ecparam", "-name", "prime256v1", "-genkey", "-noout", "-out", "client.key", cwd=d)
    sign(d, "client", "client.key", "/C=FR/O=Example, Inc./CN=alice", CLIENT_EXT)
    sign(d, "stranger", "client.key", "/CN=mallory", CLIENT_EXT, ca="other-ca")
    forms = {
        "server.key": "-----BEGIN PRIVATE KEY-----",
        "server-rsa.key": "-----BEGIN RSA PRIVATE KEY-----",
        "server-ec.key": "-----BEGIN EC PRIVATE KEY-----",
    }
    for name, first in forms.items():  # the forms under test really are these
        assert (d / name).read_text().startswith(first), name
    return d


def tls_args(pki: Path, cert: str = "server.pem", key: str = "server.key") -> list[str]:
    return ["--certfile", str(pki / cert), "--keyfile", str(pki / key)]


def client_context(pki: Path, cert: str | None = None, alpn=("http/1.1",)) -> ssl.SSLContext:
    ctx = ssl.create_default_context(cafile=str(pki / "ca.pem"))
    if cert:
        ctx.load_cert_chain(str(pki / f"{cert}.pem"), str(pki / "client.key"))
    if alpn:
        ctx.set_alpn_protocols(list(alpn))
    return ctx


def get_json(server, ctx: ssl.SSLContext, method="GET", path="/", body=None, host="localhost"):
    conn = http.client.HTTPSConnection(host, server.port, context=ctx, timeout=15)
    try:
        conn.request(method, path, body=body)
        resp = conn.getresponse()
        assert resp.status == 200, resp.status
        return json.loads(resp.read())
    finally:
        conn.close()


def handshake(server, ctx: ssl.SSLContext, host="localhost") -> ssl.SSLSocket:
    raw = socket.create_connection(("127.0.0.1", server.port), timeout=10)
    return ctx.wrap_socket(raw, server_hostname=host)


def refused(server, ctx: ssl.SSLContext) -> bool:
    """Whether the server refuses this client: the handshake fails, or (TLS 1.3, where
    the client's certificate is checked after the client finished) the first request
    gets no answer but an alert or a closed connection."""
    try:
        with handshake(server, ctx) as tls:
            tls.sendall(b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n")
            return tls.recv(100) == b""
    except (ssl.SSLError, ConnectionResetError, BrokenPipeError):
        return True


@pytest.fixture(scope="module")
def tls_server(start_module_server, pki):
    """One TLS server (default options, a master and one worker) for read-only tests."""
    return start_module_server(APP, *tls_args(pki))


# --- serving over TLS ------------------------------------------------------------------


@pytest.mark.skipif(CURL is None, reason="curl not installed")
def test_curl_over_https_sees_https_in_the_environ(tls_server, pki):
    out = subprocess.run(
        [CURL, "-sS", "--http1.1", "--cacert", str(pki / "ca.pem"), "-w", "\n%{http_code}",
         f"https://localhost:{tls_server.port}/hello"],
        capture_output=True, text=True, timeout=30,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    body, status = out.stdout.rsplit("\n", 1)
    assert status == "200"
    env = json.loads(body)
    assert env["wsgi.url_scheme"] == "https"
    assert env["HTTPS"] == "on"
    assert env["SSL_CLIENT_S_DN"] is None


@pytest.mark.parametrize(
    ("cert", "key"),
    [("server.pem", "server.key"), ("server.pem", "server-rsa.key"),
     ("server-ec.pem", "server-ec.key")],
    ids=["pkcs8", "pkcs1-rsa", "sec1-ec"],
)  # fmt: skip
def test_each_pem_key_form_serves(start_server, pki, cert, key):
    server = start_server(APP, "--workers", "0", *tls_args(pki, cert, key))
    env = get_json(server, client_context(pki), host="127.0.0.1")
    assert env["wsgi.url_scheme"] == "https" and env["HTTPS"] == "on"


@pytest.mark.skipif(CURL is None, reason="curl not installed")
def test_tls_on_a_unix_socket(start_server, pki, tmp_path):
    path = tmp_path / "tls.sock"
    start_server(APP, "--workers", "0", "--bind", f"unix:{path}", *tls_args(pki))
    out = subprocess.run(
        [CURL, "-sS", "--http1.1", "--cacert", str(pki / "ca.pem"), "--unix-socket", str(path),
         "https://localhost/"],
        capture_output=True, text=True, timeout=30,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)["wsgi.url_scheme"] == "https"


def test_keep_alive_over_tls(tls_server, pki):
    conn = http.client.HTTPSConnection("localhost", tls_server.port, context=client_context(pki))
    try:
        ports = set()
        for i in range(5):
            conn.request("GET", f"/{i}")
            resp = conn.getresponse()
            assert resp.status == 200
            ports.add(json.loads(resp.read())["REMOTE_PORT"])
            sock = conn.sock
            assert sock is not None
        assert len(ports) == 1, f"requests were spread over connections: {ports}"
    finally:
        conn.close()


def test_large_upload_keeps_its_sha256(tls_server, pki):
    body = os.urandom(3 * 1024 * 1024 + 123)
    env = get_json(tls_server, client_context(pki), "POST", "/upload", body)
    assert env["length"] == len(body)
    assert env["sha256"] == hashlib.sha256(body).hexdigest()


def expected_download(size: int) -> bytes:
    pattern = bytes(range(256)) * 256
    return (pattern * (size // len(pattern) + 1))[:size]


def test_large_streamed_download_arrives_whole(tls_server, pki):
    size = 8 * 1024 * 1024 + 7
    conn = http.client.HTTPSConnection("localhost", tls_server.port, context=client_context(pki))
    try:
        conn.request("GET", f"/download/{size}")
        resp = conn.getresponse()
        data = resp.read()
    finally:
        conn.close()
    assert resp.status == 200
    assert len(data) == size and data == expected_download(size)


def test_a_slow_reader_gets_the_whole_response(tls_server, pki):
    """A small receive window and a slow reader keep the server's writes waiting to
    the very end: the last TLS records must still go out (nothing left in rustls)."""
    size = 2 * 1024 * 1024 + 7
    raw = socket.socket()
    raw.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 16384)
    raw.settimeout(10)
    raw.connect(("127.0.0.1", tls_server.port))
    with client_context(pki).wrap_socket(raw, server_hostname="localhost") as tls:
        tls.sendall(f"GET /download/{size} HTTP/1.1\r\nHost: localhost\r\n\r\n".encode())
        received = b""
        while not received.endswith(b"\r\n0\r\n\r\n"):
            piece = tls.recv(8192)  # times out (fails) if the end never comes
            assert piece, "connection closed before the end of the response"
            received += piece
            time.sleep(0.001)
    _, _, rest = split_head(received)
    body, complete = decode_chunked(rest)
    assert complete and body == expected_download(size)


@pytest.mark.skipif(CURL is None, reason="curl not installed")
def test_curl_http2_over_tls(tls_server, pki):
    out = subprocess.run(
        [CURL, "-sS", "--http2", "--cacert", str(pki / "ca.pem"), "-w", "\n%{http_version}",
         f"https://localhost:{tls_server.port}/h2"],
        capture_output=True, text=True, timeout=30,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    body, version = out.stdout.rsplit("\n", 1)
    assert version == "2"
    env = json.loads(body)
    assert env["SERVER_PROTOCOL"] == "HTTP/2"
    assert env["wsgi.url_scheme"] == "https" and env["HTTPS"] == "on"


@pytest.mark.skipif(H2LOAD is None, reason="h2load not installed")
@pytest.mark.parametrize("h1", [False, True], ids=["h2", "http1.1"])
def test_h2load_over_tls_has_no_errors(tls_server, h1):
    out = subprocess.run(
        [H2LOAD, *(["--h1"] if h1 else []), "-n", "2000", "-c", "4", "-m", "4",
         f"https://127.0.0.1:{tls_server.port}/"],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert "2000 succeeded, 0 failed, 0 errored" in out.stdout, out.stdout + out.stderr


def test_http_1_offers_only_http11_and_http_2_only_h2(start_server, pki):
    offers = ("h2", "http/1.1")
    h1 = start_server(APP, "--workers", "0", "--http", "1", *tls_args(pki))
    with handshake(h1, client_context(pki, alpn=offers)) as tls:
        assert tls.selected_alpn_protocol() == "http/1.1"
    h2 = start_server(APP, "--workers", "0", "--http", "2", *tls_args(pki))
    with handshake(h2, client_context(pki, alpn=offers)) as tls:
        assert tls.selected_alpn_protocol() == "h2"
    with pytest.raises(ssl.SSLError):  # RFC 7301 §3.2: no_application_protocol
        handshake(h2, client_context(pki, alpn=("http/1.1",))).close()


def test_alpn_offers_h2_then_http11(tls_server, pki):
    with handshake(tls_server, client_context(pki, alpn=("h2", "http/1.1"))) as tls:
        assert tls.selected_alpn_protocol() == "h2"
    with handshake(tls_server, client_context(pki, alpn=("http/1.1",))) as tls:
        assert tls.selected_alpn_protocol() == "http/1.1"
    # A client without ALPN gets HTTP/1.1.
    env = get_json(tls_server, client_context(pki, alpn=()))
    assert env["HTTPS"] == "on"


def test_a_proxy_protocol_header_comes_before_the_handshake(start_server, pki):
    server = start_server(APP, "--workers", "0", "--proxy-protocol", *tls_args(pki))
    raw = socket.create_connection(("127.0.0.1", server.port), timeout=10)
    raw.sendall(b"PROXY TCP4 192.0.2.7 127.0.0.1 40001 443\r\n")
    with client_context(pki).wrap_socket(raw, server_hostname="localhost") as tls:
        tls.sendall(b"GET / HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        data = b""
        while piece := tls.recv(65536):
            data += piece
    _, _, body = split_head(data)
    env = json.loads(body)
    assert (env["REMOTE_ADDR"], env["REMOTE_PORT"]) == ("192.0.2.7", "40001")
    assert env["HTTPS"] == "on"


def uwsgi_packet(variables: dict[str, str]) -> bytes:
    """One uwsgi request without a body (header, then the vars block)."""
    block = b"".join(
        struct.pack("<H", len(k)) + k.encode() + struct.pack("<H", len(v)) + v.encode()
        for k, v in variables.items()
    )
    return struct.pack("<BHB", 0, len(block), 0) + block


def test_uwsgi_listeners_stay_plain(start_server, pki, tmp_path):
    path = tmp_path / "uwsgi.sock"
    server = start_server(APP, "--workers", "0", "--bind", f"uwsgi://unix:{path}", *tls_args(pki))
    assert get_json(server, client_context(pki))["HTTPS"] == "on"  # the HTTP listener: TLS
    sock = socket.socket(socket.AF_UNIX)
    sock.settimeout(10)
    sock.connect(str(path))
    with sock:
        sock.sendall(uwsgi_packet({"REQUEST_METHOD": "GET", "PATH_INFO": "/", "QUERY_STRING": "",
                                   "SERVER_NAME": "example.test", "SERVER_PORT": "80",
                                   "SERVER_PROTOCOL": "HTTP/1.1"}))  # fmt: skip
        raw, closed = recv_until_closed(sock)
    status, _, body = split_head(raw)
    assert status == b"HTTP/1.1 200 OK" and closed
    env = json.loads(body)
    assert env["wsgi.url_scheme"] == "http" and env["HTTPS"] is None
    # The start-up lines say which is which.
    server.wait_for_log(rf"Listening at: https://127\.0\.0\.1:{server.port} ")
    server.wait_for_log(rf"Listening at: uwsgi://unix:{re.escape(str(path))} ")


# --- bad input on a TLS port -----------------------------------------------------------


def test_plain_http_to_the_tls_port_is_closed_and_serving_goes_on(start_server, pki):
    server = start_server(APP, "--workers", "0", "--log-level", "debug", *tls_args(pki))
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
        sock.sendall(b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n")
        data = b""
        while chunk := sock.recv(4096):
            data += chunk
    assert b"HTTP/" not in data  # at most a TLS alert, then the connection is closed
    wait_for_log_line(server, r"TLS handshake failed")
    assert get_json(server, client_context(pki))["HTTPS"] == "on"


def test_a_silent_client_is_closed_after_the_header_timeout(start_server, pki):
    server = start_server(APP, "--workers", "0", "--header-timeout", "1", *tls_args(pki))
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
        started = time.monotonic()
        sock.sendall(b"\x16\x03\x01\x00")  # the start of a ClientHello record, then nothing
        assert sock.recv(100) == b""
        assert time.monotonic() - started < 5
    assert get_json(server, client_context(pki))["HTTPS"] == "on"


# --- client certificates ---------------------------------------------------------------


def test_required_client_certificate(start_server, pki):
    server = start_server(APP, "--workers", "0", *tls_args(pki), "--ca-certs",
                          str(pki / "ca.pem"), "--cert-reqs", "required")  # fmt: skip
    assert refused(server, client_context(pki))
    assert refused(server, client_context(pki, cert="stranger"))
    env = get_json(server, client_context(pki, cert="client"))
    assert env["SSL_CLIENT_S_DN"] == r"CN=alice,O=Example\, Inc.,C=FR"  # RFC 4514
    assert env["HTTPS"] == "on"


def test_optional_client_certificate(start_server, pki):
    server = start_server(APP, "--workers", "0", *tls_args(pki), "--ca-certs",
                          str(pki / "ca.pem"), "--cert-reqs", "optional")  # fmt: skip
    assert get_json(server, client_context(pki))["SSL_CLIENT_S_DN"] is None
    assert "CN=alice" in get_json(server, client_context(pki, cert="client"))["SSL_CLIENT_S_DN"]
    assert refused(server, client_context(pki, cert="stranger"))


# --- protocol versions -----------------------------------------------------------------


def tls12_only(pki: Path) -> ssl.SSLContext:
    ctx = client_context(pki)
    ctx.maximum_version = ssl.TLSVersion.TLSv1_2
    return ctx


def test_tls12_is_served_by_default(tls_server, pki):
    with handshake(tls_server, tls12_only(pki)) as tls:
        assert tls.version() == "TLSv1.2"
    with handshake(tls_server, client_context(pki)) as tls:
        assert tls.version() == "TLSv1.3"


def test_ssl_min_version_13_refuses_a_tls12_client(start_server, pki):
    server = start_server(APP, "--workers", "0", *tls_args(pki), "--ssl-min-version", "1.3")
    with pytest.raises(ssl.SSLError):
        handshake(server, tls12_only(pki)).close()
    assert get_json(server, client_context(pki))["HTTPS"] == "on"


# --- files: relative paths, reload ----------------------------------------------------


def served_cert(server, pki: Path) -> bytes:
    with handshake(server, client_context(pki)) as tls:
        return tls.getpeercert(binary_form=True)


def der_of(pem: Path) -> bytes:
    return ssl.PEM_cert_to_DER_cert(pem.read_text())


def test_relative_paths_hold_after_chdir(start_server, pki, tmp_path):
    server = start_server(APP, "--certfile", "server.pem", "--keyfile", "server.key",
                          "--chdir", str(tmp_path), cwd=pki)  # fmt: skip
    assert get_json(server, client_context(pki))["HTTPS"] == "on"


def test_reload_takes_a_renewed_certificate_and_keeps_serving_on_a_bad_one(
    start_server, pki, tmp_path
):
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    shutil.copy(pki / "server.pem", cert)
    shutil.copy(pki / "server.key", key)
    server = start_server(APP, "--certfile", str(cert), "--keyfile", str(key))
    assert served_cert(server, pki) == der_of(pki / "server.pem")
    shutil.copy(pki / "server-ec.pem", cert)  # renewed: another certificate and key
    shutil.copy(pki / "server-ec.key", key)
    server.proc.send_signal(signal.SIGHUP)
    renewed = der_of(pki / "server-ec.pem")
    assert wait_until(lambda: served_cert(server, pki) == renewed, timeout=20)
    shutil.copy(pki / "client.key", key)  # a key that does not match
    server.proc.send_signal(signal.SIGHUP)
    wait_for_log_line(server, r"Reload failed: --keyfile .*does not match")
    assert served_cert(server, pki) == renewed
    assert get_json(server, client_context(pki))["HTTPS"] == "on"


# --- start-up errors -------------------------------------------------------------------


BAD_STARTS = {
    "missing-certfile": (lambda d: tls_args(d, cert="nope.pem"), "nope.pem", "cannot read"),
    "key-not-matching": (lambda d: tls_args(d, key="client.key"), "client.key", "does not match"),
    "no-keyfile": (lambda d: ["--certfile", str(d / "server.pem")], "--keyfile", "needs"),
    "key-as-cert": (lambda d: tls_args(d, cert="server.key"), "server.key", "no certificate"),
    "no-ca-certs": (lambda d: [*tls_args(d), "--cert-reqs", "required"], "--ca-certs", "needs"),
}


@pytest.mark.parametrize("workers", ["0", "1"])
@pytest.mark.parametrize("case", sorted(BAD_STARTS))
def test_bad_tls_files_stop_start_up_with_one_line(pki, case, workers):
    args, names, says = BAD_STARTS[case]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(APPS), str(ROOT)])}
    out = subprocess.run(
        [sys.executable, "-m", "ferrowsgi", APP, "--bind", "127.0.0.1:0", "--workers", workers,
         *args(pki)],
        capture_output=True, text=True, timeout=30, env=env, cwd=ROOT,
    )  # fmt: skip
    assert out.returncode != 0
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1, out.stderr
    assert names in lines[0] and says in lines[0], lines[0]
    assert "Listening" not in out.stdout + out.stderr


def test_python_api_refuses_a_bad_certfile(pki):
    import ferrowsgi

    with pytest.raises(ValueError, match="cannot read"):
        ferrowsgi.make_server(
            "127.0.0.1", 0, lambda e, s: [], certfile=str(pki / "nope.pem"),
            keyfile=str(pki / "server.key"),
        )  # fmt: skip
