"""The built-in middleware together, as the README's example runs them: two mounted
Flask apps, static files, compression and forwarding in one process, in the documented
order (static files and forwarding before the applications, compression after)."""

from __future__ import annotations

import gzip

import httpx
from apps.backend_app import pattern


def test_the_four_compose_in_one_process(start_server, tmp_path):
    backend = start_server("backend_app:app", "--workers", "0", env={"BACKEND_NAME": "api"})
    static = tmp_path / "static"
    static.mkdir()
    css = b"body { color: #333; }\n" * 200  # 4.4 KiB of text/css
    (static / "site.css").write_bytes(css)
    front = start_server(
        "--mount", "/=mount_apps:site", "--mount", "/admin=mount_apps:admin",
        "--static", f"/static={static}", "--compress",
        "--forward", f"/api=http://127.0.0.1:{backend.port}",
    )  # fmt: skip
    gz = {"Accept-Encoding": "gzip"}
    with httpx.Client(base_url=front.url, timeout=10) as client:
        # Mounted applications, each under its prefix.
        assert client.get("/").json()["app"] == "site"
        assert client.get("/admin/").json() == {
            "app": "admin", "login": "/admin/login", "whoami": "/admin/whoami"
        }  # fmt: skip
        # Static files: answered before the applications, compressed on the way out.
        resp = client.get("/static/site.css", headers=gz)
        assert resp.status_code == 200
        assert resp.headers["content-encoding"] == "gzip"
        assert resp.content == css  # httpx decoded it
        assert client.get("/static/missing.css").status_code == 404  # not the site app
        # Forwarding: before the applications (a small JSON answer: not compressed,
        # but Vary says it could have been).
        small = client.get("/api/who?x=1", headers=gz)
        assert small.json()["path"] == "/api/who" and small.json()["query"] == "x=1"
        assert "content-encoding" not in small.headers
        assert small.headers["vary"] == "Accept-Encoding"
        big = client.get("/api/big?size=300000", headers={"Accept-Encoding": "identity"})
        assert big.content == pattern(300000)
    # A forwarded text stream is compressed on the way out: check the wire bytes.
    with httpx.Client(timeout=10) as client:
        with client.stream("GET", f"{front.url}/api/chunks?n=50&ms=0", headers=gz) as resp:
            assert resp.headers["content-encoding"] == "gzip"
            wire = b"".join(resp.iter_raw())
    assert gzip.decompress(wire) == b"".join(f"chunk-{i}\n".encode() for i in range(50))
