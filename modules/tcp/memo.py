"""Which socket a sampled packet belongs to, remembered per flow so that its next samples skip the parse.

The first sample of a flow goes through the shared header parser (``hsflowd_py/packet.py``) and
the local-address test; the outcome (the socket and the direction of its 2209, or nothing to look
up) is remembered under the bytes that name the flow in the header.  Later samples of the flow
find it with one slice and one dict look-up: a socket's samples cost a few hundred nanoseconds,
not the microseconds of a parse.

:func:`flow_bytes` recognises only the common layout, by fixed offsets: an untagged Ethernet
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
"""The bytes of a header :func:`flow_bytes` reads: up to the end of IPv6's ports."""
IPV4_NO_OPTIONS = b"\x08\x00\x45"
"""The IPv4 ethertype, then version 4 and a 5-word header."""
ETHERTYPE_IPV6 = b"\x86\xdd"


def flow_bytes(h: bytes) -> tuple[int, bytes] | None:
    """(protocol, addresses and ports) of an Ethernet frame in the common layout, else None."""
    if h[12:15] == IPV4_NO_OPTIONS:
        if len(h) >= 38 and not (h[20] & 0x1F or h[21]):
            return h[23], h[26:38]
    elif h[12:14] == ETHERTYPE_IPV6 and len(h) >= FLOW_BYTES_END and h[20] in PORTED:
        return h[20], h[22:FLOW_BYTES_END]
    return None


@functools.lru_cache(maxsize=4)
def _v4_fields(offset: int, stride: int) -> struct.Struct:
    """A record's header bytes :func:`flow_bytes` reads for IPv4: ethertype, version and header length;
    flags and fragment offset; protocol; addresses and ports."""
    return struct.Struct(f">{offset + 12}x3s5xHxB2x12s{stride - offset - 38}x")


@functools.lru_cache(maxsize=4)
def _v6_fields(offset: int, stride: int) -> struct.Struct:
    """The same for IPv6: ethertype; next header; addresses and ports."""
    return struct.Struct(f">{offset + 12}x2s6xBx36s{stride - offset - FLOW_BYTES_END}x")


def ring_fields(ring: Any, offset: int, stride: int) -> list[tuple[Any, ...]]:
    """For each record of ``ring`` (``stride`` bytes apart, each with a frame ``offset`` bytes in, at least
    FLOW_BYTES_END long), the header fields :func:`flow_bytes` reads, unpacked in bulk: equal for the
    samples of one flow, so that a flow's samples of a ring read are answered once (:func:`fields_flow`)."""
    fields = list(_v4_fields(offset, stride).iter_unpack(ring))
    if any(f[0][:2] == ETHERTYPE_IPV6 for f in set(fields)):
        v6 = _v6_fields(offset, stride).iter_unpack(ring)
        fields = [b if a[0][:2] == ETHERTYPE_IPV6 else a for a, b in zip(fields, v6, strict=True)]
    return fields


def fields_flow(fields: tuple[Any, ...]) -> tuple[int, bytes] | None:
    """:func:`flow_bytes` of the header ``fields`` came from (``ring_fields``)."""
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
