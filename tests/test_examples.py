"""The runnable examples in examples/, served by ferrowsgi and driven with httpx."""

import httpx
import pytest


@pytest.mark.parametrize("app", ["examples/hello.py", "examples.hello:application"])
def test_hello_greets_the_name_in_the_path(start_server, app):
    server = start_server(app)
    with httpx.Client(base_url=server.url, timeout=10) as client:
        resp = client.get("/alice")
        assert resp.status_code == 200
        assert resp.headers["content-type"].startswith("text/html")
        assert resp.text == "<h1>Hello, alice!</h1>"
        assert client.get("/").text == "<h1>Hello, web!</h1>"
        assert client.get("/caf%C3%A9").text == "<h1>Hello, caf\u00e9!</h1>"
        assert client.get("/%3Cb%3E").text == "<h1>Hello, &lt;b&gt;!</h1>"


@pytest.fixture
def signin(start_server):
    server = start_server("examples.flask_signin:app", "--threads", "2")
    with httpx.Client(base_url=server.url, timeout=10) as client:
        yield client


def test_flask_signin_home(signin):
    resp = signin.get("/")
    assert resp.status_code == 200
    assert "<h1>Home</h1>" in resp.text


def test_flask_signin_form(signin):
    resp = signin.get("/signin")
    assert resp.status_code == 200
    assert '<form action="/signin" method="post">' in resp.text
    assert 'name="username"' in resp.text and 'name="password"' in resp.text


@pytest.mark.parametrize(
    "username, password, answer",
    [
        ("admin", "password", "<h3>Hello, admin!</h3>"),
        ("admin", "wrong", "<h3>Bad username or password.</h3>"),
        ("someone", "password", "<h3>Bad username or password.</h3>"),
    ],
)
def test_flask_signin_post(signin, username, password, answer):
    resp = signin.post("/signin", data={"username": username, "password": password})
    assert resp.status_code == 200
    assert answer in resp.text


def test_middleware_adds_its_headers_around_the_inner_app(start_server):
    server = start_server("examples.middleware:application")
    resp = httpx.get(server.url + "/", timeout=10)
    assert resp.status_code == 200
    assert resp.text == "Hello from the inner application.\n"
    assert resp.headers["x-powered-by"] == "ferrowsgi"
    assert int(resp.headers["x-response-time"]) >= 0
    assert resp.headers["content-length"] == str(len(resp.content))
