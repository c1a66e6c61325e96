"""``--static PREFIX=DIR``: files answered by the server itself, never by the application.

Every server here runs tests/apps/counting_app.py, which records each call it gets
(``GET /calls`` reports them), so a test can prove that no static request reached
it. Paths that a client would normalise (``..``, ``%2e``) are sent on raw sockets.
"""

from __future__ import annotations

import email.utils
import gzip
import hashlib
import os
import re
import socket
import struct
import subprocess
import threading
import time
from pathlib import Path

import httpx
import pytest
from conftest import read_response, recv_all

CSS = b"body { color: #333; }\n" * 64  # 1.4 KiB
SECRET = b"the secret outside the static directory\n"
ETAG = re.compile(r'^(W/)?"[^"]+"$')
PLAIN = {"Accept-Encoding": "identity"}  # httpx asks for gzip and br by default


@pytest.fixture
def site(tmp_path: Path) -> Path:
    """A static directory, with a secret file beside it (never to be served)."""
    (tmp_path / "secret.txt").write_bytes(SECRET)
    root = tmp_path / "site"
    (root / "css").mkdir(parents=True)
    (root / "css" / "app.css").write_bytes(CSS)
    (root / "css" / "app.css.gz").write_bytes(gzip.compress(CSS))
    # Served as it is, never decoded by the server: any bytes stand for brotli.
    (root / "css" / "app.css.br").write_bytes(b"brotli stand-in")
    (root / "plain.txt").write_bytes(b"0123456789")
    (root / "data.json").write_bytes(b'{"a": 1}')
    (root / "empty").mkdir()
    (root / "leak").symlink_to(tmp_path / "secret.txt")
    (root / "leakdir").symlink_to(tmp_path)
    (root / "alias.txt").symlink_to(root / "plain.txt")
    return root


@pytest.fixture
def server(start_server, site):
    return start_server("counting_app:app", "--workers", "0", "--static", f"/static={site}")


def raw(server, target: str, method: str = "GET", headers: str = "", head: bool = False):
    """One request with exactly this target on its own connection: (status, headers, body)."""
    with server.connect() as sock:
        request = f"{method} {target} HTTP/1.1\r\nHost: t\r\n{headers}Connection: close\r\n\r\n"
        sock.sendall(request.encode("latin-1"))
        status, fields, body = read_response(sock, head=head)
    return int(status.split()[1]), fields, body


def app_calls(server) -> list[dict]:
    return httpx.get(server.url + "/calls").json()


def test_a_file_is_served_with_its_type_validators_and_max_age(server, site):
    resp = httpx.get(server.url + "/static/css/app.css", headers=PLAIN)
    assert resp.status_code == 200
    assert resp.content == CSS
    assert resp.headers["content-type"] == "text/css"
    assert resp.headers["content-length"] == str(len(CSS))
    assert ETAG.match(resp.headers["etag"]), resp.headers["etag"]
    modified = email.utils.parsedate_to_datetime(resp.headers["last-modified"])
    assert int(modified.timestamp()) == int((site / "css" / "app.css").stat().st_mtime)
    assert resp.headers["cache-control"] == "public, max-age=3600"
    assert resp.headers["accept-ranges"] == "bytes"
    assert httpx.get(server.url + "/static/data.json").headers["content-type"] == (
        "application/json"
    )
    assert app_calls(server) == []


def test_static_max_age_sets_cache_control(start_server, site):
    server = start_server(
        "counting_app:app", "--workers", "0", "--static", f"/static={site}",
        "--static-max-age", "60",
    )  # fmt: skip
    resp = httpx.get(server.url + "/static/plain.txt")
    assert resp.headers["cache-control"] == "public, max-age=60"


def test_head_sends_the_headers_and_no_body(server):
    get = httpx.get(server.url + "/static/css/app.css", headers=PLAIN)
    with server.connect() as sock:
        # HEAD then GET on one connection: a body after HEAD would corrupt the GET's answer.
        sock.sendall(
            b"HEAD /static/css/app.css HTTP/1.1\r\nHost: t\r\n\r\n"
            b"GET /static/plain.txt HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n"
        )
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    head, rest = data.split(b"\r\n\r\n", 1)
    assert head.startswith(b"HTTP/1.1 200 ")
    assert f"content-length: {len(CSS)}".encode() in head.lower()
    assert f"etag: {get.headers['etag']}".encode() in head.lower()
    assert rest.startswith(b"HTTP/1.1 200 "), rest[:100]
    assert rest.endswith(b"\r\n\r\n0123456789")


