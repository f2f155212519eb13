"""The packet walker's layer offsets: tshark's dissection of the same bytes as ground truth, the
layers tshark does not know, cut headers, and hostile bytes.
"""

from __future__ import annotations

import shutil
import struct
import subprocess
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hsflowd_py.packet import (
    FIRST_FRAGMENT,
    LATER_FRAGMENT,
    LINK_IP,
    NO_LAYERS,
    NOT_FRAGMENT,
    SFLOWTOOL,
    STANDARD,
    ip_end,
    ip_length_at,
    payload_offset,
    tcp_sequence_at,
    walk,
)

MACS = bytes.fromhex("020000000001020000000002")
V4A, V4B = bytes([192, 0, 2, 1]), bytes([198, 51, 100, 7])
V6A, V6B = bytes.fromhex("20010db8000000000000000000000001"), bytes.fromhex("20010db8000000000000000000000002")
PAYLOAD = b"hello, walker"


def tcp(sport: int = 40000, dport: int = 443) -> bytes:
    return struct.pack("!HHIIBBHHH", sport, dport, 0x11223344, 0, 0x50, 0x18, 512, 0, 0) + PAYLOAD


def udp(sport: int = 5353, dport: int = 53) -> bytes:
    return struct.pack("!HHHH", sport, dport, 8 + len(PAYLOAD), 0) + PAYLOAD


def ipv4(proto: int, payload: bytes, options: bytes = b"", frag: int = 0) -> bytes:
    ihl = 5 + len(options) // 4
    head = struct.pack("!BBHHHBBH4s4s", 0x40 | ihl, 0, ihl * 4 + len(payload), 1, frag, 64, proto, 0, V4A, V4B)
    return head + options + payload


def ipv6(nxt: int, payload: bytes) -> bytes:
    return struct.pack("!IHBB16s16s", 6 << 28, len(payload), nxt, 64, V6A, V6B) + payload


def ether(ethertype: int, payload: bytes, tags: tuple[int, ...] = ()) -> bytes:
    return (
        MACS
        + b"".join(struct.pack("!HH", tpid, 100 + i) for i, tpid in enumerate(tags))
        + ethertype.to_bytes(2)
        + payload
    )


def extension(nxt: int, units: int) -> bytes:
    """An IPv6 hop-by-hop, routing or destination options header of (units + 1) * 8 bytes."""
    return bytes([nxt, units]) + bytes(6 + 8 * units)


def fragment_header(nxt: int, offset: int = 0, more: bool = False) -> bytes:
    return struct.pack("!BBHI", nxt, 0, offset << 3 | more, 7)


def ah(nxt: int) -> bytes:
    return bytes([nxt, 4, 0, 0]) + bytes(20)  # (4 + 2) * 4 = 24 bytes: AH counts 4-byte words


EXTENSION_CHAIN = ipv6(0, extension(43, 0) + extension(44, 1) + fragment_header(51) + ah(60) + extension(6, 0) + tcp())

FRAMES = {
    "ipv4 tcp": ether(0x0800, ipv4(6, tcp())),
    "q-in-q ipv4 options udp": ether(0x0800, ipv4(17, udp(), options=b"\x01" * 8), (0x88A8, 0x8100)),
    "9100 ipv6 extension chain tcp": ether(0x86DD, EXTENSION_CHAIN, (0x9100,)),
    "8100 ipv6 hop-by-hop udp": ether(0x86DD, ipv6(0, extension(17, 1) + udp()), (0x8100,)),
    "802.3 snap ipv4 tcp": MACS + (8 + 20 + len(tcp())).to_bytes(2) + b"\xaa\xaa\x03\0\0\0\x08\x00" + ipv4(6, tcp()),
    "ipv6 ah udp": ether(0x86DD, ipv6(51, ah(17) + udp())),
}


# ------------------------------------------------------------------ tshark


def tshark_layers(frames: list[bytes], tmp: Path) -> list[dict[str, int]]:
    """Per frame, where tshark found each protocol and field: {name: byte position}."""
    pcap = tmp / "frames.pcap"
    with open(pcap, "wb") as f:
        f.write(struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 1))
        for frame in frames:
            f.write(struct.pack("<IIII", 0, 0, len(frame), len(frame)) + frame)
    pdml = subprocess.run(
        ["tshark", "-n", "-r", str(pcap), "-T", "pdml"], capture_output=True, text=True, check=True, timeout=60
    ).stdout
    out = []
    for packet in ET.fromstring(pdml).iter("packet"):
        seen: dict[str, int] = {}
        for node in packet.iter():
            if node.get("pos") is not None:
                seen.setdefault(node.get("name", ""), int(node.get("pos", "0")))
        out.append(seen)
    return out


@pytest.mark.skipif(shutil.which("tshark") is None, reason="tshark not installed")
def test_offsets_match_tsharks_dissection(tmp_path: Path) -> None:
    names = list(FRAMES)
    for name, frame, seen in zip(names, FRAMES.values(), tshark_layers(list(FRAMES.values()), tmp_path), strict=True):
        layers = walk(frame)
        ip = "ip" if "ip" in seen else "ipv6"
        transport = "tcp" if "tcp" in seen else "udp"
        assert layers.l3 == seen[ip], name
        assert layers.version == (4 if ip == "ip" else 6), name
        assert layers.l4 == seen[transport], name
        assert layers.proto == (6 if transport == "tcp" else 17), name
        assert ip_length_at(layers) == seen["ip.len" if ip == "ip" else "ipv6.plen"], name
        assert ip_end(frame, layers, len(frame)) == len(frame), name
        if transport == "tcp":
            assert tcp_sequence_at(layers, len(frame)) == seen["tcp.seq"], name
            assert payload_offset(frame, layers) == seen["tcp.payload"], name
        else:
            assert tcp_sequence_at(layers, len(frame)) == -1
            assert payload_offset(frame, layers) == seen["udp.payload"], name
        assert frame[payload_offset(frame, layers) :] == PAYLOAD  # type: ignore[misc]


