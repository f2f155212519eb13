"""The tcp memo's two readers of a header's flow, per sample (``header_flow``, in place) and over a whole ring read
(``ring_fields`` then ``fields_flow``): they agree for every layout, and where they recognise the flow its
bytes are the addresses and ports the shared header parser finds.
"""

from __future__ import annotations

import struct

from hsflowd_py.flow import HEADER_ETHERNET
from hsflowd_py.modules.tcp.memo import FLOW_BYTES_END, fields_flow, header_flow, one_flow, ring_fields
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


OFFSET, STRIDE = 84, 512
"""As the eBPF sampler's ring holds samples: a record every 512 bytes, its header 84 bytes in."""


def ring_of(frames: list[bytes], offset: int = OFFSET, stride: int = STRIDE) -> bytearray:
    ring = bytearray(stride * len(frames))
    for i, f in enumerate(frames):
        assert len(f) >= FLOW_BYTES_END
        ring[i * stride + offset : i * stride + offset + len(f)] = f
    return ring


def test_ring_read_agrees_with_each_sample_and_the_parser() -> None:
    offset, stride = OFFSET, STRIDE
    frames = list(FRAMES.values())
    ring = ring_of(frames)
    bulk = [fields_flow(f) for f in ring_fields(memoryview(ring), offset, stride)]
    each = [header_flow(ring, i * stride + offset, len(f)) for i, f in enumerate(frames)]
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


def test_one_flow_compares_every_field_the_flow_is_read_from() -> None:
    """Datagrams of one flow (their identification and checksum differ) are one flow; a record that differs
    in any field read (protocol, fragment offset, an address or port, the family) is not."""
    v4 = [ipv4(17, ident=i) for i in range(1, 9)]
    v6 = [ipv6(17)] * 8
    for stride in (STRIDE, 510):  # records a whole number of words apart or not
        assert one_flow(ring_of(v4, stride=stride), OFFSET, stride)
        assert one_flow(ring_of(v6, stride=stride), OFFSET, stride)
        assert one_flow(ring_of([FRAMES["ARP"]] * 3, stride=stride), OFFSET, stride)
        others = [ipv4(6), ipv4(17, frag=0x2010), ipv4(17, ihl=6), ipv6(17), FRAMES["ARP"]]
        others += [f[:k] + bytes([f[k] ^ 1]) + f[k + 1 :] for f in v4[:1] for k in (26, 33, 37)]  # addresses, ports
        for other in others:
            assert not one_flow(ring_of([*v4[:5], other, *v4[5:]], stride=stride), OFFSET, stride)
        v6_other_port = v6[0][:57] + bytes([v6[0][57] ^ 1]) + v6[0][58:]
        assert not one_flow(ring_of([*v6[:3], v6_other_port], stride=stride), OFFSET, stride)
        assert not one_flow(ring_of([*v6[:3], ipv4(17)], stride=stride), OFFSET, stride)