def test_a_range_is_answered_206(server):
    status, fields, body = raw(server, "/static/plain.txt", headers="Range: bytes=2-5\r\n")
    assert (status, body) == (206, b"2345")
    assert fields["content-range"] == "bytes 2-5/10"
    assert fields["content-length"] == "4"
    status, fields, body = raw(server, "/static/plain.txt", headers="Range: bytes=-3\r\n")
    assert (status, body, fields["content-range"]) == (206, b"789", "bytes 7-9/10")
    status, fields, body = raw(server, "/static/plain.txt", headers="Range: bytes=6-\r\n")
    assert (status, body) == (206, b"6789")


def test_a_range_past_the_end_is_answered_416(server):
    status, fields, _ = raw(server, "/static/plain.txt", headers="Range: bytes=10-20\r\n")
    assert status == 416
    assert fields["content-range"] == "bytes */10"
    status, _, _ = raw(server, "/static/plain.txt", headers="Range: bytes=9-2\r\n")
    assert status == 416


def test_if_none_match_is_answered_304(server):
    url = server.url + "/static/css/app.css"
    first = httpx.get(url, headers=PLAIN)
    etag = first.headers["etag"]
    again = httpx.get(url, headers={**PLAIN, "If-None-Match": etag})
    assert again.status_code == 304
    assert again.content == b""
    assert again.headers["etag"] == etag
    assert again.headers["cache-control"] == "public, max-age=3600"
    # Weak comparison (RFC 9110 §13.1.2), and a list of tags.
    weak = httpx.get(url, headers={**PLAIN, "If-None-Match": f'"x", W/{etag.removeprefix("W/")}'})
    assert weak.status_code == 304
    changed = httpx.get(url, headers={**PLAIN, "If-None-Match": '"not-this-one"'})
    assert changed.status_code == 200 and changed.content == CSS


def test_if_modified_since_is_answered_304(server, site):
    url = server.url + "/static/plain.txt"
    last_modified = httpx.get(url).headers["last-modified"]
    assert httpx.get(url, headers={"If-Modified-Since": last_modified}).status_code == 304
    older = email.utils.formatdate(time.time() - 86400 * 365, usegmt=True)
    os.utime(site / "plain.txt")  # now: newer than a year ago either way
    resp = httpx.get(url, headers={"If-Modified-Since": older})
    assert resp.status_code == 200 and resp.content == b"0123456789"


def test_a_precompressed_sibling_is_sent_when_accepted(server, site):
    target = "/static/css/app.css"
    status, fields, body = raw(server, target, headers="Accept-Encoding: gzip\r\n")
    assert status == 200
    assert fields["content-encoding"] == "gzip"
    assert fields["vary"].lower() == "accept-encoding"
    assert fields["content-type"] == "text/css"
    assert gzip.decompress(body) == CSS
    status, fields, body = raw(server, target, headers="Accept-Encoding: br\r\n")
    assert (fields["content-encoding"], body) == ("br", b"brotli stand-in")
    status, fields, body = raw(server, target, headers="Accept-Encoding: gzip;q=1, br;q=0.5\r\n")
    assert fields["content-encoding"] == "gzip"
    # Nothing accepted, or only what has no sibling: the plain file.
    for accept in ("", "Accept-Encoding: identity\r\n", "Accept-Encoding: zstd\r\n"):
        status, fields, body = raw(server, target, headers=accept)
        assert (status, body) == (200, CSS), accept
        assert "content-encoding" not in fields
        assert fields["vary"].lower() == "accept-encoding"


TRAVERSALS = [
    "/static/../secret.txt",
    "/static/css/../../secret.txt",
    "/static/%2e%2e/secret.txt",
    "/static/%2E%2E/secret.txt",
    "/static/.%2e/secret.txt",
    "/static/..%2fsecret.txt",
    "/static/css%2f..%2f..%2fsecret.txt",
    "/static/%252e%252e/secret.txt",
    "/static/%252e%252e%252fsecret.txt",
    "/static/..\\secret.txt",
    "/static/..%5csecret.txt",
    "/static/..%5Csecret.txt",
    "/static/plain.txt%00.css",
    "/static//etc/passwd",
    "/static/%2fetc/passwd",
    "/static/./plain.txt",
]


@pytest.mark.parametrize("target", TRAVERSALS)
def test_a_path_that_leaves_the_directory_is_404(server, target):
    status, _, body = raw(server, target)
    assert status == 404
    assert SECRET not in body and b"root:" not in body
    assert app_calls(server) == []


