"""Sampled packet headers as a capture stream: classic pcap (``-t``) or pcapng (``-T``).

One capture record per flow sample (compact or expanded) and per discard
sample that carries a sampled header (0:1), so ``sflowtool-py -t | tcpdump
-r -`` shows the sampled and the dropped packets.  Choices, and where they
differ from sflowtool's ``-t`` (flow samples) and ``-T`` (discarded packets):

* the record's original length is ``frame_length - stripped`` (the wire
  frame without the FCS the agent counted but did not capture); sflowtool
  writes ``frame_length``, so every frame looks 4 bytes longer than it was;
* the timestamp is the 0:1043 record's nanoseconds when present, else the
  datagram's receive time (the capture time with ``-r``), to the
  microsecond; sflowtool writes whole seconds;
* one link type per stream (Ethernet): headers sampled as bare IPv4 or IPv6
  (header protocols 11 and 12) get a 14-byte Ethernet header with zero MACs
  so they decode in the same capture; other header protocols are skipped
  and counted;
* every length comes from the datagram, so each is clamped to what the
  record's 32-bit field holds (a frame length near 2**32 plus the 14 bytes
  of a made-up Ethernet header must not stop the output).

pcapng adds one interface description per agent and data source
(``if_name`` "agent source", e.g. ``192.0.2.2 0:8``), nanosecond
timestamps, the direction the agent saw (``epb_flags``: inbound when the
output port is the host itself, outbound when the input port is) and the
sampling rate (a discard sample: its reason) as a packet comment.

Everything is little-endian.  Each datagram's records are written in one
``write`` and flushed, so a reader on a pipe sees whole records at once.
"""

from __future__ import annotations

import struct
from typing import BinaryIO

from ..sflow.records import DISCARD_REASONS, INTERNAL_PORT, ExtendedTimestamp, SampledHeader
from ..sflow.samples import Datagram, DiscardSample, FlowSample
from ..sflow.xdr import ADDRESS
from .dissect import HEADER_ETHERNET, HEADER_IPV4, HEADER_IPV6
from .text import Received

__all__ = ["PcapNgWriter", "PcapWriter"]

LINKTYPE_ETHERNET = 1
SNAPLEN = 65535
_ETHERTYPES = {HEADER_IPV4: b"\x08\x00", HEADER_IPV6: b"\x86\xdd"}
_NO_MACS = bytes(12)

# classic pcap
_PCAP_HEADER = struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, SNAPLEN, LINKTYPE_ETHERNET)
_PCAP_RECORD = struct.Struct("<IIII")

# pcapng block types and options
_SHB, _IDB, _EPB = 0x0A0D0D0A, 0x00000001, 0x00000006
_OPT_END, _OPT_COMMENT = 0, 1
_SHB_USERAPPL = 4
_IF_NAME, _IF_DESCRIPTION, _IF_TSRESOL = 2, 3, 9
_EPB_FLAGS = 2
_INBOUND, _OUTBOUND = 1, 2
_U32_MAX = 0xFFFFFFFF
MAX_INTERFACES = 4096
"""Interfaces (agent and source pairs) remembered; senders are not trusted to be few."""


class _Frames:
    """The frames of a datagram's flow samples, with their times; counts what cannot be written."""

    def __init__(self) -> None:
        self.skipped = 0

    def frames(
        self, datagram: Datagram, received: Received
    ) -> list[tuple[FlowSample | DiscardSample, int, bytes, int]]:
        """(sample, time in ns, frame bytes, original length) for every sampled header."""
        if received.pcap_seconds is not None:
            arrival = received.pcap_seconds * 10**9 + received.pcap_microseconds * 1000
        else:
            arrival = received.seconds * 10**9 + received.microseconds * 1000
        out = []
        for sample in datagram.samples:
            if not isinstance(sample, FlowSample | DiscardSample) or not sample.complete:
                continue
            header = next((r for r in sample.records if isinstance(r, SampledHeader)), None)
            if header is None:
                continue
            stamp = next((r.nanoseconds for r in sample.records if isinstance(r, ExtendedTimestamp)), arrival)
            data = bytes(header.header[:SNAPLEN])
            length = header.frame_length - header.stripped
            if header.header_protocol in _ETHERTYPES:
                data = _NO_MACS + _ETHERTYPES[header.header_protocol] + data
                length += 14
            elif header.header_protocol != HEADER_ETHERNET:
                self.skipped += 1
                continue
            out.append((sample, stamp, data, min(max(length, len(data)), _U32_MAX)))
        return out


