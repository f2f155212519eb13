"""The samplers' fast path writes the same bytes as the codec, and the agent's two flow paths agree."""

from __future__ import annotations

import asyncio
import ipaddress
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from hsflowd_py.agent import Agent
from hsflowd_py.config.parser import parse_config
from hsflowd_py.enrichers import Enricher
from hsflowd_py.flow import (
    DIRECTION_IN,
    DIRECTION_OUT,
    DIRECTION_UNKNOWN,
    HEADER_ETHERNET,
    HEADER_IP,
    HEADER_IPV4,
    HEADER_IPV6,
    Interface,
)
from hsflowd_py.module import Module
from hsflowd_py.modules.pcap.wire import HEAD_BYTES
from hsflowd_py.pollers import PollerSpec
from hsflowd_py.sflow import records as rec
from hsflowd_py.sflow.assembler import DatagramAssembler
from hsflowd_py.sflow.codec import decode_datagram, encode_record, encode_sample
from hsflowd_py.sflow.flow_encoder import FlowEncoder
from hsflowd_py.sflow.records import INTERNAL_PORT
from hsflowd_py.sflow.samples import FlowSample

U32 = st.integers(0, 2**32 - 1)


PORTS = {
    DIRECTION_IN: lambda i: (i, INTERNAL_PORT),
    DIRECTION_OUT: lambda i: (INTERNAL_PORT, i),
    DIRECTION_UNKNOWN: lambda i: (0, 0),
}
"""A sample's (input, output) by the packet's direction (REFERENCE.md section 2)."""


@given(
    seq=U32,
    ds_index=st.integers(0, 2**24 - 1),
    rate=U32,
    pool=st.integers(0, 2**40),
    drops=st.integers(0, 2**40),
    direction=st.sampled_from(sorted(PORTS)),
    link=st.sampled_from([HEADER_ETHERNET, HEADER_IP, HEADER_IPV4, HEADER_IPV6]),
    frame_length=U32,
    header=st.binary(max_size=256),
    lead=st.integers(0, 7),
    ts=st.integers(0, 2**64 - 1),
    extras=st.lists(
        st.one_of(
            st.builds(rec.ExtendedTcpInfo, *[U32] * 12),
            st.builds(rec.ExtendedEntities, U32, U32, U32, U32),
        ),
        max_size=3,
    ),
)
def test_fast_encoding_equals_the_codec(
    seq: int,
    ds_index: int,
    rate: int,
    pool: int,
    drops: int,
    direction: int,
    link: int,
    frame_length: int,
    header: bytes,
    lead: int,
    ts: int,
    extras: list[rec.Record],
) -> None:
    """The interface's half and the packet's half packed in place: the codec's bytes.  An IP link's
    header is IPv4 or IPv6 by its version nibble, as the eBPF program (``sampler.bpf.h``) says."""
    proto = link
    if link == HEADER_IP:
        proto = HEADER_IPV4 if header and header[0] >> 4 == 4 else HEADER_IPV6
    stripped = 4 if link == HEADER_ETHERNET else 0
    records = [rec.SampledHeader(proto, frame_length, stripped, header), rec.ExtendedTimestamp(ts), *extras]
    inp, out = PORTS[direction](ds_index)
    expected = encode_sample(FlowSample(0, ds_index, rate, pool, drops, inp, out, records, seq))
    enc = FlowEncoder()
    encoded = b"".join(encode_record(r) for r in extras)
    buf = bytearray(b"\xee" * (enc.size(len(header)) + len(encoded) + 20))  # stale bytes must not leak into padding
    src = memoryview(b"\x55" * lead + header)
    enc.pack_into(
        buf, 10, Interface(ds_index, rate, link), encoded, len(extras),
        pool, drops, direction, frame_length, src, lead, len(header), ts, seq,
    )  # fmt: skip
    assert enc.size(len(header)) + len(encoded) == len(expected)
    assert bytes(buf[10 : 10 + len(expected)]) == expected
    assert buf[:10] == b"\xee" * 10 and buf[10 + len(expected) :] == b"\xee" * 10
    plain = bytearray(b"\xee" * (len(expected) + 20))  # as a sampler encodes it, then the records appended
    enc.pack_into(
        plain, 10, Interface(ds_index, rate, link), b"", 0,
        pool, drops, direction, frame_length, src, lead, len(header), ts, seq,
    )  # fmt: skip
    FlowEncoder.extend_into(plain, 10, enc.size(len(header)), encoded, len(extras))
    assert plain == buf


