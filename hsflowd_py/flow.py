"""A sampled packet on its way from a sampler, through enrichers, to the encoder.

A flow sample has two halves, each declared once here.  What every sample of one interface shares
(its dsIndex, sampling rate, header protocol and stripped bytes, the ports each direction gives) is
an :class:`Interface`, which a sampler gets from the flow path when it opens the interface, and
again when its rate changes.  What each packet brings is declared by :class:`Emit`: every layer
between the sampler and the bytes (the flow path's entry, :class:`SampledPacket`, the packing,
the encoder) takes exactly these values in this order, and ``tests/test_flow_signature.py``
checks that each one does and that each call of them passes each value under its own name.  Where
a sampler calls in they are keyword-only: a value cannot land in another's place.
"""

from __future__ import annotations

import enum
import mmap
from typing import TYPE_CHECKING, Any, NamedTuple, Protocol

from .sflow.records import INTERNAL_PORT, ExtendedEntities, Record, SampledHeader

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
HEADER_IP = 0
"""An interface without a MAC header (a tunnel): each header is IPv4 or IPv6 by its version nibble."""
FCS_BYTES = 4
"""Ethernet frames lose their frame check sequence on the way to a sampler (0:1's ``stripped``)."""

Header = bytes | bytearray | memoryview | mmap.mmap
"""Where a sampled header lies: a sampler's ring, its scratch buffer, or bytes of its own."""


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


class Interface:
    """The per-interface half of a flow sample: what every sample of one sampled interface shares.

    A sampler gets one (as the flow path's :class:`~hsflowd_py.flow_path.SampledInterface`) when it
    opens an interface and a new one when the interface's rate changes; its samples go through its
    ``emit``.  ``ports`` holds the (input, output) pair of each direction, worked out once.
    """

    __slots__ = ("ds_index", "header_protocol", "ports", "sampling_rate", "stripped")

    def __init__(self, ds_index: int, sampling_rate: int, header_protocol: int = HEADER_ETHERNET) -> None:
        self.ds_index = ds_index
        self.sampling_rate = sampling_rate
        self.header_protocol = header_protocol
        """HEADER_ETHERNET, HEADER_IP (each header's own IP version), or the one protocol of every header."""
        self.stripped = FCS_BYTES if header_protocol == HEADER_ETHERNET else 0
        """Ethernet frames lost their FCS on the way to the sampler; headers without a MAC header had none."""
        self.ports = tuple(ports(ds_index, d) for d in (DIRECTION_UNKNOWN, DIRECTION_IN, DIRECTION_OUT))

    def protocol_of(self, header: Header, start: int, length: int) -> int:
        """The sFlow header protocol of the header ``header[start:start+length]`` (the same rule as
        ``sampler.bpf.h``'s: on an IP link, IPv4 when the version nibble says 4, else IPv6)."""
        protocol = self.header_protocol
        if protocol != HEADER_IP:
            return protocol
        return HEADER_IPV4 if length and header[start] >> 4 == 4 else HEADER_IPV6


class Emit(Protocol):
    """The per-packet half of a flow sample, declared once: what a sampler knows of one packet.

    Samplers call it by keyword only (``SampledInterface.emit``); inside the flow path
    (:class:`SampledPacket`, ``FlowPath._pack``, ``FlowEncoder.pack_into``) the same values go
    positionally, in this order, each under its own name (a keyword call costs ~70 ns more, a
    constructor's ~190 ns).
    """

    def __call__(
        self,
        *,
        sample_pool: int,
        drops: int,
        direction: int,
        frame_length: int,
        header: Header,
        start: int,
        length: int,
        timestamp_ns: int,
        sequence: int | None = None,
    ) -> None:
        """``sample_pool``, ``drops``: the interface's running totals since its sampler opened it
        (packets that could have been sampled; samples lost between the kernel and the agent).
        ``direction``: DIRECTION_IN, _OUT or _UNKNOWN.  ``frame_length``: the packet's length on the
        wire, stripped bytes included.  The header is ``header[start:start+length]`` (a slice of the
        sampler's ring, read before ``emit`` returns).  ``timestamp_ns``: since the epoch.
        ``sequence``: the sample's number if its sampler numbered it (eBPF, in the kernel; 0 is a
        number like any other, as a wrapped counter gives it); None: the flow path numbers it."""


UNPARSED: Any = object()
"""``SampledPacket.parsed`` before ``packet.packet_flow`` parsed the header."""


class SampledPacket:
    """One packet sample as a sampler hands it over, with what enrichers add.

    The per-interface values are the :class:`Interface`'s (``interface``, which the flow path packs
    the sample for; enrichers read its ``ds_index`` and the header's protocol here); the per-packet
    ones are :class:`Emit`'s, the header copied out of the sampler's ring.  ``extra`` holds the
    records enrichers add after the timestamp: a :class:`Record`, or an :class:`Encoded` one when
    an enricher gives the same record to many samples.  ``netns`` and the fields after it are the
    typed annotation enrichers pass to each other (:class:`Fact`); None means not known.
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
        "interface",
        "netns",
        "parsed",
        "parsed_tunnel",
        "sample_pool",
        "sequence",
        "socket_inode",
        "timestamp_ns",
    )  # fmt: skip

    def __init__(
        self, interface: Interface, sample_pool: int, drops: int, direction: int, frame_length: int, header: Header,
        start: int, length: int, timestamp_ns: int, sequence: int | None = None,
    ) -> None:  # fmt: skip
        self.interface = interface
        self.ds_index = interface.ds_index
        self.header_protocol = interface.header_protocol or interface.protocol_of(header, start, length)  # HEADER_IP: 0
        self.sample_pool = sample_pool
        self.drops = drops
        self.direction = direction
        self.frame_length = frame_length
        self.header = bytes(header[start : start + length])
        self.timestamp_ns = timestamp_ns
        self.sequence = sequence
        """The sample's number if its sampler numbered it (eBPF, in the kernel); None: the flow path's."""
        self.extra: list[Record | Encoded] = []
        self.netns: str | None = None
        self.cgroup_id: int | None = None
        self.socket_inode: int | None = None
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

    def __init__(self, sample: DiscardSample, header: SampledHeader) -> None:
        if sample.input and sample.input != INTERNAL_PORT:
            ds_index, direction = sample.input, DIRECTION_IN
        elif sample.output and sample.output != INTERNAL_PORT:
            ds_index, direction = sample.output, DIRECTION_OUT
        else:
            ds_index, direction = 0, DIRECTION_UNKNOWN
        super().__init__(
            Interface(ds_index, 1, header.header_protocol),
            sample_pool=0,
            drops=sample.drops,
            direction=direction,
            frame_length=header.frame_length,
            header=header.header,
            start=0,
            length=len(header.header),
            timestamp_ns=0,
        )
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
