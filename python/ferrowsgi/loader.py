"""Find the WSGI application named on the command line (the APP argument).

APP forms, as in gunicorn:

* ``module:name`` — an attribute of an importable module (``name.attr`` chains too);
* ``module:factory()`` or ``module:factory("arg", debug=True)`` — called once, with
  literal arguments only (``ast.literal_eval``), and its result is the app;
* ``path/to/file.py`` or ``path/to/file.py:name`` — a file, imported with its
  directory first on ``sys.path`` (any path with a "/" is a file: ``./app.wsgi``);
* ``module`` alone — the callable ``application``, else ``app``.

Rules this module keeps:

* The current directory is put first on ``sys.path`` before anything is imported.
* Every failure is a :class:`LoadError` whose message is one line, fit to print
  after "Error: ". An exception raised by the user's own code (while importing,
  or in a factory) adds where it happened to that line, and keeps the whole
  traceback, importlib frames removed, in :attr:`LoadError.details`.
* "Where it happened" is the deepest frame in the user's own code: not a
  ``<frozen ...>`` or other ``<...>`` pseudo-file, not the standard library, not
  site-packages/dist-packages, not ferrowsgi. Without such a frame, the deepest
  frame in an installed package (site-packages), else the deepest frame.
* A module (or its package) that is not found gets a hint when a direct
  subdirectory D of the current directory holds its top-level package or module
  (or, for ``something.wsgi``, Django's ``manage.py``): "run from D or add
  --chdir D". Only the current directory's entries (at most ``_SCAN_LIMIT``, not
  hidden ones, not virtualenvs) and a few names inside each are looked at.
* A plain function or bound method that cannot be called as
  ``app(environ, start_response)`` (judged from its code object: positional
  parameters, defaults, ``*args``) is refused at load time, with a hint to write
  ``module:factory()`` when it takes no arguments. Classes and other callables
  are not checked.
"""

from __future__ import annotations

import importlib
import importlib.machinery
import importlib.util
import os
import sys
from collections.abc import Callable, Sequence
from types import FunctionType, MethodType, ModuleType

TYPE_CHECKING = False  # typing is not imported at run time: a worker has no use for it
if TYPE_CHECKING:
    import ast
    import traceback
    from typing import Any

__all__ = ["LoadError", "load_app", "load_logged"]

DEFAULT_NAMES = ("application", "app")
_IMPORTLIB_DIR = os.path.dirname(importlib.__file__) + os.sep
_OWN_DIR = os.path.normcase(os.path.dirname(os.path.abspath(__file__))) + os.sep
# The standard library's directory; sysconfig is not imported for this (it is slow
# to import, and in a virtualenv its "platstdlib" is the virtualenv's own lib dir).
_STDLIB_DIR = os.path.normcase(os.path.dirname(os.path.abspath(os.__file__))) + os.sep
_PACKAGES_DIRS = ("site-packages", "dist-packages")
_SCAN_LIMIT = 500  # entries of the current directory looked at for a hint (it may be $HOME)
_NOT_PROJECTS = frozenset({"__pycache__", "node_modules", "site-packages", "venv", "env"})
_CO_VARARGS = 0x04  # code.co_flags: the function takes *args


class LoadError(Exception):
    """The application could not be loaded.

    ``str(error)`` is one line. ``details`` is the formatted traceback of the
    user's exception when there was one (the caller logs it after the message),
    else ``None``.
    """

    def __init__(self, message: str, details: str | None = None) -> None:
        super().__init__(message)
        self.details = details


def load_logged(
    spec: str | None, mounts: Sequence[tuple[str, str]] = ()
) -> Callable[..., Any] | None:
    """The application named by ``spec`` (None: the demo app), or None after logging
    why it could not be loaded: one ``Error: ...`` line, then the traceback of the
    user's exception, if any, at error level too.

    With ``mounts`` (``(prefix, APP)`` pairs: ``--mount``), a :func:`ferrowsgi.mount`
    of each APP at its prefix and of ``spec``, if given, at ``/``; no demo application
    then (an unmatched path gets 404)."""
    from .logs import log

    if mounts:
        return _load_mounted(spec, mounts)
    if spec is None:
        log.info("No APP given: serving the demo application (ferrowsgi.demo:application)")
        from .demo import application

        return application
    try:
        return load_app(spec)
    except LoadError as e:
        log.error("Error: %s", e)
        if e.details is not None:
            log.error("%s", e.details)
        return None


