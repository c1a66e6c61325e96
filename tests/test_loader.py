"""Application-loading errors a new user can act on (issue "What a new user hit"): an
import error names the line in the user's own code, a module not found from the
directory above the project says where to run from, and a factory named without
"()" is refused at load time.

Most tests call :func:`ferrowsgi.loader.load_app` directly in a temporary directory;
the last ones run the real ``ferrowsgi`` command."""

import importlib
import os
import subprocess
import sys
from pathlib import Path

import pytest
from ferrowsgi import loader
from ferrowsgi.loader import LoadError, load_app

KEY_ERROR_APP = """\
import os

DATABASE_URL = os.environ["DATABASE_URL"]


def app(environ, start_response):
    start_response("200 OK", [])
    return [DATABASE_URL.encode()]
"""


@pytest.fixture
def project(tmp_path, monkeypatch):
    """An empty current directory, first on sys.path; the modules imported from it
    are forgotten afterwards (monkeypatch restores sys.path and the cwd)."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delenv("DATABASE_URL", raising=False)
    before = set(sys.modules)
    yield tmp_path
    for name in set(sys.modules) - before:
        del sys.modules[name]


def write(path: Path, text: str = "") -> Path:
    """Write a file (and its directories) where the import system will see it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    importlib.invalidate_caches()
    return path


def load_error(spec: str) -> LoadError:
    with pytest.raises(LoadError) as info:
        load_app(spec)
    return info.value


# --- where an exception raised while importing is reported ------------------------------


def test_import_error_names_the_users_line_not_the_standard_library(project):
    path = write(project / "kv_app.py", KEY_ERROR_APP)
    error = load_error("kv_app")
    assert str(error) == f"failed to import 'kv_app' ({path}, line 3): KeyError: 'DATABASE_URL'"
    # The details keep the whole traceback, the os frame too (frozen from 3.11, a file
    # of the standard library before), without importlib.
    assert f'File "{path}", line 3' in error.details
    os_frame = "<frozen os>" if sys.version_info >= (3, 11) else f'{os.sep}os.py", line '
    assert os_frame in error.details
    assert "importlib" not in error.details and "_bootstrap" not in error.details
    assert error.details.endswith("KeyError: 'DATABASE_URL'")


def test_a_file_app_is_reported_the_same_way(project):
    path = write(project / "sub" / "kv_file.py", KEY_ERROR_APP)
    error = load_error("sub/kv_file.py")
    assert str(error) == (
        f"failed to import 'sub/kv_file.py' ({path}, line 3): KeyError: 'DATABASE_URL'"
    )


def test_the_deepest_frame_of_the_users_code_is_named(project):
    helper = write(
        project / "kv_helpers.py",
        "import os\n\n\ndef need(name):\n    return os.environ[name]\n",
    )
    write(project / "kv_settings.py", "from kv_helpers import need\n\nURL = need('DATABASE_URL')\n")
    write(project / "kv_deep.py", "import kv_settings\n\napp = kv_settings\n")
    error = load_error("kv_deep:app")
    assert f"({helper}, line 5): KeyError: 'DATABASE_URL'" in str(error)
    assert "kv_settings.py" in error.details and "kv_deep.py" in error.details


def test_installed_packages_are_not_blamed_for_the_users_call(project, monkeypatch):
    site = project / "lib" / "site-packages"
    write(site / "kv_thirdparty.py", "def parse(url):\n    raise ValueError('bad url: ' + url)\n")
    monkeypatch.syspath_prepend(str(site))
    app = write(project / "kv_caller.py", "import kv_thirdparty\n\nkv_thirdparty.parse('x')\n")
    error = load_error("kv_caller")
    assert str(error) == f"failed to import 'kv_caller' ({app}, line 3): ValueError: bad url: x"


def test_code_in_site_packages_is_named_rather_than_the_standard_library(project, monkeypatch):
    site = project / "lib" / "site-packages"
    path = write(site / "kv_installed.py", KEY_ERROR_APP)
    monkeypatch.syspath_prepend(str(site))
    assert f"({path}, line 3): KeyError" in str(load_error("kv_installed"))


def test_without_any_user_frame_the_deepest_frame_is_named(project):
    error = load_error('json:loads("{")')
    message = str(error)
    assert message.startswith("""'json:loads("{")' failed (""")
    assert f"{os.sep}json{os.sep}decoder.py, line " in message
    assert "JSONDecodeError: Expecting property name" in message
    assert "\n" not in message


def test_a_syntax_error_names_the_file_and_line(project):
    path = write(project / "kv_syntax.py", "x = 1\ndef app(:\n")
    assert str(load_error("kv_syntax")).startswith(f"failed to import 'kv_syntax' ({path}, line 2)")


