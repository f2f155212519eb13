"""The sampled-header dissector: sflowtool's field names and quirks, and safety on any bytes."""

from __future__ import annotations

import struct

from hypothesis import given, settings
from hypothesis import strategies as st

from hsflowd_py.collector.dissect import Note, dissect_header

MACS = bytes.fromhex("7a65a9ff20ba76bf27fd16ee")


def ipv4(protocol: int, payload: bytes, ident: bytes = b"\x24\x87", frag: int = 0x4000) -> bytes:
    total = 20 + len(payload)
    return (
        bytes([0x45, 0x10])
        + struct.pack(">H", total)
        + ident
        + struct.pack(">H", frag)
        + bytes([64, protocol])
        + b"\0\0"
        + bytes([10, 252, 0, 1, 10, 252, 0, 2])
        + payload
    )


def fields(entries: list) -> dict[str, str]:
    return dict(e for e in entries if not isinstance(e, Note))


def test_ethernet_ipv4_udp() -> None:
    frame = MACS + b"\x08\x00" + ipv4(17, struct.pack(">HHHH", 5353, 6343, 28, 0) + b"x" * 20)
    out = dissect_header(1, len(frame) + 4, 4, frame)
    assert out == [
        ("dstMAC", "7a65a9ff20ba"),
        ("srcMAC", "76bf27fd16ee"),
        ("ethernet_type", "2048"),
        ("IPSize", "48"),
        ("ip.tot_len", "48"),
        ("srcIP", "10.252.0.1"),
        ("dstIP", "10.252.0.2"),
        ("IPProtocol", "17"),
        ("IPTOS", "16"),
        ("IPTTL", "64"),
        ("IPID", "34596"),  # sflowtool prints the id byte-swapped (0x2487 read little-endian)
        ("UDPSrcPort", "5353"),
        ("UDPDstPort", "6343"),
        ("UDPBytes", "28"),
    ]


def test_vlan_tags_and_icmp() -> None:
    frame = MACS + b"\x88\xa8\x20\x64" + b"\x81\x00\x00\x07" + b"\x08\x00" + ipv4(1, b"\x08\x00" + b"\0" * 6)
    got = fields(dissect_header(1, 100, 4, frame))
    assert got["decodedVLAN"] == "100" and got["decodedPriority"] == "1"
    assert got["decodedVLAN.1"] == "7" and got["decodedPriority.1"] == "0"
    assert got["IPSize"] == str(100 - 4 - 22)
    assert (got["ICMPType"], got["ICMPCode"]) == ("8", "0")


def test_fragment_stops_at_the_ip_header() -> None:
    got = fields(dissect_header(11, 60, 0, ipv4(6, b"\0" * 20, frag=0x2010)))
    assert got["IPFragmentOffset"] == "16"
    assert "TCPSrcPort" not in got


def test_tcp_flags_need_their_byte_captured() -> None:
    tcp = struct.pack(">HHIIBB", 40434, 5201, 1, 0, 0xA0, 0x02)
    assert fields(dissect_header(11, 100, 0, ipv4(6, tcp)))["TCPFlags"] == "2"
    cut = fields(dissect_header(11, 100, 0, ipv4(6, tcp[:10])))
    assert cut["TCPDstPort"] == "5201" and "TCPFlags" not in cut