def _load_mounted(spec: str | None, mounts: Sequence[tuple[str, str]]) -> Any:
    from .mount import mount

    routes = [*mounts, *([("/", spec)] if spec is not None else [])]
    apps = {}
    for prefix, app_spec in routes:
        app = load_logged(app_spec)
        if app is None:
            return None
        apps[prefix] = app
    return mount(apps)


def load_app(spec: str) -> Callable[..., Any]:
    """Import and return the WSGI callable named by ``spec`` (see the module docstring).

    Raises :class:`LoadError`, also for a function that cannot be called as
    ``app(environ, start_response)``. Importing runs the user's module, so any side
    effect of that happens here, once.
    """
    _put_first_on_path(os.getcwd())
    target, expr = _split(spec)
    if _is_file(target):
        module = _import_file(target)
    else:
        module = _import_module(target)
    if expr is None:
        name, app = _default_callable(module, target)
        _check_signature(app, f"'{target}:{name}'", f"{target}:{name}()")
        return app
    app = _evaluate(module, expr, spec)
    if not callable(app):
        raise LoadError(f"'{spec}' is not callable (got {type(app).__name__})")
    if expr.endswith(")"):  # a factory's result
        what = getattr(app, "__qualname__", type(app).__name__)
        _check_signature(app, f"'{spec}' returned '{what}', which", None)
    else:
        _check_signature(app, f"'{spec}'", f"{spec}()")
    return app


def _split(spec: str) -> tuple[str, str | None]:
    """``"mod:expr"`` → ``("mod", "expr")``; ``"mod"`` → ``("mod", None)``."""
    # A Windows drive letter ("C:\\app.py") is not the separator.
    start = 2 if len(spec) > 2 and spec[1] == ":" and spec[2] in "\\/" else 0
    colon = spec.find(":", start)
    target, expr = (spec, None) if colon < 0 else (spec[:colon], spec[colon + 1 :].strip())
    if not target.strip():
        raise LoadError(f"'{spec}' names no module or file before ':'")
    if expr == "":
        raise LoadError(f"'{spec}' names no callable after ':'")
    return target.strip(), expr


def _is_file(target: str) -> bool:
    # Not "a.wsgi": that is a module (Django's "mysite.wsgi"); "./app.wsgi" is a file.
    return target.endswith(".py") or "/" in target or os.sep in target


def _put_first_on_path(directory: str) -> None:
    if directory not in sys.path:
        sys.path.insert(0, directory)


def _import_module(name: str) -> ModuleType:
    if not all(part.isidentifier() for part in name.split(".")):
        raise LoadError(f"'{name}' is not a module name (a file path must end in .py)")
    try:
        return importlib.import_module(name)
    except ModuleNotFoundError as e:
        # Only when the module itself (or a parent package) is missing; a missing
        # import *inside* the user's module is their error, shown with its location.
        if e.name is not None and (name == e.name or name.startswith(e.name + ".")):
            raise LoadError(f"{e}{_where_is(name)}") from None
        raise _user_error(f"failed to import '{name}'", e) from None
    except Exception as e:
        raise _user_error(f"failed to import '{name}'", e) from None


def _import_file(path: str) -> ModuleType:
    """Import a Python file as a module named after it, its directory first on sys.path."""
    full = os.path.abspath(path)
    if not os.path.isfile(full):
        raise LoadError(f"No such file: '{path}'")
    _put_first_on_path(os.path.dirname(full))
    name = os.path.splitext(os.path.basename(full))[0]
    existing = sys.modules.get(name)
    if existing is not None and getattr(existing, "__file__", None) == full:
        return existing
    if existing is not None:  # don't shadow an imported module of the same name
        name = f"_ferrowsgi_app_{name}"
    loader = importlib.machinery.SourceFileLoader(name, full)  # any suffix: "./app.wsgi"
    spec = importlib.util.spec_from_file_location(name, full, loader=loader)
    module = importlib.util.module_from_spec(spec)  # type: ignore[arg-type]
    sys.modules[name] = module
    try:
        loader.exec_module(module)
    except Exception as e:
        del sys.modules[name]
        raise _user_error(f"failed to import '{path}'", e) from None
    return module