def test_symlinks_are_followed_only_inside_the_directory(server):
    assert raw(server, "/static/leak")[0] == 404
    assert raw(server, "/static/leakdir/secret.txt")[0] == 404
    status, _, body = raw(server, "/static/alias.txt")
    assert (status, body) == (200, b"0123456789")


@pytest.mark.parametrize(
    "target", ["/static", "/static/", "/static/css", "/static/css/", "/static/empty/"]
)
def test_a_directory_is_404_without_a_listing(server, target):
    status, _, body = raw(server, target)
    assert status == 404
    assert b"app.css" not in body


def test_a_missing_file_is_404_from_the_server(server):
    status, fields, body = raw(server, "/static/nope.css")
    assert status == 404
    assert body == b"404 Not Found\n"
    assert fields["server"].startswith("ferrowsgi/")
    assert app_calls(server) == []


@pytest.mark.parametrize("method", ["POST", "PUT", "DELETE", "OPTIONS"])
def test_other_methods_are_405(server, method):
    status, fields, _ = raw(server, "/static/plain.txt", method=method)
    assert status == 405
    assert fields["allow"] == "GET, HEAD"
    assert app_calls(server) == []


def test_the_application_is_never_called_for_a_static_path(server):
    for target in ["/static/plain.txt", "/static/missing", "/static/", "/static/../x"]:
        raw(server, target)
    raw(server, "/static/plain.txt", method="HEAD", head=True)
    raw(server, "/static/plain.txt", method="POST")
    assert app_calls(server) == []
    # Whole segments only: /staticx and /other are the application's.
    assert raw(server, "/staticx/plain.txt")[0] == 200
    assert raw(server, "/other")[0] == 200
    assert [c["path"] for c in app_calls(server)] == ["/staticx/plain.txt", "/other"]


def test_the_longest_prefix_wins(start_server, site, tmp_path):
    inner = tmp_path / "inner"
    inner.mkdir()
    (inner / "plain.txt").write_bytes(b"inner")
    server = start_server(
        "counting_app:app", "--workers", "0",
        "--static", f"/static={site}", "--static", f"/static/deep={inner}",
    )  # fmt: skip
    assert raw(server, "/static/deep/plain.txt")[2] == b"inner"
    assert raw(server, "/static/plain.txt")[2] == b"0123456789"
    assert raw(server, "/static/deep/css/app.css")[0] == 404


def test_with_two_workers(start_server, site):
    server = start_server("counting_app:app", "--workers", "2", "--static", f"/static={site}")
    with httpx.Client(base_url=server.url, headers=PLAIN) as client:
        for _ in range(10):
            resp = client.get("/static/css/app.css")
            assert (resp.status_code, resp.content) == (200, CSS)
    assert raw(server, "/static/%2e%2e/secret.txt")[0] == 404
    assert raw(server, "/static/plain.txt", headers="Range: bytes=0-0\r\n")[2] == b"0"


def vm_rss_kib(pid: int) -> int:
    status = Path(f"/proc/{pid}/status").read_text()
    return int(re.search(r"^VmRSS:\s+(\d+) kB", status, re.MULTILINE).group(1))


BIG = 100 * 1024 * 1024


