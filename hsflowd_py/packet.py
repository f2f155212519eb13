"""Where a sampled packet header is going: IP addresses, transport protocol and ports.

Enrichers need the flow of a sample (the tcp module keys its socket look-up on
it), and they run once per sample, so this parser is flat and cheap: no
per-layer objects, one result tuple.  It is also bounded and total: it reads
at most a fixed number of layers (two VLAN tags, eight IPv6 extension headers,
one tunnel level), never indexes past the header it was given, and answers
None for anything it cannot follow, whatever the bytes.

What it follows:

- Ethernet II with up to two 802.1Q / 802.1ad tags (a sampler restores the tag
  the NIC stripped into the header, see REFERENCE.md section 9);
- IPv4 with options; a non-first fragment carries no transport header, so a
  TCP or UDP fragment gives None;
- IPv6 through hop-by-hop, routing, fragment, destination options, AH and
  mobility headers (AH counts its length in 4-byte words, the others in 8);
- with ``tunnel``: VXLAN (UDP 4789, and 8472, the Linux kernel's and
  flannel's port) to the inner Ethernet frame, and IP-in-IP (protocol 4 and
  41) to the inner IP packet; when the inner packet cannot be followed the
  outer flow is returned.
"""

from __future__ import annotations

from typing import NamedTuple

from .flow import HEADER_ETHERNET, HEADER_IPV4, HEADER_IPV6, UNPARSED, SampledPacket

IPPROTO_IPIP = 4
IPPROTO_TCP = 6
IPPROTO_UDP = 17
IPPROTO_IPV6 = 41

ETH_P_IP = 0x0800
ETH_P_IPV6 = 0x86DD
VLAN_TPIDS = frozenset((0x8100, 0x88A8, 0x9100))
VXLAN_PORTS = frozenset((4789, 8472))
VXLAN_FLAG_VNI = 0x08

MAX_VLAN_TAGS = 2
MAX_IPV6_EXTENSIONS = 8
IPV6_EXTENSIONS_8 = frozenset((0, 43, 60, 135))
"""Extension headers whose length byte counts 8-byte units beyond the first 8 bytes."""
IPV6_FRAGMENT = 44
IPV6_AH = 51
PORTED = frozenset((IPPROTO_TCP, IPPROTO_UDP))


class Flow(NamedTuple):
    """A packet's transport flow; addresses are packed (4 or 16 bytes), ports 0 where the protocol has none."""

    version: int
    src: bytes
    dst: bytes
    proto: int
    sport: int
    dport: int
    tunnelled: bool = False


def parse(header: bytes, header_protocol: int, tunnel: bool = False) -> Flow | None:
    """The flow of a sampled header (sFlow header_protocol 1, 11 or 12), or None."""
    if header_protocol == HEADER_ETHERNET:
        return _ethernet(header, 0, tunnel)
    if header_protocol == HEADER_IPV4:
        return _ipv4(header, 0, tunnel)
    if header_protocol == HEADER_IPV6:
        return _ipv6(header, 0, tunnel)
    return None


def packet_flow(packet: SampledPacket, tunnel: bool = False) -> Flow | None:
    """The flow of a sample, parsed once for all the enrichers that ask (tcp, docker, systemd)."""
    if tunnel:
        if packet.parsed_tunnel is UNPARSED:
            packet.parsed_tunnel = parse(packet.header, packet.header_protocol, True)
        return packet.parsed_tunnel
    if packet.parsed is UNPARSED:
        packet.parsed = parse(packet.header, packet.header_protocol)
    return packet.parsed


def _ethernet(b: bytes, off: int, tunnel: bool) -> Flow | None:
    off += 12
    for _ in range(MAX_VLAN_TAGS + 1):
        if len(b) < off + 2:
            return None
        ethertype = b[off] << 8 | b[off + 1]
        off += 2
        if ethertype not in VLAN_TPIDS:
            break
        off += 2
    else:
        return None
    if ethertype == ETH_P_IP:
        return _ipv4(b, off, tunnel)
    if ethertype == ETH_P_IPV6:
        return _ipv6(b, off, tunnel)
    return None


def _ipv4(b: bytes, off: int, tunnel: bool) -> Flow | None:
    if len(b) < off + 20:
        return None
    first = b[off]
    ihl = (first & 0x0F) * 4
    if first >> 4 != 4 or ihl < 20:
        return None
    later_fragment = (b[off + 6] & 0x1F) | b[off + 7]
    return _transport(
        b, off + ihl, 4, b[off + 12 : off + 16], b[off + 16 : off + 20], b[off + 9], bool(later_fragment), tunnel
    )


def _ipv6(b: bytes, off: int, tunnel: bool) -> Flow | None:
    if len(b) < off + 40 or b[off] >> 4 != 6:
        return None
    src = b[off + 8 : off + 24]
    dst = b[off + 24 : off + 40]
    nxt = b[off + 6]
    off += 40
    later_fragment = False
    for _ in range(MAX_IPV6_EXTENSIONS):
        if nxt in IPV6_EXTENSIONS_8:
            length = 8 + b[off + 1] * 8 if len(b) >= off + 2 else 0
        elif nxt == IPV6_FRAGMENT:
            length = 8
            if len(b) >= off + 4:
                later_fragment = later_fragment or bool((b[off + 2] << 8 | b[off + 3]) & 0xFFF8)
        elif nxt == IPV6_AH:
            length = (b[off + 1] + 2) * 4 if len(b) >= off + 2 else 0
        else:
            return _transport(b, off, 6, src, dst, nxt, later_fragment, tunnel)
        if length == 0 or len(b) < off + length:
            return None
        nxt = b[off]
        off += length
    return None


def _transport(
    b: bytes, off: int, version: int, src: bytes, dst: bytes, proto: int, later_fragment: bool, tunnel: bool
) -> Flow | None:
    if tunnel and not later_fragment:
        inner = None
        if proto == IPPROTO_IPIP:
            inner = _ipv4(b, off, False)
        elif proto == IPPROTO_IPV6:
            inner = _ipv6(b, off, False)
        elif (
            proto == IPPROTO_UDP
            and len(b) >= off + 16
            and (b[off + 2] << 8 | b[off + 3]) in VXLAN_PORTS
            and b[off + 8] & VXLAN_FLAG_VNI
        ):
            inner = _ethernet(b, off + 16, False)
        if inner is not None:
            return inner._replace(tunnelled=True)
    if proto not in PORTED:
        return Flow(version, src, dst, proto, 0, 0)
    if later_fragment or len(b) < off + 4:
        return None
    return Flow(version, src, dst, proto, b[off] << 8 | b[off + 1], b[off + 2] << 8 | b[off + 3])
