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
from hsflowd_py.flow import DIRECTION_IN, DIRECTION_OUT, DIRECTION_UNKNOWN, HEADER_ETHERNET, HEADER_IPV4
from hsflowd_py.module import Module
from hsflowd_py.pollers import PollerSpec
from hsflowd_py.sflow import records as rec
from hsflowd_py.sflow.assembler import DatagramAssembler
from hsflowd_py.sflow.codec import decode_datagram, encode_record, encode_sample
from hsflowd_py.sflow.flow_encoder import FlowEncoder
from hsflowd_py.sflow.samples import FlowSample

U32 = st.integers(0, 2**32 - 1)


@given(
    seq=U32,
    ds_index=st.integers(0, 2**24 - 1),
    rate=U32,
    pool=st.integers(0, 2**40),
    drops=st.integers(0, 2**40),
    inp=U32,
    out=U32,
    proto=st.sampled_from([1, 11, 12]),
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
    inp: int,
    out: int,
    proto: int,
    frame_length: int,
    header: bytes,
    lead: int,
    ts: int,
    extras: list[rec.Record],
) -> None:
    records = [rec.SampledHeader(proto, frame_length, 4, header), rec.ExtendedTimestamp(ts), *extras]
    expected = encode_sample(FlowSample(0, ds_index, rate, pool, drops, inp, out, records, seq))
    enc = FlowEncoder()
    encoded = b"".join(encode_record(r) for r in extras)
    buf = bytearray(b"\xee" * (enc.size(len(header)) + len(encoded) + 20))  # stale bytes must not leak into padding
    src = memoryview(b"\x55" * lead + header)
    enc.pack_into(
        buf, 10, seq, ds_index, rate, pool, drops, inp, out, proto, frame_length, 4, src, lead, len(header), ts,
        encoded, len(extras),
    )  # fmt: skip
    assert enc.size(len(header)) + len(encoded) == len(expected)
    assert bytes(buf[10 : 10 + len(expected)]) == expected
    assert buf[:10] == b"\xee" * 10 and buf[10 + len(expected) :] == b"\xee" * 10


def _agent(sent: list[bytes]) -> Agent:
    settings = parse_config("sflow { collector { ip = 127.0.0.1 } pcap { dev = lo } }")
    agent = Agent(settings)
    agent.flows.assembler = DatagramAssembler(ipaddress.ip_address("192.0.2.1"), 100000, 1400, sent.append)
    return agent


class _Marker(Enricher):
    """An enricher that adds an entities record, so the packet takes the enriched path."""

    def enrich(self, packet: Any) -> None:
        packet.extra.append(rec.ExtendedEntities(3, 100001, 0, 0))


def _emit_three(agent: Agent, frame: bytes) -> None:
    ring = memoryview(b"\0" * 16 + frame)
    emit = agent.flows.emit_header_sample
    for direction in (DIRECTION_IN, DIRECTION_OUT, DIRECTION_UNKNOWN):
        emit(7, 10, 100, 2, direction, len(frame) + 4, ring, 16, len(frame), 1_700_000_000 * 10**9)
    emit(7, 10, 110, 2, DIRECTION_IN, 60, ring, 16, 20, 5, header_protocol=HEADER_IPV4)
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
    assert ins == [(7, 0x3FFFFFFF), (0x3FFFFFFF, 7), (0, 0), (7, 0x3FFFFFFF)]
    assert [x.sequence for x in f.samples] == [1, 2, 3, 4]
    eth, ip = f.samples[0].records[0], f.samples[3].records[0]
    assert (eth.header_protocol, eth.frame_length, eth.stripped, eth.header) == (HEADER_ETHERNET, 94, 4, frame)
    assert (ip.header_protocol, ip.stripped, ip.header) == (HEADER_IPV4, 0, frame[:20])
    assert f.samples[0].records[1] == rec.ExtendedTimestamp(1_700_000_000 * 10**9)
    assert a.stats["flow_samples"] == 4


def test_a_sample_that_cannot_be_encoded_leaves_no_hole(caplog: Any) -> None:
    """A sampling rate above 2^32-1 (issue #21 item 3) cannot be packed: the sample is left out,
    counted and logged once, and the datagram holds the good samples only, in sequence — it used
    to keep a blank slot that made collectors reject the whole datagram."""
    sent: list[bytes] = []
    agent = _agent(sent)
    ring = memoryview(bytes(range(90)))
    emit = agent.flows.emit_header_sample
    with caplog.at_level("WARNING", logger="hsflowd.assembler"):
        for rate in (10, 2**32 + 1, 10, -1, 10):
            emit(7, rate, 100, 0, DIRECTION_IN, 94, ring, 0, 90, 1)
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