def _agent(sent: list[bytes]) -> Agent:
    settings = parse_config("sflow { collector { ip = 127.0.0.1 } pcap { dev = lo } }")
    agent = Agent(settings)
    agent.flows.assembler = DatagramAssembler(ipaddress.ip_address("192.0.2.1"), 100000, 1400, sent.extend)
    return agent


class _Marker(Enricher):
    """An enricher that adds an entities record, so the packet takes the enriched path."""

    def enrich(self, packet: Any) -> None:
        packet.extra.append(rec.ExtendedEntities(3, 100001, 0, 0))


def _emit_three(agent: Agent, frame: bytes) -> None:
    """Three Ethernet frames of interface 7, one each way, then an IPv4 packet (a tunnel's) of interface 8."""
    ring = memoryview(b"\0" * 16 + frame)
    emit = agent.flows.interface(7, 10, True).emit
    for direction in (DIRECTION_IN, DIRECTION_OUT, DIRECTION_UNKNOWN):
        emit(
            sample_pool=100, drops=2, direction=direction, frame_length=len(frame) + 4, header=ring, start=16,
            length=len(frame), timestamp_ns=1_700_000_000 * 10**9,
        )  # fmt: skip
    agent.flows.interface(8, 10, False).emit(
        sample_pool=110, drops=2, direction=DIRECTION_IN, frame_length=60, header=ring, start=16 + 0x40, length=20,
        timestamp_ns=5,
    )  # fmt: skip
    agent.flush()


def test_fast_and_enriched_paths_send_the_same_samples() -> None:
    frame = bytes(range(90))
    fast: list[bytes] = []
    a = _agent(fast)
    _emit_three(a, frame)
    slow: list[bytes] = []
    b = _agent(slow)
    b.flows.set_enrichers([(Module(b.context, b.settings), "marker-test", _Marker())])

    async def run() -> None:
        _emit_three(b, frame)

    asyncio.run(run())
    f, s = decode_datagram(fast[0]), decode_datagram(slow[0])
    assert len(f.samples) == len(s.samples) == 4
    for fs, ss in zip(f.samples, s.samples, strict=True):
        assert ss.records[:-1] == fs.records  # the enricher's record comes last
        assert ss.records[-1] == rec.ExtendedEntities(3, 100001, 0, 0)
        for attr in ("sequence", "ds_class", "ds_index", "sampling_rate", "sample_pool", "drops", "input", "output"):
            assert getattr(fs, attr) == getattr(ss, attr)
    ins = [(x.input, x.output) for x in f.samples]
    assert ins == [(7, 0x3FFFFFFF), (0x3FFFFFFF, 7), (0, 0), (8, 0x3FFFFFFF)]
    assert [(x.ds_index, x.sequence) for x in f.samples] == [(7, 1), (7, 2), (7, 3), (8, 1)]
    eth, ip = f.samples[0].records[0], f.samples[3].records[0]
    assert (eth.header_protocol, eth.frame_length, eth.stripped, eth.header) == (HEADER_ETHERNET, 94, 4, frame)
    assert (ip.header_protocol, ip.stripped, ip.header) == (HEADER_IPV4, 0, frame[0x40:0x54])
    assert f.samples[0].records[1] == rec.ExtendedTimestamp(1_700_000_000 * 10**9)
    assert a.stats["flow_samples"] == 4


class _MarkerAtOnce(_Marker):
    """The same record, known from the header at once (``Enricher.at_once``), as the tcp module's memo hits."""

    def at_once(self, interface: Interface, header: Any, start: int, length: int) -> tuple[bytes, int]:
        return encode_record(rec.ExtendedEntities(3, 100001, 0, 0)), 1


