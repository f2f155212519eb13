"""What the exporter remembers about each agent and data source, bounded and expiring.

Everything here runs under one lock: the receive loop writes (``observe``)
and the HTTP thread reads (``snapshot``).  Memory is bounded by the agents
and data sources seen within ``expiry`` seconds plus the fixed-size flow
tables; nothing grows with the number of datagrams or of distinct flows.

Lost datagrams are counted from gaps in each agent's (and sub-agent's)
datagram sequence numbers.  A sequence number that goes back is a restart
when the agent's uptime went back too and the new number is nearer 1 than
the old one (nothing lost; the new run is the new baseline), and a late,
reordered datagram otherwise (ignored, not counted twice).
"""

from __future__ import annotations

import threading
from collections.abc import Hashable
from dataclasses import dataclass, field
from typing import Protocol

from ...counters import Monotonic
from ...sflow.records import SampledHeader
from ...sflow.samples import CounterSample, Datagram, FlowSample, UnknownRecord
from .flowkey import flow_key, protocol_name, render_address
from .metricspec import INFO, NAMING, PLANS, MetricDef
from .topflows import TopFlows

__all__ = ["OTHER", "AgentState", "Counts", "ExportState", "FlowSeries", "Snapshot", "SourceState"]

OTHER = "other"
MAX_AGENTS = 4096
MAX_SUB_AGENTS = 64
MAX_SOURCES = 65536
"""Bounds on what strangers can make us remember: beyond them datagrams are counted as refused."""


class Counts(Protocol):
    """What the receive loop counts for every datagram, decodable or not."""

    datagrams: int
    errors: int


@dataclass
class SourceState:
    """One data source of one agent: its latest values and its name."""

    last_seen: float
    name: str = ""
    values: dict[MetricDef, float] = field(default_factory=dict)
    info: dict[MetricDef, tuple[tuple[str, str], ...]] = field(default_factory=dict)
    unwrapped: Monotonic = field(default_factory=Monotonic)


@dataclass
class AgentState:
    last_seen: float
    datagrams: int = 0
    flow_samples: int = 0
    counter_samples: int = 0
    other_samples: int = 0
    lost: int = 0
    sequences: dict[int, tuple[int, int]] = field(default_factory=dict)  # sub-agent → (sequence, uptime)

    def sequence(self, sub_agent: int, number: int, uptime: int) -> None:
        last = self.sequences.get(sub_agent)
        if last is None and len(self.sequences) >= MAX_SUB_AGENTS:
            return
        if last is not None:
            gap = (number - last[0]) & 0xFFFFFFFF
            if gap == 0:
                return  # a duplicate
            if gap >= 1 << 31:
                back = (last[0] - number) & 0xFFFFFFFF
                if not (number < back and uptime < last[1]):
                    return  # a late datagram
            else:
                self.lost += gap - 1
        self.sequences[sub_agent] = (number, uptime)


@dataclass(frozen=True)
class FlowSeries:
    exported: list[tuple[tuple[str, ...], int, int]]  # (labels, bytes, packets)
    other_bytes: int
    other_packets: int
    tracked: int


@dataclass(frozen=True)
class Snapshot:
    """A consistent copy of what to export."""

    sources: list[tuple[tuple[str, str, str], dict[MetricDef, float], dict[MetricDef, tuple[tuple[str, str], ...]]]]
    agents: dict[str, dict[str, int]]
    flows: dict[str, FlowSeries]
    datagrams: int
    errors: int
    unknown_records: int
    unknown_samples: int
    failures: int
    refused: int


def _ip_labels(key: Hashable) -> tuple[str, ...]:
    agent, src, dst = key  # type: ignore[misc]
    return agent, render_address(src), render_address(dst)


def _port_labels(key: Hashable) -> tuple[str, ...]:
    agent, src, dst, protocol, port = key  # type: ignore[misc]
    return agent, render_address(src), render_address(dst), protocol_name(protocol), str(port)


