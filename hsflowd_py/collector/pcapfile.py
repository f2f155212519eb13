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

_VLAN_TPIDS = frozenset((0x8100, 0x88A8, 0x9100))
_IPV6_SKIPPABLE = frozenset((0, 43, 60))  # hop-by-hop, routing, destination options
_UDP = 17

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
    at = 12
    while len(frame) >= at + 2:
        ethertype = (frame[at] << 8) | frame[at + 1]
        if ethertype not in _VLAN_TPIDS:
            return _by_ethertype(ethertype, frame[at + 2 :])
        at += 4
    return None


def _linux_sll(frame: memoryview) -> _Found | None:
    if len(frame) < 16:
        return None
    return _by_ethertype((frame[14] << 8) | frame[15], frame[16:])


def _linux_sll2(frame: memoryview) -> _Found | None:
    if len(frame) < 20:
        return None
    return _by_ethertype((frame[0] << 8) | frame[1], frame[20:])


def _raw(frame: memoryview) -> _Found | None:
    version = frame[0] >> 4 if len(frame) else 0
    return _ipv4(frame) if version == 4 else _ipv6(frame) if version == 6 else None


def _by_ethertype(ethertype: int, packet: memoryview) -> _Found | None:
    if ethertype == 0x0800:
        return _ipv4(packet)
    if ethertype == 0x86DD:
        return _ipv6(packet)
    return None


def _ipv4(packet: memoryview) -> _Found | None:
    if len(packet) < 20 or packet[0] >> 4 != 4:
        return None
    header_length = (packet[0] & 15) * 4
    flags_offset = (packet[6] << 8) | packet[7]
    if header_length < 20 or packet[9] != _UDP or flags_offset & 0x3FFF:
        return None  # not UDP, or a fragment: a whole datagram is not in this packet
    total_length = (packet[2] << 8) | packet[3]
    end = min(len(packet), total_length) if total_length >= header_length else len(packet)
    source = ipaddress.IPv4Address(bytes(packet[12:16]))
    return _udp(source, packet[header_length:end])


def _ipv6(packet: memoryview) -> _Found | None:
    if len(packet) < 40 or packet[0] >> 4 != 6:
        return None
    payload_length = (packet[4] << 8) | packet[5]
    next_header = packet[6]
    source = ipaddress.IPv6Address(bytes(packet[8:24]))
    body = packet[40 : 40 + payload_length] if payload_length else packet[40:]
    while next_header in _IPV6_SKIPPABLE:
        if len(body) < 8:
            return None
        next_header, body = body[0], body[8 * (body[1] + 1) :]
    if next_header != _UDP:
        return None  # includes fragment headers: the datagram is not whole here
    return _udp(source, body)


def _udp(source: IPAddress, segment: memoryview) -> _Found | None:
    if len(segment) < 8:
        return None
    port = (segment[0] << 8) | segment[1]
    length = (segment[4] << 8) | segment[5]
    if length < 8:
        return None
    payload = bytes(segment[8:length])
    return source, port, payload, len(payload) < length - 8


_LINK_DECODERS = {
    LINKTYPE_ETHERNET: _ethernet,
    LINKTYPE_LINUX_SLL: _linux_sll,
    LINKTYPE_LINUX_SLL2: _linux_sll2,
    LINKTYPE_IPV4: _ipv4,
    LINKTYPE_IPV6: _ipv6,
    **dict.fromkeys(LINKTYPE_RAW, _raw),
}
