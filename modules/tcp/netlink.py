"""The netlink framing both of the tcp module's codecs share: message headers and attributes.

Walkers yield offsets into the datagram instead of slicing, and stop at the
first length that does not fit, so a truncated or hostile reply ends the walk
rather than raising (the caller counts it).
"""

from __future__ import annotations

import socket
import struct
from collections.abc import Iterator

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
