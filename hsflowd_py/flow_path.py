"""The flow path: sampled packets from the samplers, through the enrichers, into the datagram.

A sampler gets an interface's entry from :meth:`FlowPath.interface` when it opens it (the
per-interface half of its samples, ``flow.Interface``) and hands each packet to its ``emit`` (the
per-packet half, ``flow.Emit``) with its header still in the sampler's ring.  With no enricher
active it is packed there and then into the datagram being built (``sflow/flow_encoder.py``),
with nothing allocated per packet.  Otherwise it
becomes a :class:`SampledPacket`, each enricher (``enrichers.py``) may add records or ask for
time (the tcp module's socket look-up when it has no fresh answer), and it is held
(``holds.py``) until the answers are in or the hold expires, then packed by the same encoder
with the enrichers' records after the timestamp.

Discard samples (0:5, the dropmon module's) take the same way: their sampled header goes through
the same enrichers as a :class:`~hsflowd_py.flow.DiscardPacket`, held as flow samples are when an
enricher asks for time, so markTraffic's 0:2210 names the container, pod or service whose packet
was dropped.  They are numbered when sent and go in datagrams of discard samples only.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Iterable
from typing import TYPE_CHECKING, Any, NamedTuple

from .enrichers import Enricher, Records, order_enrichers
from .flow import HEADER_ETHERNET, HEADER_IP, DiscardPacket, Encoded, Header, Interface, SampledPacket
from .holds import HeldSamples
from .sflow import records as rec
from .sflow.assembler import UNENCODABLE, DatagramAssembler, unencodable
from .sflow.codec import encode_record, encode_sample
from .sflow.flow_encoder import FlowEncoder
from .sflow.samples import DiscardSample

if TYPE_CHECKING:
    from .module import Module

Guard = Callable[..., Any]
"""``guard(module, hook name, fn, *args)``: the agent's way of calling a module hook."""


class Stage(NamedTuple):
    """One enricher as the flow path runs it: its facts as plain ints, tested per sample."""

    module: Module
    enrich: Callable[[SampledPacket], Awaitable[None] | None]
    reads: int
    writes: int


def _reraise() -> None:
    """Hands the enricher's exception, still being handled, to the guard that counts and logs it."""
    raise


