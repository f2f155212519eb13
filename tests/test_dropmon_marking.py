"""Discard samples through the flow enrichers: markTraffic's 0:2210 on a dropped packet's sample.

The agent's own discard path (``ModuleContext.send_discard`` → ``FlowPath.emit_discard``) with the
core's ``OwnerMarking`` over a traffic map, and an enricher that asks for time, decoded from the
datagrams the agent sends to a local socket.  Real drops of a real owner's traffic are in
``test_dropmon_owners.py``.
"""

from __future__ import annotations

import asyncio
import socket
import struct
from collections.abc import Iterator
from pathlib import Path

import pytest

from hsflowd_py.agent import Agent
from hsflowd_py.config import parse_config
from hsflowd_py.enrichers import Enricher
from hsflowd_py.flow import DST, Fact, SampledPacket, mark_entity
from hsflowd_py.module import Module
from hsflowd_py.sflow import records as rec
from hsflowd_py.sflow.codec import decode_datagram
from hsflowd_py.sflow.samples import DiscardSample, FlowSample
from hsflowd_py.traffic_map import Owner, OwnerMarking, TrafficMap

MAC_A, MAC_B = bytes.fromhex("02aa00000001"), bytes.fromhex("02bb00000002")
REASON = 3  # any discard code: the path carries it as it is


def frame(src: bytes, dst: bytes) -> bytes:
    ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 38, 1, 0, 64, 17, 0, bytes([10, 0, 0, 1]), bytes([10, 0, 0, 2]))
    return dst + src + b"\x08\x00" + ip + struct.pack("!HHHH", 40000, 9, 18, 0) + b"x" * 10


def discard(src: bytes, dst: bytes) -> DiscardSample:
    header = frame(src, dst)
    records: list[rec.Record] = [
        rec.SampledHeader(1, len(header) + 4, 4, header),
        rec.ExtendedLinuxReason("NO_SOCKET"),
        rec.ExtendedTimestamp(1),
    ]
    return DiscardSample(0, 0, 5, 7, 0, REASON, records)


class Owners(Module):
    name = "owners-test"


@pytest.fixture
def agent(tmp_path: Path) -> Iterator[tuple[Agent, socket.socket]]:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sink:
        sink.bind(("127.0.0.1", 0))
        sink.settimeout(2)
        settings = parse_config(f"sflow {{ collector {{ ip = 127.0.0.1 udpport = {sink.getsockname()[1]} }} }}")
        a = Agent(settings, auto_path=str(tmp_path / "auto"))
        a.apply_settings()
        yield a, sink
        a.receivers.close()


def samples_of(agent: Agent, sink: socket.socket) -> list[list[object]]:
    agent.flush()
    out = []
    with pytest.raises(TimeoutError):
        while True:
            out.append(decode_datagram(sink.recv(9000)).samples)
            sink.settimeout(0.2)
    return out


def entities(sample: DiscardSample) -> list[tuple[int, int, int, int]]:
    return [
        (r.src_ds_class, r.src_ds_index, r.dst_ds_class, r.dst_ds_index)
        for r in sample.records
        if isinstance(r, rec.ExtendedEntities)
    ]


def test_owner_marking_names_both_sides_of_a_dropped_packet(agent: tuple[Agent, socket.socket]) -> None:
    """The enricher that marks flow samples marks the discard sample; its records after the sample's
    own; a packet of nobody's gets no 0:2210; numbered 1, 2 in its own datagram."""
    a, sink = agent
    traffic = TrafficMap()
    traffic.claim("a", Owner(41, None), [MAC_A])
    traffic.claim("b", Owner(42, None), [MAC_B])
    a.flows.set_enrichers([(Owners(a.context, a.settings), "owners", OwnerMarking(traffic))])
    a.context.send_discard(discard(MAC_A, MAC_B))
    a.context.send_discard(discard(bytes.fromhex("02cc00000003"), bytes.fromhex("02dd00000004")))
    (datagram,) = samples_of(a, sink)
    first, second = datagram
    assert isinstance(first, DiscardSample) and isinstance(second, DiscardSample)
    assert entities(first) == [(3, 41, 3, 42)] and entities(second) == []
    assert [type(r).__name__ for r in first.records][:3] == [
        "SampledHeader",
        "ExtendedLinuxReason",
        "ExtendedTimestamp",
    ]
    assert (first.sequence, second.sequence, first.reason, first.drops, first.input) == (1, 2, REASON, 5, 7)


class Slow(Enricher):
    """Answers only when the test sets its future: as the tcp module's socket look-up does."""

    writes = Fact.SOCKET

    def __init__(self) -> None:
        self.answer: asyncio.Future[None] | None = None

    def enrich(self, packet: SampledPacket) -> asyncio.Future[None]:
        if self.answer is None:
            self.answer = asyncio.get_running_loop().create_future()
        self.answer.add_done_callback(lambda _: setattr(packet, "cgroup_id", 99))
        return self.answer


class ByCgroup(Enricher):
    """Marks the destination from the socket fact, as systemd's ServiceMarking does."""

    reads = Fact.SOCKET
    writes = Fact.ENTITIES

    def enrich(self, packet: SampledPacket) -> None:
        if packet.cgroup_id == 99:
            mark_entity(packet, DST, 77)


def test_a_discard_waits_for_an_enricher_that_asks_for_time(agent: tuple[Agent, socket.socket]) -> None:
    """Held as a flow sample would be, marked by the reader once the writer answered; a flow sample
    meanwhile goes in a datagram of its own; the discard is numbered when it is sent."""
    a, sink = agent
    slow = Slow()
    owner = Owners(a.context, a.settings)
    a.flows.set_enrichers([(owner, "b", ByCgroup()), (owner, "a", slow)])

    async def scenario() -> None:
        a.context.send_discard(discard(MAC_A, MAC_B))
        assert len(a.flows.held_discards) == 1
        a.flows.set_enrichers([])
        a.flows.interface(3, 1, True).emit(
            sample_pool=1, drops=0, direction=1, frame_length=64, header=frame(MAC_A, MAC_B), start=0, length=52,
            timestamp_ns=1,
        )  # fmt: skip
        assert slow.answer is not None
        slow.answer.set_result(None)
        await asyncio.sleep(0.01)
        await a.flows.drain()

    asyncio.run(scenario())
    flows, discards = samples_of(a, sink)
    assert [type(s) for s in flows] == [FlowSample]
    (held,) = discards
    assert isinstance(held, DiscardSample) and entities(held) == [(0, 0, 3, 77)] and held.sequence == 1
    assert a.stats["discard_samples"] == 1 and a.stats["enrich_timeouts"] == 0


def test_without_enrichers_a_discard_goes_at_once_unmarked(agent: tuple[Agent, socket.socket]) -> None:
    a, sink = agent
    a.context.send_discard(discard(MAC_A, MAC_B))
    ((sample,),) = samples_of(a, sink)
    assert isinstance(sample, DiscardSample) and entities(sample) == [] and sample.sequence == 1