def test_records_known_at_once_go_as_the_enriched_path_sends_them() -> None:
    """A lone enricher's records known at once: packed from the ring by ``emit``, or appended to a sample its
    sampler encoded (``add_encoded``, the eBPF path), the samples decode as the enriched path's."""
    frame = bytes(range(90))
    slow: list[bytes] = []
    b = _agent(slow)
    b.flows.set_enrichers([(Module(b.context, b.settings), "marker-test", _Marker())])
    quick: list[bytes] = []
    q = _agent(quick)
    q.flows.set_enrichers([(Module(q.context, q.settings), "marker-test", _MarkerAtOnce())])
    assert b.flows.at_once is None and q.flows.at_once is not None

    async def run() -> None:
        _emit_three(b, frame)
        _emit_three(q, frame)

    asyncio.run(run())
    enc = FlowEncoder()
    kernel: list[bytes] = []
    k = _agent(kernel)
    k.flows.set_enrichers([(Module(k.context, k.settings), "marker-test", _MarkerAtOnce())])
    slow_samples = decode_datagram(slow[0]).samples
    for i, sample in enumerate(slow_samples):  # each slow sample without its enricher's record, as a kernel's
        head = sample.records[0]
        ring = bytearray(16 + enc.size(len(head.header)))
        entry = k.flows.interface(sample.ds_index, sample.sampling_rate, head.header_protocol == HEADER_ETHERNET)
        direction = {PORTS[d](sample.ds_index): d for d in PORTS}[sample.input, sample.output]
        enc.pack_into(
            ring, 16, entry, b"", 0, sample.sample_pool, sample.drops, direction, head.frame_length, head.header, 0,
            len(head.header), sample.records[1].nanoseconds, sample.sequence,
        )  # fmt: skip
        (records,) = entry.records_at_once_many(ring, 16 + HEAD_BYTES, len(ring), [len(head.header)])
        assert records is not None, i
        entry.add_encoded(ring, 16, len(ring) - 16, records)
    k.flush()
    for sent in (quick, kernel):
        samples = decode_datagram(sent[0]).samples
        assert len(samples) == len(slow_samples) == 4
        for qs, ss in zip(samples, slow_samples, strict=True):
            assert qs == ss
    assert q.stats["flow_samples"] == k.stats["flow_samples"] == 4


def test_a_kernel_sequence_number_that_wrapped_to_zero_is_kept() -> None:
    """The eBPF sampler numbers samples in the kernel, in 32 bits: after 0xFFFFFFFF comes 0, which both
    paths send as it is (it used to mean "not numbered", and the flow path numbered it again).  The
    flow path's own count of the interface, for samples that come unnumbered, is not disturbed."""
    frame = bytes(range(60))
    for enriched in (False, True):
        sent: list[bytes] = []
        agent = _agent(sent)
        if enriched:
            agent.flows.set_enrichers([(Module(agent.context, agent.settings), "marker-test", _Marker())])

        async def run(agent: Agent = agent) -> None:
            emit = agent.flows.interface(7, 10, True).emit
            for sequence in (0xFFFFFFFF, 0, 1, None):
                emit(
                    sample_pool=100, drops=0, direction=DIRECTION_IN, frame_length=64, header=frame, start=0,
                    length=60, timestamp_ns=1, sequence=sequence,
                )  # fmt: skip
            agent.flush()

        asyncio.run(run())
        assert [x.sequence for x in decode_datagram(sent[0]).samples] == [0xFFFFFFFF, 0, 1, 1], enriched


def test_a_sample_that_cannot_be_encoded_leaves_no_hole(caplog: Any) -> None:
    """A sampling rate above 2^32-1 (issue #21 item 3) cannot be packed: the sample is left out,
    counted and logged once, and the datagram holds the good samples only, in sequence — it used
    to keep a blank slot that made collectors reject the whole datagram."""
    sent: list[bytes] = []
    agent = _agent(sent)
    ring = memoryview(bytes(range(90)))
    with caplog.at_level("WARNING", logger="hsflowd.assembler"):
        for rate in (10, 2**32 + 1, 10, -1, 10):
            agent.flows.interface(7, rate, True).emit(
                sample_pool=100, drops=0, direction=DIRECTION_IN, frame_length=94, header=ring, start=0, length=90,
                timestamp_ns=1,
            )  # fmt: skip
    agent.flush()
    d = decode_datagram(sent[0])
    assert [(s.sequence, s.sampling_rate) for s in d.samples] == [(1, 10), (2, 10), (3, 10)]
    assert agent.stats["flow_samples"] == 3 and agent.stats["unencodable_samples"] == 2
    assert len(caplog.messages) == 1 and "ifIndex 7" in caplog.messages[0]


def test_a_counter_sample_that_cannot_be_encoded_is_left_out() -> None:
    """A record with a value the codec cannot pack (a module's None where a number belongs): the
    sample is dropped and counted, the poller's sequence has no gap, the agent's loop goes on, and
    the other data sources' samples still go out in a valid datagram."""
    sent: list[bytes] = []
    agent = _agent(sent)
    good = agent.add_poller(PollerSpec(2, 1, lambda: [rec.HostParent(2, 1)], "good"))
    bad = agent.add_poller(PollerSpec(2, 2, lambda: [rec.HostParent(2, None)], "bad"))
    agent.poll(good)
    agent.poll(bad)
    agent.poll(good)
    agent.flush()
    d = decode_datagram(sent[0])
    assert [(s.ds_index, s.sequence) for s in d.samples] == [(1, 1), (1, 2)]
    assert bad.sequence == 0 and agent.stats["unencodable_samples"] == 1
