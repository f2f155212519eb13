"""The pcap reader: link types, IP versions, and files that are cut short or corrupt."""

from __future__ import annotations

import io
import ipaddress
import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hsflowd_py.collector.pcapfile import PcapError, PcapPacket, read_pcap

PAYLOAD = b"sflow-datagram!!"


def udp(payload: bytes, sport: int = 50000, length: int | None = None) -> bytes:
    return struct.pack(">HHHH", sport, 6343, 8 + len(payload) if length is None else length, 0) + payload


def ipv4(segment: bytes, protocol: int = 17, frag: int = 0x4000, src: bytes = bytes([192, 0, 2, 2])) -> bytes:
    return (
        bytes([0x45, 0])
        + struct.pack(">HHH", 20 + len(segment), 1, frag)
        + bytes([64, protocol, 0, 0])
        + src
        + bytes([127, 0, 0, 1])
        + segment
    )


def ipv6(segment: bytes, next_header: int = 17) -> bytes:
    src = ipaddress.IPv6Address("fd00:252::1").packed
    return bytes([0x60, 0, 0, 0]) + struct.pack(">HBB", len(segment), next_header, 64) + src + src + segment


def ethernet(packet: bytes, ethertype: int = 0x0800) -> bytes:
    return b"\0" * 12 + struct.pack(">H", ethertype) + packet


def pcap(frames: list[bytes], linktype: int = 1, order: str = "<", magic: int = 0xA1B2C3D4) -> bytes:
    out = struct.pack(order + "IHHiIII", magic, 2, 4, 0, 0, 262144, linktype)
    for i, frame in enumerate(frames):
        out += struct.pack(order + "IIII", 1795498132 + i, 982722000, len(frame), len(frame)) + frame
    return out


def read(data: bytes) -> list[PcapPacket]:
    return list(read_pcap(io.BytesIO(data)))


def test_ethernet_ipv4_with_trailer_padding() -> None:
    (p,) = read(pcap([ethernet(ipv4(udp(PAYLOAD))) + b"\0" * 6]))
    assert (p.seconds, p.microseconds, p.payload, p.truncated) == (1795498132, 982722000, PAYLOAD, False)
    assert (str(p.source), p.source_port) == ("192.0.2.2", 50000)


def test_nanosecond_big_endian_file() -> None:
    (p,) = read(pcap([ethernet(ipv4(udp(PAYLOAD)))], order=">", magic=0xA1B23C4D))
    assert p.microseconds == 982722 and p.payload == PAYLOAD


@pytest.mark.parametrize(
    ("linktype", "frame"),
    [
        (113, b"\0\0\0\1\0\6" + b"\0" * 8 + b"\x86\xdd" + ipv6(udp(PAYLOAD))),  # Linux cooked v1
        (276, b"\x86\xdd\0\0" + b"\0" * 16 + ipv6(udp(PAYLOAD))),  # Linux cooked v2
        (101, ipv6(udp(PAYLOAD))),  # raw IP
        (228, ipv4(udp(PAYLOAD))),
        (229, ipv6(bytes([17, 0]) + b"\0" * 6 + udp(PAYLOAD), next_header=0)),  # after a hop-by-hop header
        (1, b"\0" * 12 + b"\x81\x00\0\x05" + b"\x86\xdd" + ipv6(udp(PAYLOAD))),  # 802.1Q tagged
    ],
)
def test_link_types(linktype: int, frame: bytes) -> None:
    (p,) = read(pcap([frame], linktype=linktype))
    assert p.payload == PAYLOAD
    assert p.source.version in (4, 6)


def test_not_udp_and_fragments_are_skipped() -> None:
    frames = [
        ethernet(ipv4(udp(PAYLOAD), protocol=6)),
        ethernet(ipv4(udp(PAYLOAD), frag=0x2000)),  # more fragments follow
        ethernet(ipv6(b"\x11\0\0\1\0\0\0\0" + udp(PAYLOAD), next_header=44)),
        ethernet(b"\0" * 28, ethertype=0x0806),
        ethernet(ipv4(udp(PAYLOAD, sport=1))),
    ]
    assert [p.source_port for p in read(pcap(frames))] == [1]


def test_snaplen_cut_is_flagged() -> None:
    (p,) = read(pcap([ethernet(ipv4(udp(PAYLOAD, length=8 + 1000)))]))
    assert p.truncated and p.payload == PAYLOAD


def test_file_cut_short_ends_quietly() -> None:
    data = pcap([ethernet(ipv4(udp(PAYLOAD)))] * 3)
    for cut in range(24, len(data)):
        assert len(read(data[:cut])) == (cut - 24) // (16 + 14 + 20 + 8 + len(PAYLOAD))


class _Trickle(io.RawIOBase):
    """A stream that gives at most ``step`` bytes a read, as a pipe fed by a slow writer does."""

    def __init__(self, data: bytes, step: int) -> None:
        self.data, self.step, self.at = data, step, 0

    def readable(self) -> bool:
        return True

    def readinto(self, b: bytearray) -> int:  # type: ignore[override]
        n = min(len(b), self.step, len(self.data) - self.at)
        b[:n] = self.data[self.at : self.at + n]
        self.at += n
        return n


@pytest.mark.parametrize("step", [1, 7, 64, 1 << 20])
def test_records_split_across_reads(step: int) -> None:
    """The reader takes what each read gives: a record may start in one read and end several later."""
    data = pcap([ethernet(ipv4(udp(PAYLOAD * k, sport=k))) for k in range(1, 6)])
    stream = io.BufferedReader(_Trickle(data + b"\0" * 9, step), buffer_size=step)
    assert [(p.source_port, p.payload) for p in read_pcap(stream)] == [(k, PAYLOAD * k) for k in range(1, 6)]


@pytest.mark.parametrize(
    ("head", "message"),
    [
        (b"", "shorter"),
        (b"\x0a\x0d\x0d\x0a" + b"\0" * 20, "pcapng"),
        (b"GIF89a" + b"\0" * 18, "not a pcap"),
        (struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 105), "link type 105"),
    ],
)
def test_unreadable_files(head: bytes, message: str) -> None:
    with pytest.raises(PcapError, match=message):
        read(head)


LINKTYPES = st.sampled_from([1, 113, 276, 101, 228, 229])


@settings(max_examples=1000)
@given(linktype=LINKTYPES, body=st.binary(max_size=400))
def test_any_bytes_after_a_header_never_raise(linktype: int, body: bytes) -> None:
    read(pcap([], linktype=linktype) + body)


@settings(max_examples=2000)
@given(linktype=LINKTYPES, frames=st.lists(st.binary(max_size=120), max_size=4))
def test_any_frames_never_raise(linktype: int, frames: list[bytes]) -> None:
    read(pcap(frames, linktype=linktype))
