"""The eBPF sampler's samples as the kernel writes them: the encoder's bytes, one wire segment each.

The sampler's program runs for real, through the kernel's BPF_PROG_TEST_RUN, on packets built
here (no interface is touched: the test runs it as if on loopback's ifIndex 1), and the ring's
records are compared byte for byte with what ``FlowEncoder`` writes for the same sample, so the
C program and the agent's record table cannot drift apart.  The expected segments of a GSO
packet are built here independently, as the kernel's TCP segmentation would cut them.
"""

from __future__ import annotations

import select
import struct
import time
from collections.abc import Iterator

import pytest

from hsflowd_py import bpf
from hsflowd_py.flow import DIRECTION_IN, DIRECTION_OUT, HEADER_ETHERNET, Interface
from hsflowd_py.modules.pcap import ebpf, ebpf_core, wire
from hsflowd_py.modules.pcap.ebpf import _CONFIG, _COUNTS, _KEY, _Loaded
from hsflowd_py.modules.pcap.sampler import SamplerError
from hsflowd_py.sflow.flow_encoder import FlowEncoder

pytestmark = pytest.mark.root

_SKB = 192
"""sizeof(struct __sk_buff); the test run accepts only a few of its fields."""
IFINDEX = 1
MAC_A, MAC_B = bytes.fromhex("020000000001"), bytes.fromhex("020000000002")


def test_sampler_wire_h_is_generated_from_the_record_table() -> None:
    assert ebpf_core.OBJECT.with_name("sampler_wire.h").read_text() == wire.header_text()


@pytest.fixture
def loaded() -> Iterator[_Loaded]:
    try:
        done = _Loaded(*ebpf_core.load(1 << 16, 1 << 16), "libbpf")
    except SamplerError as e:
        pytest.skip(f"the BPF object cannot be loaded here: {e}")
    yield done
    done.close()


def configure(loaded: _Loaded, rate: int, header_bytes: int = 128, loopback: bool = False) -> bpf.Map:
    maps = loaded.maps
    config = bpf.Map(loaded.config, maps["config"]["key_size"], maps["config"]["value_size"])
    config.update(_KEY.pack(IFINDEX), _CONFIG.pack(rate, header_bytes, bytes(6), 0, 1, loopback))
    counts = bpf.Map(loaded.counts, maps["counts"]["key_size"], maps["counts"]["value_size"])
    counts.update(_KEY.pack(IFINDEX), _COUNTS.pack(0, 0, 0))
    clock = bpf.Map(loaded.clock, maps["clock"]["key_size"], maps["clock"]["value_size"])
    clock.update(_KEY.pack(0), struct.pack("=Q", time.time_ns() - time.monotonic_ns()))
    return counts


def run(prog_fd: int, packet: bytes, gso_segs: int = 0, gso_size: int = 0) -> None:
    """The program once on ``packet``, as the kernel would run it on ifIndex 1."""
    ctx = bytearray(_SKB)
    struct.pack_into("=I", ctx, 40, IFINDEX)
    struct.pack_into("=I", ctx, 164, gso_segs)
    struct.pack_into("=I", ctx, 176, gso_size)
    bpf.run_program(prog_fd, packet, bytes(ctx))


def records(loaded: _Loaded) -> list[bytes]:
    """Every record in the ring, in order."""
    ring = bpf.RingBuffer(loaded.samples, loaded.maps["samples"]["max_entries"])
    try:
        out, cons, prod = [], ring.consumer_pos[0], ring.producer_pos[0]
        while cons < prod:
            pos = ring.data_offset + (cons & ring.mask)
            (length,) = struct.unpack_from("=I", ring.data_map, pos)
            (body,) = struct.unpack_from(">I", ring.data_map, pos + 12)  # the sample's own length word
            out.append(bytes(ring.data_map[pos + 8 : pos + 16 + body]))
            assert length + 8 + 7 & ~7 == ebpf._STEP  # what the agent's drain steps by
            cons += ebpf._STEP
        ring.consumer_pos[0] = cons
        return out
    finally:
        ring.close()


def checksum(header: bytes) -> int:
    total = sum(struct.unpack(f">{len(header) // 2}H", header))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


def ipv4(proto: int, payload_length: int, ident: int) -> bytes:
    head = struct.pack(">BBHHHBBH4s4s", 0x45, 0, 20 + payload_length, ident, 0x4000, 64, proto, 0,
                       bytes([10, 0, 0, 1]), bytes([10, 0, 0, 2]))  # fmt: skip
    return head[:10] + struct.pack(">H", checksum(head)) + head[12:]


def tcp(seq: int, flags: int) -> bytes:
    return struct.pack(">HHIIBBHHH", 40000, 5201, seq, 7, 5 << 4, flags, 512, 0xABCD, 0)


def encoded(header: bytes, frame: int, timestamp: int, number: int, direction_out: bool = True) -> bytes:
    """What the encoder writes for this sample, the interface's ``number``th sample and packet, no drops."""
    encoder = FlowEncoder()
    buf = bytearray(encoder.size(len(header)))
    direction = DIRECTION_OUT if direction_out else DIRECTION_IN
    encoder.pack_into(
        buf, 0, Interface(IFINDEX, 1, HEADER_ETHERNET), b"", 0,
        number, 0, direction, frame, header, 0, len(header), timestamp, number,
    )  # fmt: skip
    return bytes(buf)


