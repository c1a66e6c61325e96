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
"""

from __future__ import annotations

import ast
import importlib
import importlib.machinery
import importlib.util
import os
import sys
import traceback
from collections.abc import Callable
from types import ModuleType
from typing import Any

__all__ = ["LoadError", "load_app"]

DEFAULT_NAMES = ("application", "app")
_IMPORTLIB_DIR = os.path.dirname(importlib.__file__) + os.sep


class LoadError(Exception):
    """The application could not be loaded.

    ``str(error)`` is one line. ``details`` is the formatted traceback of the
    user's exception when there was one (show it at debug level), else ``None``.
    """

    def __init__(self, message: str, details: str | None = None) -> None:
        super().__init__(message)
        self.details = details


def load_app(spec: str) -> Callable[..., Any]:
    """Import and return the WSGI callable named by ``spec`` (see the module docstring).

    Raises :class:`LoadError`. Importing runs the user's module, so any side
    effect of that happens here, once.
    """
    _put_first_on_path(os.getcwd())
    target, expr = _split(spec)
    if _is_file(target):
        module = _import_file(target)
    else:
        module = _import_module(target)
    if expr is None:
        return _default_callable(module, target)
    app = _evaluate(module, expr, spec)
    if not callable(app):
        raise LoadError(f"'{spec}' is not callable (got {type(app).__name__})")
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
            raise LoadError(str(e)) from None
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


def _default_callable(module: ModuleType, target: str) -> Callable[..., Any]:
    for name in DEFAULT_NAMES:
        if hasattr(module, name):
            app = getattr(module, name)
            if not callable(app):
                raise LoadError(f"'{target}:{name}' is not callable (got {type(app).__name__})")
            return app
    raise LoadError(f"failed to find 'application' or 'app' in module '{module.__name__}'")


def _evaluate(module: ModuleType, expr: str, spec: str) -> Any:
    """Resolve ``name``, ``name.attr`` or a call of one with literal arguments."""
    try:
        node = ast.parse(expr, mode="eval").body
    except SyntaxError:
        node = None
    if isinstance(node, ast.Call):
        func = _lookup(module, node.func, spec)
        args, kwargs = _literal_args(node, spec)
        if not callable(func):
            name = spec[: spec.index("(")]
            raise LoadError(f"'{name}' is not callable (got {type(func).__name__})")
        try:
            return func(*args, **kwargs)
        except Exception as e:
            raise _user_error(f"'{spec}' failed", e) from None
    if node is None or not isinstance(node, (ast.Name, ast.Attribute)):
        raise LoadError(f"'{spec}': expected module:name or module:factory(literal args)")
    return _lookup(module, node, spec)


def _lookup(module: ModuleType, node: ast.expr, spec: str) -> Any:
    """Follow a ``Name``/``Attribute`` chain from the module."""
    if isinstance(node, ast.Name):
        if not hasattr(module, node.id):
            raise LoadError(f"module '{module.__name__}' has no attribute '{node.id}'")
        return getattr(module, node.id)
    if isinstance(node, ast.Attribute):
        owner = _lookup(module, node.value, spec)
        if not hasattr(owner, node.attr):
            where = f"{module.__name__}:{ast.unparse(node.value)}"
            raise LoadError(f"'{where}' has no attribute '{node.attr}'")
        return getattr(owner, node.attr)
    raise LoadError(f"'{spec}': expected a name such as 'app' or 'create_app'")


def _literal_args(call: ast.Call, spec: str) -> tuple[list[Any], dict[str, Any]]:
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


def _ours(filename: str) -> bool:
    """True for frames of importlib and of this module: noise in the user's traceback."""
    return filename.startswith(("<frozen importlib", _IMPORTLIB_DIR)) or filename == __file__


def _user_error(what: str, exc: BaseException) -> LoadError:
    """A LoadError for an exception raised by the user's code: one line + traceback."""
    te = traceback.TracebackException.from_exception(exc)
    te.stack = traceback.StackSummary.from_list([f for f in te.stack if not _ours(f.filename)])
    reason = (str(exc).strip().splitlines() or [""])[0]
    where = f" ({te.stack[-1].filename}, line {te.stack[-1].lineno})" if te.stack else ""
    if isinstance(exc, SyntaxError):
        reason = exc.msg
        where = f" ({exc.filename}, line {exc.lineno})"
    summary = f"{type(exc).__name__}: {reason}" if reason else type(exc).__name__
    return LoadError(f"{what}{where}: {summary}", "".join(te.format()).rstrip())