class PcapWriter(_Frames):
    """``-t``: a classic pcap stream, microsecond timestamps, Ethernet link type."""

    def __init__(self, out: BinaryIO) -> None:
        super().__init__()
        self.out = out
        self.out.write(_PCAP_HEADER)
        self.out.flush()

    def write(self, datagram: Datagram, size: int, received: Received) -> None:
        parts = []
        for _sample, stamp, data, length in self.frames(datagram, received):
            seconds, ns = divmod(stamp, 10**9)
            parts.append(_PCAP_RECORD.pack(seconds & _U32_MAX, ns // 1000, len(data), length) + data)
        if parts:
            self.out.write(b"".join(parts))
            self.out.flush()


def _pad4(data: bytes) -> bytes:
    return data + b"\0" * (-len(data) % 4)


def _option(code: int, value: bytes) -> bytes:
    return struct.pack("<HH", code, len(value)) + _pad4(value)


def _block(block_type: int, body: bytes) -> bytes:
    total = 12 + len(body)
    return struct.pack("<II", block_type, total) + body + struct.pack("<I", total)


_END_OF_OPTIONS = struct.pack("<HH", _OPT_END, 0)


class PcapNgWriter(_Frames):
    """``-T``: pcapng with one interface per agent and data source, nanosecond timestamps."""

    def __init__(self, out: BinaryIO, application: str) -> None:
        super().__init__()
        self.out = out
        self.interfaces: dict[tuple[str, int, int, int], int] = {}
        self.next_interface = 0
        options = _option(_SHB_USERAPPL, application.encode()) + _END_OF_OPTIONS
        self.out.write(_block(_SHB, struct.pack("<IHHq", 0x1A2B3C4D, 1, 0, -1) + options))
        self.out.flush()

    def _interface(self, agent: str, sub_agent: int, sample: FlowSample | DiscardSample, parts: list[bytes]) -> int:
        key = (agent, sub_agent, sample.ds_class, sample.ds_index)
        found = self.interfaces.get(key)
        if found is not None:
            return found
        if len(self.interfaces) >= MAX_INTERFACES:
            # Forget the oldest; if it comes back it gets a new description.  (Starting a new
            # section would reuse interface numbers, which tshark 4.0 mixes up across sections.)
            del self.interfaces[next(iter(self.interfaces))]
        source = f"{sample.ds_class}:{sample.ds_index}"
        description = f"sFlow agent {agent} sub-agent {sub_agent} data source {source}"
        options = (
            _option(_IF_NAME, f"{agent} {source}".encode())
            + _option(_IF_DESCRIPTION, description.encode())
            + _option(_IF_TSRESOL, b"\x09")
            + _END_OF_OPTIONS
        )
        parts.append(_block(_IDB, struct.pack("<HHI", LINKTYPE_ETHERNET, 0, SNAPLEN) + options))
        self.interfaces[key] = self.next_interface
        self.next_interface += 1
        return self.interfaces[key]

    def write(self, datagram: Datagram, size: int, received: Received) -> None:
        agent = ADDRESS.text(datagram.agent)
        parts: list[bytes] = []
        for sample, stamp, data, length in self.frames(datagram, received):
            interface = self._interface(agent, datagram.sub_agent_id, sample, parts)
            flags = _OUTBOUND if sample.input == INTERNAL_PORT else _INBOUND if sample.output == INTERNAL_PORT else 0
            if isinstance(sample, DiscardSample):
                comment = f"discarded: {DISCARD_REASONS.get(sample.reason, 'NotFound')} ({sample.reason})"
            else:
                comment = f"sampling rate 1 in {sample.sampling_rate}"
            options = (
                _option(_EPB_FLAGS, struct.pack("<I", flags))
                + _option(_OPT_COMMENT, comment.encode())
                + _END_OF_OPTIONS
            )
            stamp &= 0xFFFFFFFFFFFFFFFF
            head = struct.pack("<IIIII", interface, stamp >> 32, stamp & 0xFFFFFFFF, len(data), length)
            parts.append(_block(_EPB, head + _pad4(data) + options))
        if parts:
            self.out.write(b"".join(parts))
            self.out.flush()
