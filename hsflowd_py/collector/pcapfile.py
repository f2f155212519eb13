"""Read UDP payloads (sFlow datagrams) out of a classic pcap capture.

Pure: a binary stream goes in, UDP payloads come out (:func:`udp_datagrams`
as plain tuples for the collector, :func:`read_pcap` as :class:`PcapPacket`
records); no sockets, no clock.  Like ``sflowtool -r`` every UDP packet in the file is
taken as a datagram whatever its port.  A file cut short (a capture still
being written, a partial copy) ends the iteration quietly at the last whole
record; packets that are not UDP, or are IP fragments that cannot be
reassembled, are skipped.
"""

from __future__ import annotations

import ipaddress
import struct
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import BinaryIO

from ..flow import HEADER_ETHERNET, HEADER_IPV4, HEADER_IPV6
from ..packet import (
    IPPROTO_UDP,
    LINK_IP,
    NO_LAYERS,
    NOT_FRAGMENT,
    UDP_HEADER,
    Layers,
    addresses,
    ip_end,
    network,
    walk,
)

__all__ = ["PcapError", "PcapPacket", "UdpDatagram", "read_pcap", "udp_datagrams"]

_MAGIC_USEC = 0xA1B2C3D4
_MAGIC_NSEC = 0xA1B23C4D
_MAGIC_PCAPNG = 0x0A0D0D0A
_MAX_RECORD = 1 << 20
"""Larger than any snaplen in practice: a bigger caplen means the file is corrupt."""
_RECORD = 16
"""A record's header: seconds, fraction, captured length, length on the wire."""
_CHUNK = 1 << 20
"""Bytes asked of the stream at a time; a pipe answers with what it holds."""
_UDP_PORT_LENGTH = struct.Struct(">H2xH")
"""A UDP header's source port and length."""

LINKTYPE_ETHERNET = 1
LINKTYPE_RAW = (12, 14, 101)  # DLT_RAW differs between platforms; 101 is the portable LINKTYPE_RAW
LINKTYPE_IPV4 = 228
LINKTYPE_IPV6 = 229
LINKTYPE_LINUX_SLL = 113
LINKTYPE_LINUX_SLL2 = 276


IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
UdpDatagram = tuple[int, int, bytes, int, bytes, bool]
"""One UDP payload as :func:`udp_datagrams` yields it: seconds, microseconds, the sender's packed
address (4 or 16 bytes) and port, the payload, and whether the capture's snaplen cut it.  Plain
values, for the collector's loop (an address object and a record per packet cost as much as the
rest of the reading); :class:`PcapPacket` is the same with an address object."""


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
    """Yield the UDP payloads of a classic pcap stream, in file order, each with its sender's address."""
    for seconds, microseconds, source, port, payload, truncated in udp_datagrams(stream):
        address = ipaddress.IPv4Address(source) if len(source) == 4 else ipaddress.IPv6Address(source)
        yield PcapPacket(seconds, microseconds, address, port, payload, truncated)


def udp_datagrams(stream: BinaryIO) -> Iterator[UdpDatagram]:
    """The UDP payloads of a classic pcap stream, in file order, as plain tuples (see :data:`UdpDatagram`).

    The stream is read in large chunks (``read1``: whatever a pipe holds, so a live ``tcpdump -w -``
    is followed as it writes) and each record is read in place from its chunk: one read and one
    struct call per record rather than two reads and their copies, and the frame handed to the
    walker with its bounds instead of sliced out.
    """
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
    if linktype not in _LINK_LAYERS:
        raise PcapError(f"unsupported pcap link type {linktype}")
    layers_of, link = _LINK_LAYERS[linktype]
    unpack_record = struct.Struct(order + "IIII").unpack_from
    unpack_udp = _UDP_PORT_LENGTH.unpack_from
    divisor = 1000 if magic == _MAGIC_NSEC else 1
    read = getattr(stream, "read1", stream.read)
    buf, at = b"", 0
    while chunk := read(_CHUNK):
        buf = buf[at:] + chunk if at < len(buf) else chunk
        at, filled = 0, len(buf)
        while at + _RECORD <= filled:
            seconds, fraction, caplen, _wire_len = unpack_record(buf, at)
            if caplen > _MAX_RECORD:
                return
            start = at + _RECORD
            end = start + caplen
            if end > filled:
                break  # the rest of this record is in the next chunk
            at = end
            layers = layers_of(buf, link, start, end)
            _, _, _, _, proto, udp, fragment = layers
            if proto != IPPROTO_UDP or fragment != NOT_FRAGMENT:
                continue  # not UDP, or a fragment: a whole datagram is not in this packet
            ip_stop = ip_end(buf, layers, end)
            if ip_stop - udp < UDP_HEADER:
                continue
            port, length = unpack_udp(buf, udp)
            if length < UDP_HEADER:
                continue
            stop = udp + length
            payload = buf[udp + UDP_HEADER : stop if stop < ip_stop else ip_stop]
            yield seconds, fraction // divisor, addresses(buf, layers)[0], port, payload, stop > ip_stop


def _linux_sll(buf: bytes, _link: int, start: int, end: int) -> Layers:
    if end - start < 16:
        return NO_LAYERS
    return network(buf, buf[start + 14] << 8 | buf[start + 15], start + 16, end)


def _linux_sll2(buf: bytes, _link: int, start: int, end: int) -> Layers:
    if end - start < 20:
        return NO_LAYERS
    return network(buf, buf[start] << 8 | buf[start + 1], start + 20, end)


_LINK_LAYERS: dict[int, tuple[Callable[[bytes, int, int, int], Layers], int]] = {
    LINKTYPE_ETHERNET: (walk, HEADER_ETHERNET),
    LINKTYPE_LINUX_SLL: (_linux_sll, 0),
    LINKTYPE_LINUX_SLL2: (_linux_sll2, 0),
    LINKTYPE_IPV4: (walk, HEADER_IPV4),
    LINKTYPE_IPV6: (walk, HEADER_IPV6),
    **dict.fromkeys(LINKTYPE_RAW, (walk, LINK_IP)),
}
"""Per link type, how to find the layers of a frame ``buf[start:end]``: ``walk`` from the link
header it names, or a Linux cooked header read first (its EtherType, then ``network``)."""
