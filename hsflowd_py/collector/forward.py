"""``-f HOST/PORT``: re-send every received datagram, byte for byte, to more collectors.

Each target has its own non-blocking UDP socket, so a target that is down
or slow can only fill its own send buffer: a send that would block is
dropped and counted, never waited for, and the other targets and the
decoding carry on at full speed.

The sockets are connected so that the kernel reports an ICMP "port
unreachable" from a stopped target (``ECONNREFUSED``): operators see the
target is down in the error count.  Linux reports that error on the *next*
send, which then sends nothing, so the send is tried once more: the
datagram that met the error still goes out, and a target that comes back
loses nothing to a stale error.
"""

from __future__ import annotations

import errno
import socket
from dataclasses import dataclass, field

__all__ = ["ForwardTarget", "Forwarder", "parse_target"]


class TargetError(ValueError):
    """A ``-f`` argument that is not HOST/PORT or does not resolve."""


def parse_target(text: str) -> tuple[str, int]:
    """``HOST/PORT`` (IPv4, IPv6 or a name; IPv6 may be bracketed) → (host, port)."""
    host, sep, port_text = text.rpartition("/")
    host = host.strip("[]")
    if not sep or not host or not port_text.isdigit() or not 0 < int(port_text) < 65536:
        raise TargetError(f"forwarding target {text!r} is not HOST/PORT (e.g. 127.0.0.1/6343 or ::1/6343)")
    return host, int(port_text)


@dataclass
class ForwardTarget:
    """One destination and what happened to the datagrams sent there."""

    name: str
    sock: socket.socket
    sent: int = 0
    errors: int = 0
    error_kinds: dict[str, int] = field(default_factory=dict)

    def send(self, payload: bytes) -> None:
        for attempt in (1, 2):
            try:
                self.sock.send(payload)
                self.sent += 1
                return
            except OSError as e:
                self._count(e)
                if e.errno != errno.ECONNREFUSED or attempt == 2:
                    return

    def _count(self, e: OSError) -> None:
        kind = errno.errorcode.get(e.errno or 0, "error")
        self.errors += 1
        self.error_kinds[kind] = self.error_kinds.get(kind, 0) + 1


def _open(host: str, port: int) -> socket.socket:
    try:
        family, kind, proto, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_DGRAM)[0]
    except socket.gaierror as e:
        raise TargetError(f"forwarding target {host}/{port}: {e.strerror}") from None
    sock = socket.socket(family, kind, proto)
    sock.setblocking(False)
    try:
        sock.connect(address)
    except OSError as e:
        sock.close()
        raise TargetError(f"forwarding target {host}/{port}: {e.strerror}") from None
    return sock


class Forwarder:
    """Sends each datagram to every target; never blocks, never raises."""

    def __init__(self, targets: list[tuple[str, int]]) -> None:
        self.targets: list[ForwardTarget] = []
        try:
            for host, port in targets:
                name = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
                self.targets.append(ForwardTarget(name, _open(host, port)))
        except TargetError:
            self.close()
            raise

    def send(self, payload: bytes) -> None:
        for target in self.targets:
            target.send(payload)

    def close(self) -> None:
        for target in self.targets:
            target.sock.close()

    def summary(self) -> list[str]:
        out = []
        for t in self.targets:
            kinds = ", ".join(f"{k} {n}" for k, n in sorted(t.error_kinds.items()))
            out.append(f"forwarded to {t.name}: {t.sent} sent, {t.errors} errors" + (f" ({kinds})" if kinds else ""))
        return out
