"""Where each layer of a packet header starts: the one walker every reader of packet bytes uses.

The agent's matchers (tcp, docker, systemd ask :func:`parse` for a sample's flow), the pcap
samplers' GSO arithmetic (:func:`payload_offset`, :func:`ip_length_at`,
:func:`tcp_sequence_at`), and the collector's header dissector, pcap reader and Prometheus
flow key all call :func:`walk`, so they agree on what a header holds: one set of VLAN TPIDs,
the same IPv6 extension headers, the same answer for fragments and cut headers.

:func:`walk` returns offsets, not objects (:class:`Layers`), and it is cheap because it runs
once per sample: the common frame (untagged Ethernet, IPv4) is read with one struct call, the
rest by a flat loop.  It is bounded and total: every step consumes at least four bytes and is
counted against :class:`Rules`, it never indexes past ``end``, and whatever the bytes it
answers with offsets inside them or -1.

What it follows:

- Ethernet II with VLAN tags of any TPID in :data:`VLAN_TPIDS` (a sampler restores the tag
  the NIC stripped into the header, see REFERENCE.md section 9), and 802.3 frames whose
  802.2 LLC carries IP (SNAP with a zero OUI, RFC 1042, or SAP 0x06);
- IPv4 with options; a non-first fragment carries no transport header;
- IPv6 through the extension headers of :attr:`Rules.extensions` (hop-by-hop, routing,
  fragment, destination options, AH, mobility, HIP, shim6; AH counts its length in 4-byte
  words, the others in 8).

The rules are a table: :data:`STANDARD` for everything that needs the truth about a packet,
:data:`SFLOWTOOL` for the collector's text decode, which prints what sflowtool prints
(sflowtool reads AH's length in 8-byte units and follows any number of tags and headers).

With ``tunnel``, :func:`parse` also goes into VXLAN (UDP 4789, and 8472, the Linux kernel's
and flannel's port) to the inner Ethernet frame, and into IP-in-IP (protocol 4 and 41) to the
inner IP packet; when the inner packet cannot be followed the outer flow is returned.
"""

from __future__ import annotations

import struct
from collections.abc import Mapping
from typing import Any, NamedTuple

from .flow import HEADER_ETHERNET, HEADER_IPV4, HEADER_IPV6, UNPARSED, SampledPacket

LINK_IP = -1
"""Not an sFlow header protocol: a bare IP packet of either version, its first nibble says which."""

IPPROTO_IPIP = 4
IPPROTO_TCP = 6
IPPROTO_UDP = 17
IPPROTO_IPV6 = 41

ETH_P_IP = 0x0800
ETH_P_IPV6 = 0x86DD
VLAN_TPIDS = frozenset((0x8100, 0x88A8, 0x9100, 0x9200, 0x9300))
"""802.1Q, 802.1ad, and the pre-standard Q-in-Q TPIDs switches still send."""
MAX_8023_LENGTH = 1500
"""A type/length field up to this is an 802.3 length, and an 802.2 LLC header follows."""
VXLAN_PORTS = frozenset((4789, 8472))
VXLAN_FLAG_VNI = 0x08
VXLAN_HEADER = 8
UDP_HEADER = 8
TCP_SEQUENCE = 4
"""Offset of the 32-bit sequence number in a TCP header."""
PORTED = frozenset((IPPROTO_TCP, IPPROTO_UDP))

NOT_FRAGMENT = 0
FIRST_FRAGMENT = 1
"""Offset 0 and more fragments follow: the transport header is here, the rest of the payload is not."""
LATER_FRAGMENT = 2
"""A non-zero fragment offset: what follows the IP headers is the middle of a payload."""

IPV6_FRAGMENT = 44


class Rules(NamedTuple):
    """How far the walker goes: tag and extension header budgets, and how extension headers are sized."""

    max_tags: int
    max_extensions: int
    extensions: Mapping[int, tuple[int, int]]
    """Next-header values walked over, each to (fixed bytes, bytes per unit of its length byte)."""
    bare_ipv4_checked: bool = True
    """Whether a header the sample calls IPv4 (header protocol 11) must say so in its version nibble
    and header length; sflowtool reads it as IPv4 whatever they say."""


STANDARD = Rules(
    max_tags=2,
    max_extensions=8,
    extensions={
        **dict.fromkeys((0, 43, 60, 135, 139, 140), (8, 8)),  # hop-by-hop, routing, dest options, mobility, HIP, shim6
        IPV6_FRAGMENT: (8, 0),
        51: (8, 4),  # AH
    },
)
"""RFC 8200 and RFC 4302 sizes; two tags (a sampler restores one stripped tag, plus Q-in-Q)."""

SFLOWTOOL = Rules(
    max_tags=1 << 16,
    max_extensions=1 << 16,
    extensions=dict.fromkeys((0, 43, IPV6_FRAGMENT, 51, 60), (8, 8)),
    bare_ipv4_checked=False,
)
"""sflowtool 6.11's ``decodeLinkLayer``/``decodeIPV6``: any number of tags and extension headers
(the header's length bounds them) and every extension sized in 8-byte units, AH included."""


