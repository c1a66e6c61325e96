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

from . import _ferrowsgi
from .logs import log

__all__ = ["Listeners"]


class Bound:
    """One listening socket of the master: its fd, its kind ("tcp", "unix" or "fd"),
    the address it is bound to (``(host, port)`` or a unix socket path), the
    ``--bind`` value a worker serves it with (``fd://N``, ``uwsgi://fd://N``, ...) and
    its URL for the "Listening at" line."""

    __slots__ = ("address", "fd", "handover", "kind", "url")

    def __init__(
        self, fd: int, kind: str, address: tuple[str, int] | str, handover: str, url: str
    ) -> None:
        self.fd, self.kind, self.address, self.handover, self.url = fd, kind, address, handover, url

    @property
    def scheme(self) -> str:
        """The protocol prefix of the bind (``""``, ``"uwsgi://"``, ``"fcgi://"``)."""
        return self.handover[: self.handover.rindex("fd://")]


class Listeners:
    """Listening sockets by worker slot (one shared set without --reuse-port).

    Raw file descriptors: the master never serves on them, so it needs neither
    Python's socket module nor socket objects.
    """

    def __init__(
        self, base: list[Bound], reuse_port: bool, backlog: int, unix_mode: int, tls: bool
    ) -> None:
        self.slots: dict[int, list[Bound]] = {0: base}
        self.reuse_port = reuse_port
        self.backlog = backlog
        self.unix_mode = unix_mode
        self.tls = tls
        self.unix_paths = [str(b.address) for b in base if b.kind == "unix"]
        self.metrics: Bound | None = None  # --metrics-bind: shared by every worker

    @classmethod
    def bind(
        cls, binds: list[str], backlog: int, reuse_port: bool, unix_mode: int, tls: bool
    ) -> Listeners:
        """Bind every address (or take systemd's sockets); ``unix_mode``: permission
        bits of unix socket files; ``tls``: HTTP listeners speak TLS (their URLs are
        ``https://``). Raises ``OSError``."""
        inherited = systemd_fds()
        if inherited:
            log.info("Using %d socket(s) passed by systemd (LISTEN_FDS)", len(inherited))
            binds = [f"fd://{fd}" for fd in inherited]
        sockets: list[Bound] = []
        try:
            for bind in binds:
                sockets.append(_listen(bind, backlog, reuse_port, unix_mode, tls))
        except OSError:
            for b in sockets:
                os.close(b.fd)
            raise
        return cls(sockets, reuse_port, backlog, unix_mode, tls)

    def bind_metrics(self, bind: str | None) -> None:
        """Bind the ``/metrics`` listener (``--metrics-bind``), if asked. Raises
        ``OSError``."""
        if bind is not None:
            self.metrics = _listen(bind, self.backlog, False, self.unix_mode, False)
            if self.metrics.kind == "unix":
                self.unix_paths.append(str(self.metrics.address))

    def for_slot(self, slot: int) -> list[Bound]:
        """The sockets a worker in ``slot`` serves on (made now if new)."""
        if not self.reuse_port:
            return self.slots[0]
        if slot not in self.slots:
            self.slots[slot] = [self._twin(b) for b in self.slots[0]]
        return self.slots[slot]

    def hand_over(self, slot: int) -> list[str]:
        """In a new worker: the ``--bind`` values of its slot's sockets (``fd://N``,
        ``uwsgi://fd://N``...), which Rust will own; the sockets of other slots
        closed (in this process only)."""
        mine = self.for_slot(slot)
        for other, sockets in self.slots.items():
            if other != slot:
                for b in sockets:
                    if all(b is not m for m in mine):
                        os.close(b.fd)
        return [b.handover for b in mine]

    def release(self, used: set[int]) -> None:
        """Close the sockets of slots no worker uses any more (slot 0 stays)."""
        for slot in [s for s in self.slots if s and s not in used]:
            for b in self.slots.pop(slot):
                if all(b is not x for x in self.slots[0]):
                    os.close(b.fd)

    def urls(self) -> list[str]:
        """What slot 0 is bound to, as the "Listening at" line shows it."""
        return [b.url for b in self.slots.get(0, [])]

    def addresses(self) -> list[tuple[str, int] | str]:
        """What slot 0 is bound to: ``(host, port)`` for TCP, the path for unix."""
        return [b.address for b in self.slots.get(0, [])]

    def close(self) -> None:
        """Close every socket and remove the unix socket files we made. Idempotent."""
        closed: set[int] = set()
        for sockets in self.slots.values():
            for b in sockets:
                if id(b) not in closed:
                    closed.add(id(b))
                    os.close(b.fd)
        self.slots = {}
        if self.metrics is not None:
            os.close(self.metrics.fd)
            self.metrics = None
        for path in self.unix_paths:
            try:
                os.unlink(path)
            except OSError:
                pass
        self.unix_paths = []

    def _twin(self, base: Bound) -> Bound:
        if base.kind != "tcp":
            return base  # unix or inherited: shared by every slot
        host, port = base.address
        address = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
        return _listen(base.scheme + address, self.backlog, True, self.unix_mode, self.tls)


def systemd_fds() -> list[int]:
    """The fds systemd passed (socket activation), or []; consumes the variables."""
    if os.environ.get("LISTEN_PID") != str(os.getpid()):
        return []
    count = os.environ.get("LISTEN_FDS", "")
    for name in ("LISTEN_PID", "LISTEN_FDS", "LISTEN_FDNAMES"):
        os.environ.pop(name, None)
    return list(range(3, 3 + int(count))) if count.isdigit() else []


def _listen(bind: str, backlog: int, reuse_port: bool, unix_mode: int, tls: bool) -> Bound:
    """One socket for a checked bind string."""
    fd, address, handover, url = _ferrowsgi.bind_socket(bind, backlog, reuse_port, unix_mode, tls)
    plain = bind.split("://", 1)[1] if bind.startswith(("uwsgi://", "fcgi://")) else bind
    kind = "fd" if plain.startswith("fd://") else "unix" if plain.startswith("unix:") else "tcp"
    return Bound(fd, kind, address, handover, url)
