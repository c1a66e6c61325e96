"""A Flask application behind ferrowsgi (tests/apps/flask_app.py): form POST, JSON, a
5 MB multipart upload, a streamed response, cookies and the signed session cookie."""

import hashlib
import os

import httpx
import pytest


@pytest.fixture
def client(start_server):
    server = start_server("flask_app:app", "--threads", "4")
    with httpx.Client(base_url=server.url, timeout=30) as client:
        yield client


def test_form_post(client):
    resp = client.post("/form", data={"name": "Zoë & co", "tag": ["a", "b"]})
    assert resp.status_code == 200
    assert resp.json() == {"name": "Zoë & co", "tags": ["a", "b"]}


def test_json_round_trip(client):
    payload = {"numbers": [1, 2, 3.5], "text": "caf\u00e9 \u2603"}
    resp = client.post("/json", json=payload)
    assert resp.status_code == 200
    assert resp.json() == {"received": payload, "total": 6.5}


def test_multipart_upload_of_5_mb(client):
    content = os.urandom(5 * 1024 * 1024)
    resp = client.post(
        "/upload",
        files={"file": ("blob.bin", content, "application/octet-stream")},
        data={"note": "five megabytes"},
    )
    assert resp.status_code == 200
    assert resp.json() == {
        "filename": "blob.bin",
        "size": len(content),
        "sha256": hashlib.sha256(content).hexdigest(),
        "note": "five megabytes",
    }


def test_streamed_response(client):
    with client.stream("GET", "/stream") as resp:
        assert resp.status_code == 200
        assert resp.headers.get("transfer-encoding") == "chunked"
        lines = list(resp.iter_lines())
    assert lines == [f"line {i}" for i in range(100)]


def test_cookie_is_set_and_sent_back(client):
    resp = client.get("/set-cookie")
    assert resp.status_code == 200
    assert "flavour=chocolate-chip" in resp.headers["set-cookie"]
    assert client.get("/read-cookie").json() == {"flavour": "chocolate-chip"}


def test_session_cookie_survives_requests(client):
    assert client.get("/whoami").json() == {"user": None}
    assert client.post("/login", data={"user": "ada"}).text == "logged in"
    assert client.get("/whoami").json() == {"user": "ada"}


def test_unknown_route_is_flasks_404(client):
    resp = client.get("/no/such/page")
    assert resp.status_code == 404
    assert "Not Found" in resp.text
