"""--compress (src/middleware/compress.rs) against the real server: gzip, br and zstd
as curl and httpx ask for them and decode them, the q-values, each response left
alone, Vary, a generator's chunks flushed one by one, an abort kept an abort, Flask."""

import gzip
import subprocess
import sys
import time
import zlib

import brotli
import httpx
import pytest
import zstandard
from conftest import APPS, read_responses, recv_all

sys.path.insert(0, str(APPS))
from compress_app import CHUNK_ONE, CHUNK_TWO, text  # noqa: E402

CODINGS = ["gzip", "br", "zstd"]


def decompress(coding: str, data: bytes) -> bytes:
    """``data`` decoded whole, by Python's own decoders."""
    if coding == "gzip":
        return gzip.decompress(data)
    if coding == "br":
        return brotli.decompress(data)
    return zstandard.ZstdDecompressor().decompressobj().decompress(data)


def decoder(coding: str):
    """A streaming decoder: ``feed(bytes) -> bytes`` decoded so far, and ``done()``:
    whether the coding's end (trailer, last block) was seen."""
    if coding == "gzip":
        z = zlib.decompressobj(16 + zlib.MAX_WBITS)
        return z.decompress, lambda: z.eof
    if coding == "br":
        b = brotli.Decompressor()
        return b.process, b.is_finished
    z = zstandard.ZstdDecompressor().decompressobj()
    return z.decompress, lambda: z.eof


@pytest.fixture
def server(start_server):
    return start_server("compress_app:app", "--compress", "--threads", "4")


def fetch(server, path, accept=None, method="GET"):
    """(response, raw body bytes as sent): httpx without decoding."""
    headers = {"Accept-Encoding": accept} if accept is not None else {}
    with httpx.Client(base_url=server.url, timeout=30) as client:
        if accept is None:
            # httpx would send its own Accept-Encoding: take it out.
            client.headers.pop("Accept-Encoding", None)
        with client.stream(method, path, headers=headers) as resp:
            raw = b"".join(resp.iter_raw())
    return resp, raw


def curl(server, path, *args):
    """curl --compressed: (headers lower-cased, decoded body)."""
    out = subprocess.run(
        ["curl", "-sS", "--compressed", "-D", "-", "--max-time", "20", *args, server.url + path],
        capture_output=True,
        check=True,
        timeout=30,
    ).stdout
    head, _, body = out.partition(b"\r\n\r\n")
    headers = {}
    for line in head.decode("latin-1").split("\r\n")[1:]:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    return headers, body


@pytest.mark.parametrize("coding", CODINGS)
def test_curl_gets_and_decodes_each_coding(server, coding):
    headers, body = curl(server, "/text?size=20000", "-H", f"Accept-Encoding: {coding}")
    assert headers["content-encoding"] == coding
    assert "content-length" not in headers
    assert headers["vary"] == "Accept-Encoding"
    assert body == text(20000)


def test_curl_compressed_gets_the_best_it_offers(server):
    # curl offers "deflate, gzip, br, zstd" (all q=1): the server's preference wins.
    headers, body = curl(server, "/json")
    assert headers["content-encoding"] == "zstd"
    assert body == text(4096)


@pytest.mark.parametrize("coding", CODINGS)
@pytest.mark.parametrize("path", ["/text", "/json", "/js", "/xml", "/svg"])
def test_each_type_and_coding_decodes_in_python(server, coding, path):
    resp, raw = fetch(server, path, accept=coding)
    assert resp.status_code == 200
    assert resp.headers["content-encoding"] == coding
    assert len(raw) < 1024
    assert decompress(coding, raw) == text(4096)


@pytest.mark.parametrize("coding", CODINGS)
def test_httpx_decodes_each_coding(server, coding):
    # httpx decodes br and zstd when brotli and zstandard are installed.
    resp = httpx.get(server.url + "/xml?size=9000", headers={"Accept-Encoding": coding})
    assert resp.headers["content-encoding"] == coding
    assert resp.content == text(9000)


@pytest.mark.parametrize(
    ("accept", "chosen"),
    [
        ("gzip;q=0.5, br;q=1", "br"),
        ("br;q=0.2, zstd;q=0.1", "br"),
        ("gzip, br;q=0.9, zstd;q=0.8", "gzip"),
        ("*", "zstd"),
        ("*;q=0, gzip", "gzip"),
        ("identity, gzip", "gzip"),
        ("*;q=0", None),
        ("identity", None),
        ("identity;q=1, gzip;q=0.5", None),
        ("gzip;q=0, br;q=0", None),
        ("deflate, compress", None),
        ("", None),
    ],
)
def test_q_values_choose_the_coding(server, accept, chosen):
    resp, raw = fetch(server, "/text", accept=accept)
    assert resp.status_code == 200  # never a 406: no acceptable coding sends it unchanged
    assert resp.headers.get("content-encoding") == chosen
    body = raw if chosen is None else decompress(chosen, raw)
    assert body == text(4096)
    assert resp.headers["vary"] == "Accept-Encoding"