class ExportState:
    """Agents, data sources, flow tables and the collector's own counts."""

    def __init__(self, counts: Counts, *, flows: int = 100, expiry: float = 300.0, now: float = 0.0) -> None:
        self.lock = threading.Lock()
        self.counts = counts
        self.expiry = expiry
        self.agents: dict[str, AgentState] = {}
        self.sources: dict[tuple[str, int, int], SourceState] = {}
        self.ip_flows = TopFlows(flows, _ip_labels, expiry=expiry, now=now)
        self.port_flows = TopFlows(flows, _port_labels, expiry=expiry, now=now)
        self.unknown_records = 0
        self.unknown_samples = 0
        self.failures = 0
        self.refused = 0
        self.last_tick = now

    # ------------------------------------------------------------ writing

    def observe(self, datagram: Datagram, now: float) -> None:
        agent_text = str(datagram.agent)
        with self.lock:
            agent = self.agents.get(agent_text)
            if agent is None:
                if len(self.agents) >= MAX_AGENTS:
                    self.refused += 1
                    return
                agent = self.agents[agent_text] = AgentState(now)
            agent.last_seen = now
            agent.datagrams += 1
            agent.sequence(datagram.sub_agent_id, datagram.sequence, datagram.uptime_ms)
            for sample in datagram.samples:
                if isinstance(sample, FlowSample):
                    agent.flow_samples += 1
                    self._flow(agent_text, sample, now)
                elif isinstance(sample, CounterSample):
                    agent.counter_samples += 1
                    self._counters(agent_text, sample, now)
                else:  # an UnknownSample: a type the decoder skipped by length
                    agent.other_samples += 1
                    self.unknown_samples += 1
            if now - self.last_tick >= 1.0:
                self._tick(now)

    def _flow(self, agent: str, sample: FlowSample, now: float) -> None:
        for record in sample.records:
            if isinstance(record, SampledHeader):
                key = flow_key(record.header_protocol, record.header)
                if key is not None:
                    rate = sample.sampling_rate or 1
                    nbytes = max(record.frame_length - record.stripped, 0) * rate
                    src, dst, protocol, port = key
                    self.ip_flows.add((agent, src, dst), nbytes, rate, now)
                    self.port_flows.add((agent, src, dst, protocol, port), nbytes, rate, now)
            elif isinstance(record, UnknownRecord):
                self.unknown_records += 1

    def _counters(self, agent: str, sample: CounterSample, now: float) -> None:
        key = (agent, sample.ds_class, sample.ds_index)
        source = self.sources.get(key)
        if source is None:
            if len(self.sources) >= MAX_SOURCES:
                self.refused += 1
                return
            source = self.sources[key] = SourceState(now)
        source.last_seen = now
        for record in sample.records:
            kind = type(record)
            for plan in PLANS.get(kind, ()):
                raw = getattr(record, plan.attr)
                if raw == plan.unknown:
                    continue
                if plan.wraps32:
                    raw = source.unwrapped.update(plan.metric, raw, bits=64, source_bits=32)
                source.values[plan.metric] = raw * plan.scale
            name_field = NAMING.get(kind)
            if name_field is not None:
                source.name = getattr(record, name_field).split("\0", 1)[0]
            info = INFO.get(kind)
            if info is not None:
                source.info[info.metric] = tuple(
                    (label, xdr.text(getattr(record, attr))) for attr, label, xdr in info.fields
                )
            if kind is UnknownRecord:
                self.unknown_records += 1

    def failed(self) -> None:
        """Count a datagram the exporter could not take in (a bug, never the sender's fault)."""
        with self.lock:
            self.failures += 1

    # ------------------------------------------------------------ time

    def _tick(self, now: float) -> None:
        self.last_tick = now
        self.ip_flows.rank(now)
        self.port_flows.rank(now)
        gone = {a for a, state in self.agents.items() if now - state.last_seen > self.expiry}
        for agent in gone:
            del self.agents[agent]
        if gone:
            self.ip_flows.forget(lambda k: k[0] in gone)  # type: ignore[index]
            self.port_flows.forget(lambda k: k[0] in gone)  # type: ignore[index]
        for key in [k for k, s in self.sources.items() if now - s.last_seen > self.expiry]:
            del self.sources[key]

    def tick(self, now: float) -> None:
        with self.lock:
            if now - self.last_tick >= 1.0:
                self._tick(now)

    # ------------------------------------------------------------ reading

    def snapshot(self, now: float) -> Snapshot:
        """Everything to export, copied under the lock so that the scrape formats it outside."""
        with self.lock:
            if now - self.last_tick >= 1.0:
                self._tick(now)
            sources = [
                ((agent, f"{ds_class}:{ds_index}", s.name), dict(s.values), dict(s.info))
                for (agent, ds_class, ds_index), s in self.sources.items()
            ]
            agents = {
                a: {
                    "datagrams": s.datagrams,
                    "lost": s.lost,
                    "flow": s.flow_samples,
                    "counter": s.counter_samples,
                    "other": s.other_samples,
                }
                for a, s in self.agents.items()
            }
            flows = {
                name: FlowSeries(list(table.series()), table.other_bytes, table.other_packets, len(table.flows))
                for name, table in (("ip", self.ip_flows), ("port", self.port_flows))
            }
            return Snapshot(
                sources,
                agents,
                flows,
                self.counts.datagrams,
                self.counts.errors,
                self.unknown_records,
                self.unknown_samples,
                self.failures,
                self.refused,
            )
