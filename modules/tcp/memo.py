"""Which socket a sampled packet belongs to, remembered per flow so that its next samples skip the parse.

The first sample of a flow goes through the shared header parser (``hsflowd_py/packet.py``) and
the local-address test; the outcome (the socket and the direction of its 2209, or nothing to look
up) is remembered under the bytes that name the flow in the header.  Later samples of the flow
find it with one slice and one dict look-up: a socket's samples cost a few hundred nanoseconds,
not the microseconds of a parse.

:func:`header_flow` recognises only the common layout, by fixed offsets: an untagged Ethernet
frame carrying IPv4 without options (not a later fragment), or IPv6 without extension headers
then TCP or UDP.  It answers None for anything else, whose samples are remembered under their
parsed flow instead (they still pay the parse).  The memo of a namespace is emptied when its
addresses change (what is local may have changed) and pruned with the sockets it points to.
"""

from __future__ import annotations

import functools
import struct
from typing import TYPE_CHECKING, Any

from hsflowd_py.packet import IPPROTO_TCP, IPPROTO_UDP, PORTED

if TYPE_CHECKING:
    from .lookup import SocketState

Memo = dict[Any, "tuple[SocketState, int] | None"]
"""Flow bytes (or the parsed flow) → (socket, direction of its 2209), or None: nothing to look up."""
MEMO_MAX = 65536
"""Flows remembered per namespace and protocol; past this the memo starts again (a scan, a flood)."""

FLOW_BYTES_END = 58
"""The bytes of a header :func:`header_flow` reads: up to the end of IPv6's ports."""
IPV4_NO_OPTIONS = b"\x08\x00\x45"
"""The IPv4 ethertype, then version 4 and a 5-word header."""
ETHERTYPE_IPV6 = b"\x86\xdd"


_V4 = "3s5xHxB2x12s"
"""From a frame's byte 12 on, what IPv4 without options is recognised and keyed by: ethertype, version and header
length; flags and fragment offset; protocol; addresses and ports."""
_V6 = "2s6xBx36s"
"""The same for IPv6: ethertype; next header; addresses and ports."""
V4_END = 38
"""The bytes of a header :func:`header_flow` reads for IPv4: up to the end of its ports."""
_V4_AT = struct.Struct(">" + _V4)
_V6_AT = struct.Struct(">" + _V6)


def header_flow(header: Any, start: int, length: int) -> tuple[int, bytes] | None:
    """(protocol, addresses and ports) of the Ethernet frame ``header[start:start+length]`` in the common
    layout, else None; read in place, by one unpacking (a ring's memoryview is not copied)."""
    if length < V4_END:
        return None
    tag, frag, proto, key = _V4_AT.unpack_from(header, start + 12)
    if tag == IPV4_NO_OPTIONS:
        return None if frag & 0x1FFF else (proto, key)
    if tag[:2] != ETHERTYPE_IPV6 or length < FLOW_BYTES_END:
        return None
    return fields_flow(_V6_AT.unpack_from(header, start + 12))


@functools.lru_cache(maxsize=4)
def _each_record(layout: str, offset: int, stride: int) -> struct.Struct:
    """The header fields ``layout`` (``_V4`` or ``_V6``) of each record of a ring read: the record's bytes before
    its frame's byte 12 and after the layout's end are skipped."""
    end = 12 + struct.calcsize(">" + layout)
    return struct.Struct(f">{offset + 12}x{layout}{stride - offset - end}x")


_V4_BYTES = (12, 13, 14, 20, 21, 23, *range(26, V4_END))
_V6_BYTES = (12, 13, 20, *range(22, FLOW_BYTES_END))
"""The header bytes ``_V4`` and ``_V6`` read."""


@functools.lru_cache(maxsize=8)
def _columns(positions: tuple[int, ...], offset: int, stride: int) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """Where the ``positions`` of a header ``offset`` bytes into its record are in the record: the 4-byte words
    (in words) all of whose bytes are read, and the bytes left over (in bytes)."""
    at = {offset + p for p in positions}
    whole = {r // 4 for r in at if all(r // 4 * 4 + i in at for i in range(4))} if stride % 4 == 0 else set()
    return tuple(sorted(whole)), tuple(sorted(r for r in at if r // 4 not in whole))


def one_flow(ring: Any, offset: int, stride: int) -> bool:
    """Whether every record of ``ring`` (as for :func:`ring_fields`) has the first one's flow fields, ``_V4``'s
    (``_V6``'s if it is IPv6): compared one column of the ring at a time (a field's bytes of every record,
    a strided copy), so no object is made per record."""
    bytes_view = memoryview(ring)
    ipv6 = bytes(bytes_view[offset + 12 : offset + 14]) == ETHERTYPE_IPV6
    words, rest = _columns(_V6_BYTES if ipv6 else _V4_BYTES, offset, stride)
    word_view = bytes_view.cast("I") if words else bytes_view
    columns = [word_view[w :: stride // 4] for w in words] + [bytes_view[b::stride] for b in rest]
    return all(c.tobytes() == c[:1].tobytes() * len(c) for c in columns)


def ring_fields(ring: Any, offset: int, stride: int) -> list[tuple[Any, ...]]:
    """For each record of ``ring`` (``stride`` bytes apart, each with a frame ``offset`` bytes in, at least
    FLOW_BYTES_END long), the header fields :func:`header_flow` reads, unpacked in bulk: equal for the
    samples of one flow, so that a flow's samples of a ring read are answered once (:func:`fields_flow`)."""
    fields = list(_each_record(_V4, offset, stride).iter_unpack(ring))
    if ETHERTYPE_IPV6[0] in bytes(ring[offset + 12 :: stride]):  # an IPv6 frame's first ethertype byte
        v6 = _each_record(_V6, offset, stride).iter_unpack(ring)
        fields = [b if a[0][:2] == ETHERTYPE_IPV6 else a for a, b in zip(fields, v6, strict=True)]
    return fields


def fields_flow(fields: tuple[Any, ...]) -> tuple[int, bytes] | None:
    """:func:`header_flow` of the header ``fields`` came from (``ring_fields``)."""
    if len(fields) == 4:
        tag, frag, proto, key = fields
        return (proto, key) if tag == IPV4_NO_OPTIONS and not frag & 0x1FFF else None
    tag, proto, key = fields
    return (proto, key) if tag == ETHERTYPE_IPV6 and proto in PORTED else None


def new_memo() -> dict[int, Memo]:
    """One memo per transport protocol (the flow bytes do not hold the protocol)."""
    return {IPPROTO_TCP: {}, IPPROTO_UDP: {}}


def prune(memos: dict[int, Memo], live: dict[Any, SocketState]) -> None:
    """Forget the flows of sockets the channel no longer keeps; start again past MEMO_MAX."""
    for memo in memos.values():
        if len(memo) > MEMO_MAX:
            memo.clear()
            continue
        for key, entry in list(memo.items()):
            if entry is not None and live.get(entry[0].key) is not entry[0]:
                del memo[key]
