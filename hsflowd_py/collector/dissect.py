"""Decode the packet header inside a sampled-header record (0:1) as sflowtool does.

sflowtool prints a few fields of the sampled frame after ``headerBytes``
(MACs, VLAN tags, IP addresses and ports); collectors and tests grep for them,
so this module reproduces its field names, order and quirks, among them:

* ``IPID`` is the 16-bit IP id read in host byte order on a little-endian
  machine (sflowtool prints ``ip.id`` without ``ntohs``), so 0x2487 prints
  as 34596.
* ``IPSize`` is ``frame_length - stripped - offset of the IP header``, printed
  as a signed 32-bit number.
* ``ethernet_type`` (sflowtool 6.x) comes once the EtherType is known, after
  any VLAN tags and 802.2/SNAP encapsulation.
* IPv6 extension headers are walked the way sflowtool walks them (AH's length
  read in 8-byte units): the agent's walker (``hsflowd_py/packet.py``) with its
  :data:`~hsflowd_py.packet.SFLOWTOOL` rules finds every layer; this module
  only prints.

Unlike the C original it never reads past the captured bytes: a field whose
bytes were not captured is not printed (sflowtool would print whatever
follows in the datagram buffer).  Everything here is pure and bounded by the
header length, so any bytes at all are safe input.
"""

from __future__ import annotations

import ipaddress
import socket
import struct

from ..packet import ETH_P_IP, ETH_P_IPV6, MAX_8023_LENGTH, SFLOWTOOL, Layers, walk

__all__ = ["Entry", "Note", "dissect_header", "signed32"]


class Note(str):
    """A line sflowtool prints only in its text output, never in JSON (e.g. ``NO_DECODE ...``)."""


Entry = tuple[str, str] | Note

HEADER_ETHERNET = 1
HEADER_IPV4 = 11
HEADER_IPV6 = 12
HEADER_80211 = 15

_NO_DECODE = frozenset((2, 3, 4, 5, 6, 7, 8, 9, 10, 13, 14, 16, 17, 18))
"""Header protocols sflowtool knows but does not decode (token ring ... InfiniBand); others are UNKNOWN."""
_IP_HEADER = 20
_IPV6_HEADER = 40
_ETHERNET = struct.Struct(">6s6sH")
_PORTS = struct.Struct(">HH")
_UDP = struct.Struct(">HHH")
_IPV4 = struct.Struct(">BBHHHBB2x4s4s")
"""The IPv4 header's fields sflowtool prints, in one call (the id read big-endian, then swapped: see IPID above)."""


def _mac(b: bytes) -> str:
    return b.hex()


def _u16(b: bytes, at: int) -> int:
    return (b[at] << 8) | b[at + 1]


def signed32(n: int) -> int:
    n &= 0xFFFFFFFF
    return n - (1 << 32) if n & 0x80000000 else n