def _where_is(module: str) -> str:
    """A hint naming the subdirectories of the current directory the module is in.

    "; run from D or add --chdir D" when a direct subdirectory D holds the top-level
    package or module of ``module`` (or Django's manage.py, for "x.wsgi"), else "".
    Looks only at the current directory's entries, at most ``_SCAN_LIMIT`` of them,
    and at a few fixed names inside each; no recursion, hidden dirs and virtualenvs
    are skipped, and any OS error just means no hint.
    """
    parts = module.split(".")
    found: list[str] = []
    django: list[str] = []
    try:
        with os.scandir(".") as entries:
            for count, entry in enumerate(entries):
                if count >= _SCAN_LIMIT:
                    break
                if entry.name.startswith(".") or entry.name in _NOT_PROJECTS:
                    continue
                if not entry.is_dir() or os.path.exists(os.path.join(entry.path, "pyvenv.cfg")):
                    continue
                if _holds(entry.path, parts):
                    found.append(entry.name)
                elif os.path.isfile(os.path.join(entry.path, "manage.py")):
                    django.append(entry.name)
    except OSError:
        return ""
    dirs = sorted(found) or (sorted(django) if module.endswith(".wsgi") else [])
    if not dirs:
        return ""
    if len(dirs) == 1:
        return f"; run from {dirs[0]} or add --chdir {_quote(dirs[0])}"
    listed = ", ".join(dirs[:3]) + (", ..." if len(dirs) > 3 else "")
    return f"; run from one of {listed} or add --chdir DIR"


def _holds(directory: str, parts: list[str]) -> bool:
    """True when ``directory`` holds the top-level package or module of ``parts``: a
    ``top.py``, a ``top/__init__.py``, or (a namespace package) ``top/<next part>``."""
    top = os.path.join(directory, parts[0])
    if os.path.isfile(top + ".py") or os.path.isfile(os.path.join(top, "__init__.py")):
        return True
    if len(parts) < 2:
        return False
    nested = os.path.join(top, parts[1])
    return os.path.isdir(nested) or os.path.isfile(nested + ".py")


def _quote(word: str) -> str:
    """``word`` as a shell word (quoted only when it needs it)."""
    if word and all(c.isalnum() or c in "-_.+,@%=/" for c in word):
        return word
    import shlex  # rare: only for names with spaces or quotes

    return shlex.quote(word)


def _default_callable(module: ModuleType, target: str) -> tuple[str, Callable[..., Any]]:
    for name in DEFAULT_NAMES:
        if hasattr(module, name):
            app = getattr(module, name)
            if not callable(app):
                raise LoadError(f"'{target}:{name}' is not callable (got {type(app).__name__})")
            return name, app
    raise LoadError(f"failed to find 'application' or 'app' in module '{module.__name__}'")


def _evaluate(module: ModuleType, expr: str, spec: str) -> Any:
    """Resolve ``name``, ``name.attr`` or a call of one with literal arguments
    (``ast`` is imported only for a call: a worker has no other use for it)."""
    names = expr.split(".")
    if all(name.isidentifier() for name in names):
        return _lookup(module, names)
    import ast

    try:
        node = ast.parse(expr, mode="eval").body
    except SyntaxError:
        node = None
    dotted = (ast.Name, ast.Attribute)
    if not isinstance(node, ast.Call) or not isinstance(node.func, dotted):
        raise LoadError(f"'{spec}': expected module:name or module:factory(literal args)")
    func = _lookup(module, ast.unparse(node.func).split("."))
    args, kwargs = _literal_args(node, spec)
    if not callable(func):
        name = spec[: spec.index("(")]
        raise LoadError(f"'{name}' is not callable (got {type(func).__name__})")
    try:
        return func(*args, **kwargs)
    except Exception as e:
        raise _user_error(f"'{spec}' failed", e) from None


def _lookup(module: ModuleType, names: list[str]) -> Any:
    """Follow ``names`` (``["app"]``, ``["factory", "attr"]``) from the module."""
    owner: Any = module
    for i, name in enumerate(names):
        if not hasattr(owner, name):
            if i == 0:
                raise LoadError(f"module '{module.__name__}' has no attribute '{name}'")
            where = f"{module.__name__}:{'.'.join(names[:i])}"
            raise LoadError(f"'{where}' has no attribute '{name}'")
        owner = getattr(owner, name)
    return owner


