"""The flow path: sampled packets from the samplers, through the enrichers, into the datagram.

A sampler hands each packet to :meth:`FlowPath.emit_header_sample` with its header still in
the sampler's ring.  With no enricher active it is packed there and then into the datagram
being built (``sflow/flow_encoder.py``), with nothing allocated per packet.  Otherwise it
becomes a :class:`SampledPacket`, each enricher may add records or ask for time (the tcp
module's socket look-up), and it is held (``holds.py``) until the answers are in or the
hold expires, then packed by the same encoder with the enrichers' records after the
timestamp.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

from . import module as module_api
from .flow import HEADER_ETHERNET, SampledPacket, ports
from .holds import HeldSamples
from .sflow import records as rec
from .sflow.assembler import UNENCODABLE, DatagramAssembler, unencodable
from .sflow.codec import encode_record
from .sflow.flow_encoder import FlowEncoder

Guard = Callable[..., Any]
"""``guard(module, hook name, fn, *args)``: the agent's way of calling a module hook."""


class FlowPath:
    """Flow samples of every sampled interface, with one sequence number per interface."""

    def __init__(self, stats: dict[str, int], uptime_ms: Callable[[], int], guard: Guard, hold_s: float) -> None:
        self.stats = stats
        self.uptime_ms = uptime_ms
        self.guard = guard
        self.assembler: DatagramAssembler | None = None
        """The agent's current assembler; None until it has an address (samples are dropped)."""
        self.enrichers: list[module_api.Module] = []
        """Running modules with an ``enrich`` hook, in ``enrich_order``."""
        self.sequences: dict[int, int] = {}
        self.held = HeldSamples(self.emit_flow, stats, hold_s)
        self._encoder = FlowEncoder()
        self._last_extra: tuple[rec.Record | None, bytes] = (None, b"")

    def submit(self, packet: SampledPacket) -> None:
        """A sampler's packet: run the enrichers, hold it while any is pending, then encode.

        ``packet.notes["holds"]`` lists the holds of the enrichers called so far, so that a later
        enricher can wait for an earlier one's answer (systemd waits for tcp's socket look-up).
        """
        holds: list[asyncio.Future[Any]] = []
        for m in self.enrichers:
            aw = self.guard(m, "enrich", m.enrich, packet)
            if aw is not None:
                holds.append(asyncio.ensure_future(aw))
                packet.notes["holds"] = holds
        if holds:
            self.held.hold(packet, holds)
        else:
            self.emit_flow(packet)

    def emit_header_sample(
        self,
        ds_index: int,
        sampling_rate: int,
        sample_pool: int,
        drops: int,
        direction: int,
        frame_length: int,
        header: Any,
        start: int,
        length: int,
        timestamp_ns: int,
        header_protocol: int = HEADER_ETHERNET,
    ) -> None:
        """A sampler's packet whose header is ``header[start:start+length]`` (a slice of its ring).

        With no enricher active the sample is encoded straight into the datagram being built
        (``sflow/flow_encoder.py``): nothing is allocated per packet.  Otherwise it takes the
        enriched path through :meth:`submit`.  Ethernet frames lost their 4-byte FCS on the way
        to the sampler (``stripped``); headers without a MAC header had none.
        """
        stripped = 4 if header_protocol == HEADER_ETHERNET else 0
        if self.enrichers:
            packet = SampledPacket(
                ds_index,
                sampling_rate,
                sample_pool,
                drops,
                direction,
                header=bytes(header[start : start + length]),
                frame_length=frame_length,
                stripped=stripped,
                header_protocol=header_protocol,
                timestamp_ns=timestamp_ns,
            )
            self.submit(packet)
            return
        self._pack(
            ds_index, sampling_rate, sample_pool, drops, direction, header_protocol, frame_length, stripped, header,
            start, length, timestamp_ns,
        )  # fmt: skip

    def emit_flow(self, packet: SampledPacket) -> None:
        """Encode an enriched packet: as on the fast path, with the enrichers' records after the timestamp."""
        extras = b"".join(map(self._encoded_extra, packet.extra))
        self._pack(
            packet.ds_index, packet.sampling_rate, packet.sample_pool, packet.drops, packet.direction,
            packet.header_protocol, packet.frame_length, packet.stripped, packet.header, 0, len(packet.header),
            packet.timestamp_ns or time.time_ns(), extras, len(packet.extra),
        )  # fmt: skip

    def _encoded_extra(self, record: rec.Record) -> bytes:
        """``record`` encoded; the samples of one socket look-up share one 2209 record and come
        out one after another, so the last record's bytes are kept (with the record, so its id
        cannot be reused) and serve the next samples."""
        if record is not self._last_extra[0]:
            self._last_extra = (record, encode_record(record))
        return self._last_extra[1]

    def _pack(
        self,
        ds_index: int,
        sampling_rate: int,
        sample_pool: int,
        drops: int,
        direction: int,
        header_protocol: int,
        frame_length: int,
        stripped: int,
        header: Any,
        start: int,
        length: int,
        timestamp_ns: int,
        extras: bytes = b"",
        extra_count: int = 0,
    ) -> None:
        """Both paths end here: the interface's next sequence number, the ports its direction gives,
        room in the datagram being built, and the encoder packs the sample into it."""
        a = self.assembler
        if a is None:
            return
        seqs = self.sequences
        seq = seqs[ds_index] = (seqs.get(ds_index, 0) + 1) & 0xFFFFFFFF
        inp, out = ports(ds_index, direction)
        encoder = self._encoder
        off = a.reserve(encoder.size(length) + len(extras), self.uptime_ms())
        try:
            encoder.pack_into(
                a.buffer, off, seq, ds_index, sampling_rate, sample_pool, drops, inp, out,
                header_protocol, frame_length, stripped, header, start, length, timestamp_ns, extras, extra_count,
            )  # fmt: skip
        except UNENCODABLE as e:
            a.unreserve(off)
            seqs[ds_index] = (seq - 1) & 0xFFFFFFFF
            unencodable(self.stats, f"flow sample of ifIndex {ds_index}", e)
            return
        self.stats["flow_samples"] += 1