# --- a module that is not found: where to run from --------------------------------------


def django_project(directory: Path, package: str = "mysite") -> None:
    """The layout ``django-admin startproject`` makes: manage.py beside the package."""
    write(directory / "manage.py", "")
    write(directory / package / "__init__.py")
    write(
        directory / package / "wsgi.py",
        "def application(environ, start_response):\n"
        "    start_response('200 OK', [])\n    return [b'django']\n",
    )


def test_run_from_above_a_django_project_hints_at_chdir(project, monkeypatch):
    django_project(project / "mysite")
    assert str(load_error("mysite.wsgi")) == (
        "No module named 'mysite.wsgi'; run from mysite or add --chdir mysite"
    )
    # The hint is right: from there the application loads.
    for name in [m for m in sys.modules if m == "mysite" or m.startswith("mysite.")]:
        del sys.modules[name]
    monkeypatch.chdir(project / "mysite")
    assert load_app("mysite.wsgi")({}, lambda *a: None) == [b"django"]


def test_the_directory_holding_the_package_is_named(project):
    django_project(project / "shop")
    write(project / "other" / "readme.txt")
    assert str(load_error("mysite.wsgi")).endswith("; run from shop or add --chdir shop")


def test_a_directory_with_manage_py_is_named_for_a_wsgi_module(project):
    django_project(project / "blog", package="config")
    assert str(load_error("mysite.wsgi")).endswith("; run from blog or add --chdir blog")
    assert str(load_error("mysite")) == "No module named 'mysite'"


def test_a_plain_module_in_a_subdirectory_is_found(project):
    write(project / "my app" / "kv_plain.py", "def app(environ, start_response):\n    pass\n")
    assert str(load_error("kv_plain:app")) == (
        "No module named 'kv_plain'; run from my app or add --chdir 'my app'"
    )


def test_several_candidates_are_listed(project):
    for name in ("b", "a", "c", "d"):
        write(project / name / "kv_many.py")
    assert str(load_error("kv_many")) == (
        "No module named 'kv_many'; run from one of a, b, c, ... or add --chdir DIR"
    )


def test_no_hint_from_hidden_dirs_virtualenvs_or_unrelated_dirs(project):
    write(project / ".hidden" / "kv_hidden.py")
    write(project / "venv" / "kv_hidden.py")
    write(project / "some-env" / "pyvenv.cfg", "home = /usr/bin\n")
    write(project / "some-env" / "kv_hidden.py")
    write(project / "assets" / "kv_hidden" / "logo.png")
    write(project / "deeper" / "src" / "kv_hidden.py")  # two levels down: not searched
    assert str(load_error("kv_hidden:app")) == "No module named 'kv_hidden'"


def test_the_scan_of_the_current_directory_is_capped(project, monkeypatch):
    for i in range(10):
        write(project / f"d{i}" / "kv_capped.py")
    monkeypatch.setattr(loader, "_SCAN_LIMIT", 2)
    message = str(load_error("kv_capped"))
    listed = message.split("run from one of ")[1].split(" or add")[0].split(", ")
    assert len(listed) == 2 and all(d.startswith("d") for d in listed), message


def test_a_missing_import_inside_the_users_module_is_their_error(project):
    path = write(project / "kv_imports.py", "import os\nimport kv_not_installed\n")
    write(project / "elsewhere" / "kv_not_installed.py")  # no hint for the user's own import
    assert str(load_error("kv_imports")) == (
        f"failed to import 'kv_imports' ({path}, line 2): "
        "ModuleNotFoundError: No module named 'kv_not_installed'"
    )


# --- a factory or other function that is not a WSGI application -------------------------

SIGNATURES = """\
import functools


def create_app():
    def app(environ, start_response):
        start_response("200 OK", [])
        return [b"made"]

    return app


def make_bad():
    return lambda: None


def one(config):
    pass


def optional(config=None):
    pass


def three(a, b, c):
    pass


def good(environ, start_response):
    return [b"good"]


def good_default(environ, start_response=None, extra=None):
    pass


def star(*args):
    pass


def one_and_star(environ, *args):
    pass


class Builder:
    def build(self):
        pass

    def wsgi_app(self, environ, start_response):
        pass

    @classmethod
    def make(cls):
        pass

    @staticmethod
    def static(environ, start_response):
        pass

    def __call__(self):
        pass


class NoArgs:
    def __init__(self):
        pass


builder = Builder()
partial = functools.partial(three, 1)
"""