class Layers(NamedTuple):
    """Offsets into the walked buffer; -1 where a layer is absent or could not be reached."""

    ethertype: int
    """The EtherType of what follows the link header; a TPID when the header ends inside a tag,
    an 802.3 length when the LLC does not carry IP, 0 when there is no link header to read."""
    tags: int
    """VLAN tags walked; tag ``i``'s TCI is at ``start + 14 + 4 * i``."""
    l3: int
    """Where the network header starts (after the link header, IP or not)."""
    version: int
    """4 or 6 when a whole, valid IP header of that version is at ``l3``, else 0."""
    proto: int
    """The transport protocol after any extension headers; -1 when not reached."""
    l4: int
    """Where the transport header starts (maybe at or past the end); -1 exactly when ``proto`` is."""
    fragment: int
    """:data:`NOT_FRAGMENT`, :data:`FIRST_FRAGMENT` or :data:`LATER_FRAGMENT`."""


NO_LAYERS = Layers(0, 0, -1, 0, -1, -1, NOT_FRAGMENT)
_new = tuple.__new__
"""Builds a Layers or Flow without NamedTuple's Python-level ``__new__``: half the cost, once per sample."""

_ETHERNET_IPV4 = struct.Struct(">12xHB5xHxB")
"""An untagged frame's EtherType, then its IPv4 header's version and length, flags and fragment
offset, and protocol: the common sampled header, read in one call."""
_SNAP = b"\xaa\xaa\x03\x00\x00\x00"


def walk(
    b: Any,
    link: int = HEADER_ETHERNET,
    start: int = 0,
    end: int | None = None,
    rules: Rules = STANDARD,
    chain: list[int] | None = None,
) -> Layers:
    """The layers of the header ``b[start:end]`` (any buffer), of sFlow header protocol ``link``.

    ``chain``, when given, gets the next-header value of every IPv6 extension header met,
    in order, including one that is cut short.
    """
    if end is None:
        end = len(b)
    if link == HEADER_ETHERNET:
        if end - start >= 34:
            ethertype, first, flags, proto = _ETHERNET_IPV4.unpack_from(b, start)
            if ethertype == ETH_P_IP and first >> 4 == 4 and first & 15 >= 5:
                fragment = LATER_FRAGMENT if flags & 0x1FFF else FIRST_FRAGMENT if flags & 0x2000 else NOT_FRAGMENT
                return _new(Layers, (ETH_P_IP, 0, start + 14, 4, proto, start + 14 + (first & 15) * 4, fragment))
        at = start + 14
        if at > end:
            return NO_LAYERS
        ethertype = b[at - 2] << 8 | b[at - 1]
        tags = 0
        while ethertype in VLAN_TPIDS:
            if tags == rules.max_tags or at + 4 > end:
                return _new(Layers, (ethertype, tags, -1, 0, -1, -1, NOT_FRAGMENT))
            ethertype = b[at + 2] << 8 | b[at + 3]
            at += 4
            tags += 1
        if ethertype <= MAX_8023_LENGTH:
            if end - at >= 8 and b[at : at + 6] == _SNAP:
                ethertype, at = b[at + 6] << 8 | b[at + 7], at + 8
            elif end - at >= 3 and b[at] == 0x06 and b[at + 1] == 0x06 and b[at + 2] & 1:
                ethertype, at = ETH_P_IP, at + 3
        return network(b, ethertype, at, end, tags, rules, chain)
    if link == HEADER_IPV4:
        return network(b, ETH_P_IP, start, end, 0, rules, chain, rules.bare_ipv4_checked)
    if link == HEADER_IPV6:
        return network(b, ETH_P_IPV6, start, end, 0, rules, chain)
    if link == LINK_IP and start < end:
        version = b[start] >> 4
        if version == 4:
            return network(b, ETH_P_IP, start, end, 0, rules, chain)
        if version == 6:
            return network(b, ETH_P_IPV6, start, end, 0, rules, chain)
    return NO_LAYERS


def network(
    b: Any,
    ethertype: int,
    at: int,
    end: int,
    tags: int = 0,
    rules: Rules = STANDARD,
    chain: list[int] | None = None,
    checked: bool = True,
) -> Layers:
    """The layers from a network header of a known EtherType at ``at`` on (for link headers
    other than Ethernet, e.g. Linux cooked captures)."""
    if ethertype == ETH_P_IP:
        if end - at < 20 or (checked and (b[at] >> 4 != 4 or b[at] & 15 < 5)):
            return _new(Layers, (ethertype, tags, at, 0, -1, -1, NOT_FRAGMENT))
        flags = (b[at + 6] & 0x3F) << 8 | b[at + 7]
        fragment = LATER_FRAGMENT if flags & 0x1FFF else FIRST_FRAGMENT if flags & 0x2000 else NOT_FRAGMENT
        return _new(Layers, (ethertype, tags, at, 4, b[at + 9], at + (b[at] & 15) * 4, fragment))
    if ethertype != ETH_P_IPV6 or end - at < 40 or b[at] >> 4 != 6:
        return _new(Layers, (ethertype, tags, at, 0, -1, -1, NOT_FRAGMENT))
    l3, proto, at = at, b[at + 6], at + 40
    fragment = NOT_FRAGMENT
    extensions = rules.extensions
    walked = 0
    while (sizing := extensions.get(proto)) is not None:
        if chain is not None:
            chain.append(proto)
        fixed, unit = sizing
        if walked == rules.max_extensions or end - at < 2 or end - at < (length := fixed + unit * b[at + 1]):
            return _new(Layers, (ethertype, tags, l3, 6, -1, -1, fragment))
        if proto == IPV6_FRAGMENT:
            offset_flags = b[at + 2] << 8 | b[at + 3]
            fragment = LATER_FRAGMENT if offset_flags & 0xFFF8 else FIRST_FRAGMENT if offset_flags & 1 else fragment
        proto, at = b[at], at + length
        walked += 1
    return _new(Layers, (ethertype, tags, l3, 6, proto, at, fragment))


