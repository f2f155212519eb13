"""Netlink for the core and its modules: message headers and attributes, sockets, address dumps.

The agent picks its address from an RTM_GETADDR dump; the tcp module dumps and follows the same
messages to know which addresses are local in a namespace, and frames its sock_diag requests and
answers with the same headers and attributes.

Walkers yield offsets into the datagram instead of slicing, and stop at the
first length that does not fit, so a truncated or hostile reply ends the walk
rather than raising (the caller counts it).
"""

from __future__ import annotations

import errno
import os
import select
import socket
import struct
import time
from collections import Counter
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path

NLMSG_ERROR = 2
NLMSG_DONE = 3
NLM_F_REQUEST = 0x1
NLM_F_MULTI = 0x2
NLM_F_DUMP = 0x300

NETLINK_ROUTE = 0
NETLINK_SOCK_DIAG = 4

NLMSGHDR = struct.Struct("=IHHII")
"""nlmsg_len, nlmsg_type, nlmsg_flags, nlmsg_seq, nlmsg_pid (host byte order)."""
SO_RCVBUFFORCE = 33  # Linux; not exported by Python's socket module
RTATTR = struct.Struct("=HH")
ERRNO = struct.Struct("=i")

RTM_NEWLINK = 16
RTM_DELLINK = 17
RTM_NEWADDR = 20
RTM_GETADDR = 22
RTMGRP_LINK = 0x1
IFINFOMSG = struct.Struct("=BxHiII")
"""ifi_family, ifi_type, ifi_index, ifi_flags, ifi_change."""
IFLA_IFNAME = 3
AF_BRIDGE = 7
IFADDRMSG = struct.Struct("=BBBBI")
"""ifa_family, ifa_prefixlen, ifa_flags, ifa_scope, ifa_index."""
IFA_ADDRESS = 1
IFA_LOCAL = 2

RECV_BYTES = 1 << 16
"""Large enough for any one netlink datagram the kernel sends these sockets."""
RCVBUF_BYTES = 1 << 20
"""Room for a burst of replies; a full buffer loses replies (ENOBUFS) and their samples go without."""


def align4(n: int) -> int:
    return (n + 3) & ~3


def header(length: int, msg_type: int, flags: int, seq: int) -> bytes:
    return NLMSGHDR.pack(NLMSGHDR.size + length, msg_type, flags, seq & 0xFFFFFFFF, 0)


def messages(data: bytes) -> Iterator[tuple[int, int, int, int, int]]:
    """(type, flags, seq, payload start, payload end) of each whole message in a datagram."""
    off = 0
    end = len(data)
    while off + NLMSGHDR.size <= end:
        length, msg_type, flags, seq, _ = NLMSGHDR.unpack_from(data, off)
        if length < NLMSGHDR.size or off + length > end:
            return
        yield msg_type, flags, seq, off + NLMSGHDR.size, off + length
        off += align4(length)


def attributes(data: bytes, off: int, end: int) -> Iterator[tuple[int, int, int]]:
    """(type, value start, value end) of each attribute between ``off`` and ``end``; flag bits masked off."""
    while off + RTATTR.size <= end:
        length, attr_type = RTATTR.unpack_from(data, off)
        if length < RTATTR.size or off + length > end:
            return
        yield attr_type & 0x3FFF, off + RTATTR.size, off + length
        off += align4(length)


def error_code(data: bytes, start: int, end: int) -> int:
    """The positive errno of an NLMSG_ERROR payload (0 is an acknowledgement)."""
    if end - start < ERRNO.size:
        return 0
    return -ERRNO.unpack_from(data, start)[0]


def open_socket(protocol: int, groups: int = 0) -> socket.socket:
    """A non-blocking netlink socket in the calling thread's network namespace."""
    sock = socket.socket(socket.AF_NETLINK, socket.SOCK_DGRAM | socket.SOCK_NONBLOCK | socket.SOCK_CLOEXEC, protocol)
    try:
        try:  # as root, past net.core.rmem_max
            sock.setsockopt(socket.SOL_SOCKET, SO_RCVBUFFORCE, RCVBUF_BYTES)
        except PermissionError:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, RCVBUF_BYTES)
        sock.bind((0, groups))
    except BaseException:
        sock.close()
        raise
    return sock


def dump_request(seq: int) -> bytes:
    """RTM_GETADDR for every address of every family."""
    body = IFADDRMSG.pack(socket.AF_UNSPEC, 0, 0, 0, 0)
    return header(len(body), RTM_GETADDR, NLM_F_REQUEST | NLM_F_DUMP, seq) + body


def decode_address(data: bytes, start: int, end: int) -> tuple[int, bytes] | None:
    """(ifindex, packed address) of an RTM_NEWADDR/RTM_DELADDR payload.

    IFA_LOCAL is the interface's own address; IFA_ADDRESS is the peer's on a
    point-to-point link and the only one sent for most IPv6 addresses.
    """
    if end - start < IFADDRMSG.size:
        return None
    family, _, _, _, index = IFADDRMSG.unpack_from(data, start)
    width = 4 if family == socket.AF_INET else 16 if family == socket.AF_INET6 else 0
    found: dict[int, bytes] = {}
    for attr, a, b in attributes(data, start + IFADDRMSG.size, end):
        if attr in (IFA_ADDRESS, IFA_LOCAL) and width and b - a == width:
            found[attr] = bytes(data[a:b])
    address = found.get(IFA_LOCAL) or found.get(IFA_ADDRESS)
    return None if address is None else (index, address)


