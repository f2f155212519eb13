"""The tcp memo's two readers of a header's flow, per sample (``flow_bytes``) and over a whole ring read
(``ring_fields`` then ``fields_flow``): they agree for every layout, and where they recognise the flow its
bytes are the addresses and ports the shared header parser finds.
"""

from __future__ import annotations

import struct

from hsflowd_py.flow import HEADER_ETHERNET
from hsflowd_py.modules.tcp.memo import FLOW_BYTES_END, fields_flow, flow_bytes, ring_fields
from hsflowd_py.packet import parse

MACS = bytes.fromhex("020000000001020000000002")
V4_SRC, V4_DST = bytes([192, 0, 2, 1]), bytes([198, 51, 100, 7])
V6_SRC, V6_DST = bytes.fromhex("20010db8000000000000000000000001"), bytes.fromhex("20010db8000000000000000000000002")
PORTS = struct.pack("!HH", 40000, 5201)


def ipv4(proto: int, *, ihl: int = 5, frag: int = 0x4000, ident: int = 1) -> bytes:
    options = bytes(4 * (ihl - 5))
    transport = PORTS + bytes(20)  # a frame as long as an IPv6 one: every reader reads within it
    head = struct.pack("!BBHHHBBH4s4s", 0x40 | ihl, 0, 20 + len(options) + len(transport), ident, frag, 64, proto, 0,
                       V4_SRC, V4_DST)  # fmt: skip
    return MACS + b"\x08\x00" + head + options + transport


def ipv6(next_header: int) -> bytes:
    transport = PORTS + bytes(16)
    head = struct.pack("!IHBB16s16s", 0x60000000, len(transport), next_header, 64, V6_SRC, V6_DST)
    return MACS + b"\x86\xdd" + head + transport


FRAMES = {
    "IPv4 TCP": ipv4(6),
    "IPv4 UDP, another datagram": ipv4(17, ident=2),
    "IPv4 UDP": ipv4(17, ident=3),
    "IPv4 ICMP": ipv4(1),
    "IPv4 with options": ipv4(6, ihl=6),
    "IPv4 first fragment": ipv4(17, frag=0x2000),
    "IPv4 later fragment": ipv4(17, frag=0x2010),
    "IPv6 TCP": ipv6(6),
    "IPv6 UDP": ipv6(17),
    "IPv6 hop-by-hop first": ipv6(0),
    "ARP": MACS + b"\x08\x06" + bytes(46),
    "VLAN-tagged IPv4": MACS + b"\x81\x00\x00\x05" + ipv4(6)[12:],
}


def test_ring_read_agrees_with_each_sample_and_the_parser() -> None:
    offset, stride = 84, 512
    frames = list(FRAMES.values())
    ring = bytearray(stride * len(frames))
    for i, f in enumerate(frames):
        assert len(f) >= FLOW_BYTES_END
        ring[i * stride + offset : i * stride + offset + len(f)] = f
    bulk = [fields_flow(f) for f in ring_fields(memoryview(ring), offset, stride)]
    each = [flow_bytes(f[:FLOW_BYTES_END]) for f in frames]
    assert bulk == each
    for (name, frame), known in zip(FRAMES.items(), bulk, strict=True):
        flow = parse(frame, HEADER_ETHERNET)
        if known is not None and known[0] in (6, 17):  # other protocols have no ports: not looked up
            assert flow is not None, name
            assert known == (flow.proto, flow.src + flow.dst + struct.pack("!HH", flow.sport, flow.dport)), name
    recognised = {name for name, known in zip(FRAMES, bulk, strict=True) if known is not None}
    assert recognised == {
        "IPv4 TCP", "IPv4 UDP, another datagram", "IPv4 UDP", "IPv4 ICMP", "IPv4 first fragment", "IPv6 TCP",
        "IPv6 UDP",
    }  # fmt: skip
    fields = ring_fields(memoryview(ring), offset, stride)
    assert fields[1] == fields[2], "two datagrams of one flow: equal fields, one answer for both"
