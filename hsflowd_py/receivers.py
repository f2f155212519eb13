"""UDP delivery of datagrams to every configured collector.

Sending never blocks the agent and never raises: a collector that is
unreachable (ICMP port unreachable surfaces as ECONNREFUSED on a later send,
no route as ENETUNREACH) is counted and logged once per fault, and sending
resumes by itself when the path comes back.  Each collector has a socket of its
own, connected to it: the kernel reports ICMP errors only on a connected UDP
socket, and only then to the collector they are about.  A refused collector
is logged as sending again once ``QUIET_S`` pass without a refusal (the kernel
reports at most one refusal per ICMP error, so one good send proves nothing).  Collector names are resolved off
the event loop: a resolver that does not answer would otherwise stall sampling
for its whole timeout, every ``checkAdaptors`` seconds.  A collector with a
``dev`` is sent to through a socket bound to that device (SO_BINDTODEVICE), as
for a management VRF.
"""

from __future__ import annotations

import asyncio
import errno
import logging
import os
import socket
import time
from dataclasses import dataclass, field

from .datagram_batch import DatagramBatch

log = logging.getLogger("hsflowd.receivers")

_TRANSIENT = {errno.ECONNREFUSED, errno.ENETUNREACH, errno.EHOSTUNREACH, errno.EAGAIN, errno.ENOBUFS, errno.EPERM}
_UDP_HINTS = {"type": socket.SOCK_DGRAM, "proto": socket.IPPROTO_UDP}
QUIET_S = 10.0
"""Seconds without a fault after which a faulty collector is logged as sending again."""

Target = tuple[str, int, str | None]
"""A collector as configured: host (address or name), UDP port, device to send through or None."""


@dataclass(eq=False)
class Receiver:
    """One collector: its address as configured, its resolved socket address, counters."""

    host: str
    port: int
    dev: str | None = None
    sockaddr: tuple | None = None
    family: int = socket.AF_INET
    sent: int = 0
    errors: int = 0
    refused: int = 0
    """ICMP port unreachable answers from the collector's host (reported on a later send)."""
    failing: str | None = field(default=None)
    """The send fault being reported, so each fault is logged once, not once per datagram."""
    last_fault: float = 0.0
    refusing: bool = False
    """The fault being reported is a refusal, which the kernel reports on every other send only."""
    sock: socket.socket | None = None
    """Connected to ``sockaddr``; made on the first send, remade when the address changes."""
    unresolved: str | None = field(default=None)
    """The same for name resolution, which fails and recovers independently of sending."""
    resolving: asyncio.Task[None] | None = None
    """The name's resolution under way, if any (one at a time)."""

    @property
    def label(self) -> str:
        address = f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"
        return f"{address}%{self.dev}" if self.dev else address

    def counters(self) -> dict[str, int]:
        return {"sent": self.sent, "errors": self.errors, "refused": self.refused}

    def resolved(self, family: int, sockaddr: tuple) -> None:
        if (family, sockaddr) != (self.family, self.sockaddr):
            self.close()
        self.family, self.sockaddr = family, sockaddr
        if self.unresolved is not None:
            log.info("collector %s: resolves again, to %s", self.label, sockaddr[0])
            self.unresolved = None

    def not_resolved(self, e: OSError) -> None:
        """Keep the last address; log the fault once."""
        kept = f", keeping {self.sockaddr[0]}" if self.sockaddr else ""
        if self.unresolved is None:
            log.warning("collector %s: cannot resolve%s: %s", self.label, kept, e)
        self.unresolved = str(e)

    def socket(self) -> socket.socket:
        if self.sock is None:
            sock = socket.socket(self.family, socket.SOCK_DGRAM)
            try:
                sock.setblocking(False)
                if self.dev:
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_BINDTODEVICE, self.dev.encode())
                sock.connect(self.sockaddr)
            except OSError:
                sock.close()
                raise
            self.sock = sock
        return self.sock

    def close(self) -> None:
        if self.sock is not None:
            self.sock.close()
            self.sock = None


def resolve(host: str, port: int, flags: int = 0) -> tuple[int, tuple]:
    """Resolve a collector name or literal; raises OSError when it cannot be resolved.

    An ASCII host goes to getaddrinfo as bytes: CPython passes a str host through the idna codec, whose
    import (``encodings.idna``, ``stringprep`` and unicodedata's tables, ~270 kB resident) an address
    literal or an ASCII name has no use for; a name with other characters still goes through it, whose
    refusal of a name (an empty or over-long label) is a UnicodeError: raised as the resolver's error,
    so that every caller's handling of a name that does not resolve covers it."""
    try:
        infos = socket.getaddrinfo(host.encode() if host.isascii() else host, port, flags=flags, **_UDP_HINTS)
    except UnicodeError as e:
        raise socket.gaierror(socket.EAI_NONAME, f"{host!r} is not a valid host name ({e})") from None
    family, _, _, _, sockaddr = infos[0]
    return family, sockaddr


