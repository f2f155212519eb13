"""UDP delivery of datagrams to every configured collector.

Sending never blocks the agent and never raises: a collector that is
unreachable (ICMP port unreachable surfaces as ECONNREFUSED on a later send,
no route as ENETUNREACH) is counted and logged once per fault, and sending
resumes by itself when the path comes back.
"""

from __future__ import annotations

import errno
import logging
import socket
from dataclasses import dataclass, field

log = logging.getLogger("hsflowd.receivers")

_TRANSIENT = {errno.ECONNREFUSED, errno.ENETUNREACH, errno.EHOSTUNREACH, errno.EAGAIN, errno.ENOBUFS, errno.EPERM}


@dataclass
class Receiver:
    """One collector: its address as configured, its resolved socket address, counters."""

    host: str
    port: int
    sockaddr: tuple | None = None
    family: int = socket.AF_INET
    sent: int = 0
    errors: int = 0
    failing: str | None = field(default=None)
    """The send fault being reported, so each fault is logged once, not once per datagram."""
    unresolved: str | None = field(default=None)
    """The same for name resolution, which fails and recovers independently of sending."""

    @property
    def label(self) -> str:
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"


def resolve(host: str, port: int) -> tuple[int, tuple]:
    """Resolve a collector name or literal; raises OSError when it cannot be resolved."""
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_DGRAM, proto=socket.IPPROTO_UDP)
    family, _, _, _, sockaddr = infos[0]
    return family, sockaddr


class Receivers:
    """The set of collectors; each datagram goes to every one of them."""

    def __init__(self) -> None:
        self.receivers: list[Receiver] = []
        self._sockets: dict[int, socket.socket] = {}

    def configure(self, targets: list[tuple[str, int]]) -> None:
        """Replace the collector list, keeping counters of collectors that stay."""
        old = {(r.host, r.port): r for r in self.receivers}
        self.receivers = [old.get((h, p)) or Receiver(h, p) for h, p in targets]
        self.refresh()

    def refresh(self) -> None:
        """(Re)resolve host names; a name that stops resolving keeps its last address."""
        for r in self.receivers:
            try:
                r.family, r.sockaddr = resolve(r.host, r.port)
            except OSError as e:
                kept = f", keeping {r.sockaddr[0]}" if r.sockaddr else ""
                if r.unresolved is None:
                    log.warning("collector %s: cannot resolve%s: %s", r.label, kept, e)
                r.unresolved = str(e)
                continue
            if r.unresolved is not None:
                log.info("collector %s: resolves again, to %s", r.label, r.sockaddr[0])
                r.unresolved = None

    def _socket(self, family: int) -> socket.socket:
        sock = self._sockets.get(family)
        if sock is None:
            sock = socket.socket(family, socket.SOCK_DGRAM)
            sock.setblocking(False)
            self._sockets[family] = sock
        return sock

    def _fault(self, r: Receiver, why: str) -> None:
        r.errors += 1
        if r.failing != why:
            log.warning("collector %s: %s", r.label, why)
            r.failing = why

    def send(self, datagram: bytes) -> None:
        for r in self.receivers:
            if r.sockaddr is None:
                r.errors += 1  # never resolved: counted, already logged by refresh()
                continue
            try:
                self._socket(r.family).sendto(datagram, r.sockaddr)
            except OSError as e:
                if e.errno not in _TRANSIENT:
                    log.debug("collector %s: unexpected send error", r.label, exc_info=True)
                self._fault(r, f"send failed: {e.strerror or e}")
                continue
            r.sent += 1
            if r.failing is not None:
                log.info("collector %s: sending again", r.label)
                r.failing = None

    def close(self) -> None:
        for sock in self._sockets.values():
            sock.close()
        self._sockets.clear()