@pytest.mark.parametrize(
    ("method", "path", "accept", "status", "vary"),
    [
        ("HEAD", "/text", "gzip", 200, True),
        ("GET", "/empty", "gzip", 204, True),
        ("GET", "/not-modified", "gzip", 304, True),
        ("GET", "/partial", "gzip", 206, True),
        ("GET", "/text?size=1023", "gzip", 200, True),
        ("GET", "/sized?size=1000", "br", 200, True),
        ("GET", "/png", "gzip", 200, False),
        ("GET", "/text", None, 200, True),
        ("GET", "/no-transform", "zstd", 200, False),
    ],
)
def test_what_is_never_compressed(server, method, path, accept, status, vary):
    resp, raw = fetch(server, path, accept=accept, method=method)
    assert resp.status_code == status
    assert "content-encoding" not in resp.headers
    assert ("vary" in resp.headers) == vary
    if method == "GET" and status in (200, 206):
        size = int(path.partition("size=")[2] or 4096)
        assert raw == text(size)
        assert resp.headers["content-length"] == str(size)


def test_the_applications_own_coding_is_kept(server):
    resp, raw = fetch(server, "/encoded", accept="br, gzip")
    assert resp.headers["content-encoding"] == "gzip"
    assert gzip.decompress(raw) == text(4096)
    assert "vary" not in resp.headers  # the application's business


def test_a_compressed_body_is_chunked_and_vary_merged(server):
    with server.connect() as sock:
        sock.sendall(
            b"GET /vary HTTP/1.1\r\nHost: t\r\nAccept-Encoding: gzip\r\n\r\n"
            b"GET /sized?size=5000 HTTP/1.1\r\nHost: t\r\nAccept-Encoding: gzip\r\n\r\n"
        )
        (status, headers, body), (_, headers2, body2) = read_responses(sock, 2)
        assert status.startswith(b"HTTP/1.1 200")
        assert headers["vary"] == "Cookie, Accept-Encoding"
        assert gzip.decompress(body) == text(4096)
        headers, body = headers2, body2
        assert headers["transfer-encoding"] == "chunked"
        assert "content-length" not in headers
        assert gzip.decompress(body) == text(5000)


def test_vary_is_one_field(server):
    with server.connect() as sock:
        sock.sendall(b"GET /vary HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
        head = recv_all(sock).partition(b"\r\n\r\n")[0].lower()
    assert head.count(b"\r\nvary:") == 1
    assert b"\r\nvary: cookie, accept-encoding" in head


@pytest.mark.parametrize("coding", CODINGS)
def test_a_generators_chunk_arrives_before_the_next_is_made(server, tmp_path, coding):
    gate = tmp_path / "gate"
    feed, done = decoder(coding)
    decoded = b""
    started = time.monotonic()
    with httpx.Client(timeout=30) as client:
        url = f"{server.url}/stream?gate={gate}"
        with client.stream("GET", url, headers={"Accept-Encoding": coding}) as resp:
            assert resp.headers["content-encoding"] == coding
            raw = resp.iter_raw()
            while len(decoded) < len(CHUNK_ONE):
                decoded += feed(next(raw))
            # The application waits on the gate (up to 10 s) before its second chunk.
            assert time.monotonic() - started < 5
            assert decoded == CHUNK_ONE and not gate.exists()
            gate.touch()
            for data in raw:
                decoded += feed(data)
    assert decoded == CHUNK_ONE + CHUNK_TWO
    assert done()


@pytest.mark.parametrize("coding", CODINGS)
def test_an_error_mid_stream_closes_the_connection(server, coding):
    with server.connect() as sock:
        sock.sendall(
            f"GET /broken HTTP/1.1\r\nHost: t\r\nAccept-Encoding: {coding}\r\n\r\n".encode()
        )
        received = recv_all(sock)  # until the server closes
    head, _, chunked = received.partition(b"\r\n\r\n")
    assert f"content-encoding: {coding}".encode() in head.lower()
    assert not chunked.endswith(b"0\r\n\r\n"), "the broken body was ended cleanly"
    feed, done = decoder(coding)
    decoded = b""
    while chunked:
        size_line, _, rest = chunked.partition(b"\r\n")
        size = int(size_line, 16)
        decoded += feed(rest[:size])
        chunked = rest[size + 2 :]
    assert decoded == CHUNK_ONE  # what came before the error, and no coding's end
    assert not done()
    with pytest.raises(httpx.RemoteProtocolError):
        httpx.get(server.url + "/broken", headers={"Accept-Encoding": coding})


def test_flask_json_is_compressed(start_server):
    server = start_server("compress_app:flask_app", "--compress")
    resp = httpx.get(server.url + "/items", headers={"Accept-Encoding": "gzip"})
    assert resp.headers["content-type"] == "application/json"
    assert resp.headers["content-encoding"] == "gzip"
    assert len(resp.json()["items"]) == 200


def test_without_compress_nothing_changes(start_server):
    server = start_server("compress_app:app")
    resp, raw = fetch(server, "/text", accept="gzip, br, zstd")
    assert "content-encoding" not in resp.headers and "vary" not in resp.headers
    assert raw == text(4096)
