"""Compile a declared field list into fast pack/unpack code.

Runs of fixed-size fields become one precompiled ``struct.Struct`` each, so a
record with twenty counters packs with a single ``pack`` call; variable-size
fields (strings, opaques, addresses, arrays) sit between the runs.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

from .xdr import DecodeError, Variable, XdrType


@dataclass(frozen=True)
class Field:
    """One field of a structure: its attribute name, wire type and sflowtool label.

    Variable-length fields can carry two more printing hints, so that collectors
    print them the way sflowtool does without per-record code: ``count_label``
    names a line giving the element count before the elements (``headerLen``,
    ``MACs``), and ``list_key`` is the JSON key of an array, whose items the
    text form flattens to ``<label>_<i>``.
    """

    name: str
    type: XdrType | Variable
    label: str
    count_label: str | None = None
    list_key: str | None = None
    optional: bool = False
    """A trailing field later versions of a record added (host CPU steal, JMX fds): decoded
    only if the record has bytes left for it, as sflowtool checks the record length."""


class _FixedRun:
    __slots__ = ("defaults", "fields", "from_wire", "optional", "plain", "size", "struct", "to_wire")

    def __init__(self, fields: list[Field]) -> None:
        self.fields = fields
        self.optional = fields[0].optional
        self.defaults = [f.type.default for f in fields]
        self.struct = struct.Struct(">" + "".join(f.type.fmt for f in fields))  # type: ignore[misc]
        self.size = self.struct.size
        self.to_wire = [f.type.to_wire for f in fields]  # type: ignore[union-attr]
        self.from_wire = [f.type.from_wire for f in fields]  # type: ignore[union-attr]
        # Plain integer/float runs need no conversion on decode.
        self.plain = all(f.type.fmt in ("I", "Q", "f", "B") for f in fields)  # type: ignore[union-attr]


class Layout:
    """The compiled wire layout of a field list."""

    def __init__(self, fields: Sequence[Field]) -> None:
        self.fields = tuple(fields)
        self.segments: list[_FixedRun | Field] = []
        run: list[Field] = []
        for f in self.fields:
            if f.type.fixed:
                if run and run[-1].optional != f.optional:
                    self.segments.append(_FixedRun(run))
                    run = []
                run.append(f)
                continue
            if run:
                self.segments.append(_FixedRun(run))
                run = []
            self.segments.append(f)
        if run:
            self.segments.append(_FixedRun(run))
        runs = [s for s in self.segments if isinstance(s, _FixedRun)]
        all_plain = bool(runs) and len(runs) == len(self.segments) and all(r.plain for r in runs)
        self.plain: struct.Struct | None = _FixedRun(list(self.fields)).struct if all_plain else None
        """The whole layout (optional fields present) as one struct of plain numbers, as most counter
        records are: the decoder unpacks a record of exactly this size in one call."""
        last = self.segments[-1] if len(self.segments) == 2 else None
        head_plain = bool(runs) and runs[0].plain and not runs[0].optional
        self.plain_then_opaque: struct.Struct | None = (
            runs[0].struct if head_plain and isinstance(last, Field) and last.type.name == "opaque" else None
        )
        """Plain numbers then one opaque (the sampled header record, the commonest flow record)."""

    def pack(self, values: Sequence[Any]) -> bytes:
        out: list[bytes] = []
        i = 0
        for seg in self.segments:
            if isinstance(seg, _FixedRun):
                n = len(seg.fields)
                wire = [conv(v) for conv, v in zip(seg.to_wire, values[i : i + n], strict=False)]
                out.append(seg.struct.pack(*wire))
                i += n
            else:
                out.append(seg.type.pack(values[i]))  # type: ignore[union-attr]
                i += 1
        return b"".join(out)

    def unpack(self, buf: memoryview, off: int, end: int) -> tuple[list[Any], int]:
        values: list[Any] = []
        for seg in self.segments:
            if isinstance(seg, _FixedRun):
                if seg.optional and off >= end:
                    values.extend(seg.defaults)
                    continue
                if off + seg.size > end:
                    names = ", ".join(f.name for f in seg.fields[:3])
                    raise DecodeError(f"fields {names}… need {seg.size} bytes at offset {off}, only {end - off} left")
                raw = seg.struct.unpack_from(buf, off)
                values.extend(raw if seg.plain else (conv(v) for conv, v in zip(seg.from_wire, raw, strict=False)))
                off += seg.size
            else:
                value, off = seg.type.unpack(buf, off, end)  # type: ignore[union-attr]
                values.append(value)
        return values, off


class Struct:
    """A declared XDR structure; subclasses are made by :func:`define`."""

    __slots__ = ()
    FIELDS: ClassVar[tuple[Field, ...]] = ()
    LAYOUT: ClassVar[Layout]

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        if len(args) > len(self.FIELDS):
            raise TypeError(f"{type(self).__name__} takes {len(self.FIELDS)} values, got {len(args)}")
        for f, v in zip(self.FIELDS, args, strict=False):
            setattr(self, f.name, v)
        for f in self.FIELDS[len(args) :]:
            setattr(self, f.name, kwargs.pop(f.name, f.type.default))
        if kwargs:
            raise TypeError(f"{type(self).__name__} has no field(s) {', '.join(kwargs)}")

    def values(self) -> list[Any]:
        return [getattr(self, f.name) for f in self.FIELDS]

    def items(self) -> Iterator[tuple[Field, Any]]:
        for f in self.FIELDS:
            yield f, getattr(self, f.name)

    def pack(self) -> bytes:
        return self.LAYOUT.pack(self.values())

    @classmethod
    def pack_value(cls, value: Struct) -> bytes:
        return value.pack()

    @classmethod
    def unpack_value(cls, buf: memoryview, off: int, end: int) -> tuple[Struct, int]:
        values, off = cls.LAYOUT.unpack(buf, off, end)
        return cls.from_values(values), off

    @classmethod
    def from_values(cls, values: Sequence[Any]) -> Struct:
        """A decoded instance from exactly one value per field (the decoder's fast path; see define)."""
        raise NotImplementedError

    def __eq__(self, other: object) -> bool:
        return type(other) is type(self) and self.values() == other.values()  # type: ignore[attr-defined]

    def __repr__(self) -> str:
        inner = ", ".join(f"{f.name}={getattr(self, f.name)!r}" for f in self.FIELDS)
        return f"{type(self).__name__}({inner})"


def define(
    class_name: str, fields: Sequence[Field | tuple[str, Any, str]], base: type = Struct, **attrs: Any
) -> type:
    """Make a Struct subclass from ``(name, type, label)`` triples or :class:`Field` declarations."""
    declared = tuple(f if isinstance(f, Field) else Field(*f) for f in fields)
    names = tuple(f.name for f in declared)
    namespace = {
        "__slots__": names,
        "FIELDS": declared,
        "FIELDS_BY_NAME": {f.name: f for f in declared},
        "LAYOUT": Layout(declared),
        **attrs,
    }
    cls = type(class_name, (base,), namespace)
    cls.from_values = classmethod(_from_values(names))  # type: ignore[attr-defined]
    return cls


def _from_values(names: tuple[str, ...]) -> Any:
    """``o.a, o.b, ... = values`` compiled once per structure: a third of the cost of ``__init__``'s
    setattr loop, which the decoder pays for every record (as dataclasses compile their __init__)."""
    if not names:
        return lambda cls, values: cls.__new__(cls)
    targets = ", ".join(f"o.{n}" for n in names)
    source = f"def from_values(cls, values):\n    o = cls.__new__(cls)\n    {targets}, = values\n    return o\n"
    scope: dict[str, Any] = {}
    exec(source, scope)
    return scope["from_values"]