def _literal_args(call: ast.Call, spec: str) -> tuple[list[Any], dict[str, Any]]:
    import ast

    try:
        if any(k.arg is None for k in call.keywords):  # f(**kwargs)
            raise ValueError
        args = [ast.literal_eval(a) for a in call.args]
        kwargs = {str(k.arg): ast.literal_eval(k.value) for k in call.keywords}
    except (ValueError, TypeError, SyntaxError):
        raise LoadError(
            f"'{spec}': factory arguments must be literals "
            "(strings, numbers, True/False/None, lists, dicts)"
        ) from None
    return args, kwargs


def _check_signature(app: Any, subject: str, factory: str | None) -> None:
    """Refuse a plain function or bound method that cannot be ``app(environ, start_response)``.

    ``subject`` starts the message (``"'mod:name'"``); ``factory`` is the spec to
    suggest when the function can be called with no arguments (None: no suggestion).
    Judged from the code object alone (no ``inspect``: it is big to import): the
    positional parameters, their defaults and ``*args``. Anything else (classes,
    instances with ``__call__``, builtins, partials) is not checked.
    """
    bound = isinstance(app, MethodType)
    func = app.__func__ if bound else app
    if not isinstance(func, FunctionType):
        return
    code = func.__code__
    if code.co_flags & _CO_VARARGS:
        return
    most = code.co_argcount - (1 if bound else 0)  # the positional args a call may pass
    least = most - len(func.__defaults__ or ())
    if least <= 2 <= most:
        return
    if most <= 0:
        takes = "takes no arguments"
    elif most < 2:
        takes = "takes 1 argument" if least == 1 else "takes at most 1 argument"
    else:
        takes = f"requires {least} arguments"
    bare = least <= 0 <= most  # app() would work: maybe a factory
    hint = f"; if it is an application factory, write '{factory}'" if factory and bare else ""
    if most <= 0 and factory:
        raise LoadError(f"{subject} {takes}, so it is not a WSGI application{hint}")
    raise LoadError(f"{subject} {takes}; a WSGI application takes (environ, start_response){hint}")


def _ours(filename: str) -> bool:
    """True for frames of importlib and of this module: noise in the user's traceback."""
    return filename.startswith(("<frozen importlib", _IMPORTLIB_DIR)) or filename == __file__


def _user_error(what: str, exc: BaseException) -> LoadError:
    """A LoadError for an exception raised by the user's code: one line + traceback."""
    import traceback

    te = traceback.TracebackException.from_exception(exc)
    te.stack = traceback.StackSummary.from_list([f for f in te.stack if not _ours(f.filename)])
    reason = (str(exc).strip().splitlines() or [""])[0]
    frame = _blamed_frame(te.stack)
    where = f" ({frame.filename}, line {frame.lineno})" if frame is not None else ""
    if isinstance(exc, SyntaxError):
        reason = exc.msg
        where = f" ({exc.filename}, line {exc.lineno})"
    summary = f"{type(exc).__name__}: {reason}" if reason else type(exc).__name__
    return LoadError(f"{what}{where}: {summary}", "".join(te.format()).rstrip())


def _blamed_frame(stack: traceback.StackSummary) -> traceback.FrameSummary | None:
    """The frame to name in the one-line message: the deepest in the user's own code.

    Failing that, the deepest in an installed package (site-packages), failing that
    the deepest frame; None for an empty stack.
    """
    best, best_rank = None, -1
    for frame in stack:  # outermost first, so ">=" keeps the deepest of a rank
        rank = _rank(frame.filename)
        if rank >= best_rank:
            best, best_rank = frame, rank
    return best


def _rank(filename: str) -> int:
    """2: the user's code; 1: an installed package; 0: stdlib, ``<frozen ...>``, ferrowsgi."""
    if filename.startswith("<"):  # "<frozen os>", "<string>": no file to open
        return 0
    path = os.path.normcase(os.path.abspath(filename))
    if path.startswith(_OWN_DIR):
        return 0
    parts = path.split(os.sep)
    if any(d in parts for d in _PACKAGES_DIRS):
        return 1
    if path.startswith(_STDLIB_DIR):
        return 0
    return 2
