"""Which socket a packet belongs to, from the kernel's tables: /proc/net/{tcp,tcp6,udp,udp6}.

Used when no sock_diag answer (the tcp module's) names the socket: UDP,
listening sockets, or without the tcp module.  Only sockets owned by tracked
services matter, so the tables are filtered by inode as they are read.

Table facts (net/ipv4/tcp_ipv4.c, net/ipv6/tcp_ipv6.c, net/ipv4/udp.c):

- Columns: ``sl local_address rem_address st tx_queue:rx_queue tr:tm->when
  retrnsmt uid timeout inode …``.  An address is hex of 32-bit words each
  printed in the kernel's byte order (one word for IPv4, four for IPv6), so
  on a little-endian machine each word's bytes are reversed; ports are plain
  hex numbers.
- ``st`` is the TCP state (0A = LISTEN); UDP shows 07 (CLOSE) unless
  connected (01).  TIME_WAIT entries have inode 0: no process owns them.
- A dual-stack IPv6 socket shows IPv4 peers as ``::ffff:a.b.c.d``; those are
  kept as 4-byte IPv4 addresses so they match an IPv4 packet.
- The tables are those of the reader's network namespace.
"""

from __future__ import annotations

import sys
from collections.abc import Iterable
from pathlib import Path
from typing import NamedTuple

from hsflowd_py.packet import IPPROTO_TCP, IPPROTO_UDP
from hsflowd_py.readers import ReaderError, parsing, read_text_if_present

TCP_LISTEN = 0x0A
TABLES = (("tcp", IPPROTO_TCP), ("tcp6", IPPROTO_TCP), ("udp", IPPROTO_UDP), ("udp6", IPPROTO_UDP))
V4_MAPPED = bytes(10) + b"\xff\xff"
ANY4 = bytes(4)
ANY6 = bytes(16)


class Socket(NamedTuple):
    proto: int
    local: bytes
    local_port: int
    remote: bytes
    remote_port: int
    state: int
    inode: int


def parse_address(text: str, little_endian: bool = sys.byteorder == "little") -> tuple[bytes, int]:
    """``0100007F:1F90`` → (b'\\x7f\\x00\\x00\\x01', 8080); v4-mapped IPv6 comes back as IPv4."""
    hex_address, _, hex_port = text.partition(":")
    if len(hex_address) not in (8, 32) or not hex_port:
        raise ValueError(f"not an address: {text!r}")
    words = [bytes.fromhex(hex_address[i : i + 8]) for i in range(0, len(hex_address), 8)]
    address = b"".join(w[::-1] for w in words) if little_endian else b"".join(words)
    if len(address) == 16 and address.startswith(V4_MAPPED):
        address = address[12:]
    return address, int(hex_port, 16)


def parse_table(text: str, proto: int, inodes: frozenset[int] | set[int] | None = None) -> list[Socket]:
    """The sockets of one table, only those whose inode is in ``inodes`` when given."""
    out = []
    for n, line in enumerate(text.splitlines(), 1):
        fields = line.split()
        if len(fields) < 10 or not fields[0].endswith(":"):  # the header, or a line cut short
            continue
        with parsing(n, line):
            inode = int(fields[9])
            if inode == 0 or (inodes is not None and inode not in inodes):
                continue
            local, local_port = parse_address(fields[1])
            remote, remote_port = parse_address(fields[2])
            out.append(Socket(proto, local, local_port, remote, remote_port, int(fields[3], 16), inode))
    return out


def read_sockets(root: Path, inodes: frozenset[int] | set[int] | None = None) -> list[Socket]:
    """The four tables; one the kernel lacks (no IPv6) is skipped."""
    out: list[Socket] = []
    for name, proto in TABLES:
        path = root / "proc/net" / name
        text = read_text_if_present(path)
        if text is None:
            continue
        try:
            out += parse_table(text, proto, inodes)
        except ReaderError as err:
            raise err.at(path) from None
    return out


class Endpoints:
    """Socket look-up by a packet's local and remote ends, as the kernel would deliver it.

    A connected socket (TCP other than LISTEN, UDP with a peer) matches its
    exact four-tuple; otherwise a socket bound to the local port matches when
    its address is the packet's local address or a wildcard (``0.0.0.0``, or
    ``::``, which also takes IPv4 unless IPV6_V6ONLY).
    """

    def __init__(self, sockets: Iterable[Socket]) -> None:
        self.connected: dict[tuple[int, bytes, int, bytes, int], int] = {}
        self.bound: dict[tuple[int, int], list[tuple[bytes, int]]] = {}
        for s in sockets:
            if s.remote_port and s.state != TCP_LISTEN:
                self.connected[(s.proto, s.local, s.local_port, s.remote, s.remote_port)] = s.inode
            elif s.proto == IPPROTO_UDP or s.state == TCP_LISTEN:
                self.bound.setdefault((s.proto, s.local_port), []).append((s.local, s.inode))

    def find(self, proto: int, local: bytes, local_port: int, remote: bytes, remote_port: int) -> int | None:
        """The inode of the socket that owns this end, or None."""
        inode = self.connected.get((proto, local, local_port, remote, remote_port))
        if inode is not None:
            return inode
        wildcard = None
        for address, candidate in self.bound.get((proto, local_port), ()):
            if address == local:
                return candidate
            if address in (ANY4, ANY6):
                wildcard = candidate
        return wildcard
