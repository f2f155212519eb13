"""A sampled packet on its way from a sampler, through enrichers, to the encoder."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from .sflow.records import INTERNAL_PORT, ExtendedEntities, Record

DIRECTION_UNKNOWN = 0
DIRECTION_IN = 1
DIRECTION_OUT = 2

SRC, DST = 0, 1
"""The sides of a sampled packet, for :func:`mark_entity`."""
ENTITY_DS_CLASS = 3
"""Containers and services are data sources of class 3 (``3:dsIndex``)."""

HEADER_ETHERNET = 1
HEADER_IPV4 = 11
HEADER_IPV6 = 12


def ports(ds_index: int, direction: int) -> tuple[int, int]:
    """Flow sample (input, output) of a packet on interface ``ds_index`` (REFERENCE.md section 2):
    received means from the interface to the host itself, sent the other way, unknown 0/0."""
    if direction == DIRECTION_IN:
        return ds_index, INTERNAL_PORT
    if direction == DIRECTION_OUT:
        return INTERNAL_PORT, ds_index
    return 0, 0


@dataclass(slots=True)
class SampledPacket:
    """One packet sample as a sampler hands it over; enrichers append records to ``extra``.

    ``notes`` carries what one enricher learns for another (the tcp module's
    cgroup id for the systemd module, the network namespace a docker module
    found for the tcp module).
    """

    ds_index: int
    sampling_rate: int
    sample_pool: int
    drops: int
    direction: int
    header: bytes
    frame_length: int
    stripped: int = 4
    header_protocol: int = HEADER_ETHERNET
    timestamp_ns: int = 0
    extra: list[Record] = field(default_factory=list)
    notes: dict[str, Any] = field(default_factory=dict)


def mark_entity(packet: SampledPacket, side: int, ds_index: int) -> None:
    """Name the container or service (3:``ds_index``) on one side of the packet's 0:2210.

    Modules share the one record (docker may name the sending container, systemd the
    receiving service): a side another module already named stays as it is.
    """
    for r in packet.extra:
        if isinstance(r, ExtendedEntities):
            break
    else:
        r = ExtendedEntities(0, 0, 0, 0)
        packet.extra.append(r)
    if side == SRC and not r.src_ds_class:
        r.src_ds_class, r.src_ds_index = ENTITY_DS_CLASS, ds_index
    elif side == DST and not r.dst_ds_class:
        r.dst_ds_class, r.dst_ds_index = ENTITY_DS_CLASS, ds_index