def test_ipv6_with_an_extension_header() -> None:
    hop_by_hop = bytes([6, 0]) + b"\0" * 6
    tcp = struct.pack(">HHIIBB", 443, 50000, 0, 0, 0x50, 0x12) + b"\0" * 6
    ip6 = (
        bytes([0x6A, 0xB1, 0x23, 0x45])
        + struct.pack(">H", 28)
        + bytes([0, 63])
        + bytes.fromhex("fd000252000000000000000000000001")
        + bytes.fromhex("fd000252000000000000000000000002")
    )
    frame = MACS + b"\x86\xdd" + ip6 + hop_by_hop + tcp
    out = dissect_header(1, len(frame) + 4, 4, frame)
    assert out[2:] == [
        ("ethernet_type", "34525"),
        ("IPSize", str(len(frame) - 14)),
        ("IPTOS", "171"),
        ("IP6_label", "0x12345"),
        ("IPV6_payloadLen", "28"),
        ("IPTTL", "63"),
        ("srcIP6", "fd00:0252:0000:0000:0000:0000:0000:0001"),
        ("dstIP6", "fd00:0252:0000:0000:0000:0000:0000:0002"),
        ("IP6HeaderExtension", "0"),
        ("IPProtocol", "6"),
        ("TCPSrcPort", "443"),
        ("TCPDstPort", "50000"),
        ("TCPFlags", "18"),
    ]


def test_ipv6_header_protocol_with_the_wrong_version_is_a_text_only_note() -> None:
    assert dissect_header(12, 60, 0, b"\x45" + b"\0" * 39) == [
        ("IPSize", "60"),
        Note("header decode error: unexpected IP version: 4"),
    ]


def test_snap_and_vendor_oui() -> None:
    snap = MACS + struct.pack(">H", 100) + b"\xaa\xaa\x03\0\0\0\x08\x00" + ipv4(253, b"")
    assert fields(dissect_header(1, 200, 4, snap))["IPSize"] == str(200 - 4 - 22)
    vendor = MACS + struct.pack(">H", 100) + b"\xaa\xaa\x03\x00\x00\x0c\x20\x00" + b"\0" * 20
    assert dissect_header(1, 200, 4, vendor)[-1] == ("VSNAP_OUI", "00-00-0C")


def test_undecoded_protocols_and_short_headers() -> None:
    assert dissect_header(7, 64, 0, b"\xff" * 64) == [Note("NO_DECODE headerProtocol=7")]
    assert dissect_header(1, 64, 4, MACS) == []
    assert dissect_header(1, 64, 4, MACS + b"\x08\x00\x45") == [("dstMAC", "7a65a9ff20ba"), ("srcMAC", "76bf27fd16ee")]


def test_ip_size_is_signed_like_sflowtools_percent_d() -> None:
    assert fields(dissect_header(11, 0, 4, ipv4(1, b"")))["IPSize"] == "-4"


def test_80211_data_frame_addresses() -> None:
    a1, a2, a3, a4 = (bytes([i]) * 6 for i in (1, 2, 3, 4))
    to_and_from_ds = bytes([0x08, 0x03]) + b"\0\0" + a1 + a2 + a3 + b"\0\0" + a4
    assert fields(dissect_header(15, 64, 0, to_and_from_ds)) == {
        "srcMAC": a4.hex(),
        "dstMAC": a3.hex(),
        "txMAC": a2.hex(),
        "rxMAC": a1.hex(),
    }


@settings(max_examples=3000)
@given(
    protocol=st.sampled_from([1, 11, 12, 15, 3, 0, 2**32 - 1]),
    frame_length=st.integers(0, 2**32 - 1),
    stripped=st.integers(0, 2**32 - 1),
    header=st.binary(max_size=256),
)
def test_any_bytes_dissect_without_error(protocol: int, frame_length: int, stripped: int, header: bytes) -> None:
    for entry in dissect_header(protocol, frame_length, stripped, header):
        assert isinstance(entry, Note) or (isinstance(entry, tuple) and all(isinstance(x, str) for x in entry))


_ETHERNET_HEADS = st.sampled_from(
    [b"\x08\x00\x45", b"\x86\xdd\x60", b"\x81\x00\0\x05\x08\x00\x46", b"\x00\x40\xaa\xaa\x03"]
)


@settings(max_examples=3000)
@given(head=_ETHERNET_HEADS, rest=st.binary(max_size=120))
def test_plausible_frames_dissect_without_error(head: bytes, rest: bytes) -> None:
    dissect_header(1, 1500, 4, MACS + head + rest)
