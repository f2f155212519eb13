"""What the pcap module asks of a kernel sampler, and what both samplers share.

A sampler takes 1-in-N packets of each opened interface in the kernel and hands each one to
the ``emit`` of the interface's entry into the flow path (:class:`OpenFlows`) with its true
sample pool and drop count.  Both are running totals for the interface since the sampler
opened it, as the sFlow v5 specification defines them: ``sample_pool`` counts the packets
that could have been sampled, ``drops`` the samples lost between the kernel and the agent
(ring full).  The established agent re-adds a cumulative drop figure on every sample; a
collector differencing successive samples then sees drops that never happened.

A NIC that strips the 802.1Q tag hands it over beside the packet: the tag is put back into
the header (:func:`restore_vlan_tag` for classic BPF; the eBPF program does the same) and
counted in the frame length.  With GSO/GRO one packet in the kernel stands for several on the
wire (``skb->gso_segs``): the eBPF program samples those segments, each as the wire carries
it (``sampler.bpf.h``); classic BPF sees the packet once, at its full size, as the
established agent does.
"""

from __future__ import annotations

import abc
import struct
from typing import Any, Protocol

from hsflowd_py.counters import step
from hsflowd_py.enrichers import Records
from hsflowd_py.flow import FCS_BYTES as FCS_BYTES
from hsflowd_py.flow import Emit, Header

from .interfaces import Tap

VLAN_TAG_BYTES = 4
_TAG = struct.Struct(">HH")

_ETH_P_8021Q = 0x8100


class SamplerError(Exception):
    """A sampler cannot start, or cannot open an interface; the message says why."""


class OutOfDescriptors(SamplerError):
    """The process has no file descriptor left (EMFILE, ENFILE) for another interface."""


class OpenFlows(Protocol):
    """The flow path's entry for a sampler (``ModuleContext.flow_interface``): for an interface, its
    index, rate and link type (frames with a MAC header, or IP packets), the ``emit`` its samples go
    through (``hsflowd_py.flow.Emit``).  A sampler asks when it opens an interface and when the
    interface's rate changes; everything else a sample says comes with each packet."""

    def __call__(self, ifindex: int, sampling_rate: int, ethernet: bool) -> FlowEntry: ...


class FlowEntry(Protocol):
    """What a sampler holds per open interface (``hsflowd_py.flow_path.SampledInterface``)."""

    @property
    def emit(self) -> Emit: ...

    def records_at_once_many(self, ring: Header, offset: int, stride: int, lengths: list[int]) -> list[Records | None]:
        """The enrichers' records for each packet of a ring read, where known at once from its header; None:
        that packet goes by ``emit`` (``SampledInterface.records_at_once_many``)."""
        ...

    def add_encoded(self, sample: Header, pos: int, size: int, records: Records) -> None:
        """A sample the sampler encoded and numbered itself, with those records appended
        (``SampledInterface.add_encoded``)."""
        ...


class Sampler(abc.ABC):
    """One kind of kernel sampler, serving any number of interfaces."""

    kind: str

    @abc.abstractmethod
    def open(self, tap: Tap) -> None:
        """Start sampling an interface; raises SamplerError (or OSError) saying why it cannot."""

    @abc.abstractmethod
    def update(self, tap: Tap) -> None:
        """New rate or header size for an open interface; its totals carry on."""

    @abc.abstractmethod
    def close(self, ifindex: int) -> None:
        """Stop sampling an interface (it may already be gone)."""

    @abc.abstractmethod
    def stop(self) -> None:
        """Close every interface and release the sampler."""

    @abc.abstractmethod
    def status(self) -> dict[str, int]:
        """Counters for the agent's self-telemetry."""


class RunningTotal:
    """A running total fed by readings of a kernel counter that may wrap or restart."""

    __slots__ = ("last", "total")

    def __init__(self, first: int) -> None:
        self.last = first
        self.total = 0

    def update(self, raw: int) -> int:
        self.total += step(self.last, raw, 64)
        self.last = raw
        return self.total


def restore_vlan_tag(out: bytearray, src: Any, start: int, length: int, tpid: int, tci: int, limit: int) -> int:
    """Write the frame's header with its stripped 802.1Q tag put back after the MACs; returns its length."""
    if length < 12:
        out[:length] = src[start : start + length]
        return length
    out[:12] = src[start : start + 12]
    _TAG.pack_into(out, 12, tpid or _ETH_P_8021Q, tci)
    rest = min(length - 12, limit - 16)
    out[16 : 16 + rest] = src[start + 12 : start + 12 + rest]
    return 16 + rest