# ------------------------------------------------------- beyond tshark


@pytest.mark.parametrize("tags", [(0x9200,), (0x9300, 0x8100), (0x88A8, 0x9100)])
def test_every_tpid_is_a_vlan_tag(tags: tuple[int, ...]) -> None:
    layers = walk(ether(0x0800, ipv4(6, tcp()), tags))
    assert (layers.tags, layers.l3, layers.l4, layers.proto) == (len(tags), 14 + 4 * len(tags), 34 + 4 * len(tags), 6)


def test_tag_budget_is_a_rule() -> None:
    frame = ether(0x0800, ipv4(6, tcp()), (0x8100,) * 3)
    assert walk(frame).l3 == -1 and walk(frame).ethertype == 0x8100
    assert walk(frame, rules=SFLOWTOOL).l4 == 14 + 12 + 20


def test_sflowtool_reads_ah_in_8_byte_units() -> None:
    frame = ether(0x86DD, ipv6(51, ah(17) + udp()))
    assert walk(frame).l4 == 14 + 40 + 24
    chain: list[int] = []
    quirk = walk(frame, rules=SFLOWTOOL, chain=chain)
    assert chain == [51] and quirk.l4 == 14 + 40 + 40  # (4 + 1) * 8


def test_extension_budget_bounds_the_walk() -> None:
    loop = ipv6(0, extension(0, 0) * 20)
    assert walk(loop, 12).proto == -1
    chain: list[int] = []
    assert walk(loop, 12, rules=SFLOWTOOL, chain=chain).proto == -1 and len(chain) == 21


def test_fragments() -> None:
    first = walk(ipv6(44, fragment_header(17, 0, more=True) + udp()), 12)
    later = walk(ipv6(44, fragment_header(17, 185) + udp()), 12)
    assert (first.fragment, first.proto) == (FIRST_FRAGMENT, 17)
    assert (later.fragment, later.proto) == (LATER_FRAGMENT, 17)
    assert walk(ipv4(6, tcp(), frag=0x2000), 11).fragment == FIRST_FRAGMENT
    later4 = ipv4(6, tcp(), frag=0x0010)
    assert walk(later4, 11).fragment == LATER_FRAGMENT
    assert payload_offset(later4, walk(later4, 11)) is None and tcp_sequence_at(walk(later4, 11), len(later4)) == -1
    assert walk(ipv4(6, tcp()), 11).fragment == NOT_FRAGMENT


def test_bare_ip_and_other_links() -> None:
    v4, v6 = ipv4(17, udp()), ipv6(6, tcp())
    assert walk(v4, LINK_IP)[2:6] == (0, 4, 17, 20) and walk(v6, LINK_IP)[2:6] == (0, 6, 6, 40)
    assert walk(v4, 12).version == 0 and walk(v6, 11).version == 0
    assert walk(b"\x45" + bytes(30), 2) == NO_LAYERS and walk(b"", LINK_IP) == NO_LAYERS
    assert walk(b"\x41" + v4[1:], 11).version == 0  # header length 4 words: not IPv4
    assert walk(b"\x41" + v4[1:], 11, rules=SFLOWTOOL).l4 == 4  # sflowtool believes the header protocol


def test_a_walk_inside_a_buffer_gives_offsets_in_that_buffer() -> None:
    frame = FRAMES["9100 ipv6 extension chain tcp"]
    ring = bytes(100) + frame + bytes(50)
    inside, alone = walk(ring, 1, 100, 100 + len(frame)), walk(frame)
    assert inside.l3 == alone.l3 + 100 and inside.l4 == alone.l4 + 100
    assert payload_offset(ring, inside, 100 + len(frame)) == payload_offset(frame, alone) + 100  # type: ignore[operator]
    assert walk(ring, 1, 100, 100 + 60).proto == -1  # cut inside the extension chain


@pytest.mark.parametrize("name", list(FRAMES))
def test_a_cut_header_gives_the_same_offsets_or_none(name: str) -> None:
    frame = FRAMES[name]
    for rules in (STANDARD, SFLOWTOOL):
        whole = walk(frame, rules=rules)
        for n in range(len(frame)):
            layers = walk(frame[:n], rules=rules)
            if layers.proto >= 0:
                assert layers[2:6] == whole[2:6], n
            else:
                assert n < whole.l4 or whole.l4 < 0, n
            offset = payload_offset(frame[:n], layers)
            assert offset is None or offset == payload_offset(frame, whole)


@settings(max_examples=3000, deadline=None)
@given(st.binary(max_size=200), st.sampled_from([1, 11, 12, LINK_IP, 0, 15]), st.booleans(), st.integers(0, 8))
def test_any_bytes_walk_inside_them(data: bytes, link: int, sflowtool: bool, start: int) -> None:
    chain: list[int] = []
    layers = walk(data, link, start, None, SFLOWTOOL if sflowtool else STANDARD, chain)
    assert -1 <= layers.l3 <= max(len(data), start)
    assert (layers.proto < 0) == (layers.l4 < 0)
    if layers.version:
        assert layers.l3 + (20 if layers.version == 4 else 40) <= len(data)
        assert 0 <= ip_end(data, layers, len(data)) <= len(data)
    sequence = tcp_sequence_at(layers, len(data))
    assert sequence == -1 or layers.l4 + 4 == sequence <= len(data) - 4
    offset = payload_offset(data, layers)
    assert offset is None or offset >= layers.l4 >= 0
    assert len(chain) <= len(data) // 2 + 1
