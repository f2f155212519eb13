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

from ...packet import LATER_FRAGMENT, walk

__all__ = ["FlowKey", "flow_key", "protocol_name", "render_address"]

FlowKey = tuple[bytes, bytes, int, int]
"""(source address, destination address, IP protocol, service port): 4 or 16 address bytes."""

_PORT_PROTOCOLS = frozenset((6, 17, 132))  # TCP, UDP, SCTP: ports in the first 4 bytes
_PROTOCOL_NAMES = {1: "icmp", 6: "tcp", 17: "udp", 58: "ipv6-icmp", 132: "sctp"}
_PORT_PAIR = struct.Struct(">HH")
_ADDRESSES = {4: struct.Struct("12x4s4s").unpack_from, 6: struct.Struct("8x16s16s").unpack_from}
"""Per IP version, the source and destination addresses read in one call from the IP header's start."""
_IPV4_PORTS = struct.Struct(">12x4s4sHH")
"""An IPv4 header without options and the ports after it, in one call: the common sampled header."""


def flow_key(header_protocol: int, h: bytes) -> FlowKey | None:
    """The flow of a sampled header (0:1 record), or None when it is not IP."""
    _, _, l3, version, protocol, at, fragment = walk(h, header_protocol)
    if protocol < 0:
        return None
    if fragment == LATER_FRAGMENT or protocol not in _PORT_PROTOCOLS or len(h) < at + 4:
        return (*_ADDRESSES[version](h, l3), protocol, 0)
    if at == l3 + 20 and version == 4:
        src, dst, one, other = _IPV4_PORTS.unpack_from(h, l3)
    else:
        src, dst = _ADDRESSES[version](h, l3)
        one, other = _PORT_PAIR.unpack_from(h, at)
    return src, dst, protocol, one if one < other else other


def render_address(packed: bytes) -> str:
    return socket.inet_ntop(socket.AF_INET if len(packed) == 4 else socket.AF_INET6, packed)


def protocol_name(protocol: int) -> str:
    return _PROTOCOL_NAMES.get(protocol, str(protocol))
