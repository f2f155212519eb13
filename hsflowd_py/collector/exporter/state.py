"""What the exporter remembers about each agent and data source, bounded and expiring.

Everything here runs under one lock: the receive loop writes (``observe``)
and the HTTP side reads (``snapshot``).  Memory is bounded by ``Limits``,
never by what datagrams claim: at most so many agents, data sources and
series in all and per agent, plus the fixed-size flow tables; nothing
grows with the number of datagrams, of distinct flows or of addresses a
spoofer can invent.  Silent agents and data sources expire.

When a bound is reached the newcomer is taken in and something else is
evicted (and counted), chosen so that a spoofer evicts its own entries
rather than locking real agents out (``fairshare``):

* an agent heard from once is a *newcomer*; newcomers share a quarter of
  the agent table, and a new agent evicts the oldest newcomer of the sender
  (UDP source address) holding the most newcomers.  A flood of invented
  agent addresses, each sent once, churns only that quarter;
* an agent's second datagram makes it *established*; when established
  agents fill their three quarters, the sender holding the most gives up its
  least recently heard agent;
* a data source over its agent's share (``sources_per_agent``,
  ``series_per_agent``) evicts that agent's least recently updated source;
  over the totals, the agent holding the most sources gives one up.

With ``Limits.allow`` only agents inside those networks are taken in at all
(the rest are counted as refused): the one defence against a spoofer that
also forges UDP source addresses.

Lost datagrams are counted from gaps in each agent's (and sub-agent's)
datagram sequence numbers.  A sequence number that goes back is a restart
when the agent's uptime went back too and the new number is nearer 1 than
the old one (nothing lost; the new run is the new baseline), and a late,
reordered datagram otherwise (ignored, not counted twice).
"""

from __future__ import annotations

import ipaddress
import operator
import threading
from collections.abc import Callable, Hashable
from dataclasses import dataclass, field
from typing import Any, Protocol

from ...counters import step
from ...sflow.records import DISCARD_REASONS, SampledHeader
from ...sflow.samples import CounterSample, Datagram, DiscardSample, FlowSample, UnknownRecord
from .fairshare import FairShare
from .flowkey import flow_key, protocol_name, render_address
from .metricspec import INFO, NAMING, PLANS, MetricDef
from .topflows import TopFlows

__all__ = ["OTHER", "READ", "AgentState", "Counts", "ExportState", "FlowSeries", "Limits", "Snapshot", "SourceState"]

OTHER = "other"
NOT_FOUND = "NotFound"
"""sflowtool's ``discardReason`` for a code its drop-reason table does not name."""
MAX_SUB_AGENTS = 64
"""Sub-agents whose sequence numbers are followed per agent; more are not sequenced."""

Network = ipaddress.IPv4Network | ipaddress.IPv6Network
SourceKey = tuple[str, int, int]  # (agent, ds_class, ds_index)


