"""The samplers' fast path: a flow sample with a sampled header (0:1), a timestamp (0:1043) and
any records enrichers added (already encoded), packed in place into a datagram buffer.

``codec.encode_sample`` builds record objects and joins bytes; at a hundred thousand samples
a second that costs more than the sampling itself.  This encoder writes the same bytes with
one precompiled ``Struct.pack_into`` for everything up to the header bytes, one slice copy
for the header and one ``pack_into`` for the timestamp.  It takes a sample's two halves as
``hsflowd_py/flow.py`` declares them: the interface's values (``Interface``, ports by direction
worked out once) and the packet's, in the order ``Emit`` declares them.

The layout is compiled from the declarations, not restated: the flow sample head and the TLV
words come from the codec, the 0:1 words from ``SampledHeader``'s fixed run followed by its
opaque, the 0:1043 body from ``ExtendedTimestamp``'s fixed run.  A change to either record
that this layout cannot follow fails at import, and a test checks the bytes against
``encode_sample`` of the same sample.

Record order: the sampled header comes first.  Collectors do not depend on the order, and
Wireshark 4.0, which does not skip flow records it does not know (0:1043 among them), can
then still dissect the sampled packet.
"""

from __future__ import annotations

import struct
from typing import TYPE_CHECKING

from .codec import _FLOW_HEAD, _TL
from .layout import Field, Layout
from .records import ExtendedTimestamp, SampledHeader
from .samples import FLOW_SAMPLE_EXPANDED
from .xdr import OPAQUE, pad4

if TYPE_CHECKING:
    from ..flow import Header, Interface

_PADS = (b"", b"\0", b"\0\0", b"\0\0\0")
_WORD = struct.Struct(">I")
_LENGTH_AT = _TL.size - _WORD.size
"""Where a sample's length word is, from its start."""
_RECORDS_AT = _TL.size + _FLOW_HEAD.size - _WORD.size
"""Where an expanded flow sample's record count is (the head's last word), from its start."""


def _fixed_format(layout: Layout, trailing_opaque: bool) -> str:
    """The struct format of a layout that is one fixed run, optionally followed by one opaque."""
    segments = layout.segments
    run = segments[0]
    expected = 2 if trailing_opaque else 1
    if (
        len(segments) != expected
        or isinstance(run, Field)
        or (trailing_opaque and not (isinstance(segments[1], Field) and segments[1].type is OPAQUE))
    ):
        raise TypeError(f"flow_encoder cannot compile {[getattr(s, 'name', 'run') for s in segments]}")
    return run.struct.format.lstrip(">")


class FlowEncoder:
    """Packs flow samples of the form {0:1 sampled header, 0:1043 timestamp, extras...} in place."""

    __slots__ = ("_head", "_header_body", "_header_tag", "_ts", "_ts_body", "_ts_tag", "fixed_size")

    def __init__(self) -> None:
        header_words = _fixed_format(SampledHeader.LAYOUT, trailing_opaque=True) + "I"  # + the opaque's length
        timestamp = _fixed_format(ExtendedTimestamp.LAYOUT, trailing_opaque=False)
        tl = _TL.format.lstrip(">")
        self._head = struct.Struct(">" + tl + _FLOW_HEAD.format.lstrip(">") + tl + header_words)
        self._ts = struct.Struct(">" + tl + timestamp)
        self._header_tag, self._header_body = SampledHeader.tag(), struct.calcsize(">" + header_words)
        self._ts_tag, self._ts_body = ExtendedTimestamp.tag(), struct.calcsize(">" + timestamp)
        self.fixed_size = self._head.size + self._ts.size
        """Bytes of a sample besides its header bytes (padded to 4)."""

    def size(self, header_length: int) -> int:
        """Bytes of one encoded sample (sample TLV included) carrying ``header_length`` header bytes."""
        return self.fixed_size + pad4(header_length)

    def pack_into(
        self, buf: bytearray, off: int, interface: Interface, extras: bytes, extra_count: int,
        sample_pool: int, drops: int, direction: int, frame_length: int, header: Header, start: int, length: int,
        timestamp_ns: int, sequence: int,
    ) -> None:  # fmt: skip
        """Write one sample of ``size(length) + len(extras)`` bytes at ``off``: the interface's values,
        then the packet's (``flow.Emit``'s, numbered), then ``extras``, ``extra_count`` records
        encoded by ``codec.encode_record``.

        ``header`` is anything sliceable into a buffer (a memoryview over a ring, bytes).
        Counters are taken modulo 2^32 as the codec does.
        """
        padded = (length + 3) & ~3
        head = self._head
        input, output = interface.ports[direction]
        head.pack_into(
            buf,
            off,
            FLOW_SAMPLE_EXPANDED,
            head.size - 8 + padded + self._ts.size + len(extras),
            sequence,
            0,  # ds_class: samplers sample interfaces (0:ifIndex)
            interface.ds_index,
            interface.sampling_rate,
            sample_pool & 0xFFFFFFFF,
            drops & 0xFFFFFFFF,
            0,  # input format: one ifIndex
            input,
            0,
            output,
            2 + extra_count,  # records
            self._header_tag,
            self._header_body + padded,
            interface.header_protocol or interface.protocol_of(header, start, length),  # HEADER_IP is 0
            frame_length,
            interface.stripped,
            length,
        )
        p = off + head.size
        buf[p : p + length] = header[start : start + length]
        if padded != length:
            buf[p + length : p + padded] = _PADS[padded - length]
        p += padded
        self._ts.pack_into(buf, p, self._ts_tag, self._ts_body, timestamp_ns)
        if extras:
            p += self._ts.size
            buf[p : p + len(extras)] = extras

    @staticmethod
    def extend_into(buf: bytearray, off: int, size: int, extras: bytes, extra_count: int) -> None:
        """Append ``extras`` (``extra_count`` encoded records) to the expanded flow sample of ``size`` bytes
        at ``off`` (as a sampler encoded it: the eBPF program's), its length and record count fixed up:
        the bytes an enriched sample would have from ``pack_into``, without decoding it."""
        end = off + size
        buf[end : end + len(extras)] = extras
        _WORD.pack_into(buf, off + _LENGTH_AT, end + len(extras) - off - _TL.size)
        _WORD.pack_into(buf, off + _RECORDS_AT, _WORD.unpack_from(buf, off + _RECORDS_AT)[0] + extra_count)
