"""--mount PREFIX=APP and ferrowsgi.mount(): several applications in one server, by
URL prefix, with SCRIPT_NAME and PATH_INFO by PEP 3333 and RFC 3875."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import wsgiref.simple_server

import ferrowsgi
import httpx
import pytest
from conftest import APPS, ROOT

# (path, application, SCRIPT_NAME, PATH_INFO) with / → root, /api → api and
# /api/v2 → api_v2 mounted.
CASES = [
    ("/", "root", "", "/"),
    ("/x/y", "root", "", "/x/y"),
    ("/api", "api", "/api", ""),
    ("/api/", "api", "/api", "/"),
    ("/api/items/7", "api", "/api", "/items/7"),
    ("/apix", "root", "", "/apix"),
    ("/api/v2", "api_v2", "/api/v2", ""),
    ("/api/v2/z", "api_v2", "/api/v2", "/z"),
    ("/api/v20", "api", "/api", "/v20"),
    ("/%61pi/q", "api", "/api", "/q"),
    ("/api/caf%C3%A9", "api", "/api", "/caf\u00c3\u00a9"),
]

MOUNTS = ["--mount", "/=mount_apps:root", "--mount", "/api=mount_apps:api",
          "--mount", "/api/v2/=mount_apps:api_v2"]  # fmt: skip


def get(server, path: str) -> httpx.Response:
    return httpx.get(server.url + path, timeout=10)


@pytest.mark.parametrize("workers", ["0", "2"])
def test_each_path_goes_to_the_longest_matching_prefix(start_server, workers):
    server = start_server(*MOUNTS, "--workers", workers)
    for path, app, script_name, path_info in CASES:
        resp = get(server, path + "?a=1")
        assert resp.status_code == 200, path
        assert resp.json()["app"] == app, path
        assert (resp.json()["script_name"], resp.json()["path_info"]) == (
            script_name,
            path_info,
        ), path
        assert resp.json()["query"] == "a=1"


def test_the_python_mount_routes_as_the_server_does(start_server):
    """ferrowsgi.mount() under wsgiref (any server) and --mount under ferrowsgi give
    the same answer for every case: one rule, applied in Python and in Rust."""
    sys.path.insert(0, str(APPS))
    try:
        import mount_apps
    finally:
        sys.path.remove(str(APPS))
    app = ferrowsgi.mount({"/": mount_apps.root, "/api": mount_apps.api,
                           "/api/v2/": mount_apps.api_v2})  # fmt: skip
    httpd = wsgiref.simple_server.make_server("127.0.0.1", 0, app, handler_class=_Quiet)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    ours = start_server(*MOUNTS)
    try:
        for path, *_ in CASES:
            theirs = httpx.get(f"http://127.0.0.1:{httpd.server_port}{path}", timeout=10).json()
            mine = get(ours, path).json()
            assert {k: theirs[k] for k in ("app", "script_name", "path_info")} == {
                k: mine[k] for k in ("app", "script_name", "path_info")
            }, path
    finally:
        httpd.shutdown()


class _Quiet(wsgiref.simple_server.WSGIRequestHandler):
    def log_message(self, *args):
        pass


def test_without_a_root_application_other_paths_get_404_from_the_server(start_server):
    server = start_server("--mount", "/api=mount_apps:api")
    resp = get(server, "/")
    assert resp.status_code == 404
    assert resp.text == "404 Not Found\n"
    assert get(server, "/apix").status_code == 404
    assert "demo" not in server.log  # no built-in demo application with --mount
    first = get(server, "/api/x").json()
    assert first["app"] == "api" and first["path_info"] == "/x"
    get(server, "/nothing-here")
    # 404s never reached Python: the application counted one call more only.
    assert get(server, "/api").json()["calls"] == first["calls"] + 1


def test_an_app_beside_mount_is_the_one_at_the_root(start_server):
    server = start_server("mount_apps:root", "--mount", "/api=mount_apps:api")
    assert get(server, "/elsewhere").json()["app"] == "root"
    assert get(server, "/api/1").json()["app"] == "api"


@pytest.mark.parametrize(
    "args, message",
    [
        (["mount_apps:root", "--mount", "/=mount_apps:api"], "two applications at '/'"),
        (["--mount", "/a=mount_apps:api", "--mount", "/a/=mount_apps:root"],
         "two applications at '/a'"),
        (["--mount", "api=mount_apps:api"], "must start with '/'"),
        (["--mount", "/api"], "expected PREFIX=APP"),
    ],
)  # fmt: skip
def test_bad_mounts_are_refused_at_start(args, message):
    result = subprocess.run(
        [sys.executable, "-m", "ferrowsgi", *args, "--bind", "127.0.0.1:0"],
        capture_output=True, text=True, timeout=30, cwd=ROOT,
        env={"PYTHONPATH": f"{APPS}:{ROOT}", "PATH": "/usr/bin:/bin"},
    )  # fmt: skip
    assert result.returncode == 2, result.stderr
    assert message in result.stderr


def test_a_mounted_app_that_cannot_be_imported_stops_the_start(start_server):
    server = start_server("--mount", "/x=no_such_module:app", "--workers", "0", ready=False)
    assert server.proc.wait(30) == 1
    assert "no_such_module" in server.log


def test_mount_rejects_bad_tables():
    with pytest.raises(ValueError, match="two applications"):
        ferrowsgi.mount({"/a": lambda e, s: [], "/a/": lambda e, s: []})
    with pytest.raises(ValueError, match="start with '/'"):
        ferrowsgi.mount({"a": lambda e, s: []})
    with pytest.raises(TypeError, match="not callable"):
        ferrowsgi.mount({"/": "nope"})


@pytest.fixture
def flask_sites(start_server):
    server = start_server("--mount", "/=mount_apps:site", "--mount", "/admin=mount_apps:admin",
                          "--threads", "4")  # fmt: skip
    return server


def test_two_flask_apps_build_urls_under_their_prefix(flask_sites):
    assert get(flask_sites, "/").json() == {"app": "site", "login": "/login", "whoami": "/whoami"}
    assert get(flask_sites, "/admin/").json() == {
        "app": "admin",
        "login": "/admin/login",
        "whoami": "/admin/whoami",
    }


def test_flask_redirects_and_sessions_stay_under_the_prefix(flask_sites):
    with httpx.Client(base_url=flask_sites.url, timeout=10) as client:
        resp = client.post("/admin/login", data={"user": "ada"})
        assert resp.status_code == 302
        assert resp.headers["location"] == "/admin/whoami"
        resp = client.post("/login", data={"user": "bob"}, follow_redirects=True)
        assert resp.json()["user"] == "bob"
        admin = client.get("/admin/whoami").json()
        assert admin == {"app": "admin", "user": "ada", "url": f"{flask_sites.url}/admin/whoami"}
        assert client.get("/whoami").json()["user"] == "bob"


def test_the_check_config_names_the_mounted_apps():
    result = subprocess.run(
        [sys.executable, "-m", "ferrowsgi", "--check-config", *MOUNTS],
        capture_output=True, text=True, timeout=30, cwd=ROOT,
        env={"PYTHONPATH": f"{APPS}:{ROOT}", "PATH": "/usr/bin:/bin"},
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "mount_apps:api at /api" in result.stdout + result.stderr


def test_print_of_a_mount_names_its_prefixes():
    app = ferrowsgi.mount({"/": lambda e, s: [], "/api": lambda e, s: []})
    assert repr(app) == "Mount(/api, /)"
    assert json.dumps([p for p, _ in app.routes]) == '["/api", "/"]'
