"""The master's listening sockets: bound once, before any worker exists.

Rules this module keeps:

* Addresses are parsed and bound by the native core (``_ferrowsgi.bind_socket``,
  the parser and binding a one-process server uses): TCP sockets get
  ``SO_REUSEADDR`` and the backlog; a unix socket file left by a dead server is
  replaced (any other file is an error) and is removed again when the master
  closes it; ``fd://N`` is checked and used as it is.
* Systemd socket activation: when ``LISTEN_PID`` is this process and
  ``LISTEN_FDS`` is N, fds 3..3+N-1 are the sockets and ``--bind`` is ignored;
  the variables are then removed so that no child takes them for its own.
* With ``--reuse-port`` each worker slot gets its own ``SO_REUSEPORT`` TCP
  socket on the same address (slot 0's, so port 0 works); unix and inherited
  sockets stay shared. A slot's sockets outlive its worker: the replacement
  takes them over, with the connections waiting in their queue.
* A failed bind raises ``OSError`` whose ``filename`` is the bind string.
"""

from __future__ import annotations

import os
import socket

from . import _ferrowsgi
from .logs import log

__all__ = ["Listeners"]


class Listeners:
    """Listening sockets by worker slot (one shared set without --reuse-port)."""

    def __init__(self, base: list[tuple[socket.socket, str]], reuse_port: bool, backlog: int):
        self.slots: dict[int, list[socket.socket]] = {0: [s for s, _ in base]}
        self.kinds = [kind for _, kind in base]  # "tcp", "unix" (both bound here) or "fd"
        self.reuse_port = reuse_port
        self.backlog = backlog
        self.unix_paths = [s.getsockname() for s, kind in base if kind == "unix"]

    @classmethod
    def bind(cls, binds: list[str], backlog: int, reuse_port: bool) -> Listeners:
        """Bind every address (or take systemd's sockets). Raises ``OSError``."""
        inherited = systemd_fds()
        if inherited:
            log.info("Using %d socket(s) passed by systemd (LISTEN_FDS)", len(inherited))
            binds = [f"fd://{fd}" for fd in inherited]
        sockets: list[tuple[socket.socket, str]] = []
        try:
            for bind in binds:
                sockets.append(_listen(bind, backlog, reuse_port))
        except OSError as e:
            for s, _ in sockets:
                s.close()
            raise OSError(e.errno, e.strerror, bind) from None
        return cls(sockets, reuse_port, backlog)

    def for_slot(self, slot: int) -> list[socket.socket]:
        """The sockets a worker in ``slot`` serves on (made now if new)."""
        if not self.reuse_port:
            return self.slots[0]
        if slot not in self.slots:
            self.slots[slot] = [self._twin(s, k) for s, k in zip(self.slots[0], self.kinds)]
        return self.slots[slot]

    def hand_over(self, slot: int) -> list[int]:
        """In a new worker: the fds of its slot, which Rust will own (detached from
        their Python objects, so nothing closes them twice); other slots closed."""
        mine = self.for_slot(slot)
        for other, sockets in self.slots.items():
            if other != slot:
                for s in sockets:
                    if all(s is not m for m in mine):
                        s.close()
        return [s.detach() for s in mine]

    def release(self, used: set[int]) -> None:
        """Close the sockets of slots no worker uses any more (slot 0 stays)."""
        for slot in [s for s in self.slots if s and s not in used]:
            for s in self.slots.pop(slot):
                if all(s is not b for b in self.slots[0]):
                    s.close()

    def addresses(self) -> list[tuple[str, int] | str]:
        """What slot 0 is bound to: ``(host, port)`` for TCP, the path for unix."""
        return [s.getsockname() for s in self.slots.get(0, [])]

    def close(self) -> None:
        """Close every socket and remove the unix socket files we made. Idempotent."""
        for sockets in self.slots.values():
            for s in sockets:
                s.close()
        self.slots = {}
        for path in self.unix_paths:
            try:
                os.unlink(path)
            except OSError:
                pass
        self.unix_paths = []

    def _twin(self, base: socket.socket, kind: str) -> socket.socket:
        if kind != "tcp":
            return base  # unix or inherited: shared by every slot
        host, port = base.getsockname()[:2]
        address = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
        return _listen(address, self.backlog, reuse_port=True)[0]


def systemd_fds() -> list[int]:
    """The fds systemd passed (socket activation), or []; consumes the variables."""
    if os.environ.get("LISTEN_PID") != str(os.getpid()):
        return []
    count = os.environ.get("LISTEN_FDS", "")
    for name in ("LISTEN_PID", "LISTEN_FDS", "LISTEN_FDNAMES"):
        os.environ.pop(name, None)
    return list(range(3, 3 + int(count))) if count.isdigit() else []


def _listen(bind: str, backlog: int, reuse_port: bool) -> tuple[socket.socket, str]:
    """One socket for a checked bind string, and its kind ("tcp", "unix" or "fd")."""
    sock = socket.socket(fileno=_ferrowsgi.bind_socket(bind, backlog, reuse_port))
    kind = "fd" if bind.startswith("fd://") else "unix" if bind.startswith("unix:") else "tcp"
    return sock, kind
