"""Every ferrowsgi option, in one table, and how a value for it is found.

Rules this module keeps:

* ``SETTINGS`` is the single source of options: the command line, the
  ``FERROWSGI_<NAME>`` environment variables, the config file and the Python API
  are all read through it. A new option is one new row.
* Precedence: command line > environment variable > config file > default.
* Every value, whatever its source, goes through its row's parser, which
  converts *and* validates it; nothing is validated anywhere else.
* Bad usage is a :class:`ConfigError` with one line naming the option and,
  when it did not come from the command line, where the bad value came from.
  The CLI shows it as ``ferrowsgi: error: ...`` and exits with status 2.
* No import of the native module here: this runs before anything is bound.
"""

from __future__ import annotations

import argparse
import ipaddress
import math
import os
import re
import runpy
import traceback
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

__all__ = ["SETTINGS", "Config", "ConfigError", "Setting", "check_options", "load", "parse_bind"]

ENV_PREFIX = "FERROWSGI_"
# ServerConfig keys the Python API passes straight to Rust, which validates them.
API_EXTRA_KEYS = ("body_buffer_size", "multiprocess", "url_scheme", "script_name")


class ConfigError(Exception):
    """Bad usage (unknown option, bad value): one line; exit status 2."""


@dataclass(frozen=True)
class Setting:
    """One option: its name, how to parse and check a value, and its documentation."""

    name: str  # attribute and config-file name, e.g. "keep_alive"
    parse: Callable[[Any], Any]  # str or Python value -> checked value; raises ValueError
    default: Any
    help: str
    metavar: str | None = None
    short: str | None = None  # e.g. "-b"
    multiple: bool = False  # repeatable flag; comma-separated in the environment
    server_key: str | None = None  # key in _ferrowsgi.ServerConfig, None if Python-side only
    boolean: bool = False  # a flag that takes no value on the command line

    @property
    def flag(self) -> str:
        """The long command-line flag, e.g. ``--keep-alive``."""
        return "--" + self.name.replace("_", "-")

    @property
    def env(self) -> str:
        """The environment variable, e.g. ``FERROWSGI_KEEP_ALIVE``."""
        return ENV_PREFIX + self.name.upper()


LOG_LEVELS = ("critical", "error", "warning", "info", "debug")
_SIZE_UNITS = {"": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40}


# Value parsers: each takes a str (command line, environment) or a Python value
# (config file, API), and returns the checked value or raises ValueError.


def _integer(minimum: int) -> Callable[[Any], int]:
    def parse(raw: Any) -> int:
        if isinstance(raw, bool) or not isinstance(raw, (int, str)):
            raise ValueError(f"expected an integer, got {raw!r}")
        try:
            value = int(raw)
        except ValueError:
            raise ValueError(f"expected an integer, got {raw!r}") from None
        if value < minimum:
            raise ValueError(f"must be at least {minimum}, got {value}")
        return value

    return parse


def _seconds(raw: Any) -> float:
    ok = isinstance(raw, (int, float, str)) and not isinstance(raw, bool)
    try:
        value = float(raw) if ok else math.nan
    except ValueError:
        value = math.nan
    if not math.isfinite(value):
        raise ValueError(f"expected a number of seconds, got {raw!r}")
    if value < 0:
        raise ValueError(f"must not be negative, got {raw!r}")
    return value


def _size(raw: Any) -> int:
    """Bytes: an integer, or digits with a K/M/G/T suffix (powers of 1024; "10MiB" too)."""
    text = str(raw) if isinstance(raw, (int, str)) and not isinstance(raw, bool) else ""
    match = re.fullmatch(r"(\d+)\s*([kmgt]?)(?:i?b)?", text.strip().lower())
    if not match:
        raise ValueError(f"expected a size in bytes such as 1048576, 512K or 10M, got {raw!r}")
    return int(match[1]) * _SIZE_UNITS[match[2]]


_BOOLEANS = {"1": True, "true": True, "yes": True, "on": True,
             "0": False, "false": False, "no": False, "off": False}  # fmt: skip


def _boolean(raw: Any) -> bool:
    """True/False, or (environment) 1/0, true/false, yes/no, on/off, any case."""
    if isinstance(raw, bool):
        return raw
    value = _BOOLEANS.get(raw.strip().lower()) if isinstance(raw, str) else None
    if value is None:
        raise ValueError(f"expected true or false, got {raw!r}")
    return value


def _choice(*choices: str) -> Callable[[Any], str]:
    def parse(raw: Any) -> str:
        value = raw.strip().lower() if isinstance(raw, str) else raw
        if value not in choices:
            raise ValueError(f"expected one of {', '.join(choices)}, got {raw!r}")
        return value

    return parse