class Receivers:
    """The set of collectors; each datagram goes to every one of them."""

    def __init__(self) -> None:
        self.receivers: list[Receiver] = []

    def configure(self, targets: list[Target]) -> None:
        """Replace the collector list, keeping counters of collectors that stay."""
        old = {(r.host, r.port, r.dev): r for r in self.receivers}
        self.receivers = [old.pop(t, None) or Receiver(*t) for t in targets]
        for gone in old.values():
            gone.close()
            if gone.resolving is not None:
                gone.resolving.cancel()
        self.refresh()

    def refresh(self) -> None:
        """(Re)resolve collectors: address literals at once, names in the resolver's thread when
        the agent's loop runs (at once otherwise); a name that stops resolving keeps its last address."""
        try:
            loop: asyncio.AbstractEventLoop | None = asyncio.get_running_loop()
        except RuntimeError:
            loop = None
        for r in self.receivers:
            try:
                r.resolved(*resolve(r.host, r.port, socket.AI_NUMERICHOST))
                continue
            except OSError:
                pass  # a name
            if loop is None:
                try:
                    r.resolved(*resolve(r.host, r.port))
                except OSError as e:
                    r.not_resolved(e)
            elif r.resolving is None:
                r.resolving = loop.create_task(self._resolve_name(r))

    @staticmethod
    async def _resolve_name(r: Receiver) -> None:
        try:
            r.resolved(*await asyncio.get_running_loop().run_in_executor(None, resolve, r.host, r.port))
        except OSError as e:
            r.not_resolved(e)
        finally:
            r.resolving = None

    @staticmethod
    def _fault(r: Receiver, e: OSError) -> None:
        r.last_fault = time.monotonic()
        r.refusing = e.errno == errno.ECONNREFUSED
        if r.refusing:
            r.refused += 1
            why = f"refused (ICMP port unreachable): no collector listening there? ({e.strerror})"
        else:
            r.errors += 1
            why = f"send failed: {e.strerror or e}"
        if r.failing != why:
            log.warning("collector %s: %s", r.label, why)
            r.failing = why

    def send(self, datagrams: list[bytes] | DatagramBatch) -> None:
        """Send datagrams to each collector in turn: a list each in a system call of its own, a batch as
        many in one as the kernel takes (``sendmmsg``).  Either way a drain's datagrams go out in a tight
        loop, with no Python of the sampler's between two system calls."""
        deliver = self._deliver_batch if isinstance(datagrams, DatagramBatch) else self._deliver
        for r in self.receivers:
            if r.sockaddr is None:
                r.errors += len(datagrams)  # never resolved: counted, logged by the resolution
            else:
                deliver(r, datagrams)

    def _deliver(self, r: Receiver, datagrams: list[bytes]) -> None:
        """Datagrams to one collector; a fault is counted for each datagram it hits, and logged once until
        it clears."""
        for datagram in datagrams:
            try:
                sock = r.sock or r.socket()
                try:
                    sock.send(datagram)
                except ConnectionRefusedError as e:
                    # about an earlier datagram (the kernel reports the ICMP error on the next send
                    # and sends nothing): counted, and this one is sent all the same
                    self._fault(r, e)
                    sock.send(datagram)
            except OSError as e:
                self._send_failed(r, e)
                continue
            self._sent(r, 1)

    def _deliver_batch(self, r: Receiver, batch: DatagramBatch) -> None:
        """A batch to one collector, counted as ``_deliver`` counts.  A refusal is about an earlier datagram:
        counted, and the datagram it stopped is sent all the same.  A batch the kernel stops short of its
        end had an error at the first datagram not sent, which it does not say; when that datagram then
        goes, it was the socket's report of an ICMP error, which to a connected UDP socket only a collector
        that does not listen (port unreachable) or a firewall's reject sends: counted as a refusal.  An
        error that stays is raised by the retry, and counted as itself."""
        n = len(batch)
        i = 0
        retried = stopped = -1  # the datagram last sent again after a refusal; the one a batch stopped at
        while i < n:
            try:
                sent = batch.send((r.sock or r.socket()).fileno(), i)
            except OSError as e:
                self._send_failed(r, e)
                stopped = -1
                if e.errno == errno.ECONNREFUSED and retried != i:
                    retried = i
                else:
                    i += 1
                continue
            if stopped == i:
                self._fault(r, ConnectionRefusedError(errno.ECONNREFUSED, os.strerror(errno.ECONNREFUSED)))
            i += sent
            stopped = i
            self._sent(r, sent)

    def _send_failed(self, r: Receiver, e: OSError) -> None:
        if e.errno not in _TRANSIENT:
            log.debug("collector %s: unexpected send error", r.label, exc_info=True)
        self._fault(r, e)

    @staticmethod
    def _sent(r: Receiver, count: int) -> None:
        r.sent += count
        if r.failing is not None and (not r.refusing or time.monotonic() - r.last_fault >= QUIET_S):
            log.info("collector %s: sending again", r.label)
            r.failing = None

    def close(self) -> None:
        for r in self.receivers:
            r.close()
            if r.resolving is not None:
                r.resolving.cancel()