class _Dissection:
    """State of one header decode: the bytes, what was printed, the layers found."""

    __slots__ = ("extensions", "h", "layers", "out")

    def __init__(self, header: bytes) -> None:
        self.h = header
        self.out: list[Entry] = []
        self.layers: Layers | None = None
        """Set when sflowtool would go on to decode an IP header (at ``layers.l3``)."""
        self.extensions: list[int] = []

    def put(self, name: str, value: object) -> None:
        self.out.append((name, str(value)))

    # ------------------------------------------------------------ link layer

    def ethernet(self) -> None:
        h = self.h
        if len(h) < 14:
            return
        dst, src, _ = _ETHERNET.unpack_from(h)
        self.out += (("dstMAC", dst.hex()), ("srcMAC", src.hex()))
        layers = walk(h, HEADER_ETHERNET, 0, len(h), SFLOWTOOL, self.extensions)
        type_len, tags, at, version, _, _, _ = layers
        for depth in range(tags):
            tci = _u16(h, 14 + 4 * depth)
            suffix = f".{depth}" if depth else ""
            self.put("decodedVLAN" + suffix, tci & 0x0FFF)
            self.put("decodedPriority" + suffix, tci >> 13)
        if at < 0 or len(h) < _IP_HEADER:
            return  # the header ends inside a tag, or is too short for sflowtool to go on
        after_tags = 14 + 4 * tags
        if type_len <= MAX_8023_LENGTH or type_len == 0x0600:
            if type_len in (0x0200, 0x0201, 0x0600) and self._is_ipx(after_tags):
                return
            if at == after_tags and type_len != 0x0600:  # 802.2 LLC that does not carry IP
                oui = h[at + 3 : at + 6]
                if h[at : at + 3] == b"\xaa\xaa\x03" and len(oui) == 3 and oui != b"\0\0\0":
                    self.put("VSNAP_OUI", "-".join(f"{x:02X}" for x in oui))
                return
        self.out.append(("ethernet_type", str(type_len)))
        if (type_len == ETH_P_IP and version == 4) or (type_len == ETH_P_IPV6 and at < len(h) and h[at] >> 4 == 6):
            self.layers = layers

    def _is_ipx(self, at: int) -> bool:
        h = self.h
        if len(h) - at < 4:
            return False
        return h[at] == 0xFF and h[at + 1] == 0xFF and 30 <= _u16(h, at + 2) <= 30 + 546

    def ieee80211(self) -> None:
        """Only data frames carry addresses sflowtool prints; their meaning depends on ToDS/FromDS."""
        h = self.h
        if len(h) < 24:
            return
        fc = h[0] | (h[1] << 8)
        if (fc >> 2) & 3 != 2:
            return
        to_ds, from_ds = (fc >> 8) & 1, (fc >> 9) & 1
        addr1, addr2, addr3 = h[4:10], h[10:16], h[16:22]
        if to_ds:
            dst = addr3
            src = h[24:30] if from_ds else addr2
        else:
            dst = addr1
            src = addr3 if from_ds else addr2
        if len(src) == 6:
            self.put("srcMAC", _mac(src))
        self.put("dstMAC", _mac(dst))
        self.put("txMAC", _mac(addr2))
        self.put("rxMAC", _mac(addr1))

    # ------------------------------------------------------------ IP layers

    def ipv4(self, at: int, l4: int) -> None:
        h = self.h
        if len(h) - at < _IP_HEADER:
            return
        _, tos, total_length, ip_id, fragment, ttl, protocol, src, dst = _IPV4.unpack_from(h, at)
        self.out += (
            ("ip.tot_len", str(total_length)),
            ("srcIP", socket.inet_ntoa(src)),
            ("dstIP", socket.inet_ntoa(dst)),
            ("IPProtocol", str(protocol)),
            ("IPTOS", str(tos)),
            ("IPTTL", str(ttl)),
            ("IPID", str(((ip_id & 0xFF) << 8) | (ip_id >> 8))),
        )
        fragment_offset = fragment & 0x1FFF
        if fragment_offset:
            self.put("IPFragmentOffset", fragment_offset)
            return
        if l4 <= len(h):
            self.layer4(protocol, l4)

    def ipv6(self, layers: Layers) -> None:
        h, at = self.h, layers.l3
        if len(h) - at < _IPV6_HEADER:
            return
        if h[at] >> 4 != 6:
            self.out.append(Note(f"header decode error: unexpected IP version: {h[at] >> 4}"))
            return
        self.put("IPTOS", ((h[at] & 15) << 4) + (h[at + 1] >> 4))
        self.put("IP6_label", f"0x{((h[at + 1] & 15) << 16) + _u16(h, at + 2):x}")
        payload_length = _u16(h, at + 4)
        self.put("IPV6_payloadLen", payload_length or "<jumbo>")
        self.put("IPTTL", h[at + 7])
        self.put("srcIP6", ipaddress.IPv6Address(h[at + 8 : at + 24]).exploded)
        self.put("dstIP6", ipaddress.IPv6Address(h[at + 24 : at + 40]).exploded)
        self.out += (("IP6HeaderExtension", str(e)) for e in self.extensions)
        if layers.proto < 0:
            return  # an extension header ran off the end of the captured bytes
        self.put("IPProtocol", layers.proto)
        self.layer4(layers.proto, layers.l4)

    def layer4(self, protocol: int, at: int) -> None:
        h = self.h
        if len(h) - at < 8:
            return
        if protocol == 1:
            self.put("ICMPType", h[at])
            self.put("ICMPCode", h[at + 1])
        elif protocol == 6:
            source, destination = _PORTS.unpack_from(h, at)
            self.out += (("TCPSrcPort", str(source)), ("TCPDstPort", str(destination)))
            if len(h) - at > 13:
                self.out.append(("TCPFlags", str(h[at + 13])))
        elif protocol == 17:
            source, destination, length = _UDP.unpack_from(h, at)
            self.out += (("UDPSrcPort", str(source)), ("UDPDstPort", str(destination)), ("UDPBytes", str(length)))


def dissect_header(protocol: int, frame_length: int, stripped: int, header: bytes) -> list[Entry]:
    """The fields sflowtool prints for a sampled header, after ``headerBytes``."""
    d = _Dissection(bytes(header))
    if protocol == HEADER_ETHERNET:
        d.ethernet()
    elif protocol in (HEADER_IPV4, HEADER_IPV6):
        d.layers = walk(d.h, protocol, 0, len(d.h), SFLOWTOOL, d.extensions)
    elif protocol == HEADER_80211:
        d.ieee80211()
    elif protocol in _NO_DECODE:
        d.out.append(Note(f"NO_DECODE headerProtocol={protocol}"))
    else:
        d.out.append(Note(f"UNKNOWN headerProtocol={signed32(protocol)}"))
    layers = d.layers
    if layers is not None:
        ethertype, _, at, _, _, l4, _ = layers
        d.out.append(("IPSize", str(signed32(frame_length - stripped - at))))
        if ethertype == ETH_P_IP:
            d.ipv4(at, l4)
        else:
            d.ipv6(layers)
    return d.out