def _path(raw: Any) -> str:
    if isinstance(raw, os.PathLike):
        raw = os.fspath(raw)
    if not isinstance(raw, str) or not raw:
        raise ValueError(f"expected a path, got {raw!r}")
    return raw


def parse_bind(raw: Any) -> str:
    """Check and complete one listen address; return it in the form Rust takes.

    ``HOST:PORT``, ``[IPv6]:PORT``, ``unix:PATH`` (``unix://PATH`` too) and ``fd://N``
    are kept; a leading ``tcp://`` is dropped. As in gunicorn, a bare ``HOST`` gets
    port 8000 and ``:PORT`` means all IPv4 interfaces (``0.0.0.0:PORT``).
    Raises ``ValueError`` with the reason.
    """
    if not isinstance(raw, str) or not raw.strip():
        raise ValueError(f"expected an address such as 127.0.0.1:8000, got {raw!r}")
    text = raw.strip()
    if text.startswith("unix:"):
        path = text.removeprefix("unix:").removeprefix("//")
        if not path:
            raise ValueError(f"{raw!r} has no socket path (unix:/run/app.sock)")
        return "unix:" + path
    if text.startswith("fd://"):
        fd = text.removeprefix("fd://")
        if not fd.isdigit():
            raise ValueError(f"{raw!r}: fd://N takes a file descriptor number")
        return f"fd://{int(fd)}"
    host, port = _host_and_port(text.removeprefix("tcp://"), raw)
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def _is_ipv4(host: str) -> bool:
    try:
        ipaddress.IPv4Address(host)
    except ValueError:
        return False
    return True


def _host_and_port(text: str, raw: str) -> tuple[str, int]:
    if text.startswith("["):
        host, bracket, rest = text[1:].partition("]")
        if not bracket or (rest and not rest.startswith(":")):
            raise ValueError(f"{raw!r}: expected [IPv6]:PORT, such as [::1]:8000")
        try:
            ipaddress.IPv6Address(host)
        except ValueError:
            raise ValueError(f"{raw!r}: {host!r} is not an IPv6 address") from None
        port_text = rest[1:]
    elif text.count(":") > 1:
        raise ValueError(f"{raw!r}: put an IPv6 address in brackets, such as [::1]:8000")
    else:
        host, _, port_text = text.partition(":")
        host = host.lower() or "0.0.0.0"
        if host != "localhost" and not _is_ipv4(host):
            raise ValueError(f"{raw!r}: the host must be an IP address or localhost")
    if not port_text:
        return host, 8000
    if not port_text.isdigit() or int(port_text) > 65535:
        raise ValueError(f"{raw!r}: {port_text!r} is not a port number (0-65535)")
    return host, int(port_text)


# fmt: off
SETTINGS: tuple[Setting, ...] = (
    Setting("bind", parse_bind, ["127.0.0.1:8000"],
            "address to listen on: HOST:PORT (HOST an IP address or localhost), [IPv6]:PORT, "
            "unix:PATH or fd://N (an inherited socket); repeat for several. HOST alone means "
            "port 8000, :PORT means all interfaces (0.0.0.0)", "ADDRESS", "-b", multiple=True,
            server_key="binds"),
    Setting("workers", _integer(0), 1,
            "worker processes under a master process; 0 serves from this one process, "
            "with no master", "N", "-w"),
    Setting("threads", _integer(1), 1,
            "Python threads that run the application", "N", server_key="threads"),
    Setting("keep_alive", _seconds, 5.0,
            "seconds an idle keep-alive connection stays open", "SECONDS",
            server_key="keep_alive"),
    Setting("max_body_size", _size, 1073741824,
            "largest request body accepted, in bytes (K, M, G, T suffixes are powers of "
            "1024: 10M); larger bodies get 413", "BYTES", server_key="max_body_size"),
    Setting("graceful_timeout", _seconds, 30.0,
            "seconds requests in flight get to finish after SIGTERM or Ctrl-C", "SECONDS",
            server_key="graceful_timeout"),
    Setting("backlog", _integer(1), 2048,
            "listen queue length (connections waiting to be accepted)", "N",
            server_key="backlog"),
    Setting("max_connections", _integer(1), 1000,
            "open connections per worker; beyond it new connections wait in the backlog",
            "N", server_key="max_connections"),
    Setting("header_timeout", _seconds, 10.0,
            "seconds a client gets to send a request head, from its first byte "
            "(slowloris guard)", "SECONDS", server_key="header_timeout"),
    Setting("body_timeout", _seconds, 30.0,
            "seconds to wait for the next bytes of a request body before answering 408",
            "SECONDS", server_key="body_timeout"),
    Setting("limit_request_line", _integer(1), 8190,
            "longest request line in bytes; longer ones get 414", "BYTES",
            server_key="limit_request_line"),
    Setting("limit_request_fields", _integer(1), 100,
            "most header fields in a request; more get 431", "N",
            server_key="limit_request_fields"),
    Setting("limit_request_field_size", _integer(1), 8190,
            "longest header field line in bytes; longer ones get 431", "BYTES",
            server_key="limit_request_field_size"),
    Setting("access_log", _path, None,
            "write one access-log line per request to PATH, or to stdout with '-'", "PATH|-"),
    Setting("log_level", _choice(*LOG_LEVELS), "info",
            "error log level: " + ", ".join(LOG_LEVELS), "LEVEL"),
    Setting("config", _path, None,
            "Python config file whose module-level names set options (threads = 4, "
            "bind = ['0.0.0.0:80'])", "PATH", "-c"),
    Setting("chdir", _path, None,
            "change to this directory before loading the application", "DIR"),
    Setting("timeout", _seconds, 30.0,
            "a worker whose application call runs longer than this is killed and replaced, "
            "after its Python stacks are written to the error log; 0 = off", "SECONDS"),
    Setting("max_requests", _integer(0), 0,
            "recycle a worker gracefully after this many requests; 0 = never", "N"),
    Setting("max_requests_jitter", _integer(0), 0,
            "add a random 0..N to --max-requests, per worker, so workers do not all "
            "recycle at once", "N"),
    Setting("max_worker_memory", _integer(0), 0,
            "recycle a worker gracefully once its resident memory passes this many MiB; "
            "0 = no limit", "MIB"),
    Setting("preload", _boolean, False,
            "import the application once in the master, before forking the workers",
            boolean=True),
    Setting("reuse_port", _boolean, False,
            "give each worker its own SO_REUSEPORT socket instead of sharing one",
            boolean=True),
    Setting("pid", _path, None, "write the master's process id to this file", "PATH"),
    Setting("reload", _boolean, False,
            "development: restart the workers when a Python file of the application "
            "changes (not with --preload)", boolean=True),
)
# fmt: on
BY_NAME = {s.name: s for s in SETTINGS}