def addresses(b: Any, layers: Layers) -> tuple[Any, Any]:
    """The source and destination addresses (4 or 16 bytes, sliced from ``b``) of a walked IP header."""
    l3 = layers.l3
    if layers.version == 4:
        return b[l3 + 12 : l3 + 16], b[l3 + 16 : l3 + 20]
    return b[l3 + 8 : l3 + 24], b[l3 + 24 : l3 + 40]


def ip_length_at(layers: Layers) -> int:
    """Where the IP header's 16-bit length is: IPv4 total length (header included) or IPv6
    payload length (extension headers included, the fixed 40 bytes not); -1 without IP."""
    if layers.version == 4:
        return layers.l3 + 2
    if layers.version == 6:
        return layers.l3 + 4
    return -1


def ip_end(b: Any, layers: Layers, end: int) -> int:
    """Where the IP packet ends by its own length field, within ``end`` (link padding and
    trailers cut off); ``end`` when the field is 0 (an IPv6 jumbogram, or TSO) or implausible."""
    at = ip_length_at(layers)
    if at < 0:
        return end
    length = b[at] << 8 | b[at + 1]
    if layers.version == 6:
        return min(end, layers.l3 + 40 + length) if length else end
    return min(end, layers.l3 + length) if length >= 20 else end


def tcp_sequence_at(layers: Layers, end: int) -> int:
    """Where a TCP segment's sequence number is, when its 4 bytes were captured; else -1."""
    at = layers.l4 + TCP_SEQUENCE
    if layers.proto != IPPROTO_TCP or layers.fragment == LATER_FRAGMENT or at + 4 > end:
        return -1
    return at


def payload_offset(b: Any, layers: Layers, end: int | None = None) -> int | None:
    """Where the TCP or UDP payload starts (every link, IP and transport header before it),
    or None for other protocols, later fragments, and TCP headers cut before their length."""
    if end is None:
        end = len(b)
    l4 = layers.l4
    if layers.fragment == LATER_FRAGMENT or l4 < 0:
        return None
    if layers.proto == IPPROTO_TCP and l4 + 13 <= end:
        return l4 + (b[l4 + 12] >> 4) * 4
    if layers.proto == IPPROTO_UDP:
        return l4 + UDP_HEADER
    return None


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
    return _flow(header, walk(header, header_protocol), tunnel)


def packet_flow(packet: SampledPacket, tunnel: bool = False) -> Flow | None:
    """The flow of a sample, parsed once for all the enrichers that ask (tcp, docker, systemd)."""
    if tunnel:
        if packet.parsed_tunnel is UNPARSED:
            packet.parsed_tunnel = parse(packet.header, packet.header_protocol, True)
        return packet.parsed_tunnel
    if packet.parsed is UNPARSED:
        packet.parsed = parse(packet.header, packet.header_protocol)
    return packet.parsed


def _flow(b: bytes, layers: Layers, tunnel: bool) -> Flow | None:
    _, _, _, version, proto, l4, fragment = layers
    if proto < 0:
        return None
    src, dst = addresses(b, layers)
    if tunnel and fragment != LATER_FRAGMENT:
        inner = None
        if proto == IPPROTO_IPIP:
            inner = _flow(b, walk(b, HEADER_IPV4, l4), False)
        elif proto == IPPROTO_IPV6:
            inner = _flow(b, walk(b, HEADER_IPV6, l4), False)
        elif (
            proto == IPPROTO_UDP
            and len(b) >= l4 + UDP_HEADER + VXLAN_HEADER
            and (b[l4 + 2] << 8 | b[l4 + 3]) in VXLAN_PORTS
            and b[l4 + UDP_HEADER] & VXLAN_FLAG_VNI
        ):
            inner = _flow(b, walk(b, HEADER_ETHERNET, l4 + UDP_HEADER + VXLAN_HEADER), False)
        if inner is not None:
            return inner._replace(tunnelled=True)
    if proto not in PORTED:
        return _new(Flow, (version, src, dst, proto, 0, 0, False))
    if fragment == LATER_FRAGMENT or len(b) < l4 + 4:
        return None
    return _new(Flow, (version, src, dst, proto, b[l4] << 8 | b[l4 + 1], b[l4 + 2] << 8 | b[l4 + 3], False))
