"""What the pcap module asks of a kernel sampler, and what both samplers share.

A sampler takes 1-in-N packets of each opened interface in the kernel and hands each one to
``emit`` (the agent's :meth:`~hsflowd_py.flow_path.FlowPath.emit_header_sample`) with its true
sample pool and drop count.  Both are running totals for the interface since the sampler
opened it, as the sFlow v5 specification defines them: ``sample_pool`` counts the packets
that could have been sampled, ``drops`` the samples lost between the kernel and the agent
(ring full).  The established agent re-adds a cumulative drop figure on every sample; a
collector differencing successive samples then sees drops that never happened.

Two facts of the kernel shape what a sample carries:

* a NIC that strips the 802.1Q tag hands it over beside the packet: the tag is put back
  into the header (:func:`restore_vlan_tag`) and counted in the frame length;
* with GSO/GRO one packet in the kernel stands for several on the wire
  (``skb->gso_segs``): a sample of it reports the average wire frame of those segments
  (:func:`segment_frame_length`).
"""

from __future__ import annotations

import abc
import struct
from typing import Any, Protocol

from hsflowd_py.counters import step

from .interfaces import Tap

FCS_BYTES = 4
VLAN_TAG_BYTES = 4
ETH_HEADER = 14
_TAG = struct.Struct(">HH")

_ETH_P_8021Q = 0x8100
_ETH_P_8021AD = 0x88A8
_ETH_P_IP = 0x0800
_ETH_P_IPV6 = 0x86DD
_IPPROTO_TCP = 6
_IPPROTO_UDP = 17


class SamplerError(Exception):
    """A sampler cannot start, or cannot open an interface; the message says why."""


class OutOfDescriptors(SamplerError):
    """The process has no file descriptor left (EMFILE, ENFILE) for another interface."""


class Emit(Protocol):
    def __call__(
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
        header_protocol: int = ...,
    ) -> None: ...


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


def header_bytes_before_payload(src: Any, start: int, length: int, ethernet: bool) -> int | None:
    """Bytes of link, IP and TCP/UDP headers at the front of a frame, or None if they do not parse."""
    off = start + ETH_HEADER if ethernet else start
    end = start + length
    if ethernet:
        if end < off:
            return None
        ethertype = src[off - 2] << 8 | src[off - 1]
        while ethertype in (_ETH_P_8021Q, _ETH_P_8021AD) and off + 4 <= end:
            ethertype = src[off + 2] << 8 | src[off + 3]
            off += 4
    elif off < end:
        ethertype = {4: _ETH_P_IP, 6: _ETH_P_IPV6}.get(src[off] >> 4, 0)
    else:
        return None
    if ethertype == _ETH_P_IP and off + 20 <= end:
        proto, off = src[off + 9], off + (src[off] & 0x0F) * 4
    elif ethertype == _ETH_P_IPV6 and off + 40 <= end:
        proto, off = src[off + 6], off + 40
    else:
        return None
    if proto == _IPPROTO_TCP and off + 13 <= end:
        return off + (src[off + 12] >> 4) * 4 - start
    if proto == _IPPROTO_UDP:
        return off + 8 - start
    return None


def segment_frame_length(skb_len: int, segments: int, src: Any, start: int, length: int, ethernet: bool) -> int:
    """The average wire length (without FCS) of the ``segments`` packets one GSO/GRO packet stands for.

    Every segment repeats the headers in front of the payload and carries its share of the
    payload: ``headers + (skb_len - headers) / segments``.  When the headers do not parse,
    the plain share is the best guess left.
    """
    headers = header_bytes_before_payload(src, start, length, ethernet)
    if headers is None or headers >= skb_len:
        return -(-skb_len // segments)
    return headers + -(-(skb_len - headers) // segments)