class Config:
    """Resolved options: one attribute per :data:`SETTINGS` name, plus ``app``.

    ``origins[name]`` says where each value came from ("default", "command line",
    "FERROWSGI_THREADS", "config file PATH"); ``warnings`` are lines to log once
    logging is up (unknown names, options stored but not in effect yet).
    """

    def __init__(
        self, app: str | None, values: dict[str, Any], origins: dict[str, str], warnings: list[str]
    ) -> None:
        self.app = app
        self.values = values
        self.origins = origins
        self.warnings = warnings
        for name, value in values.items():
            setattr(self, name, value)

    def server_config(self) -> dict[str, Any]:
        """The ``_ferrowsgi.ServerConfig`` dict for these options."""
        return to_server_config(self.values)

    def describe(self) -> list[str]:
        """One ``name = value (origin)`` line per option, for the debug log."""
        return [f"{n} = {v!r} ({self.origins[n]})" for n, v in self.values.items()]


def load(
    argv: Sequence[str] | None = None, environ: Mapping[str, str] | None = None, version: str = ""
) -> Config:
    """Resolve every option from ``argv``, ``environ`` (default ``os.environ``) and the
    config file. Raises :class:`ConfigError`; ``SystemExit(0)`` after ``--help``/``--version``.
    """
    environ = os.environ if environ is None else environ
    given = vars(build_parser(version).parse_args(argv))
    app = given.pop("app", None)
    warnings = _unknown_env_names(environ)
    from_env = {s.name: environ[s.env] for s in SETTINGS if environ.get(s.env)}
    sources: list[tuple[str, Mapping[str, Any]]] = [("command line", given), ("env", from_env)]
    path = _resolve(BY_NAME["config"], sources)[0]
    if path:
        sources.append((f"config file {path}", _read_config_file(path, warnings)))
    values: dict[str, Any] = {}
    origins: dict[str, str] = {}
    for s in SETTINGS:
        values[s.name], origins[s.name] = _resolve(s, sources)
    if values["reload"] and values["preload"]:
        raise ConfigError("--reload cannot be combined with --preload")
    return Config(app, values, origins, warnings)