class FlowPath:
    """Flow samples of every sampled interface, with one sequence number per interface."""

    def __init__(self, stats: dict[str, int], uptime_ms: Callable[[], int], guard: Guard, hold_s: float) -> None:
        self.stats = stats
        self.uptime_ms = uptime_ms
        self.guard = guard
        self.assembler: DatagramAssembler | None = None
        """The agent's current assembler; None until it has an address (samples are dropped)."""
        self.enrichers: list[Stage] = []
        """The active enrichers in run order (``set_enrichers``); empty: the allocation-free path."""
        self.at_once: Callable[[Interface, Header, int, int], Records | None] | None = None
        """The one active enricher's ``at_once`` (None with none, or more: they may read its facts)."""
        self.at_once_many: Callable[[Interface, Header, int, int, list[int]], list[Records | None]] | None = None
        """The same enricher's ``at_once_many``."""
        self.sequences: dict[int, int] = {}
        """Each interface's last sequence number, for samples the flow path numbers."""
        self.interfaces: dict[int, SampledInterface] = {}
        """The entry last made for each interface (``interface``)."""
        self.held = HeldSamples(self.emit_flow, stats, hold_s, self._enrich)
        self.discard_sequences: dict[tuple[int, int], int] = {}
        self.held_discards = HeldSamples(self._send_discard, stats, hold_s, self._enrich)
        self._encoder = FlowEncoder()
        self.watchers: list[Callable[[], None]] = []
        """Called when the enrichers were set (``EncodedFlows.watch``)."""

    def set_enrichers(self, pairs: Iterable[tuple[Module, str, Enricher]]) -> None:
        """The running modules' enrichers, (module, its name, enricher); ordered from their declarations."""
        ordered = order_enrichers(pairs)
        self.enrichers = [Stage(m, e.enrich, e.reads.value, e.writes.value) for m, e in ordered]
        alone = ordered[0][1] if len(ordered) == 1 else None
        answers = alone is not None and type(alone).at_once is not Enricher.at_once
        self.at_once = alone.at_once if answers else None
        self.at_once_many = alone.at_once_many if answers else None
        for changed in list(self.watchers):
            changed()

    def _enrich(
        self, packet: SampledPacket, stages: list[Stage], waiting: int = 0
    ) -> tuple[list[asyncio.Future[Any]], list[Stage]]:
        """Run ``stages`` on ``packet``: the holds they asked for, and the stages left for after them.

        A stage that reads a fact a holding stage has yet to write (``waiting``, or a stage left for
        later writes) waits for every hold so far: the held sample runs it again through here.
        """
        holds: list[asyncio.Future[Any]] = []
        deferred: list[Stage] = []
        for stage in stages:
            if stage.reads & waiting:
                deferred.append(stage)
                waiting |= stage.writes
                continue
            try:
                aw = stage.enrich(packet)
            except Exception:
                self.guard(stage.module, "enrich", _reraise)
                continue
            if aw is not None:
                holds.append(asyncio.ensure_future(aw))
                waiting |= stage.writes
        return holds, deferred

    def _annotate(self, packet: SampledPacket, stages: list[Stage], held: HeldSamples) -> bool:
        """Run the enrichers on ``packet``: True when one asked for time and ``held`` holds it."""
        for i, stage in enumerate(stages):
            try:
                aw = stage.enrich(packet)
            except Exception:
                self.guard(stage.module, "enrich", _reraise)
                continue
            if aw is not None:  # this one asks for time: the rest run as the held path orders them
                holds, deferred = self._enrich(packet, stages[i + 1 :], stage.writes)
                held.hold(packet, [asyncio.ensure_future(aw), *holds], deferred)
                return True
        return False

    def interface(self, ds_index: int, sampling_rate: int, ethernet: bool) -> SampledInterface:
        """The entry for a sampler's samples of interface ``ds_index`` at ``sampling_rate`` (frames with
        a MAC header, else IP packets): the same object while neither changes."""
        protocol = HEADER_ETHERNET if ethernet else HEADER_IP
        known = self.interfaces.get(ds_index)
        if known is not None and known.sampling_rate == sampling_rate and known.header_protocol == protocol:
            return known
        self.interfaces[ds_index] = made = SampledInterface(self, ds_index, sampling_rate, protocol)
        return made

    def restart_sequence(self, ds_index: int) -> None:
        """The interface stopped being sampled: its next flow sample starts a new sequence."""
        self.sequences.pop(ds_index, None)
        self.interfaces.pop(ds_index, None)

    def emit_flow(self, packet: SampledPacket) -> None:
        """Encode a held packet: as on the fast path, with the enrichers' records after the timestamp."""
        extra = packet.extra
        extras = b"".join(map(self._encoded_extra, extra)) if extra else b""
        header = packet.header
        start, length, timestamp_ns = 0, len(header), packet.timestamp_ns or time.time_ns()
        self._pack(
            packet.interface, extras, len(extra),
            packet.sample_pool, packet.drops, packet.direction, packet.frame_length, header, start, length,
            timestamp_ns, packet.sequence,
        )  # fmt: skip

    def emit_discard(self, sample: DiscardSample) -> None:
        """A discard sample (0:5): its sampled header (0:1) through the enrichers, then into a
        datagram of discard samples only; one without a header, or with no enricher active, goes now."""
        header = next((r for r in sample.records if isinstance(r, rec.SampledHeader)), None)
        stages = self.enrichers
        if not stages or header is None:
            self._send(sample)
            return
        packet = DiscardPacket(sample, header)
        if not self._annotate(packet, stages, self.held_discards):
            self._send_discard(packet)

    def _send_discard(self, packet: SampledPacket) -> None:
        """A discard packet the enrichers are done with: their records after the sample's own."""
        assert isinstance(packet, DiscardPacket)
        sample = packet.sample
        sample.records.extend(r.record if isinstance(r, Encoded) else r for r in packet.extra)
        self._send(sample)

    def _send(self, sample: DiscardSample) -> None:
        """Number a discard sample in its data source's sequence and add it to a discard datagram."""
        a = self.assembler
        if a is None:
            return
        seqs, source = self.discard_sequences, (sample.ds_class, sample.ds_index)
        sample.sequence = seqs[source] = (seqs.get(source, 0) + 1) & 0xFFFFFFFF
        try:
            encoded = encode_sample(sample)
        except UNENCODABLE as e:
            seqs[source] = (sample.sequence - 1) & 0xFFFFFFFF  # no gap for collectors to count as a loss
            unencodable(self.stats, "discard sample", e)
            return
        a.add(encoded, self.uptime_ms(), discards=True)
        self.stats["discard_samples"] = self.stats.get("discard_samples", 0) + 1

    async def drain(self) -> None:
        """At stop: the held flow and discard samples get their remaining time, then go as they are."""
        await asyncio.gather(self.held.drain(), self.held_discards.drain())

    @staticmethod
    def _encoded_extra(record: rec.Record | Encoded) -> bytes:
        """``record`` encoded, unless the enricher gave it encoded (a record many samples share)."""
        return record.data if isinstance(record, Encoded) else encode_record(record)

    def _pack(
        self, interface: Interface, extras: bytes, extra_count: int,
        sample_pool: int, drops: int, direction: int, frame_length: int, header: Header, start: int, length: int,
        timestamp_ns: int, sequence: int | None = None,
    ) -> None:  # fmt: skip
        """Both paths end here: the interface's next sequence number (unless the sampler numbered the
        sample), room in the datagram being built, and the encoder packs the sample into it.  The
        packet's values are ``flow.Emit``'s, positionally in its order, as the encoder takes them."""
        a = self.assembler
        if a is None:
            return
        ds_index = interface.ds_index
        seqs = self.sequences
        ours = sequence is None  # else the sampler numbered it, 0 included (a wrapped kernel counter)
        if sequence is None:
            sequence = seqs[ds_index] = (seqs.get(ds_index, 0) + 1) & 0xFFFFFFFF
        encoder = self._encoder
        off = a.reserve(encoder.fixed_size + ((length + 3) & ~3) + len(extras), self.uptime_ms())
        try:
            encoder.pack_into(
                a.buffer, off, interface, extras, extra_count,
                sample_pool, drops, direction, frame_length, header, start, length, timestamp_ns, sequence,
            )  # fmt: skip
        except UNENCODABLE as e:
            a.unreserve(off)
            if ours:
                seqs[ds_index] = (sequence - 1) & 0xFFFFFFFF
            unencodable(self.stats, f"flow sample of ifIndex {ds_index}", e)
            return
        self.stats["flow_samples"] += 1


