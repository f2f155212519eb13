"""XDR field types that know their wire form and their sflowtool spelling.

Each type packs, unpacks and prints one value, so the record table in
``records.py`` can drive the encoder, the decoder and the collector's output
without any per-record code.  Fixed-size types expose a ``struct`` format so
that runs of them compile into one precompiled ``struct.Struct``.
"""

from __future__ import annotations

import ipaddress
import re
import struct
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

_U32 = struct.Struct(">I")


class DecodeError(ValueError):
    """A datagram, sample or record does not match its declared layout."""


def pad4(n: int) -> int:
    """Length rounded up to the XDR 4-byte boundary."""
    return (n + 3) & ~3


@dataclass(frozen=True)
class XdrType:
    """A wire type. ``fmt`` is set for fixed-size types (struct format)."""

    name: str
    fmt: str | None = None
    to_wire: Callable[[Any], Any] = lambda v: v
    from_wire: Callable[[Any], Any] = lambda v: v
    text: Callable[[Any], str] = str
    default: Any = 0
    omit_empty = False

    @property
    def fixed(self) -> bool:
        return self.fmt is not None


def _mac_text(mac: bytes) -> str:
    return mac.hex()


def _uuid_text(raw: bytes) -> str:
    return str(uuid.UUID(bytes=raw))


def _ipv6_text(addr: ipaddress.IPv6Address) -> str:
    """sflowtool prints IPv6 addresses fully expanded (fd00:0252:0000:...)."""
    return addr.exploded


def _addr_text(addr: ipaddress.IPv4Address | ipaddress.IPv6Address) -> str:
    return _ipv6_text(addr) if addr.version == 6 else str(addr)


def _f32(x: float) -> float:
    """Round to the nearest IEEE-754 single, as C's float arithmetic does."""
    return struct.unpack(">f", struct.pack(">f", x))[0]


def _percent100_text(hundredths: int) -> str:
    """sflowtool divides in float and prints "unknown" for the all-ones sentinel."""
    if hundredths == 0xFFFFFFFF:
        return "unknown"
    return f"{_f32(_f32(hundredths) / 100.0):.2f}"


U32 = XdrType("u32", "I", to_wire=lambda v: v & 0xFFFFFFFF)
U64 = XdrType("u64", "Q", to_wire=lambda v: v & 0xFFFFFFFFFFFFFFFF)
FLOAT = XdrType("float", "f", text=lambda v: f"{v:.3f}", default=0.0)
PERCENT100 = XdrType("percent100", "I", text=_percent100_text)


def enum(name: str, names: dict[int, str], other: str) -> XdrType:
    """A u32 that collectors print by name; values outside ``names`` print as ``other``
    (formatted with the value, e.g. ``"<out-of-range={}>"``)."""
    return XdrType(
        name, "I", to_wire=lambda v: v & 0xFFFFFFFF, text=lambda v: names[v] if v in names else other.format(v)
    )


U8 = XdrType("u8", "B", to_wire=lambda v: v & 0xFF)
"""One byte of a packed quad (LACP port states): sflowtool prints each byte on its own."""
HEX64 = XdrType("hex64", "Q", to_wire=lambda v: v & 0xFFFFFFFFFFFFFFFF, text=lambda v: f"{v:016x}")
"""A 64-bit identifier sflowtool prints as 16 hex digits (OpenFlow datapath id)."""

MAC = XdrType("mac", "6s2x", text=_mac_text, default=b"\0" * 6)
UUID = XdrType("uuid", "16s", text=_uuid_text, default=b"\0" * 16)
IPV4 = XdrType(
    "ip4",
    "4s",
    to_wire=lambda a: ipaddress.IPv4Address(a).packed,
    from_wire=ipaddress.IPv4Address,
    default=ipaddress.IPv4Address(0),
)
IPV6 = XdrType(
    "ip6",
    "16s",
    to_wire=lambda a: ipaddress.IPv6Address(a).packed,
    from_wire=ipaddress.IPv6Address,
    text=_ipv6_text,
    default=ipaddress.IPv6Address(0),
)


@dataclass(frozen=True)
class Variable:
    """A variable-length wire type: packs to bytes, unpacks from (buf, off)."""

    name: str
    pack: Callable[[Any], bytes]
    unpack: Callable[[memoryview, int, int], tuple[Any, int]]
    text: Callable[[Any], str] = str
    default: Any = None
    omit_empty: bool = False
    """sflowtool prints no line at all for an empty string."""

    fixed = False


def _need(buf: memoryview, off: int, n: int, end: int) -> None:
    if off + n > end:
        raise DecodeError(f"needs {n} bytes at offset {off}, only {end - off} left")


def read_u32(buf: memoryview, off: int, end: int) -> tuple[int, int]:
    _need(buf, off, 4, end)
    return _U32.unpack_from(buf, off)[0], off + 4


def _pack_opaque(data: bytes) -> bytes:
    n = len(data)
    return _U32.pack(n) + bytes(data) + b"\0" * (pad4(n) - n)


def _unpack_opaque(buf: memoryview, off: int, end: int) -> tuple[bytes, int]:
    n, off = read_u32(buf, off, end)
    _need(buf, off, pad4(n), end)
    return bytes(buf[off : off + n]), off + pad4(n)


_CONTROL = re.compile(r"[\x00-\x1f\x7f\\]")


