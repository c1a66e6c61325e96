"""A Django project generated in a temporary directory, served by ferrowsgi: the admin
login with its CSRF token, then adding a Group through the admin."""

import os
import re
import subprocess
import sys

import httpx
import pytest

CSRF_INPUT = re.compile(r'name="csrfmiddlewaretoken" value="([^"]+)"')


def manage(project_dir, *args, env=None):
    result = subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=project_dir,
        capture_output=True,
        text=True,
        timeout=120,
        env=dict(os.environ, **(env or {})),
    )
    assert result.returncode == 0, result.stdout + result.stderr
    return result


@pytest.fixture
def project(tmp_path):
    """A fresh ``mysite`` project with a migrated SQLite database and a superuser."""
    result = subprocess.run(
        [sys.executable, "-m", "django", "startproject", "mysite", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    manage(tmp_path, "migrate", "--noinput")
    manage(
        tmp_path,
        "createsuperuser",
        "--noinput",
        "--username",
        "admin",
        "--email",
        "admin@example.com",
        env={"DJANGO_SUPERUSER_PASSWORD": "s3cret-Passw0rd"},
    )
    return tmp_path


def csrf_token(resp: httpx.Response) -> str:
    m = CSRF_INPUT.search(resp.text)
    assert m, "no csrfmiddlewaretoken in the form"
    return m.group(1)


def login(client: httpx.Client, password: str) -> httpx.Response:
    form = client.get("/admin/login/?next=/admin/")
    assert form.status_code == 200
    assert "csrftoken" in client.cookies
    return client.post(
        "/admin/login/?next=/admin/",
        data={
            "csrfmiddlewaretoken": csrf_token(form),
            "username": "admin",
            "password": password,
            "next": "/admin/",
        },
        follow_redirects=True,
    )


@pytest.fixture
def admin(start_server, project):
    server = start_server("mysite.wsgi:application", "--chdir", str(project), "--threads", "4")
    with httpx.Client(base_url=server.url, timeout=30) as client:
        yield client


def test_admin_login_and_add_a_group(admin):
    home = login(admin, "s3cret-Passw0rd")
    assert home.status_code == 200
    assert home.url.path == "/admin/"
    assert "Site administration" in home.text
    assert "sessionid" in admin.cookies

    form = admin.get("/admin/auth/group/add/")
    assert form.status_code == 200
    created = admin.post(
        "/admin/auth/group/add/",
        data={"csrfmiddlewaretoken": csrf_token(form), "name": "Editors", "_save": "Save"},
        follow_redirects=True,
    )
    assert created.status_code == 200
    assert created.url.path == "/admin/auth/group/"
    listing = admin.get("/admin/auth/group/")
    assert re.search(r">Editors</a>", listing.text), "the new group is not listed"


def test_admin_login_with_a_wrong_password_is_refused(admin):
    page = login(admin, "not-the-password")
    assert page.status_code == 200
    assert page.url.path == "/admin/login/"
    assert "Please enter the correct username and password" in page.text
    assert "sessionid" not in admin.cookies


def test_post_without_csrf_token_is_forbidden(admin):
    admin.get("/admin/login/")
    resp = admin.post("/admin/login/", data={"username": "admin", "password": "x"})
    assert resp.status_code == 403
    assert "CSRF" in resp.text


def collect_static(project) -> object:
    """Set STATIC_ROOT and run collectstatic; returns STATIC_ROOT."""
    settings = project / "mysite" / "settings.py"
    settings.write_text(settings.read_text() + '\nSTATIC_ROOT = BASE_DIR / "staticfiles"\n')
    manage(project, "collectstatic", "--noinput")
    return project / "staticfiles"


def assert_stylesheets_load(client: httpx.Client, page: str, static_url: str) -> None:
    """Every stylesheet ``page`` links under ``static_url`` (the admin's base.css among
    them) answers 200 ``text/css`` with an ETag: served by --static."""
    sheets = re.findall(rf'href="({re.escape(static_url)}/[^"]+\.css)"', page)
    assert f"{static_url}/admin/css/base.css" in sheets
    for sheet in sheets:
        css = client.get(sheet)
        assert css.status_code == 200, sheet
        assert css.headers["content-type"] == "text/css"
        assert "etag" in css.headers


def test_admin_stylesheet_served_by_static(start_server, project):
    """The README's recipe: collectstatic, then --static /static=STATIC_ROOT; the admin's
    pages link their stylesheets under /static/ and each of them loads."""
    static_root = collect_static(project)
    server = start_server(
        "mysite.wsgi:application", "--chdir", str(project), "--static", f"/static={static_root}"
    )
    with httpx.Client(base_url=server.url, timeout=30) as client:
        page = client.get("/admin/login/")
        assert page.status_code == 200
        assert_stylesheets_load(client, page.text, "/static")
        base = client.get("/static/admin/css/base.css", headers={"Accept-Encoding": "identity"})
        assert base.content == (static_root / "admin" / "css" / "base.css").read_bytes()


def test_admin_under_a_prefix_with_its_static_files(start_server, project):
    """Django mounted at /site (--mount): its links, redirects and stylesheets are under
    the prefix, the stylesheets served by --static without calling Django."""
    static_root = collect_static(project)
    server = start_server("--mount", "/site=mysite.wsgi:application", "--chdir", str(project),
                          "--static", f"/site/static={static_root}", "--threads", "4")  # fmt: skip
    with httpx.Client(base_url=server.url, timeout=30) as client:
        assert client.get("/admin/login/").status_code == 404  # nothing at the root
        form = client.get("/site/admin/", follow_redirects=True)
        assert form.status_code == 200
        assert form.url.path == "/site/admin/login/"  # Django's redirect kept the prefix
        assert_stylesheets_load(client, form.text, "/site/static")
        home = client.post(
            "/site/admin/login/?next=/site/admin/",
            data={"csrfmiddlewaretoken": csrf_token(form), "username": "admin",
                  "password": "s3cret-Passw0rd", "next": "/site/admin/"},
            follow_redirects=True,
        )  # fmt: skip
        assert home.status_code == 200
        assert home.url.path == "/site/admin/"
        assert "Site administration" in home.text
        assert 'href="/site/admin/auth/group/"' in home.text