class SampledInterface(Interface):
    """One sampled interface's entry into the flow path: its sampler calls :meth:`emit` per packet.

    Made by :meth:`FlowPath.interface` when the sampler opens the interface, and again when its rate
    changes: what every sample of the interface shares is set here once, not passed per packet.
    """

    __slots__ = ("_path",)

    def __init__(self, path: FlowPath, ds_index: int, sampling_rate: int, header_protocol: int) -> None:
        super().__init__(ds_index, sampling_rate, header_protocol)
        self._path = path

    def emit(
        self, *, sample_pool: int, drops: int, direction: int, frame_length: int, header: Header, start: int,
        length: int, timestamp_ns: int, sequence: int | None = None,
    ) -> None:  # fmt: skip
        """A sampled packet (``flow.Emit``), its header still in the sampler's ring.

        With no enricher active the sample is encoded straight into the datagram being built
        (``sflow/flow_encoder.py``): nothing is allocated per packet.  A lone enricher that knows
        the sample's records from its header at once (``Enricher.at_once``) adds them there, still
        from the ring.  Otherwise the enrichers annotate a :class:`SampledPacket`; one they answer
        at once is packed there and then, from the ring, one they ask time for is held
        (``holds.py``) and packed by ``emit_flow`` when complete.
        """
        path = self._path
        stages = path.enrichers
        extras, extra_count = b"", 0
        if stages:
            at_once = path.at_once
            known = None if at_once is None else at_once(self, header, start, length)
            if known is not None:
                extras, extra_count = known
            else:
                packet = SampledPacket(
                    self, sample_pool, drops, direction, frame_length, header, start, length, timestamp_ns, sequence
                )
                if path._annotate(packet, stages, path.held):
                    return
                extra = packet.extra  # answered at once: packed from the ring as on the fast path
                if extra:
                    extras, extra_count = b"".join(map(path._encoded_extra, extra)), len(extra)
        path._pack(
            self, extras, extra_count,
            sample_pool, drops, direction, frame_length, header, start, length, timestamp_ns, sequence,
        )  # fmt: skip

    def records_at_once_many(self, ring: Header, offset: int, stride: int, lengths: list[int]) -> list[Records | None]:
        """For each packet of a ring read (``Enricher.at_once_many``), the records the lone enricher adds to it
        when it knows them at once from the header; None: that packet must go by ``emit``."""
        at_once_many = self._path.at_once_many
        return [None] * len(lengths) if at_once_many is None else at_once_many(self, ring, offset, stride, lengths)

    def add_encoded(self, sample: Header, pos: int, size: int, records: Records) -> None:
        """A sample its sampler encoded and numbered (eBPF, in the kernel), ``sample[pos:pos+size]``, with
        ``records`` (from ``records_at_once_many``) appended.

        Nothing of the sample is decoded or packed again: its bytes are copied, the records added
        after them and its length and record count fixed up (``FlowEncoder.extend_into``).
        """
        path = self._path
        a = path.assembler
        if a is None:
            return
        extras, extra_count = records
        off = a.reserve(size + len(extras), path.uptime_ms())
        buf = a.buffer
        buf[off : off + size] = sample[pos : pos + size]
        if extra_count:
            path._encoder.extend_into(buf, off, size, extras, extra_count)
        path.stats["flow_samples"] += 1


