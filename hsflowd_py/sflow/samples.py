"""Samples and datagrams: the containers records travel in.

Plain data objects with no I/O; ``codec.py`` turns them into bytes and back.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field

from .records import Record

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

FLOW_SAMPLE_EXPANDED = 3
COUNTER_SAMPLE_EXPANDED = 4


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


AnyRecord = Record | UnknownRecord


@dataclass
class FlowSample:
    """An expanded flow sample (0:3)."""

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


@dataclass
class CounterSample:
    """An expanded counter sample (0:4)."""

    ds_class: int
    ds_index: int
    records: list[AnyRecord] = field(default_factory=list)
    sequence: int = 0


@dataclass(frozen=True)
class UnknownSample:
    """A sample type this decoder does not know (e.g. discard events), kept raw."""

    tag: int
    data: bytes


Sample = FlowSample | CounterSample | UnknownSample


@dataclass
class Datagram:
    """An sFlow v5 datagram."""

    agent: IPAddress
    sub_agent_id: int
    sequence: int
    uptime_ms: int
    samples: list[Sample] = field(default_factory=list)
    version: int = 5
