"""The flow a sampled header belongs to: addresses, protocol and service port, fast.

The exporter looks at every flow sample, so this reads only the bytes it
needs and builds no text: addresses stay as packed bytes (hashable keys),
rendered once for the few flows that are exported.  The text decode for
people (``dissect``) is separate; it prints every field the way sflowtool
does and is far too slow for this.

The service port is the lower of the two ports: Linux picks client ports from
32768 up, so the lower one is the server's (5201 for iperf3, 443 for HTTPS)
and both directions of a connection land on the same key.
"""

from __future__ import annotations

import socket
import struct

__all__ = ["FlowKey", "flow_key", "protocol_name", "render_address"]

FlowKey = tuple[bytes, bytes, int, int]
"""(source address, destination address, IP protocol, service port): 4 or 16 address bytes."""

_VLAN_TPIDS = frozenset((0x8100, 0x88A8, 0x9100))
_IPV6_EXTENSIONS = frozenset((0, 43, 60))  # hop-by-hop, routing, destination options
_IPV6_FRAGMENT = 44
_IPV6_AUTH = 51
_PORT_PROTOCOLS = frozenset((6, 17, 132))  # TCP, UDP, SCTP: ports in the first 4 bytes
_PROTOCOL_NAMES = {1: "icmp", 6: "tcp", 17: "udp", 58: "ipv6-icmp", 132: "sctp"}


def _ports(h: bytes, at: int, protocol: int) -> int:
    if protocol not in _PORT_PROTOCOLS or len(h) < at + 4:
        return 0
    return min((h[at] << 8) | h[at + 1], (h[at + 2] << 8) | h[at + 3])


def _ipv4(h: bytes, at: int) -> FlowKey | None:
    if len(h) < at + 20 or h[at] >> 4 != 4:
        return None
    protocol = h[at + 9]
    fragment = ((h[at + 6] << 8) | h[at + 7]) & 0x1FFF
    port = 0 if fragment else _ports(h, at + (h[at] & 15) * 4, protocol)
    return h[at + 12 : at + 16], h[at + 16 : at + 20], protocol, port


def _ipv6(h: bytes, at: int) -> FlowKey | None:
    if len(h) < at + 40 or h[at] >> 4 != 6:
        return None
    src, dst = h[at + 8 : at + 24], h[at + 24 : at + 40]
    protocol, at = h[at + 6], at + 40
    while len(h) >= at + 8:
        if protocol in _IPV6_EXTENSIONS:
            protocol, at = h[at], at + 8 * (h[at + 1] + 1)
        elif protocol == _IPV6_AUTH:
            protocol, at = h[at], at + 4 * (h[at + 1] + 2)
        elif protocol == _IPV6_FRAGMENT:
            later_fragment = ((h[at + 2] << 8) | h[at + 3]) & 0xFFF8
            protocol, at = h[at], at + 8
            if later_fragment:
                return src, dst, protocol, 0
        else:
            break
    return src, dst, protocol, _ports(h, at, protocol)


_ETHERNET_IPV4 = struct.Struct(">12xHB5xHxB2x4s4s")
"""An untagged Ethernet frame's EtherType, then its IPv4 header's version and length, fragment
offset, protocol and addresses: the common sampled header, read in one call."""
_PORT_PAIR = struct.Struct(">HH")


def flow_key(header_protocol: int, h: bytes) -> FlowKey | None:
    """The flow of a sampled header (0:1 record), or None when it is not IP."""
    if header_protocol == 1 and len(h) >= _ETHERNET_IPV4.size:
        ethertype, version_length, fragment, protocol, src, dst = _ETHERNET_IPV4.unpack_from(h)
        if ethertype == 0x0800 and version_length >> 4 == 4:
            at = 14 + (version_length & 15) * 4
            if fragment & 0x1FFF or protocol not in _PORT_PROTOCOLS or len(h) < at + 4:
                return src, dst, protocol, 0
            return src, dst, protocol, min(_PORT_PAIR.unpack_from(h, at))
    if header_protocol == 1:
        at = 12
        while len(h) >= at + 2:
            ethertype = (h[at] << 8) | h[at + 1]
            if ethertype in _VLAN_TPIDS:
                at += 4
            elif ethertype == 0x0800:
                return _ipv4(h, at + 2)
            elif ethertype == 0x86DD:
                return _ipv6(h, at + 2)
            else:
                return None
        return None
    if header_protocol == 11:
        return _ipv4(h, 0)
    if header_protocol == 12:
        return _ipv6(h, 0)
    return None


def render_address(packed: bytes) -> str:
    return socket.inet_ntop(socket.AF_INET if len(packed) == 4 else socket.AF_INET6, packed)


def protocol_name(protocol: int) -> str:
    return _PROTOCOL_NAMES.get(protocol, str(protocol))
