"""Samples and datagrams: the containers records travel in.

Plain data objects with no I/O; ``codec.py`` turns them into bytes and back.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field

from .records import Record

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

FLOW_SAMPLE = 1
COUNTER_SAMPLE = 2
FLOW_SAMPLE_EXPANDED = 3
COUNTER_SAMPLE_EXPANDED = 4
DISCARD_SAMPLE = 5


@dataclass(frozen=True)
class UnknownRecord:
    """A record whose tag the table does not declare, kept as raw bytes."""

    tag: int
    data: bytes

    @property
    def enterprise(self) -> int:
        return self.tag >> 12

    @property
    def format(self) -> int:
        return self.tag & 0xFFF


@dataclass(frozen=True)
class BrokenRecord:
    """Where decoding stopped: the record whose body did not fit its declared layout.

    Only a partly decoded datagram (``DecodeError.partial``) holds one, so the
    collector can print what sflowtool prints before it gives up: the record's
    tag and its constant first line.
    """

    tag: int
    record_type: type[Record] | None


AnyRecord = Record | UnknownRecord | BrokenRecord


@dataclass
class FlowSample:
    """A flow sample: expanded (0:3) or compact (0:1)."""

    ds_class: int
    ds_index: int
    sampling_rate: int
    sample_pool: int
    drops: int
    input: int
    output: int
    records: list[AnyRecord] = field(default_factory=list)
    sequence: int = 0
    input_format: int = 0
    output_format: int = 0
    expanded: bool = True
    """Expanded (0:3) or compact (0:1: source and ports packed into one word each)."""
    complete: bool = True
    """False for the sample a decode error stopped in (``DecodeError.partial``)."""


@dataclass
class CounterSample:
    """A counter sample: expanded (0:4) or compact (0:2)."""

    ds_class: int
    ds_index: int
    records: list[AnyRecord] = field(default_factory=list)
    sequence: int = 0
    expanded: bool = True
    complete: bool = True


@dataclass
class DiscardSample:
    """A dropped packet (0:5): where and why, with flow records describing it."""

    ds_class: int
    ds_index: int
    drops: int
    input: int
    output: int
    reason: int
    records: list[AnyRecord] = field(default_factory=list)
    sequence: int = 0
    complete: bool = True


@dataclass(frozen=True)
class UnknownSample:
    """A sample type this decoder does not know (e.g. discard events), kept raw."""

    tag: int
    data: bytes


Sample = FlowSample | CounterSample | DiscardSample | UnknownSample


@dataclass
class Datagram:
    """An sFlow v5 datagram."""

    agent: IPAddress
    sub_agent_id: int
    sequence: int
    uptime_ms: int
    samples: list[Sample] = field(default_factory=list)
    version: int = 5
    declared_samples: int | None = field(default=None, compare=False)
    """The header's sample count as received (None: ``len(samples)``); differs from it only
    in a partly decoded datagram."""