def dump_addresses(timeout: float = 2.0) -> list[tuple[int, bytes]]:
    """(ifindex, packed address) of every address in the calling thread's namespace, from one
    RTM_GETADDR dump; blocks up to ``timeout`` (TimeoutError), OSError if the kernel refuses.

    Not psutil's getifaddrs: that dumps every link with its statistics too, and holds the
    interpreter lock while it does (78 ms with 2,300 interfaces, a stall of the agent's loop
    even from a thread); this dump carries addresses only."""
    out: list[tuple[int, bytes]] = []
    deadline = time.monotonic() + timeout
    with open_socket(NETLINK_ROUTE) as sock:
        sock.send(dump_request(1))
        while True:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([sock], [], [], left)[0]:
                raise TimeoutError("no answer to RTM_GETADDR")
            data = sock.recv(RECV_BYTES)
            for msg_type, _, _, start, end in messages(data):
                if msg_type == NLMSG_DONE:
                    return out
                if msg_type == NLMSG_ERROR:
                    code = error_code(data, start, end)
                    raise OSError(code, f"RTM_GETADDR refused: {os.strerror(code)}")
                if msg_type == RTM_NEWADDR and (entry := decode_address(data, start, end)) is not None:
                    out.append(entry)


@dataclass(frozen=True)
class Announced:
    """What a check of the interfaces reads again: ``everything``, or the links in ``links``."""

    everything: bool
    links: Mapping[int, str | None] = field(default_factory=dict)
    """ifindex → the link's name as last announced, None once it was removed."""


def decode_link(data: bytes, start: int, end: int) -> tuple[int, int, str | None] | None:
    """(family, ifindex, name) of an RTM_NEWLINK/RTM_DELLINK payload; None if it is too short."""
    if end - start < IFINFOMSG.size:
        return None
    family, _, index, _, _ = IFINFOMSG.unpack_from(data, start)
    name = next(
        (
            bytes(data[a:b]).split(b"\0", 1)[0].decode(errors="replace")
            for attr, a, b in attributes(data, start + IFINFOMSG.size, end)
            if attr == IFLA_IFNAME
        ),
        None,
    )
    return family, index, name


class LinkChanges:
    """Which links the kernel announced (RTM_NEWLINK/RTM_DELLINK: an interface added, removed,
    renamed, up or down, enslaved) since the last question: a check of the interfaces reads
    those from /sys, not every interface every ``checkAdaptors`` (40 files per interface,
    container veths included).

    A bridge repeats each change of a port in a message of family AF_BRIDGE (its port state,
    for STP), sent alongside the link's own: those add nothing and are only counted.

    The first question answers ``everything``, so the socket may open before a first full read;
    so does one after ``refresh_s`` without any (the established agent's ``refreshAdaptors``:
    what no event announces, such as a speed renegotiated without a carrier change, is read
    then), one after the socket overran (lost announcements), and every one when the interfaces
    are read from a tree other than ``/`` (a test's), which no kernel announces changes of.
    """

    def __init__(self, root: Path) -> None:
        self._sock = open_socket(NETLINK_ROUTE, RTMGRP_LINK) if root == Path("/") else None
        self._read_at: float | None = None
        self.stats: Counter[str] = Counter()
        """``link_events`` (each a link to read again), ``bridge_events`` (ignored), ``overruns``."""

    def changes(self, refresh_s: float) -> Announced:
        now = time.monotonic()
        announced = self._drain()
        if announced is None or self._read_at is None or now - self._read_at >= refresh_s:
            self._read_at = now
            return Announced(everything=True)
        return Announced(everything=False, links=announced)

    def read_all_next(self) -> None:
        """The links announced were not read (the read failed): the next question answers ``everything``."""
        self._read_at = None

    def _drain(self) -> dict[int, str | None] | None:
        """The links announced since the last drain; None when they must all be read (no socket, an overrun)."""
        if self._sock is None:
            return None
        links: dict[int, str | None] = {}
        complete = True
        while True:
            try:
                data = self._sock.recv(RECV_BYTES)
            except BlockingIOError:
                return links if complete else None
            except OSError as err:
                if err.errno != errno.ENOBUFS:
                    raise
                self.stats["overruns"] += 1
                complete = False
                continue
            for msg_type, _, _, start, end in messages(data):
                link = decode_link(data, start, end) if msg_type in (RTM_NEWLINK, RTM_DELLINK) else None
                if link is None:
                    continue
                family, index, name = link
                if family == AF_BRIDGE:
                    self.stats["bridge_events"] += 1
                    continue
                self.stats["link_events"] += 1
                if msg_type == RTM_NEWLINK and name is None:
                    complete = False  # no name to read it by (the kernel always sends one)
                links[index] = None if msg_type == RTM_DELLINK else name

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None
