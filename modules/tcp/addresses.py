"""Which addresses are local in a network namespace, kept current from rtnetlink.

A sampled packet is looked up only when exactly one end is local, so the
set must follow address changes at once (DHCP, a container restarting with a
new address).  One NETLINK_ROUTE socket per namespace both dumps the
addresses (RTM_GETADDR) and listens to the IPv4/IPv6 address groups; the
messages arrive in order, so applying them one by one keeps the set exact.
If the socket overruns (ENOBUFS) notifications were lost and the whole set is
dumped again; a dump request that cannot be sent then is owed (``stale``) and
asked for again later.

The socket is made in whichever namespace the caller's thread is in, which is
how the tcp module gets the addresses of a container's namespace.
"""

from __future__ import annotations

import os
import select
import socket
import time

from hsflowd_py import netlink as nl
from hsflowd_py.netlink import RTM_NEWADDR, decode_address, dump_request

RTM_DELADDR = 21
RTMGRP_IPV4_IFADDR = 0x10
RTMGRP_IPV6_IFADDR = 0x100


def open_route_socket() -> socket.socket:
    return nl.open_socket(nl.NETLINK_ROUTE, RTMGRP_IPV4_IFADDR | RTMGRP_IPV6_IFADDR)


class LocalAddresses:
    """The local address set of one namespace, fed with every datagram its route socket receives."""

    def __init__(self) -> None:
        self.entries: set[tuple[int, bytes]] = set()
        self.local: frozenset[bytes] = frozenset()
        self._dump_seq: int | None = None
        self._dumped: set[tuple[int, bytes]] = set()
        self._seq = 0
        self.refused = 0
        """errno of the last refused dump."""
        self.stale = False
        """Notifications were lost and the dump that replaces the set could not be asked for yet."""

    def start_dump(self) -> bytes:
        """The request to send: every address, replacing the set when the dump ends."""
        self._seq += 1
        self._dump_seq = self._seq
        self._dumped = set()
        self.refused = 0
        return dump_request(self._seq)

    def resync(self, sock: socket.socket) -> None:
        """Dump the set again after notifications were lost, unless a dump is already under way.

        The request can fail under the memory pressure that caused the overrun (ENOBUFS, EBUSY).  No
        dump is pending then, or every later overrun would skip its resync for one that never comes:
        ``stale`` says a dump is owed and the OSError goes to the caller, to count and to call again.
        """
        if self.dumping:
            return
        request = self.start_dump()
        try:
            sock.send(request)
        except OSError:
            self._dump_seq = None
            self.stale = True
            raise
        self.stale = False

    def feed(self, data: bytes) -> None:
        changed = False
        for msg_type, _, seq, start, end in nl.messages(data):
            if msg_type == nl.NLMSG_DONE and seq == self._dump_seq:
                self._dump_seq = None
                self.entries = self._dumped
                changed = True
            elif msg_type == nl.NLMSG_ERROR and seq == self._dump_seq:
                self._dump_seq = None  # the kernel refused the dump: keep what we had
                self.refused = nl.error_code(data, start, end)
            elif msg_type in (RTM_NEWADDR, RTM_DELADDR) and (entry := decode_address(data, start, end)):
                targets = (self.entries, self._dumped) if self.dumping else (self.entries,)
                for target in targets:
                    if msg_type == RTM_NEWADDR:
                        target.add(entry)
                    else:
                        target.discard(entry)
                changed = True
        if changed:
            self.local = frozenset(address for _, address in self.entries)

    @property
    def dumping(self) -> bool:
        return self._dump_seq is not None

    def load(self, sock: socket.socket, timeout: float = 2.0) -> None:
        """Dump the addresses and wait for the whole answer (start-up, before the loop reads the socket)."""
        sock.send(self.start_dump())
        deadline = time.monotonic() + timeout
        while self.dumping:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([sock], [], [], left)[0]:
                raise TimeoutError("no answer to RTM_GETADDR")
            self.feed(sock.recv(nl.RECV_BYTES))
        if self.refused:
            raise OSError(self.refused, f"RTM_GETADDR refused: {os.strerror(self.refused)}")
