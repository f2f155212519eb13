"""Read UDP payloads (sFlow datagrams) out of a classic pcap capture.

Pure: a binary stream goes in, :class:`PcapPacket` records come out; no
sockets, no clock.  Like ``sflowtool -r`` every UDP packet in the file is
taken as a datagram whatever its port.  A file cut short (a capture still
being written, a partial copy) ends the iteration quietly at the last whole
record; packets that are not UDP, or are IP fragments that cannot be
reassembled, are skipped.
"""

from __future__ import annotations

import ipaddress
import struct
from collections.abc import Iterator
from dataclasses import dataclass
from typing import BinaryIO

from ..flow import HEADER_ETHERNET, HEADER_IPV4, HEADER_IPV6
from ..packet import IPPROTO_UDP, LINK_IP, NOT_FRAGMENT, UDP_HEADER, Layers, addresses, ip_end, network, walk

__all__ = ["PcapError", "PcapPacket", "read_pcap"]

_MAGIC_USEC = 0xA1B2C3D4
_MAGIC_NSEC = 0xA1B23C4D
_MAGIC_PCAPNG = 0x0A0D0D0A
_MAX_RECORD = 1 << 20
"""Larger than any snaplen in practice: a bigger caplen means the file is corrupt."""

LINKTYPE_ETHERNET = 1
LINKTYPE_RAW = (12, 14, 101)  # DLT_RAW differs between platforms; 101 is the portable LINKTYPE_RAW
LINKTYPE_IPV4 = 228
LINKTYPE_IPV6 = 229
LINKTYPE_LINUX_SLL = 113
LINKTYPE_LINUX_SLL2 = 276


IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


class PcapError(ValueError):
    """The stream is not a classic pcap file this reader understands."""


@dataclass(frozen=True)
class PcapPacket:
    """One UDP payload with the capture time and the sender's address."""

    seconds: int
    microseconds: int
    source: IPAddress
    source_port: int
    payload: bytes
    truncated: bool = False
    """The capture's snaplen cut the datagram: ``payload`` is only its start."""


def read_pcap(stream: BinaryIO) -> Iterator[PcapPacket]:
    """Yield the UDP payloads of a classic pcap stream, in file order."""
    head = stream.read(24)
    if len(head) < 24:
        raise PcapError("file shorter than a pcap header")
    for order in "<>":
        (magic,) = struct.unpack(order + "I", head[:4])
        if magic in (_MAGIC_USEC, _MAGIC_NSEC):
            break
    else:
        if struct.unpack("<I", head[:4])[0] == _MAGIC_PCAPNG:
            raise PcapError("pcapng is not supported; convert it with: editcap -F pcap IN OUT")
        raise PcapError(f"not a pcap file (magic number {head[:4].hex()})")
    linktype = struct.unpack(order + "I", head[20:24])[0] & 0xFFFF
    link = _LINK_DECODERS.get(linktype)
    if link is None:
        raise PcapError(f"unsupported pcap link type {linktype}")
    record = struct.Struct(order + "IIII")
    divisor = 1000 if magic == _MAGIC_NSEC else 1
    while True:
        rec = stream.read(record.size)
        if len(rec) < record.size:
            return
        seconds, fraction, caplen, _wire_len = record.unpack(rec)
        if caplen > _MAX_RECORD:
            return
        frame = stream.read(caplen)
        if len(frame) < caplen:
            return
        found = link(memoryview(frame))
        if found is not None:
            source, port, payload, truncated = found
            yield PcapPacket(seconds, fraction // divisor, source, port, payload, truncated)


_Found = tuple[IPAddress, int, bytes, bool]


def _ethernet(frame: memoryview) -> _Found | None:
    return _udp(frame, walk(frame, HEADER_ETHERNET))


def _linux_sll(frame: memoryview) -> _Found | None:
    if len(frame) < 16:
        return None
    return _udp(frame, network(frame, (frame[14] << 8) | frame[15], 16, len(frame)))


def _linux_sll2(frame: memoryview) -> _Found | None:
    if len(frame) < 20:
        return None
    return _udp(frame, network(frame, (frame[0] << 8) | frame[1], 20, len(frame)))


def _raw(frame: memoryview) -> _Found | None:
    return _udp(frame, walk(frame, LINK_IP))


def _ipv4(frame: memoryview) -> _Found | None:
    return _udp(frame, walk(frame, HEADER_IPV4))


def _ipv6(frame: memoryview) -> _Found | None:
    return _udp(frame, walk(frame, HEADER_IPV6))


def _udp(frame: memoryview, layers: Layers) -> _Found | None:
    """The datagram of a whole (unfragmented) UDP packet, cut to its IP and UDP lengths."""
    if layers.proto != IPPROTO_UDP or layers.fragment != NOT_FRAGMENT:
        return None  # not UDP, or a fragment: a whole datagram is not in this packet
    segment = frame[layers.l4 : ip_end(frame, layers, len(frame))]
    if len(segment) < UDP_HEADER:
        return None
    packed = bytes(addresses(frame, layers)[0])
    source = ipaddress.IPv4Address(packed) if len(packed) == 4 else ipaddress.IPv6Address(packed)
    port = (segment[0] << 8) | segment[1]
    length = (segment[4] << 8) | segment[5]
    if length < UDP_HEADER:
        return None
    payload = bytes(segment[UDP_HEADER:length])
    return source, port, payload, len(payload) < length - UDP_HEADER


_LINK_DECODERS = {
    LINKTYPE_ETHERNET: _ethernet,
    LINKTYPE_LINUX_SLL: _linux_sll,
    LINKTYPE_LINUX_SLL2: _linux_sll2,
    LINKTYPE_IPV4: _ipv4,
    LINKTYPE_IPV6: _ipv6,
    **dict.fromkeys(LINKTYPE_RAW, _raw),
}