@dataclass(frozen=True)
class Limits:
    """What the exporter may remember, whatever datagrams claim (the ``--prometheus-max-*`` flags)."""

    agents: int = 1024
    sources: int = 2048
    sources_per_agent: int = 512
    series: int = 50_000
    series_per_agent: int = 25_000
    allow: tuple[Network, ...] = ()
    """Agent networks taken in; empty takes any agent."""

    def __post_init__(self) -> None:
        for name in ("agents", "sources", "sources_per_agent", "series", "series_per_agent"):
            if getattr(self, name) < 1:
                raise ValueError(f"the limit on {name.replace('_', ' ')} must be at least 1")

    def allows(self, agent: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
        return not self.allow or any(agent.version == n.version and agent in n for n in self.allow)

    @property
    def newcomers(self) -> int:
        """The part of the agent table where agents heard from once wait to be heard again."""
        return max(self.agents // 4, 1)


class Counts(Protocol):
    """What the receive loop counts for every datagram, decodable or not."""

    datagrams: int
    errors: int


_U32 = 0xFFFFFFFF
_UNKNOWN = frozenset((_U32, 0xFFFFFFFFFFFFFFFF))
"""sFlow's "unknown" of a 32- and a 64-bit field (all ones): such a reading is not exported."""


class Unwrapped:
    """One record's 32-bit counters in one data source: their last readings and 64-bit totals.

    A field's total starts at its first known reading and adds every step from then on
    (``counters.step``: a wrap, or nothing for a restart).  Kept as lists in field order so that
    the common reading (every field known, none went back) is a few C-level maps; a total of a
    32-bit counter cannot pass 2^64 (that takes 2^32 wraps), so it is not reduced.
    """

    __slots__ = ("lasts", "totals")

    def __init__(self, fields: int) -> None:
        self.lasts: list[int | None] = [None] * fields
        self.totals: list[int] = [0] * fields

    def update(self, raws: tuple[int, ...]) -> list[int]:
        """Fold in one reading; the totals (meaningful where ``lasts`` is no longer None)."""
        lasts = self.lasts
        if _U32 not in raws and None not in lasts:
            deltas = list(map(operator.sub, raws, lasts))  # type: ignore[arg-type]
            if min(deltas) >= 0:  # nothing wrapped or restarted: the common reading
                self.totals = list(map(operator.add, self.totals, deltas))
                self.lasts = list(raws)
                return self.totals
        totals = self.totals
        for i, raw in enumerate(raws):
            if raw != _U32:
                last = lasts[i]
                totals[i] = raw if last is None else totals[i] + step(last, raw, 32)
                lasts[i] = raw
        return totals


@dataclass
class SourceState:
    """One data source of one agent: its latest values and its name."""

    last_seen: float
    name: str = ""
    values: dict[MetricDef, float] = field(default_factory=dict)
    info: dict[MetricDef, tuple[tuple[str, str], ...]] = field(default_factory=dict)
    info_readings: dict[type, tuple[Any, ...]] = field(default_factory=dict)
    """Per record type made into an ``info`` metric: the reading its labels were made from."""
    unwrapped: dict[type, Unwrapped] = field(default_factory=dict)
    """Per record type: its 32-bit counters unwrapped."""
    series: int = 0


Updater = Callable[[Any, SourceState], None]


def _getter(attrs: list[str]) -> Callable[[Any], tuple[Any, ...]]:
    """All the named attributes of a record as one tuple, in one call."""
    if len(attrs) == 1:
        one = operator.attrgetter(attrs[0])
        return lambda record: (one(record),)
    return operator.attrgetter(*attrs)


def _updater(kind: type) -> Updater:
    """What one counter record sets in its data source, compiled once from the record's metric
    plans: one attribute fetch per kind of field, and C-level maps over the common reading (the
    exporter takes in every counter sample, so this is its busiest path)."""
    plans = PLANS.get(kind, ())
    plain = [p for p in plans if not p.wraps32]
    wrapping = [p for p in plans if p.wraps32]
    plain_values = _getter([p.attr for p in plain]) if plain else None
    plain_metrics = tuple(p.metric for p in plain)
    plain_scales = tuple(p.scale for p in plain)
    plain_unknown = tuple(p.unknown for p in plain)
    wrapping_values = _getter([p.attr for p in wrapping]) if wrapping else None
    wrapping_metrics = tuple(p.metric for p in wrapping)
    wrapping_scales = tuple(p.scale for p in wrapping)
    name_field = NAMING.get(kind)
    info = INFO.get(kind)
    info_values = _getter([attr for attr, _, _ in info.fields]) if info is not None else None

    def update(record: Any, source: SourceState) -> None:
        values = source.values
        if plain_values is not None:
            raws = plain_values(record)
            if _UNKNOWN.isdisjoint(raws):
                values.update(zip(plain_metrics, map(operator.mul, raws, plain_scales), strict=True))
            else:
                for metric, unknown, scale, raw in zip(plain_metrics, plain_unknown, plain_scales, raws, strict=True):
                    if raw != unknown:
                        values[metric] = raw * scale
        if wrapping_values is not None:
            unwrapped = source.unwrapped.get(kind)
            if unwrapped is None:
                unwrapped = source.unwrapped[kind] = Unwrapped(len(wrapping))
            totals = unwrapped.update(wrapping_values(record))
            if None not in unwrapped.lasts:
                values.update(zip(wrapping_metrics, map(operator.mul, totals, wrapping_scales), strict=True))
            else:
                for metric, scale, total, last in zip(
                    wrapping_metrics, wrapping_scales, totals, unwrapped.lasts, strict=True
                ):
                    if last is not None:
                        values[metric] = total * scale
        if name_field is not None:
            source.name = getattr(record, name_field).split("\0", 1)[0]
        if info is not None and info_values is not None:
            raws = info_values(record)
            if source.info_readings.get(kind) != raws:  # most readings repeat the last: no text to make
                source.info_readings[kind] = raws
                source.info[info.metric] = tuple(
                    (label, xdr.text(raw)) for (_, label, xdr), raw in zip(info.fields, raws, strict=True)
                )

    return update


_UPDATERS: dict[type, Updater] = {kind: _updater(kind) for kind in {*PLANS, *NAMING, *INFO}}
"""Per counter record type that the exporter takes anything from: its compiled update."""
READ = frozenset((SampledHeader, *_UPDATERS))
"""The records the exporter reads: its decode builds only these (``decode_datagram``'s ``only``)."""


@dataclass
class AgentState:
    last_seen: float
    sender: str = ""
    datagrams: int = 0
    flow_samples: int = 0
    counter_samples: int = 0
    discard_samples: int = 0
    other_samples: int = 0
    discards: dict[str, int] = field(default_factory=dict)
    """Discarded packets per reason (sflowtool's ``discardReason``): at most one key per name in
    the drop-reason table, plus ``NotFound``, whatever codes datagrams claim."""
    lost: int = 0
    series: int = 0
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
    discards: dict[str, dict[str, int]]  # agent → reason → discarded packets
    flows: dict[str, FlowSeries]
    datagrams: int
    errors: int
    unknown_records: int
    unknown_samples: int
    failures: int
    refused: int
    evicted: dict[str, int]
    series: int


def _ip_labels(key: Hashable) -> tuple[str, ...]:
    agent, src, dst = key  # type: ignore[misc]
    return agent, render_address(src), render_address(dst)


def _port_labels(key: Hashable) -> tuple[str, ...]:
    agent, src, dst, protocol, port = key  # type: ignore[misc]
    return agent, render_address(src), render_address(dst), protocol_name(protocol), str(port)


class ExportState:
    """Agents, data sources, flow tables and the collector's own counts."""

    read = READ

    def __init__(
        self,
        counts: Counts,
        *,
        flows: int = 100,
        expiry: float = 300.0,
        now: float = 0.0,
        limits: Limits | None = None,
    ) -> None:
        self.lock = threading.Lock()
        self.counts = counts
        self.expiry = expiry
        self.limits = limits or Limits()
        self.agents: dict[str, AgentState] = {}
        self.newcomers: FairShare[str, str] = FairShare()  # agents heard once, by sender
        self.established: FairShare[str, str] = FairShare()  # the others, by sender
        self.sources: dict[SourceKey, SourceState] = {}
        self.source_order: FairShare[SourceKey, str] = FairShare()  # by agent
        self.series = 0
        self.ip_flows = TopFlows(flows, _ip_labels, expiry=expiry, now=now)
        self.port_flows = TopFlows(flows, _port_labels, expiry=expiry, now=now)
        self.unknown_records = 0
        self.unknown_samples = 0
        self.failures = 0
        self.refused = 0
        self.evicted = {"agent": 0, "source": 0}
        self.last_tick = now
        self.last_agent: str | None = None
        """The agent of the last datagram taken in (most datagrams come from the agent before)."""
        self.agent_texts: dict[object, str] = {}
        """Agent address → its text, made once: ``str`` of an address costs more than the rest of a
        datagram's bookkeeping.  Cleared when it outgrows the agents the limits allow."""

    # ------------------------------------------------------------ writing

    def observe(self, datagram: Datagram, now: float, sender: str = "") -> None:
        """Take in one decoded datagram that ``sender`` (its UDP source address) sent."""
        agent_text = self.agent_texts.get(datagram.agent)
        if agent_text is None:
            if len(self.agent_texts) > 2 * self.limits.agents:
                self.agent_texts.clear()
            agent_text = self.agent_texts[datagram.agent] = str(datagram.agent)
        with self.lock:
            agent = self._agent(datagram, agent_text, sender, now)
            if agent is None:
                return
            agent.last_seen = now
            agent.datagrams += 1
            agent.sequence(datagram.sub_agent_id, datagram.sequence, datagram.uptime_ms)
            flows: list[FlowSample] = []
            for sample in datagram.samples:
                kind = type(sample)
                if kind is FlowSample:
                    flows.append(sample)  # taken in together, below
                elif kind is CounterSample:
                    agent.counter_samples += 1
                    self._counters(agent_text, agent, sample, now)  # type: ignore[arg-type]
                elif kind is DiscardSample:
                    # One dropped packet each: sFlow gives discard samples no sampling rate to scale by.
                    agent.discard_samples += 1
                    reason = DISCARD_REASONS.get(sample.reason, NOT_FOUND)
                    agent.discards[reason] = agent.discards.get(reason, 0) + 1
                else:  # an UnknownSample: a type the decoder skipped by length
                    agent.other_samples += 1
                    self.unknown_samples += 1
            if flows:
                agent.flow_samples += len(flows)
                self._flows(agent_text, flows, now)
            if now - self.last_tick >= 1.0:
                self._tick(now)

    def _agent(self, datagram: Datagram, agent_text: str, sender: str, now: float) -> AgentState | None:
        """The agent's state, taken in as a newcomer or promoted to established; None if refused."""
        agent = self.agents.get(agent_text)
        if agent is None:
            if not self.limits.allows(datagram.agent):
                self.refused += 1
                return None
            if len(self.newcomers) >= self.limits.newcomers or len(self.agents) >= self.limits.agents:
                self._evict_agent((self.newcomers or self.established).victim()[0])
            agent = self.agents[agent_text] = AgentState(now, sender)
            self.newcomers.add(agent_text, sender)
        elif agent.datagrams == 1:
            self.newcomers.remove(agent_text, agent.sender)
            self.established.add(agent_text, agent.sender)
            if len(self.established) > max(self.limits.agents - self.limits.newcomers, 1):
                self._evict_agent(self.established.victim()[0])
                if agent_text not in self.agents:
                    return None
        elif agent_text is not self.last_agent:  # the last agent heard is the last of its group already
            self.established.touch(agent_text, agent.sender)
        self.last_agent = agent_text
        return agent

    def _evict_agent(self, agent_text: str) -> None:
        self._drop_agent(agent_text)
        self.evicted["agent"] += 1

    def _drop_agent(self, agent_text: str) -> None:
        for key in list(self.source_order.groups.get(agent_text, ())):
            self._drop_source(key)
        agent = self.agents.pop(agent_text)
        established = agent_text in self.established.groups.get(agent.sender, ())
        (self.established if established else self.newcomers).remove(agent_text, agent.sender)

    def _drop_source(self, key: SourceKey) -> None:
        source = self.sources.pop(key)
        self.source_order.remove(key, key[0])
        self.series -= source.series
        self.agents[key[0]].series -= source.series

    def _evict_source(self, key: SourceKey) -> None:
        self._drop_source(key)
        self.evicted["source"] += 1

    def _flows(self, agent: str, samples: list[FlowSample], now: float) -> None:
        """A datagram's flow samples into the flow tables."""
        ip_add, port_add = self.ip_flows.add, self.port_flows.add
        for sample in samples:
            rate = sample.sampling_rate or 1
            for record in sample.records:
                kind = type(record)
                if kind is SampledHeader:
                    key = flow_key(record.header_protocol, record.header)  # type: ignore[union-attr]
                    if key is not None:
                        frame = record.frame_length - record.stripped  # type: ignore[union-attr]
                        nbytes = frame * rate if frame > 0 else 0
                        src, dst, protocol, port = key
                        ip_add((agent, src, dst), nbytes, rate, now)
                        port_add((agent, src, dst, protocol, port), nbytes, rate, now)
                elif kind is UnknownRecord:
                    self.unknown_records += 1

    def _counters(self, agent_text: str, agent: AgentState, sample: CounterSample, now: float) -> None:
        key = (agent_text, sample.ds_class, sample.ds_index)
        source = self.sources.get(key)
        if source is None:
            if self.source_order.count(agent_text) >= self.limits.sources_per_agent:
                self._evict_source(self.source_order.oldest(agent_text))
            elif len(self.sources) >= self.limits.sources:
                self._evict_source(self.source_order.victim()[0])
            source = self.sources[key] = SourceState(now)
            self.source_order.add(key, agent_text)
        else:
            self.source_order.touch(key, agent_text)
        source.last_seen = now
        for record in sample.records:
            kind = type(record)
            update = _UPDATERS.get(kind)
            if update is not None:
                update(record, source)
            elif kind is UnknownRecord:
                self.unknown_records += 1
        self._count_series(key, agent, source)

    def _count_series(self, key: SourceKey, agent: AgentState, source: SourceState) -> None:
        """Account the source's series; over a bound, the least recently updated sources go."""
        series = len(source.values) + len(source.info)
        grown = series - source.series
        source.series = series
        agent.series += grown
        self.series += grown
        while agent.series > self.limits.series_per_agent and self.source_order.count(key[0]) > 1:
            self._evict_source(self.source_order.oldest(key[0]))
        while self.series > self.limits.series and len(self.sources) > 1:
            self._evict_source(self.source_order.victim()[0])

    def failed(self) -> None:
        """Count a datagram the exporter could not take in (a bug, never the sender's fault)."""
        with self.lock:
            self.failures += 1

    # ------------------------------------------------------------ time

    def _tick(self, now: float) -> None:
        self.last_tick = now
        self.ip_flows.rank(now)
        self.port_flows.rank(now)
        for key in [k for k, s in self.sources.items() if now - s.last_seen > self.expiry]:
            self._drop_source(key)
        gone = {a for a, state in self.agents.items() if now - state.last_seen > self.expiry}
        for agent in gone:
            self._drop_agent(agent)
        if gone:
            self.ip_flows.forget(lambda k: k[0] in gone)  # type: ignore[index]
            self.port_flows.forget(lambda k: k[0] in gone)  # type: ignore[index]

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
                    "discard": s.discard_samples,
                    "other": s.other_samples,
                }
                for a, s in self.agents.items()
            }
            discards = {a: dict(s.discards) for a, s in self.agents.items() if s.discards}
            flows = {
                name: FlowSeries(list(table.series()), table.other_bytes, table.other_packets, len(table.flows))
                for name, table in (("ip", self.ip_flows), ("port", self.port_flows))
            }
            return Snapshot(
                sources,
                agents,
                discards,
                flows,
                self.counts.datagrams,
                self.counts.errors,
                self.unknown_records,
                self.unknown_samples,
                self.failures,
                self.refused,
                dict(self.evicted),
                self.series,
            )