def timestamp_of(record: bytes) -> int:
    return struct.unpack_from(">Q", record, len(record) - 8)[0]


def test_a_sample_is_the_encoders_bytes(loaded: _Loaded) -> None:
    configure(loaded, 1)
    udp = struct.pack(">HHHH", 5000, 5239, 8 + 18, 0) + bytes(range(18))
    frame = MAC_A + MAC_B + b"\x08\x00" + ipv4(17, len(udp), 1) + udp
    before = time.time_ns()
    run(loaded.egress, frame)
    (record,) = records(loaded)
    ts = timestamp_of(record)
    assert before - 5_000_000_000 < ts < time.time_ns() + 5_000_000_000  # the epoch, not the boot
    assert record == encoded(frame, len(frame) + 4, ts, 1)  # sequence number 1, pool 1, no drops
    run(loaded.egress, frame)
    (record,) = records(loaded)
    assert record == encoded(frame, len(frame) + 4, timestamp_of(record), 2)


def test_each_sample_of_a_gso_packet_is_one_wire_segment(loaded: _Loaded) -> None:
    """A TSO packet of 3 segments of 1000 bytes, sampled 1-in-1: three samples, each the segment the
    NIC puts on the wire: its IPv4 total length, identification and checksum, TCP sequence number,
    PSH only on the last, its own payload bytes, its frame length."""
    counts = configure(loaded, 1, header_bytes=128)
    payload = bytes(i * 7 & 0xFF for i in range(3000))
    ethernet = MAC_A + MAC_B + b"\x08\x00"
    super_packet = ethernet + ipv4(6, 20 + 3000, 100) + tcp(1_000_000, 0x18) + payload
    run(loaded.egress, super_packet, gso_segs=3, gso_size=1000)
    got = records(loaded)
    assert len(got) == 3
    for i, record in enumerate(got):
        segment = ethernet + ipv4(6, 20 + 1000, 100 + i) + tcp(1_000_000 + 1000 * i, 0x18 if i == 2 else 0x10)
        segment += payload[1000 * i : 1000 * (i + 1)]
        assert record == encoded(segment[:128], len(segment) + 4, timestamp_of(record), i + 1), f"segment {i}"
    assert totals(counts) == (3, 0, 3)  # three wire packets, no drops, three samples


def totals(counts: bpf.Map) -> tuple[int, int, int]:
    """The interface's pool, drops and last sequence number."""
    (value,) = counts.lookup(_KEY.pack(IFINDEX)) or [bytes(_COUNTS.size)]
    return _COUNTS.unpack(value)


def test_loopback_counts_each_packet_once_as_it_comes_in(loaded: _Loaded) -> None:
    counts = configure(loaded, 1, loopback=True)
    frame = bytes(12) + b"\x08\x00" + ipv4(17, 8, 1) + struct.pack(">HHHH", 1, 2, 8, 0)
    run(loaded.egress, frame, gso_segs=4, gso_size=10)
    assert records(loaded) == []
    run(loaded.ingress, frame, gso_segs=4, gso_size=10)
    (record,) = records(loaded)
    assert record == encoded(frame, len(frame) + 4, timestamp_of(record), 1, direction_out=False)
    assert totals(counts) == (1, 0, 1)


def test_the_ring_has_room_for_the_agent_to_answer_a_wake_up() -> None:
    """After a wake-up, WAKE_BYTES of the smallest samples in, the rest of the ring holds 20 ms of samples
    at 145 k samples/s (1-in-1 of 64-byte packets at this machine's veth rate): the ring size estimate
    in ebpf.py's docstring."""
    assert ebpf.RING_BYTES // ebpf._STEP - ebpf.WAKE_BYTES // ebpf.SAMPLE_BYTES_MIN >= 145_000 * 0.020
    assert ebpf.RING_BYTES % ebpf._STEP == 0  # no record lies across the end of the ring, mapped once


def test_the_agent_is_woken_once_per_wake_bytes_written() -> None:
    """The program wakes the ring's readers (here an edge-triggered epoll, as the agent's) with the
    sample that takes the bytes of samples written to WAKE_BYTES, not before, and not by the next one."""
    try:
        loaded = _Loaded(*ebpf_core.load(ebpf.RING_BYTES, ebpf.DATAGRAM_RING_BYTES), "libbpf")
    except SamplerError as e:
        pytest.skip(f"the BPF object cannot be loaded here: {e}")
    try:
        configure(loaded, 1)
        frame = MAC_A + MAC_B + b"\x08\x00" + ipv4(17, 8, 1) + struct.pack(">HHHH", 1, 2, 8, 0)
        with select.epoll() as wake:
            wake.register(loaded.samples, select.EPOLLIN | select.EPOLLET)
            run(loaded.egress, frame)
            (first,) = records(loaded)  # its size as the program wrote it, which the count must use
            assert ebpf.WAKE_BYTES % len(first)  # the wake-up comes with a sample that passes the mark
            for _ in range(ebpf.WAKE_BYTES // len(first) - 1):
                run(loaded.egress, frame)
            assert wake.poll(0.2) == []
            run(loaded.egress, frame)
            assert wake.poll(2.0) == [(loaded.samples, select.EPOLLIN)]
            records(loaded)
            run(loaded.egress, frame)
            assert wake.poll(0.2) == []
    finally:
        loaded.close()
