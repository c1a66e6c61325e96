"""ferrowsgi: a production WSGI server (PEP 3333) with a Rust core.

The Python API: :data:`__version__`, :func:`serve` (blocks and serves) and
:func:`make_server` (a drop-in for ``wsgiref.simple_server.make_server``),
both in :mod:`ferrowsgi.server`, and :func:`mount` (several applications in one,
by URL prefix: :mod:`ferrowsgi.mount`). This module is the library face: it never
imports the command line (:mod:`ferrowsgi.cli`).
"""

from __future__ import annotations

from ._ferrowsgi import __version__
from .mount import mount
from .server import WSGIServer, make_server, serve

__all__ = ["WSGIServer", "__version__", "make_server", "mount", "serve"]
