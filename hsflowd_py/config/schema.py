"""Declaring config keys on the settings dataclasses themselves.

Each dataclass field that appears in hsflowd.conf carries its key spelling and
value codec in its metadata -- ``field(default=..., metadata=conf_key(...))``,
so type checkers still see ordinary dataclass fields.  The parser builds its
key tables from that and ``render`` prints settings back in the same language:
a key is declared exactly once, and parsing and printing cannot drift apart.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

from .lexer import quote
from .values import Codec

_META = "hsflowd.conf"


@dataclass(frozen=True)
class Option:
    """A ``key = value`` line.

    ``repeat`` collects every occurrence into a tuple (``agent.cidr``).
    ``aliases`` are other spellings the established agent accepts for the same key
    (``packetSamplingRate`` for ``sampling``); printing uses ``key``.
    ``suffix`` makes the key a family ``key.<suffix>`` collected into a dict
    keyed by the parsed suffix (``sampling.10G``).  Several fields may share a
    family: the first, in declaration order, whose suffix codec reads the
    suffix takes the line (``sampling.10G`` a speed, ``sampling.http`` an
    application), as the established agent files both under ``sampling.``.
    ``ignored`` says why a key of the established agent's is accepted and has no effect here: a
    file that sets it gets a warning saying so (``--check`` prints it, the agent logs it).
    """

    key: str
    codec: Codec
    repeat: bool = False
    suffix: Codec | None = None
    aliases: tuple[str, ...] = ()
    ignored: str = ""


@dataclass(frozen=True)
class Block:
    """A nested ``key { ... }`` block parsed into ``cls``; ``repeat`` collects a tuple."""

    key: str
    cls: type
    repeat: bool = False


def conf_key(
    key: str,
    codec: Codec,
    *,
    repeat: bool = False,
    suffix: Codec | None = None,
    aliases: tuple[str, ...] = (),
    ignored: str = "",
) -> dict[str, Option]:
    """Field metadata binding a dataclass field to ``key = value`` lines."""
    return {_META: Option(key, codec, repeat, suffix, aliases, ignored)}


def conf_block(key: str, cls: type, *, repeat: bool = False) -> dict[str, Block]:
    """Field metadata binding a dataclass field to nested ``key { ... }`` blocks."""
    return {_META: Block(key, cls, repeat)}


def config_fields(cls: type) -> Iterator[tuple[str, Option | Block]]:
    """(field name, spec) for each field of ``cls`` that is spelled in hsflowd.conf."""
    for f in dataclasses.fields(cls):
        if _META in f.metadata:
            yield f.name, f.metadata[_META]


Family = tuple[tuple[str, Option], ...]
"""The (field name, Option) alternatives of one ``key.<suffix>`` family, in declaration order."""


def suffix_families(cls: type) -> dict[str, Family]:
    """The ``key.<suffix>`` families of ``cls``, by lower-cased key."""
    families: dict[str, Family] = {}
    for name, spec in config_fields(cls):
        if isinstance(spec, Option) and spec.suffix is not None:
            families[spec.key.lower()] = (*families.get(spec.key.lower(), ()), (name, spec))
    return families


def parse_suffix(family: Family, text: str) -> tuple[str, Option, Any]:
    """(field name, Option, parsed suffix) of the first alternative that reads ``text``; else a
    ValueError giving every alternative's reason."""
    reasons = []
    for name, option in family:
        assert option.suffix is not None
        try:
            return name, option, option.suffix.parse(text)
        except ValueError as err:
            reasons.append(str(err))
    raise ValueError("; ".join(reasons))


def render(obj: Any, name: str, blocks: Iterable[tuple[Block, Any]] = ()) -> list[str]:
    """``obj`` as a block of hsflowd.conf, one key per line and each nested block on one line;
    ``blocks`` (spec, value) are more nested blocks, printed after ``obj``'s own fields."""
    items = [*_items(obj), *(item for spec, value in blocks for item in _nested(spec, value))]
    return [f"{name} {{", *(f"  {item}" for item in items), "}"]


def _nested(spec: Block, value: Any) -> Iterator[str]:
    for child in _occurrences(value, spec.repeat):
        yield " ".join([spec.key, "{", *_items(child), "}"])


def _items(obj: Any) -> Iterator[str]:
    for field_name, spec in config_fields(type(obj)):
        value = getattr(obj, field_name)
        if isinstance(spec, Block):
            yield from _nested(spec, value)
        elif spec.suffix is not None:
            for suffix, item in value.items():
                yield f"{spec.key}.{spec.suffix.show(suffix)} = {quote(spec.codec.show(item))}"
        else:
            for item in _occurrences(value, spec.repeat):
                yield f"{spec.key} = {quote(spec.codec.show(item))}"


def _occurrences(value: Any, repeat: bool) -> tuple[Any, ...]:
    if repeat:
        return tuple(value)
    return () if value is None else (value,)
