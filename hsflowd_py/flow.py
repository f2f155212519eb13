"""A sampled packet on its way from a sampler, through enrichers, to the encoder."""

from __future__ import annotations

import enum
from typing import TYPE_CHECKING, Any, NamedTuple

from .sflow.records import INTERNAL_PORT, ExtendedEntities, Record

if TYPE_CHECKING:
    from .packet import Flow
    from .sflow.samples import DiscardSample

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


class Fact(enum.Flag):
    """What an enricher learns about a packet for another: the inputs and outputs it declares.

    Each fact is a typed field (or set of fields) of :class:`SampledPacket`; the core runs an
    enricher that writes a fact before every enricher that reads it (``module.py``).
    """

    NONE = 0
    NETNS = enum.auto()
    """``packet.netns``: the network namespace of the packet's local socket (docker)."""
    SOCKET = enum.auto()
    """``packet.cgroup_id``, ``packet.socket_inode``: the local socket the kernel named (tcp)."""
    ENTITIES = enum.auto()
    """The packet's 0:2210 (``mark_entity``): which container or service each side is."""


class Encoded(NamedTuple):
    """A record an enricher gives to many samples (the tcp module's 2209 of one socket), encoded once."""

    record: Record
    data: bytes


def ports(ds_index: int, direction: int) -> tuple[int, int]:
    """Flow sample (input, output) of a packet on interface ``ds_index`` (REFERENCE.md section 2):
    received means from the interface to the host itself, sent the other way, unknown 0/0."""
    if direction == DIRECTION_IN:
        return ds_index, INTERNAL_PORT
    if direction == DIRECTION_OUT:
        return INTERNAL_PORT, ds_index
    return 0, 0


UNPARSED: Any = object()
"""``SampledPacket.parsed`` before ``packet.packet_flow`` parsed the header."""


class SampledPacket:
    """One packet sample as a sampler hands it over, with what enrichers add.

    ``extra`` holds the records enrichers add after the timestamp: a :class:`Record`, or an
    :class:`Encoded` one when an enricher gives the same record to many samples.  The other fields
    after ``timestamp_ns`` are the typed annotation enrichers pass to each other (:class:`Fact`);
    None means not known.
    """

    __slots__ = (
        "cgroup_id",
        "direction",
        "drops",
        "ds_index",
        "extra",
        "frame_length",
        "header",
        "header_protocol",
        "netns",
        "parsed",
        "parsed_tunnel",
        "sample_pool",
        "sampling_rate",
        "sequence",
        "socket_inode",
        "stripped",
        "timestamp_ns",
    )  # fmt: skip

    def __init__(
        self,
        ds_index: int,
        sampling_rate: int,
        sample_pool: int,
        drops: int,
        direction: int,
        header: bytes,
        frame_length: int,
        stripped: int = 4,
        header_protocol: int = HEADER_ETHERNET,
        timestamp_ns: int = 0,
        netns: str | None = None,
        cgroup_id: int | None = None,
        socket_inode: int | None = None,
        sequence: int = 0,
    ) -> None:
        self.ds_index = ds_index
        self.sampling_rate = sampling_rate
        self.sample_pool = sample_pool
        self.drops = drops
        self.direction = direction
        self.header = header
        self.frame_length = frame_length
        self.stripped = stripped
        self.header_protocol = header_protocol
        self.timestamp_ns = timestamp_ns
        self.extra: list[Record | Encoded] = []
        self.netns = netns
        self.cgroup_id = cgroup_id
        self.socket_inode = socket_inode
        self.sequence = sequence
        """The sample's sequence number if its sampler numbered it (eBPF, in the kernel); 0: the flow path's."""
        self.parsed: Flow | None = UNPARSED
        """The flow ``packet.packet_flow`` parsed, kept for the next enricher that asks."""
        self.parsed_tunnel: Flow | None = UNPARSED


class DiscardPacket(SampledPacket):
    """A dropped packet's sampled header on its way through the same enrichers as a flow sample's,
    with the discard sample (0:5) it becomes: the enrichers' records go after the sample's own.

    A drop has no sampling interface: the packet's interface is the one it came in on (received),
    else the one it was leaving through (sent), so an enricher reads it as it would a flow sample's.
    """

    __slots__ = ("sample",)

    def __init__(
        self, sample: DiscardSample, header: bytes, frame_length: int, stripped: int, header_protocol: int
    ) -> None:
        if sample.input and sample.input != INTERNAL_PORT:
            ds_index, direction = sample.input, DIRECTION_IN
        elif sample.output and sample.output != INTERNAL_PORT:
            ds_index, direction = sample.output, DIRECTION_OUT
        else:
            ds_index, direction = 0, DIRECTION_UNKNOWN
        super().__init__(
            ds_index, 1, 0, sample.drops, direction, header, frame_length, stripped, header_protocol
        )  # fmt: skip
        self.sample = sample


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