@pytest.fixture
def signatures(project):
    write(project / "kv_sig.py", SIGNATURES)
    return "kv_sig"


@pytest.mark.parametrize(
    "name, message",
    [
        (
            "create_app",
            "'kv_sig:create_app' takes no arguments, so it is not a WSGI application; "
            "if it is an application factory, write 'kv_sig:create_app()'",
        ),
        (
            "builder.build",
            "'kv_sig:builder.build' takes no arguments, so it is not a WSGI application; "
            "if it is an application factory, write 'kv_sig:builder.build()'",
        ),
        (
            "Builder.make",
            "'kv_sig:Builder.make' takes no arguments, so it is not a WSGI application; "
            "if it is an application factory, write 'kv_sig:Builder.make()'",
        ),
        (
            "one",
            "'kv_sig:one' takes 1 argument; a WSGI application takes (environ, start_response)",
        ),
        (
            "optional",
            "'kv_sig:optional' takes at most 1 argument; a WSGI application takes "
            "(environ, start_response); if it is an application factory, "
            "write 'kv_sig:optional()'",
        ),
        (
            "three",
            "'kv_sig:three' requires 3 arguments; a WSGI application takes "
            "(environ, start_response)",
        ),
        (
            "make_bad()",
            "'kv_sig:make_bad()' returned 'make_bad.<locals>.<lambda>', which takes no "
            "arguments; a WSGI application takes (environ, start_response)",
        ),
    ],
)
def test_a_function_that_cannot_be_an_app_is_refused(signatures, name, message):
    error = load_error(f"{signatures}:{name}")
    assert str(error) == message
    assert error.details is None


@pytest.mark.parametrize(
    "name",
    [
        "create_app()",
        "good",
        "good_default",
        "star",
        "one_and_star",
        "builder.wsgi_app",
        "Builder.static",
        "builder",  # an instance: __call__ is not checked
        "NoArgs",  # a class: not checked
        "partial",  # not a plain function: not checked
    ],
)
def test_callables_that_may_be_apps_are_accepted(signatures, name):
    assert callable(load_app(f"{signatures}:{name}"))


def test_a_default_name_is_checked_too(project):
    write(project / "kv_default.py", "def app():\n    pass\n")
    assert str(load_error("kv_default")) == (
        "'kv_default:app' takes no arguments, so it is not a WSGI application; "
        "if it is an application factory, write 'kv_default:app()'"
    )


# --- the real command ---------------------------------------------------------------------


def run_ferrowsgi(cwd: Path, *args: str) -> subprocess.CompletedProcess:
    """``python -m ferrowsgi ARGS --bind 127.0.0.1:0`` that must exit by itself."""
    env = {k: v for k, v in os.environ.items() if k != "DATABASE_URL"}
    try:
        return subprocess.run(
            [sys.executable, "-m", "ferrowsgi", *args, "--bind", "127.0.0.1:0"],
            capture_output=True,
            text=True,
            timeout=60,
            cwd=cwd,
            env=env,
        )
    except subprocess.TimeoutExpired as e:
        pytest.fail(f"ferrowsgi kept running; stderr:\n{e.stderr}")


@pytest.mark.parametrize("form", ["file", "module"])
def test_command_reports_the_users_line_and_exits_1(tmp_path, form):
    path = write(tmp_path / "kv_cmd_app.py", KEY_ERROR_APP)
    result = run_ferrowsgi(tmp_path, "kv_cmd_app.py" if form == "file" else "kv_cmd_app:app")
    assert result.returncode == 1, result.stderr
    assert f"({path}, line 3): KeyError: 'DATABASE_URL'" in result.stderr
    assert "<frozen os>, line" not in result.stderr  # 3.11+: os is frozen
    assert f"{os.sep}os.py, line" not in result.stderr  # 3.9, 3.10: a file
    assert "Listening at" not in result.stdout + result.stderr


def test_command_hints_at_chdir_above_a_django_project(tmp_path):
    django_project(tmp_path / "mysite")
    result = run_ferrowsgi(tmp_path, "mysite.wsgi")
    assert result.returncode == 1, result.stderr
    assert "No module named 'mysite.wsgi'; run from mysite or add --chdir mysite" in result.stderr


def test_command_refuses_a_factory_named_without_parentheses(tmp_path):
    write(tmp_path / "kv_cmd_factory.py", SIGNATURES)
    result = run_ferrowsgi(tmp_path, "kv_cmd_factory:create_app")
    assert result.returncode == 1, result.stderr
    assert "write 'kv_cmd_factory:create_app()'" in result.stderr
    assert "Listening at" not in result.stdout + result.stderr