def build_parser(version: str = "") -> argparse.ArgumentParser:
    """The ``ferrowsgi`` argument parser, generated from :data:`SETTINGS`.

    Flags default to "not given" (absent from the namespace), so lower-precedence
    sources can fill them in. Parse errors raise :class:`ConfigError`.
    """
    parser = _Parser(
        prog="ferrowsgi",
        allow_abbrev=False,
        description="Serve a WSGI application (PEP 3333).",
        epilog="APP is module:callable, module:factory(), path/to/file.py[:callable] or a "
        "module (callable 'application', then 'app'); without APP a demo app answers. "
        "Precedence: command line > FERROWSGI_<NAME> environment variables > config file "
        "> defaults.",
    )
    parser.add_argument("app", nargs="?", metavar="APP", help="the WSGI application")
    for s in SETTINGS:
        flags = [s.short, s.flag] if s.short else [s.flag]
        default = ",".join(s.default) if s.multiple else s.default
        shown = "off" if s.boolean else "none" if default is None else default
        action = "store_true" if s.boolean else "append" if s.multiple else "store"
        parser.add_argument(
            *flags,
            dest=s.name,
            default=argparse.SUPPRESS,
            action=action,
            **({} if s.boolean else {"metavar": s.metavar}),
            help=f"{s.help} [default: {shown}; env: {s.env}]",
        )
    parser.add_argument("--version", action="version", version=f"ferrowsgi {version}")
    return parser


def check_options(options: Mapping[str, Any]) -> dict[str, Any]:
    """Check Python-API keyword options (``serve(app, threads=4, ...)``).

    Accepts the ServerConfig keys (``binds`` or ``bind``, ``threads``, ``keep_alive``,
    ``max_body_size``, ``graceful_timeout``, ``backlog``, and ``body_buffer_size``,
    ``multiprocess``, ``url_scheme``, ``script_name`` which Rust checks) plus
    ``log_level`` and ``access_log``. Returns them by setting name.
    Raises ``TypeError`` for an unknown name, ``ValueError`` for a bad value.
    """
    allowed = sorted({s.name for s in SETTINGS if s.server_key} | {"log_level", "access_log"})
    checked: dict[str, Any] = {}
    for key, raw in options.items():
        name = "bind" if key == "binds" else key
        if name in API_EXTRA_KEYS:
            checked[name] = raw
        elif name in allowed:
            try:
                checked[name] = _parse_value(BY_NAME[name], raw, split_commas=False)
            except ValueError as e:
                raise ValueError(f"{key}: {e}") from None
        else:
            names = ", ".join([*allowed, *API_EXTRA_KEYS])
            raise TypeError(f"unexpected option {key!r}; expected one of: {names}")
    return checked


def to_server_config(values: Mapping[str, Any]) -> dict[str, Any]:
    """Map checked values (by setting name) to a ``_ferrowsgi.ServerConfig`` dict."""
    config = {s.server_key: values[s.name] for s in SETTINGS if s.server_key and s.name in values}
    config.update({k: values[k] for k in API_EXTRA_KEYS if k in values})
    return config


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> Any:  # argparse prints usage and exits; we raise
        raise ConfigError(message)


def _resolve(setting: Setting, sources: list[tuple[str, Mapping[str, Any]]]) -> tuple[Any, str]:
    """The checked value from the first source that has one, and where it came from."""
    for origin, values in sources:
        if setting.name not in values:
            continue
        origin = setting.env if origin == "env" else origin
        try:
            return _parse_value(setting, values[setting.name], origin == setting.env), origin
        except ValueError as e:
            where = "" if origin == "command line" else f" (from {origin})"
            raise ConfigError(f"{setting.flag}: {e}{where}") from None
    return setting.default, "default"


def _parse_value(setting: Setting, raw: Any, split_commas: bool) -> Any:
    if not setting.multiple:
        return setting.parse(raw)
    if isinstance(raw, str):
        raw = [part for part in raw.split(",") if part.strip()] if split_commas else [raw]
    if not isinstance(raw, (list, tuple)) or not raw:
        raise ValueError(f"expected a string or a non-empty list of strings, got {raw!r}")
    return [setting.parse(item) for item in raw]


def _read_config_file(path: str, warnings: list[str]) -> dict[str, Any]:
    """Run the config file; return its known option names. Unknown lowercase names warn."""
    if not os.path.isfile(path):
        raise ConfigError(f"--config: no such file: {path!r}")
    try:
        namespace = runpy.run_path(path, run_name="__config__")
    except Exception as e:
        frames = [f for f in traceback.extract_tb(e.__traceback__) if f.filename == path]
        line = f", line {frames[-1].lineno}" if frames else ""
        raise ConfigError(f"config file {path}{line}: {type(e).__name__}: {e}") from None
    found = {}
    for name, value in namespace.items():
        if name in BY_NAME and name != "config":
            found[name] = value
        elif name.islower() and not name.startswith("_") and not _is_code(value):
            warnings.append(f"config file {path}: unknown setting {name!r} ignored")
    return found


def _is_code(value: Any) -> bool:
    return callable(value) or type(value).__name__ == "module"


def _unknown_env_names(environ: Mapping[str, str]) -> list[str]:
    known = {s.env for s in SETTINGS}
    return [
        f"unknown environment variable {k} ignored"
        for k in sorted(environ)
        if k.startswith(ENV_PREFIX) and k not in known
    ]