class EncodedFlows:
    """The flow path as a sampler that encodes its samples itself, numbers included (eBPF, in the
    kernel), sees it: room in the datagram being built, nothing of the path's insides, so that the
    path can change without its samplers.

    Samples added here go out as they were given (``DatagramAssembler.add_samples``): only while
    :attr:`direct` holds, that is there is an assembler and no enricher wants the packets; else the
    sampler hands them to its interfaces' ``emit`` with their numbers."""

    __slots__ = ("_flows", "_uptime")

    def __init__(self, flows: FlowPath) -> None:
        self._flows = flows
        self._uptime = 0

    @property
    def direct(self) -> bool:
        """Encoded samples may go straight into the datagram (else through the interfaces' ``emit``)."""
        return self._flows.assembler is not None and not self._flows.enrichers

    def room(self) -> int:
        """Bytes the samples added next may have in all and still join the datagram being built."""
        a = self._flows.assembler
        if a is None:
            return 0
        self._uptime = self._flows.uptime_ms()
        return a.room(self._uptime)

    def watch(self, changed: Callable[[], None]) -> None:
        """Have ``changed`` called whenever :attr:`direct` may have changed (a reload set the enrichers), at once:
        a sampler that has the kernel build datagrams stops it before the next sample."""
        self._flows.watchers.append(changed)

    def unwatch(self, changed: Callable[[], None]) -> None:
        """No longer call ``changed`` (its sampler stopped)."""
        self._flows.watchers.remove(changed)

    def capacity(self) -> int:
        """Bytes of samples an empty datagram holds (0: no datagrams are sent)."""
        a = self._flows.assembler
        return a.capacity if a is not None else 0

    def add(self, samples: tuple[bytes, ...]) -> None:
        """Samples (one encoded sample each) within ``room`` (``DatagramAssembler.add_samples``)."""
        a = self._flows.assembler
        if a is not None and samples:
            a.add_samples(b"".join(samples), len(samples))
            self._flows.stats["flow_samples"] += len(samples)

    def add_joined(self, samples: bytes | memoryview, count: int) -> None:
        """``count`` encoded samples one after the other: within the room of the datagram being built if it
        has it, else after it is sent."""
        a = self._flows.assembler
        if a is not None:
            if len(samples) > self.room():
                self.send()
            a.add_samples(samples, count)
            self._flows.stats["flow_samples"] += count

    def send_alone(self, datagrams: list[tuple[int, tuple[bytes | memoryview, ...]]]) -> None:
        """Datagrams of their own, each its number of samples and the pieces they are in (encoded samples
        one after the other) within an empty datagram's room, sent now, after the one being built
        (``DatagramAssembler.send_samples``)."""
        a = self._flows.assembler
        if a is not None:
            self._flows.stats["flow_samples"] += a.send_samples(datagrams, self._uptime)

    def send_in_place(self, datagrams: list[tuple[int, int, int]]) -> None:
        """Datagrams of their own, each its number of samples and where they lie (address and length, in
        memory unchanged until this returns: a BPF ring's records), sent now, after the one being built,
        the kernel reading the samples where they lie (``DatagramAssembler.send_in_place``)."""
        a = self._flows.assembler
        if a is not None:
            self._flows.stats["flow_samples"] += a.send_in_place(datagrams, self._uptime)

    def send(self) -> int:
        """Send the datagram being built; the room of the next one."""
        a = self._flows.assembler
        if a is None:
            return 0
        a.flush(self._uptime)
        return a.room(self._uptime)

    def pending(self) -> int:
        """Samples in the datagram being built."""
        a = self._flows.assembler
        return a.pending if a is not None else 0
