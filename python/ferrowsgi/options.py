"""Every ferrowsgi option, declared once, and how a value for it is found.

Rules this module keeps:

* :data:`SETTINGS` is the one table of options: the command line, the
  ``FERROWSGI_<NAME>`` environment variables, the config file, ``serve()`` and
  ``make_server()`` are all read through it, and the options marked ``rust``
  reach the native ``ServerConfig`` under the same name, every one with its
  value, so there is one set of defaults. ``tools/gen_options.py`` writes the
  stubs' TypedDicts and the README's table from it; a test fails on drift.
* Precedence: command line > environment variable > config file > default.
* Every value, whatever its source, goes through its row's parser, which
  converts *and* validates it; nothing is validated anywhere else. Addresses
  are parsed by the native core (``_ferrowsgi.parse_bind``), the same parser
  the server binds with.
* Bad usage is a :class:`ConfigError` with one line naming the option and,
  when it did not come from the command line, where the bad value came from.
  The CLI shows it as ``ferrowsgi: error: ...`` and exits with status 2.
* Cheap to import: argparse, runpy and difflib are imported only when the
  command line or a config file is read, so a worker process never loads them.
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Callable, Mapping, Sequence

from ._ferrowsgi import (
    DEFAULT_ACCESS_LOG_FORMAT,
    check_access_log_format,
    check_backends,
    check_tls,
    check_trusted,
    parse_bind,
)
from .mount import normalize_prefix

TYPE_CHECKING = False  # typing is not imported at run time: a worker has no use for it
if TYPE_CHECKING:
    import argparse
    from typing import Any

__all__ = ["BY_NAME", "SETTINGS", "Config", "ConfigError", "Setting", "check_api", "load"]

ENV_PREFIX = "FERROWSGI_"
MAX_THREADS = 1024  # more Python threads than this is a mistake, not a configuration


class ConfigError(Exception):
    """Bad usage (unknown option, bad value): one line; exit status 2."""


class Kind:
    """A type of option value: ``parse(raw)`` returns the checked value or raises
    ``ValueError``; ``checked`` and ``accepts`` are the type names the stubs show for
    the value Rust receives and the values the Python API takes."""

    __slots__ = ("accepts", "checked", "parse")

    def __init__(self, parse: Callable[[Any], Any], checked: str, accepts: str = "") -> None:
        self.parse, self.checked, self.accepts = parse, checked, accepts or checked


class Setting:
    """One option (one row of :data:`SETTINGS`).

    ``name`` is the config-file and API name (``keep_alive``); ``flag`` its
    command-line flag (``--keep-alive``) or None for API-only options; ``unit``
    says what a number means (seconds, bytes, MiB); ``rust`` is True when the
    native ``ServerConfig`` takes it (under ``name``); ``gunicorn`` lists other
    spellings accepted in a config file (gunicorn's) and ``gunicorn_flags`` on the
    command line.
    """

    __slots__ = ("boolean", "commas", "default", "gunicorn", "gunicorn_flags", "help", "kind",
                 "metavar", "multiple", "name", "rust", "short", "unit", "flag")  # fmt: skip

    def __init__(
        self,
        name: str,
        kind: Kind,
        default: Any,
        help: str,
        *,
        unit: str = "",
        metavar: str | None = None,
        short: str | None = None,
        multiple: bool = False,
        commas: bool = False,
        rust: bool = False,
        boolean: bool = False,
        cli: bool = True,
        gunicorn: tuple[str, ...] = (),
        gunicorn_flags: tuple[str, ...] = (),
    ) -> None:
        self.name, self.kind, self.default, self.help = name, kind, default, help
        self.unit, self.metavar, self.short = unit, metavar, short
        self.multiple, self.rust, self.boolean = multiple, rust, boolean
        self.commas = commas  # a list given as "a,b" anywhere, not only in the environment
        self.flag = "--" + name.replace("_", "-") if cli else None
        self.gunicorn, self.gunicorn_flags = gunicorn, gunicorn_flags

    @property
    def env(self) -> str | None:
        """The environment variable (``FERROWSGI_KEEP_ALIVE``); None for API-only options."""
        return ENV_PREFIX + self.name.upper() if self.flag else None

    @property
    def label(self) -> str:
        """How messages name it: the flag, or the API name for API-only options."""
        return self.flag or self.name

    def parse(self, raw: Any, split_commas: bool = False) -> Any:
        """The checked value for ``raw``; lists for repeatable options (from the
        environment, comma-separated when ``split_commas``). Raises ``ValueError``."""
        if not self.multiple:
            return self.kind.parse(raw)
        if isinstance(raw, str):
            raw = [raw]
        if not isinstance(raw, (list, tuple)) or not raw:
            raise ValueError(f"expected a string or a non-empty list of strings, got {raw!r}")
        if split_commas or self.commas:
            raw = [
                p for item in raw for p in (item.split(",") if isinstance(item, str) else [item])
            ]
            raw = [p for p in raw if not isinstance(p, str) or p.strip()]
        return [self.kind.parse(item) for item in raw]


LOG_LEVELS = ("critical", "error", "warning", "info", "debug")
_SIZE_UNITS = {"": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40}
_BOOLEANS = {"1": True, "true": True, "yes": True, "on": True,
             "0": False, "false": False, "no": False, "off": False}  # fmt: skip


# Value kinds: each parser takes a str (command line, environment) or a Python value
# (config file, API), and returns the checked value or raises ValueError.


def _integer(minimum: int, maximum: int | None = None) -> Kind:
    def parse(raw: Any) -> int:
        if isinstance(raw, bool) or not isinstance(raw, (int, str)):
            raise ValueError(f"expected an integer, got {raw!r}")
        try:
            value = int(raw)
        except ValueError:
            raise ValueError(f"expected an integer, got {raw!r}") from None
        if value < minimum:
            raise ValueError(f"must be at least {minimum}, got {value}")
        if maximum is not None and value > maximum:
            raise ValueError(f"must be at most {maximum}, got {value}")
        return value

    return Kind(parse, "int")


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


def _boolean(raw: Any) -> bool:
    """True/False, or (environment) 1/0, true/false, yes/no, on/off, any case."""
    if isinstance(raw, bool):
        return raw
    value = _BOOLEANS.get(raw.strip().lower()) if isinstance(raw, str) else None
    if value is None:
        raise ValueError(f"expected true or false, got {raw!r}")
    return value


def _choice(*choices: str) -> Kind:
    def parse(raw: Any) -> str:
        value = raw.strip().lower() if isinstance(raw, str) else raw
        if value not in choices:
            raise ValueError(f"expected one of {', '.join(choices)}, got {raw!r}")
        return value

    return Kind(parse, "str")


def _http(raw: Any) -> str:
    """Which HTTP versions: "auto", "1" or "2" (the numbers 1 and 2 too)."""
    value = str(raw) if isinstance(raw, int) and not isinstance(raw, bool) else raw
    return _choice("auto", "1", "2").parse(value)


def _path(raw: Any) -> str:
    if isinstance(raw, os.PathLike):
        raw = os.fspath(raw)
    if not isinstance(raw, str) or not raw:
        raise ValueError(f"expected a path, got {raw!r}")
    return raw


def _text(raw: Any) -> str:
    if not isinstance(raw, str):
        raise ValueError(f"expected a string, got {raw!r}")
    return raw


def _access_log_format(raw: Any) -> str:
    if not isinstance(raw, str) or not raw:
        raise ValueError(f"expected a format string or 'json', got {raw!r}")
    return check_access_log_format(raw)  # the native parser the access log compiles with


def _bind(raw: Any) -> str:
    """One listen address, checked and completed by the native parser (the one the
    server binds with); the error lists the accepted forms."""
    if not isinstance(raw, str):
        raise ValueError(f"expected an address such as 127.0.0.1:8000, got {raw!r}")
    return parse_bind(raw)


def _http_bind(raw: Any) -> str:
    """An address for an HTTP-only listener (the metrics endpoint): no uwsgi:// or
    fcgi://."""
    value = _bind(raw)
    if value.startswith(("uwsgi://", "fcgi://")):
        raise ValueError(f"this endpoint speaks HTTP; give HOST:PORT, got {raw!r}")
    return value


def _trusted(raw: Any) -> str:
    """One entry of a list of trusted peers, checked by the native parser the server
    uses: an IP address, a network (10.0.0.0/8), 'unix' or '*'."""
    return check_trusted(_text(raw))


def _mode(raw: Any) -> int:
    """Permission bits: an int (0o660), or octal digits as text ("660", "0o660")."""
    if isinstance(raw, int) and not isinstance(raw, bool):
        value = raw
    else:
        text = _text(raw).strip().lower().removeprefix("0o")
        if not text or any(c not in "01234567" for c in text):
            raise ValueError(f"expected permission bits in octal such as 660, got {raw!r}")
        value = int(text, 8)
    if not 0 <= value <= 0o777:
        raise ValueError(f"expected permission bits in octal, 000 to 777, got {raw!r}")
    return value


def _script_name(raw: Any) -> str:
    value = _text(raw).rstrip("/")
    if value and not value.startswith("/"):
        raise ValueError(f"must be empty or start with '/', got {raw!r}")
    return value


def _cert_reqs(raw: Any) -> str:
    """none, optional or required; a gunicorn config file's ssl.CERT_NONE (0),
    CERT_OPTIONAL (1) or CERT_REQUIRED (2) too."""
    if isinstance(raw, int) and not isinstance(raw, bool) and 0 <= raw <= 2:
        return CERT_REQS[raw]
    value = raw.strip().lower() if isinstance(raw, str) else raw
    if value not in CERT_REQS:
        raise ValueError(f"expected one of {', '.join(CERT_REQS)}, got {raw!r}")
    return value


def _tls_version(raw: Any) -> str:
    """1.2 or 1.3 (TLSv1.2 and TLSv1.3 too)."""
    value = raw.strip().lower().removeprefix("tlsv") if isinstance(raw, str) else raw
    if value not in ("1.2", "1.3"):
        raise ValueError(f"expected 1.2 or 1.3, got {raw!r}")
    return value


def _prefix(raw: Any) -> str:
    """A URL path prefix: '/' or '/a/b' (a trailing slash is dropped)."""
    return normalize_prefix(_text(raw).strip())


def _route(value: Callable[[str], str], what: str) -> Kind:
    """``PREFIX=VALUE`` (or a ``(prefix, value)`` pair) as ``(prefix, value)``."""

    def parse(raw: Any) -> tuple[str, str]:
        if isinstance(raw, (list, tuple)) and len(raw) == 2:
            prefix, rest = raw
        elif isinstance(raw, str) and "=" in raw:
            prefix, rest = raw.split("=", 1)
        else:
            raise ValueError(f"expected PREFIX={what}, got {raw!r}")
        return (_prefix(prefix), value(_text(rest).strip()))

    return Kind(parse, "tuple[str, str]", "str | tuple[str, str]")


def _directory(raw: str) -> str:
    """An existing directory, made absolute (as found from here, whatever --chdir says)."""
    if not os.path.isdir(raw):
        raise ValueError(f"{raw!r} is not a directory")
    return os.path.abspath(raw)


def _backends(raw: str) -> str:
    """``URL[,URL...]``, each ``http://HOST:PORT`` with an optional path; checked by
    the native parser the forwarding middleware uses."""
    return check_backends(raw)


CERT_REQS = ("none", "optional", "required")
SECONDS = Kind(_seconds, "float", "float | int | str")
SIZE = Kind(_size, "int", "int | str")
BOOLEAN = Kind(_boolean, "bool", "bool | str")
PATH = Kind(_path, "str", "str | os.PathLike[str]")
ADDRESS = Kind(_bind, "str")
TRUST = Kind(_trusted, "str")

# fmt: off
SETTINGS: tuple[Setting, ...] = (
    # Where and how to listen.
    Setting("bind", ADDRESS, ["127.0.0.1:8000"],
            "address to listen on: HOST:PORT (HOST an IP address or a name), [IPv6]:PORT, "
            "unix:PATH or fd://N (an inherited socket); repeat for several. HOST alone means "
            "port 8000, :PORT means all interfaces (0.0.0.0)",
            metavar="ADDRESS", short="-b", multiple=True, rust=True),
    Setting("backlog", _integer(1), 2048,
            "listen queue length (connections waiting to be accepted)",
            metavar="N", rust=True),
    Setting("unix_socket_mode", Kind(_mode, "int", "int | str"), 0o660,
            "permission bits of unix:PATH socket files, in octal (660: owner and group, "
            "e.g. nginx's, may connect)", metavar="MODE", rust=True),
    Setting("http", Kind(_http, "str", "str | int"), "auto",
            "HTTP versions on HTTP listeners: auto (HTTP/1.1, and HTTP/2 for clients that "
            "start with its preface: h2c with prior knowledge; h2 by ALPN over TLS), 1 "
            "(HTTP/1.1 only) or 2 (HTTP/2 only)", metavar="VERSIONS", rust=True),
    Setting("reuse_port", BOOLEAN, False,
            "give each worker its own SO_REUSEPORT socket instead of sharing one",
            boolean=True),
    # Behind a proxy.
    Setting("forwarded_allow_ips", TRUST, ["127.0.0.1", "::1", "unix"],
            "peers whose X-Forwarded-For, X-Forwarded-Proto and Forwarded (RFC 7239) "
            "headers set REMOTE_ADDR and wsgi.url_scheme: IP addresses, networks "
            "(10.0.0.0/8), 'unix' (unix socket clients) or '*'; from anyone else the "
            "headers change nothing", metavar="ADDRESSES", multiple=True, commas=True, rust=True,
            gunicorn=("forwarded_allow_ips",)),
    Setting("proxy_protocol", BOOLEAN, False,
            "every connection starts with a PROXY protocol header (v1 or v2) naming the "
            "client; from peers not in --proxy-allow-from, or without a valid header, the "
            "connection is closed", boolean=True, rust=True),
    Setting("proxy_allow_from", TRUST, ["127.0.0.1", "::1", "unix"],
            "peers allowed to send a PROXY protocol header: IP addresses, networks, 'unix' "
            "or '*'", metavar="ADDRESSES", multiple=True, commas=True, rust=True),
    # TLS.
    Setting("certfile", PATH, None,
            "PEM file with the server's certificate (then its chain): HTTPS on every HTTP "
            "listener (uwsgi:// and fcgi:// stay plain); ALPN offers h2 and http/1.1. "
            "Needs --keyfile", metavar="PATH", rust=True),
    Setting("keyfile", PATH, None,
            "PEM file with the certificate's private key: PKCS#8, PKCS#1 RSA or SEC1 EC, "
            "not encrypted", metavar="PATH", rust=True),
    Setting("ca_certs", PATH, None,
            "PEM file with the CAs client certificates are verified against (see "
            "--cert-reqs)", metavar="PATH", rust=True),
    Setting("cert_reqs", Kind(_cert_reqs, "str", "int | str"), "none",
            "client certificates: none (not asked for), optional (verified when one is "
            "given) or required (a client without a valid one fails the handshake); "
            "the subject of a verified one is environ['SSL_CLIENT_S_DN']",
            metavar="MODE", rust=True),
    Setting("ssl_min_version", Kind(_tls_version, "str"), "1.2",
            "oldest TLS version accepted: 1.2 or 1.3", metavar="VERSION", rust=True),
    # Processes and threads.
    Setting("workers", _integer(0), 1,
            "worker processes under a master process; 0 serves from this one process, "
            "with no master (no --timeout, --reload or recycling then)", metavar="N", short="-w"),
    Setting("threads", _integer(1, MAX_THREADS), 1,
            f"Python threads that run the application (1 to {MAX_THREADS}); with 1 the "
            "I/O thread calls the application itself", metavar="N", rust=True),
    Setting("max_connections", _integer(1), 1000,
            "open connections per worker; beyond it new connections wait in the backlog",
            metavar="N", rust=True, gunicorn=("worker_connections",),
            gunicorn_flags=("--worker-connections",)),
    Setting("max_queue", _integer(0), 0,
            "requests that may wait for a Python thread; one more is answered 503 "
            "Service Unavailable with Retry-After at once, instead of queueing until "
            "clients time out; 0 = no limit. Set, the I/O thread never runs the "
            "application itself (even with --threads 1), so it stays free to answer",
            metavar="N", rust=True),
    # Timeouts.
    Setting("timeout", SECONDS, 30.0,
            "a worker whose application call runs longer than this is killed and replaced, "
            "after its Python stacks are written to the error log; 0 = off",
            unit="seconds", metavar="SECONDS", short="-t"),
    Setting("graceful_timeout", SECONDS, 30.0,
            "seconds requests in flight get to finish after SIGTERM or Ctrl-C",
            unit="seconds", metavar="SECONDS", rust=True),
    Setting("keep_alive", SECONDS, 5.0,
            "seconds an idle keep-alive connection stays open; 0 = no keep-alive",
            unit="seconds", metavar="SECONDS", rust=True, gunicorn=("keepalive",)),
    Setting("header_timeout", SECONDS, 10.0,
            "seconds a client gets to send a request head, from its first byte "
            "(slowloris guard); then 408", unit="seconds", metavar="SECONDS", rust=True),
    Setting("body_timeout", SECONDS, 30.0,
            "seconds to wait for the next bytes of a request body before answering 408",
            unit="seconds", metavar="SECONDS", rust=True),
    # Limits.
    Setting("max_body_size", SIZE, 1 << 30,
            "largest request body accepted (K, M, G, T suffixes are powers of 1024: 10M); "
            "larger bodies get 413", unit="bytes", metavar="BYTES", rust=True),
    Setting("body_buffer_size", SIZE, 1 << 20,
            "request bodies up to this size stay in memory; larger ones go to a "
            "temporary file", unit="bytes", metavar="BYTES", rust=True),
    Setting("limit_request_line", _integer(1), 8190,
            "longest request line; longer ones get 414", unit="bytes", metavar="BYTES",
            rust=True),
    Setting("limit_request_fields", _integer(1), 100,
            "most header fields in a request; more get 431", metavar="N", rust=True),
    Setting("limit_request_field_size", _integer(1), 8190,
            "longest header field line; longer ones get 431", unit="bytes",
            metavar="BYTES", rust=True),
    # Recycling.
    Setting("max_requests", _integer(0), 0,
            "recycle a worker gracefully after exactly this many requests; 0 = never",
            metavar="N", rust=True),
    Setting("max_requests_jitter", _integer(0), 0,
            "add a random 0..N to --max-requests, per worker, so workers do not all "
            "recycle at once", metavar="N"),
    Setting("max_worker_memory", _integer(0), 0,
            "recycle a worker gracefully once its resident memory passes this; 0 = no limit",
            unit="MiB", metavar="MIB"),
    # Loading the application.
    Setting("chdir", PATH, None,
            "change to this directory before loading the application", metavar="DIR"),
    Setting("preload", BOOLEAN, False,
            "import the application once in the master, before forking the workers",
            boolean=True, gunicorn=("preload_app",)),
    Setting("reload", BOOLEAN, False,
            "development: restart the workers when a Python file of the application "
            "changes (not with --preload)", boolean=True),
    Setting("check_config", BOOLEAN, False,
            "check the deployment and exit: read the options (TLS files included) and "
            "import the application, without binding; exit 0 when all is well, else 1 "
            "(application) or 2 (options) with a line saying what is wrong", boolean=True),
    Setting("print_config", BOOLEAN, False,
            "print every effective setting and where it came from (command line, "
            "FERROWSGI_* environment, config file, default), then check as "
            "--check-config does", boolean=True),
    Setting("config", PATH, None,
            "Python config file whose module-level names set options (threads = 4, "
            "bind = ['0.0.0.0:80']); gunicorn's names are understood", metavar="PATH",
            short="-c"),
    Setting("pid", PATH, None, "write the master's process id to this file", metavar="PATH",
            gunicorn=("pidfile",)),
    # Built-in middleware (order: static, forward, mount, then the application;
    # compression on the way out).
    Setting("mount", _route(_text, "APP"), [],
            "serve the application APP (module:callable, as on the command line) under the "
            "URL prefix PREFIX, with SCRIPT_NAME PREFIX and PATH_INFO the rest; repeat for "
            "several: the longest matching prefix wins, and / is the default application "
            "(an APP given beside --mount is the one at /)", metavar="PREFIX=APP",
            multiple=True),
    Setting("static", _route(_directory, "DIR"), [],
            "answer requests under PREFIX with the files of DIR, without calling the "
            "application (ETag, Last-Modified, Range, precompressed .br/.gz/.zst "
            "siblings); repeat for several", metavar="PREFIX=DIR", multiple=True, rust=True),
    Setting("static_max_age", SECONDS, 3600.0,
            "Cache-Control max-age of --static answers", unit="seconds", metavar="SECONDS",
            rust=True),
    Setting("compress", BOOLEAN, False,
            "compress responses of text, JSON, JavaScript, XML and SVG types of 1 KiB or "
            "more with gzip, br or zstd, as the client's Accept-Encoding prefers",
            boolean=True, rust=True),
    Setting("forward", _route(_backends, "URL[,URL...]"), [],
            "send requests under PREFIX to these HTTP backends (round-robin, a failing one "
            "skipped for --forward-fail-timeout) instead of the application; repeat for "
            "several prefixes", metavar="PREFIX=URL[,URL...]", multiple=True, rust=True),
    Setting("forward_timeout", SECONDS, 30.0,
            "seconds a backend gets to connect and answer a forwarded request; then 504",
            unit="seconds", metavar="SECONDS", rust=True),
    Setting("forward_fail_timeout", SECONDS, 10.0,
            "seconds a backend that refused or timed out is left out of the rotation",
            unit="seconds", metavar="SECONDS", rust=True),
    # Metrics.
    Setting("metrics_bind", Kind(_http_bind, "str"), None,
            "serve Prometheus metrics at http://ADDRESS/metrics (HOST:PORT), summed over "
            "every worker, answered by Rust while the application is busy",
            metavar="ADDRESS", rust=True),
    # Logs.
    Setting("access_log", PATH, None,
            "write one access-log line per request to PATH, or to stdout with '-'",
            metavar="PATH|-", gunicorn=("accesslog",), gunicorn_flags=("--access-logfile",)),
    Setting("access_log_format", Kind(_access_log_format, "str"), DEFAULT_ACCESS_LOG_FORMAT,
            "access-log line: gunicorn's atoms (%(h)s client address, %(u)s basic-auth user, "
            "%(t)s time, %(r)s request line, %(s)s status, %(b)s bytes, %(D)s microseconds, "
            "%({name}i)s request header... see the README), or json for one JSON object "
            "per line", metavar="FORMAT", gunicorn_flags=("--access-logformat",)),
    Setting("log_format", _choice("text", "json"), "text",
            "error-log lines: text ([time] [pid] [LEVEL] message) or json (one object per "
            "line: time, level, pid, message, traceback)", metavar="FORMAT"),
    Setting("error_log", PATH, "-",
            "write the error log (and everything else sent to stderr) to PATH; '-' is "
            "stderr", metavar="PATH|-", gunicorn=("errorlog",),
            gunicorn_flags=("--error-logfile", "--log-file")),
    Setting("log_level", _choice(*LOG_LEVELS), "info",
            "error log level: " + ", ".join(LOG_LEVELS), metavar="LEVEL",
            gunicorn=("loglevel",)),
    # The environ (Python API only; the master sets multiprocess for its workers).
    Setting("url_scheme", _choice("http", "https"), "http",
            "environ['wsgi.url_scheme']", rust=True, cli=False),
    Setting("script_name", Kind(_script_name, "str"), "",
            "environ['SCRIPT_NAME']: the prefix the application is mounted at", rust=True,
            cli=False),
    Setting("multiprocess", BOOLEAN, False,
            "environ['wsgi.multiprocess']", rust=True, cli=False),
)
# fmt: on
BY_NAME = {s.name: s for s in SETTINGS}
# The TLS options, in the order _ferrowsgi.check_tls takes them.
TLS_OPTIONS = ("certfile", "keyfile", "ca_certs", "cert_reqs", "ssl_min_version")
# Options that need a master process: refused with --workers 0 rather than ignored.
NEED_MASTER = ("timeout", "reload", "max_requests_jitter", "max_worker_memory")
# gunicorn's server hooks: a config file may define them; ferrowsgi does not run them.
GUNICORN_HOOKS = frozenset((
    "on_starting", "on_reload", "when_ready", "pre_fork", "post_fork", "post_worker_init",
    "worker_int", "worker_abort", "pre_exec", "pre_request", "post_request", "child_exit",
    "worker_exit", "nworkers_changed", "on_exit", "ssl_context",
))  # fmt: skip
_ALIASES = {alias: s.name for s in SETTINGS for alias in s.gunicorn}


class Config:
    """Resolved options: one attribute per :data:`SETTINGS` name, plus ``app``.

    ``origins[name]`` says where each value came from ("default", "command line",
    "FERROWSGI_THREADS", "config file PATH"); ``warnings`` are lines to log once
    logging is up (unknown names, hooks not run, options without effect).
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

    def server_config(self, **override: Any) -> dict[str, Any]:
        """The native ``ServerConfig`` dict: every ``rust`` option, ``override`` applied."""
        return server_config({**self.values, **override})

    def describe(self) -> list[str]:
        """One ``name = value (origin)`` line per option, for the debug log."""
        return [f"{n} = {v!r} ({self.origins[n]})" for n, v in self.values.items()]


def server_config(values: Mapping[str, Any]) -> dict[str, Any]:
    """Every ``rust`` option by name: from ``values``, else its default."""
    return {s.name: values.get(s.name, s.default) for s in SETTINGS if s.rust}


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
    from_env = {s.name: environ[s.env] for s in SETTINGS if s.env and environ.get(s.env)}
    sources: list[tuple[str, Mapping[str, Any]]] = [("command line", given), ("env", from_env)]
    path = _resolve(BY_NAME["config"], sources)[0]
    if path:
        sources.append((f"config file {path}", _read_config_file(path, warnings)))
    values: dict[str, Any] = {}
    origins: dict[str, str] = {}
    for s in SETTINGS:
        values[s.name], origins[s.name] = _resolve(s, sources)
    _check_combinations(values, origins, warnings)
    _check_mounts(app, values["mount"])
    return Config(app, values, origins, warnings)


def _check_mounts(app: str | None, mounts: list[tuple[str, str]]) -> None:
    """One application per prefix; an APP beside --mount is the one at /."""
    prefixes = [prefix for prefix, _ in mounts] + (["/"] if mounts and app else [])
    for prefix in prefixes:
        if prefixes.count(prefix) > 1:
            also = " (an APP given beside --mount is the one at /)" if prefix == "/" else ""
            raise ConfigError(f"--mount: two applications at {prefix!r}{also}")


def _check_combinations(values: dict[str, Any], origins: dict[str, str], warnings: list) -> None:
    """Refuse combinations that cannot work; never ignore an option silently."""
    for name in TLS_OPTIONS[:3]:  # files: as found from here, whatever --chdir says
        if values[name] is not None:
            values[name] = os.path.abspath(values[name])
    try:  # the files are read and the TLS configuration built, as the server will
        check_tls(*(values[name] for name in TLS_OPTIONS))
    except ValueError as e:
        raise ConfigError(str(e)) from None
    if values["reload"] and values["preload"]:
        raise ConfigError("--reload cannot be combined with --preload")
    if values["workers"] == 0:
        for name in NEED_MASTER:
            if origins[name] != "default" and values[name]:
                raise ConfigError(
                    f"{BY_NAME[name].flag} needs a master process, which --workers 0 does not "
                    "start; use --workers 1 (the default) or more"
                )
        if values["preload"]:
            warnings.append("--preload has no effect with --workers 0: the application is "
                            "loaded once, in this process, anyway")  # fmt: skip
        if values["max_requests"]:
            warnings.append("--max-requests with --workers 0: the server stops (and does not "
                            "restart) after that many requests")  # fmt: skip


def build_parser(version: str = "") -> argparse.ArgumentParser:
    """The ``ferrowsgi`` argument parser, generated from :data:`SETTINGS`.

    Flags default to "not given" (absent from the namespace), so lower-precedence
    sources can fill them in. Parse errors raise :class:`ConfigError`.
    """
    import argparse

    class Parser(argparse.ArgumentParser):
        def error(self, message: str) -> Any:  # argparse prints usage and exits; we raise
            raise ConfigError(message)

    def formatter(prog: str) -> argparse.HelpFormatter:
        # The width given, so that argparse does not import shutil (and bz2, lzma...)
        # for it in the master, whose memory every worker inherits.
        columns = os.environ.get("COLUMNS", "")
        try:
            width = int(columns) if columns.isdigit() else os.get_terminal_size().columns
        except OSError:
            width = 80
        return argparse.HelpFormatter(prog, width=max(width, 40) - 2)

    parser = Parser(
        prog="ferrowsgi",
        formatter_class=formatter,
        allow_abbrev=False,
        description="Serve a WSGI application (PEP 3333).",
        epilog="APP is module:callable, module:factory(), path/to/file.py[:callable] or a "
        "module (callable 'application', then 'app'); without APP a demo app answers. "
        "Precedence: command line > FERROWSGI_<NAME> environment variables > config file "
        "> defaults. `ferrowsgi top [METRICS_URL]` is a live view of a running server "
        "(ferrowsgi top --help).",
    )
    parser.add_argument("app", nargs="?", metavar="APP", help="the WSGI application")
    for s in SETTINGS:
        if s.flag is None:
            continue
        flags = [s.short, s.flag] if s.short else [s.flag]
        action = "store_true" if s.boolean else "append" if s.multiple else "store"
        parser.add_argument(
            *flags,
            *s.gunicorn_flags,
            dest=s.name,
            default=argparse.SUPPRESS,
            action=action,
            **({} if s.boolean else {"metavar": s.metavar}),
            # argparse %-formats help texts: a literal '%' (access-log atoms) is '%%'.
            help=f"{s.help} [default: {shown_default(s)}; env: {s.env}]".replace("%", "%%"),
        )
    parser.add_argument("--version", action="version", version=f"ferrowsgi {version}")
    return parser


def shown_default(s: Setting) -> str:
    """The default as the help and the README show it."""
    if s.boolean:
        return "on" if s.default else "off"
    if s.default is None:
        return "none"
    if s.multiple:
        return ",".join(s.default)
    if s.name == "unix_socket_mode":
        return f"{s.default:o}"
    if isinstance(s.default, float) and s.default.is_integer():
        return str(int(s.default))
    return str(s.default) if s.default != "" else "''"


def check_api(options: Mapping[str, Any], allowed: Sequence[str]) -> dict[str, Any]:
    """Check Python-API keyword options (``serve(app, threads=4, ...)``) by the table.

    ``allowed``: the option names this entry point takes. Returns the checked values.
    Raises ``TypeError`` for a name not allowed (with the nearest allowed name, if
    one is close), ``ValueError`` for a bad value.
    """
    checked: dict[str, Any] = {}
    for name, raw in options.items():
        if name not in allowed:
            raise TypeError(f"unexpected option {name!r}{_did_you_mean(name, allowed)}")
        try:
            checked[name] = BY_NAME[name].parse(raw)
        except ValueError as e:
            raise ValueError(f"{name}: {e}") from None
    return checked


def _did_you_mean(name: str, known: Sequence[str]) -> str:
    import difflib

    close = difflib.get_close_matches(name, list(known), n=1, cutoff=0.6)
    return f"; did you mean {close[0]!r}?" if close else ""


def _resolve(setting: Setting, sources: list[tuple[str, Mapping[str, Any]]]) -> tuple[Any, str]:
    """The checked value from the first source that has one, and where it came from."""
    for origin, values in sources:
        if setting.name not in values:
            continue
        from_env = origin == "env"
        origin = setting.env if from_env and setting.env else origin
        try:
            return setting.parse(values[setting.name], split_commas=from_env), origin
        except ValueError as e:
            where = "" if origin == "command line" else f" (from {origin})"
            raise ConfigError(f"{setting.label}: {e}{where}") from None
    return setting.default, "default"


def _read_config_file(path: str, warnings: list[str]) -> dict[str, Any]:
    """Run the config file; return its option values by name. gunicorn's spellings
    are accepted; unknown lowercase names and gunicorn hooks warn."""
    import runpy
    import traceback

    if not os.path.isfile(path):
        raise ConfigError(f"--config: no such file: {path!r}")
    try:
        namespace = runpy.run_path(path, run_name="__config__")
    except Exception as e:
        frames = [f for f in traceback.extract_tb(e.__traceback__) if f.filename == path]
        line = f", line {frames[-1].lineno}" if frames else ""
        raise ConfigError(f"config file {path}{line}: {type(e).__name__}: {e}") from None
    found: dict[str, Any] = {}
    for name, value in namespace.items():
        known = BY_NAME.get(name) or BY_NAME.get(_ALIASES.get(name, ""))
        if known is not None and known.name != "config":
            found[known.name] = value
        elif name in GUNICORN_HOOKS:
            warnings.append(f"config file {path}: server hook {name!r} is not run by ferrowsgi")
        elif name.islower() and not name.startswith("_") and not _is_code(value):
            hint = _did_you_mean(name, [*BY_NAME, *_ALIASES])
            warnings.append(f"config file {path}: unknown setting {name!r} ignored{hint}")
    return found


def _is_code(value: Any) -> bool:
    return callable(value) or type(value).__name__ == "module"


def _unknown_env_names(environ: Mapping[str, str]) -> list[str]:
    known = {s.env for s in SETTINGS if s.env}
    names = [s.env.removeprefix(ENV_PREFIX) for s in SETTINGS if s.env]
    return [
        f"unknown environment variable {k} ignored"
        + _did_you_mean(k.removeprefix(ENV_PREFIX), names)
        for k in sorted(environ)
        if k.startswith(ENV_PREFIX) and k not in known
    ]