def _escape(match: re.Match[str]) -> str:
    c = match.group()
    return "\\\\" if c == "\\" else f"\\x{ord(c):02x}"


def printable(text: str) -> str:
    """A datagram's string as one safe token: control characters and backslashes become ``\\xNN``/``\\\\``.

    sflowtool prints strings raw, so a hostname holding a newline forges output
    lines in its text and ``-g`` forms (and breaks its JSON); printing them
    escaped keeps one field per line in every format.
    """
    return _CONTROL.sub(_escape, text) if _CONTROL.search(text) else text


def _c_string(text: str) -> str:
    """sflowtool copies strings into C buffers, so a NUL ends what it prints."""
    return printable(text.split("\0", 1)[0])


def string(max_len: int, omit_empty: bool = True, text: Callable[[str], str] = _c_string) -> Variable:
    """XDR string<max_len>: longer values are cut to ``max_len`` on encode and on decode (sflowtool's
    C buffers keep the first ``max_len`` bytes and skip the rest).  ``omit_empty``: sflowtool prints
    no line for an empty string (most strings; not the user and URL records')."""

    def pack(value: str) -> bytes:
        return _pack_opaque(value.encode("utf-8", "replace")[:max_len])

    def unpack(buf: memoryview, off: int, end: int) -> tuple[str, int]:
        n, off = read_u32(buf, off, end)
        _need(buf, off, pad4(n), end)
        return str(buf[off : off + min(n, max_len)], "utf-8", "replace"), off + pad4(n)

    return Variable(f"string<{max_len}>", pack, unpack, text=text, default="", omit_empty=omit_empty)


def u32_list(text: Callable[[Sequence[int]], str], max_items: int = 4096) -> Variable:
    """A counted list of u32 printed as one value (AS paths, label stacks); an empty list prints no line."""

    def pack(values: Sequence[int]) -> bytes:
        return struct.pack(f">I{len(values)}I", len(values), *values)

    def unpack(buf: memoryview, off: int, end: int) -> tuple[tuple[int, ...], int]:
        n, off = read_u32(buf, off, end)
        if n > max_items:
            raise DecodeError(f"list of {n} items exceeds its limit of {max_items}")
        _need(buf, off, 4 * n, end)
        return struct.unpack_from(f">{n}I", buf, off), off + 4 * n

    return Variable("u32list", pack, unpack, text=text, default=(), omit_empty=True)


OPAQUE = Variable(
    "opaque", _pack_opaque, _unpack_opaque, text=lambda b: b.hex("-").upper(), default=b""
)


def _pack_address(addr: Any) -> bytes:
    ip = ipaddress.ip_address(addr)
    return _U32.pack(1 if ip.version == 4 else 2) + ip.packed


_ADDRESS_SIZES = {1: 4, 2: 16}
_ADDRESSES: dict[bytes, Any] = {}
"""Packed address → its (immutable) address object: every datagram names its agent, and making
the object costs more than the rest of the datagram header.  Cleared when it reaches 4,096."""


def _unpack_address(buf: memoryview, off: int, end: int) -> tuple[Any, int]:
    kind, off = read_u32(buf, off, end)
    size = _ADDRESS_SIZES.get(kind)
    if size is None:
        raise DecodeError(f"address type {kind} is neither 1 (IPv4) nor 2 (IPv6)")
    _need(buf, off, size, end)
    packed = bytes(buf[off : off + size])
    address = _ADDRESSES.get(packed)
    if address is None:
        if len(_ADDRESSES) >= 4096:
            _ADDRESSES.clear()
        address = _ADDRESSES[packed] = ipaddress.ip_address(packed)
    return address, off + size


ADDRESS = Variable(
    "address", _pack_address, _unpack_address, text=_addr_text, default=ipaddress.IPv4Address(0)
)


def array(item: Any, max_items: int = 4096) -> Variable:
    """u32 count followed by items of a fixed type or of a nested Struct class."""

    def pack(values: Sequence[Any]) -> bytes:
        parts = [_U32.pack(len(values))]
        parts.extend(item.pack_value(v) for v in values)
        return b"".join(parts)

    def unpack(buf: memoryview, off: int, end: int) -> tuple[list[Any], int]:
        n, off = read_u32(buf, off, end)
        if n > max_items:
            raise DecodeError(f"array of {n} items exceeds its limit of {max_items}")
        out = []
        for _ in range(n):
            value, off = item.unpack_value(buf, off, end)
            out.append(value)
        return out, off

    var = Variable(f"array<{item.__name__}>", pack, unpack, default=())
    object.__setattr__(var, "item", item)
    return var


class Scalar:
    """Adapter giving a fixed XdrType the item protocol that ``array`` uses."""

    def __init__(self, xdr: XdrType) -> None:
        self.xdr = xdr
        self.__name__ = xdr.name
        self._struct = struct.Struct(">" + xdr.fmt)  # type: ignore[operator]

    def pack_value(self, value: Any) -> bytes:
        return self._struct.pack(self.xdr.to_wire(value))

    def unpack_value(self, buf: memoryview, off: int, end: int) -> tuple[Any, int]:
        _need(buf, off, self._struct.size, end)
        return self.xdr.from_wire(self._struct.unpack_from(buf, off)[0]), off + self._struct.size