def test_a_100_mib_file_goes_out_with_flat_memory(start_server, tmp_path):
    root = tmp_path / "big"
    root.mkdir()
    digest = hashlib.sha256()
    block = os.urandom(1 << 20)
    with open(root / "big.bin", "wb") as f:
        for i in range(BIG >> 20):
            piece = bytes([i]) + block[1:]
            f.write(piece)
            digest.update(piece)
    server = start_server("counting_app:app", "--workers", "0", "--static", f"/static={root}")
    pid = server.proc.pid  # --workers 0: this process serves
    raw(server, "/static/big.bin", method="HEAD", head=True)  # warm the paths taken
    before = vm_rss_kib(pid)
    peak = [before]
    done = threading.Event()

    def sample() -> None:
        while not done.wait(0.02):
            peak[0] = max(peak[0], vm_rss_kib(pid))

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    got, received = hashlib.sha256(), 0
    try:
        with server.connect(timeout=30) as sock:
            sock.sendall(b"GET /static/big.bin HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
            head = b""
            while b"\r\n\r\n" not in head:
                head += sock.recv(4096)
            head, first = head.split(b"\r\n\r\n", 1)
            assert head.startswith(b"HTTP/1.1 200 ")
            assert f"content-length: {BIG}".encode() in head.lower()
            got.update(first)
            received = len(first)
            time.sleep(1.0)  # a slow client: the server must wait, not read ahead
            while chunk := sock.recv(1 << 20):
                got.update(chunk)
                received += len(chunk)
    finally:
        done.set()
        sampler.join(5)
    assert received == BIG
    assert got.hexdigest() == digest.hexdigest()
    growth_mib = (peak[0] - before) / 1024
    assert growth_mib < 30, f"RSS grew by {growth_mib:.1f} MiB"


def test_over_http2(server, site):
    """HTTP/2 (h2c, prior knowledge) goes through the same layer: curl gets the file,
    a range, a 304 and the 404s."""
    base = [
        "curl",
        "-s",
        "--http2-prior-knowledge",
        "-o",
        "-",
        "-w",
        "|%{http_version} %{http_code}",
    ]
    url = server.url + "/static/"

    def curl(path: str, *args: str) -> tuple[bytes, bytes]:
        done = subprocess.run([*base, *args, url + path], capture_output=True, timeout=30)
        body, _, status = done.stdout.rpartition(b"|")
        return body, status

    assert curl("css/app.css") == (CSS, b"2 200")
    assert curl("plain.txt", "-H", "Range: bytes=1-2") == (b"12", b"2 206")
    etag = httpx.get(url + "plain.txt").headers["etag"]
    assert curl("plain.txt", "-H", f"If-None-Match: {etag}") == (b"", b"2 304")
    assert curl("leak")[1] == b"2 404"
    assert curl("%2e%2e/secret.txt", "--path-as-is")[1] == b"2 404"
    assert app_calls(server) == []


# --- files over the small-file threshold: a file body on the seam (sendfile on a plain
# socket; read in chunks over TLS, HTTP/2, FastCGI and through --compress) -------------

LARGE = 3 * 1024 * 1024 + 7  # past WHOLE (64 KiB), and not a multiple of a chunk


@pytest.fixture
def large_site(tmp_path: Path) -> Path:
    """``big.bin`` (random bytes) and ``big.txt`` (compressible text), both LARGE bytes."""
    root = tmp_path / "large"
    root.mkdir()
    (root / "big.bin").write_bytes(os.urandom(LARGE))
    line = b"a line of text that compresses well, 0123456789\n"
    (root / "big.txt").write_bytes((line * (LARGE // len(line) + 1))[:LARGE])
    (root / "small.txt").write_bytes(b"small")
    return root


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def test_a_large_file_goes_out_whole(start_server, large_site):
    server = start_server("counting_app:app", "--static", f"/static={large_site}")
    data = (large_site / "big.bin").read_bytes()
    for _ in range(2):  # twice on one keep-alive connection
        status, fields, body = raw(server, "/static/big.bin")
        assert (status, fields["content-length"]) == (200, str(LARGE))
        assert sha(body) == sha(data)
    with httpx.Client(headers=PLAIN) as client:
        for _ in range(3):
            assert sha(client.get(server.url + "/static/big.bin").content) == sha(data)
    assert app_calls(server) == []


def test_a_range_of_a_large_file_is_its_exact_bytes(start_server, large_site):
    server = start_server("counting_app:app", "--static", f"/static={large_site}")
    data = (large_site / "big.bin").read_bytes()
    cases = {
        "bytes=100000-2500000": (100000, 2500001),
        f"bytes={LARGE - 70000}-": (LARGE - 70000, LARGE),
        "bytes=-1000000": (LARGE - 1000000, LARGE),
        "bytes=1-": (1, LARGE),
    }
    for spec, (first, end) in cases.items():
        status, fields, body = raw(server, "/static/big.bin", headers=f"Range: {spec}\r\n")
        assert status == 206, spec
        assert fields["content-range"] == f"bytes {first}-{end - 1}/{LARGE}", spec
        assert fields["content-length"] == str(end - first), spec
        assert body == data[first:end], spec


def test_head_of_a_large_file_sends_no_body(start_server, large_site):
    server = start_server("counting_app:app", "--static", f"/static={large_site}")
    with server.connect() as sock:
        # HEAD then GET on one connection: a body after HEAD would corrupt the GET's answer.
        sock.sendall(
            b"HEAD /static/big.bin HTTP/1.1\r\nHost: t\r\n\r\n"
            b"GET /static/small.txt HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n"
        )
        data = recv_all(sock)
    head, rest = data.split(b"\r\n\r\n", 1)
    assert head.startswith(b"HTTP/1.1 200 ")
    assert f"content-length: {LARGE}".encode() in head.lower()
    assert rest.startswith(b"HTTP/1.1 200 "), rest[:100]
    assert rest.endswith(b"\r\n\r\nsmall")


def test_a_client_that_leaves_mid_file_does_not_hurt_the_server(start_server, large_site):
    server = start_server("counting_app:app", "--static", f"/static={large_site}")
    for reset in (False, True, False, True):
        with server.connect() as sock:
            if reset:  # close with unread bytes and SO_LINGER 0: a reset
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
            sock.sendall(b"GET /static/big.bin HTTP/1.1\r\nHost: t\r\n\r\n")
            assert sock.recv(4096).startswith(b"HTTP/1.1 200 ")
    data = (large_site / "big.bin").read_bytes()
    resp = httpx.get(server.url + "/static/big.bin", headers=PLAIN)
    assert sha(resp.content) == sha(data)
    assert server.proc.poll() is None
    assert "panic" not in server.log.lower()


def make_cert(d: Path) -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1, and its key."""
    cert, key = d / "cert.pem", d / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key),
         "-out", str(cert), "-days", "1", "-subj", "/CN=localhost",
         "-addext", "subjectAltName=IP:127.0.0.1"],
        check=True, capture_output=True, timeout=60,
    )  # fmt: skip
    return cert, key


def curl_get(url: str, *args: str) -> tuple[bytes, str]:
    """curl's body and ``HTTP_VERSION STATUS``."""
    command = ["curl", "-s", "-o", "-", "-w", "|%{http_version} %{http_code}", *args, url]
    done = subprocess.run(command, capture_output=True, timeout=60)
    body, _, status = done.stdout.rpartition(b"|")
    return body, status.decode()


@pytest.mark.parametrize("version", ["--http1.1", "--http2"])
def test_a_large_file_over_tls(start_server, large_site, tmp_path, version):
    """TLS cannot sendfile: the file is read in chunks, whole and by range."""
    cert, key = make_cert(tmp_path)
    server = start_server(
        "counting_app:app", "--static", f"/static={large_site}",
        "--certfile", str(cert), "--keyfile", str(key),
    )  # fmt: skip
    url = f"https://127.0.0.1:{server.port}/static/big.bin"
    data = (large_site / "big.bin").read_bytes()
    want = "2" if version == "--http2" else "1.1"
    body, status = curl_get(url, "--cacert", str(cert), version)
    assert (status, sha(body)) == (f"{want} 200", sha(data))
    body, status = curl_get(url, "--cacert", str(cert), version, "-r", "70000-2000000")
    assert (status, body) == (f"{want} 206", data[70000:2000001])


def test_a_large_file_over_http2(start_server, large_site):
    server = start_server("counting_app:app", "--static", f"/static={large_site}")
    url = server.url + "/static/big.bin"
    data = (large_site / "big.bin").read_bytes()
    body, status = curl_get(url, "--http2-prior-knowledge")
    assert (status, sha(body)) == ("2 200", sha(data))
    body, status = curl_get(url, "--http2-prior-knowledge", "-r", "-100000")
    assert (status, body) == ("2 206", data[-100000:])
    body, status = curl_get(url, "--http2-prior-knowledge", "-I")
    assert status == "2 200" and f"content-length: {LARGE}".encode() in body.lower()


def test_a_large_file_over_fastcgi(start_server, large_site):
    from fcgi_client import Reader, base_params, request_bytes

    server = start_server(
        "counting_app:app", "--static", f"/static={large_site}",
        "--bind", "fcgi://127.0.0.1:0", bind=False,
    )  # fmt: skip
    data = (large_site / "big.bin").read_bytes()
    with server.connect() as sock:
        sock.sendall(request_bytes(1, base_params("GET", "/static/big.bin")))
        response = Reader(sock).response(1)
    assert response.status == 200
    assert response.header("Content-Length") == str(LARGE)
    assert sha(response.body) == sha(data)


def test_a_large_text_file_is_compressed_on_the_fly(start_server, large_site):
    """With --compress a large text file goes through the encoder, read in chunks."""
    server = start_server("counting_app:app", "--static", f"/static={large_site}", "--compress")
    gz = {"Accept-Encoding": "gzip"}
    with httpx.stream("GET", server.url + "/static/big.txt", headers=gz) as resp:
        sent = b"".join(resp.iter_raw())
    assert resp.status_code == 200
    assert resp.headers["content-encoding"] == "gzip"
    assert "content-length" not in resp.headers
    assert len(sent) < LARGE // 20
    assert gzip.decompress(sent) == (large_site / "big.txt").read_bytes()
    # Not compressible: sent as it is, by sendfile.
    resp = httpx.get(server.url + "/static/big.bin", headers=gz)
    assert "content-encoding" not in resp.headers
    assert resp.content == (large_site / "big.bin").read_bytes()
