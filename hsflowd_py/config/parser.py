"""Parse hsflowd.conf text into :class:`Settings`.

The grammar is tiny -- ``sflow { (key value | block { ... })* }`` -- so this is a
recursive descent over the token list, driven by the key tables that the
settings dataclasses declare (``schema.py``).  Adding a key means adding one
field; nothing here changes.

Blocks of the established agent that hsflowd-py does not implement are refused
with their own message rather than skipped: an operator who configured
``psample {}`` or ``kvm {}`` relies on the data it produces, and an agent that
starts without it would hide that loss until someone noticed the gap in their
graphs.  Failing at start-up, naming the block and line, surfaces it at once.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from .errors import ConfigError
from .lexer import Kind, Token, tokenize
from .schema import Block, Family, Option, config_fields, parse_suffix, suffix_families
from .settings import Settings

UNSUPPORTED_BLOCKS = frozenset(
    "kvm xen nflog ulog psample dropmon ovs nvml cumulus dent os10 opx sonic eapi vpp json".split()
)
"""Blocks of the established agent's ``sflow {}`` that hsflowd-py does not implement (``json {}``:
the listener for sub-agents' JSON-encoded samples)."""

UNSUPPORTED_KEYS = {"collector": frozenset({"namespace"}), "pcap": frozenset({"vport"})}
"""Keys of the established agent's blocks that hsflowd-py does not implement: ``namespace`` (send
from another network namespace) and ``vport`` (the device faces a VM or container)."""


@dataclass(frozen=True)
class _Table:
    """Keys of one block, lower-cased: exact keys and ``key.<suffix>`` families."""

    exact: dict[str, tuple[str, Option | Block]]
    families: dict[str, Family]


@functools.cache
def _table(cls: type) -> _Table:
    exact = {
        spec.key.lower(): (name, spec)
        for name, spec in config_fields(cls)
        if not (isinstance(spec, Option) and spec.suffix is not None)
    }
    return _Table(exact, suffix_families(cls))


def parse_config(text: str, source: str = "<string>") -> Settings:
    """Settings from hsflowd.conf ``text``; ``source`` names it in error messages."""
    return _Parser(tokenize(text, source), source).parse()


def load_config(path: str | os.PathLike[str]) -> Settings:
    """Settings from the file at ``path``; an unreadable file is a ConfigError like any other."""
    source = os.fspath(path)
    try:
        with open(path, encoding="utf-8") as file:
            text = file.read()
    except OSError as err:
        raise ConfigError(f"cannot read configuration: {err.strerror or err}", source) from err
    except UnicodeDecodeError as err:
        raise ConfigError(f"not UTF-8 text: {err.reason} at byte {err.start}", source) from err
    return parse_config(text, source)


class _Parser:
    """One pass over the tokens; every error names the source and the line."""

    def __init__(self, tokens: list[Token], source: str):
        self._tokens: Iterator[Token] = iter(tokens)
        self._source = source

    def parse(self) -> Settings:
        head = next(self._tokens, None)
        if head is None:
            raise self._error("the file must start with 'sflow {', found end of file", 1)
        if head.kind is not Kind.WORD or head.text.lower() != "sflow":
            raise self._error(f"the file must start with 'sflow {{', found {head.text!r}", head.line, head.text)
        self._expect_open(head)
        fields = self._block(Settings, head, top=True)
        extra = next(self._tokens, None)
        if extra is not None:
            raise self._error(f"unexpected {extra.text!r} after the closing brace of {head.text!r}", extra.line,
                              extra.text)
        return Settings(**fields, source=self._source)

    def _error(self, message: str, line: int, key: str | None = None) -> ConfigError:
        return ConfigError(message, self._source, line, key)

    def _block(self, cls: type, opener: Token, top: bool = False) -> dict[str, Any]:
        """Keyword arguments for ``cls`` from the tokens up to the brace that closes ``opener``."""
        table = _table(cls)
        found: dict[str, Any] = {}
        while True:
            token = next(self._tokens, None)
            if token is None:
                raise self._error(f"block {opener.text!r} opened at line {opener.line} is never closed", opener.line,
                                  opener.text)
            if token.kind is Kind.CLOSE:
                break
            if token.kind is Kind.OPEN:
                raise self._error(f"unexpected '{{' in block {opener.text!r}, expected a key", token.line)
            if top and token.text.lower() in UNSUPPORTED_BLOCKS:
                raise self._error(f"block {token.text!r} is not supported by hsflowd-py", token.line, token.text)
            if token.text.lower() in UNSUPPORTED_KEYS.get(opener.text.lower(), ()):
                raise self._error(f"key {token.text!r} in block {opener.text!r} is not supported by hsflowd-py",
                                  token.line, token.text)  # fmt: skip
            self._entry(token, opener, table, found)
        self._check_required(cls, table, found, opener)
        return {name: tuple(value) if isinstance(value, list) else value for name, value in found.items()}

    def _entry(self, key: Token, opener: Token, table: _Table, found: dict[str, Any]) -> None:
        """Parse one key or nested block and store it in ``found`` (lists for repeats, dicts for families)."""
        name, spec, suffix = self._lookup(key, opener, table)
        if isinstance(spec, Block):
            self._expect_open(key)
            child = spec.cls(**self._block(spec.cls, key))
            if spec.repeat:
                found.setdefault(name, []).append(child)
            elif name in found:
                raise self._error(f"block {key.text!r} appears twice in block {opener.text!r}", key.line, key.text)
            else:
                found[name] = child
            return
        value = self._value(key, opener, spec)
        if spec.suffix is not None:
            found.setdefault(name, {})[suffix] = value
        elif spec.repeat:
            found.setdefault(name, []).append(value)
        else:
            found[name] = value  # a scalar given twice: the last one wins, as in the established agent

    def _lookup(self, key: Token, opener: Token, table: _Table) -> tuple[str, Option | Block, Any]:
        """(field name, spec, parsed suffix or None) for ``key``, or an unknown-key error."""
        lowered = key.text.lower()
        if lowered in table.exact:
            return *table.exact[lowered], None
        family, dot, _ = lowered.partition(".")
        if dot and family in table.families:
            suffix_text = key.text.partition(".")[2]
            try:
                return parse_suffix(table.families[family], suffix_text)
            except ValueError as err:
                raise self._error(f"unknown key {key.text!r} in block {opener.text!r} ({suffix_text!r}: {err})",
                                  key.line, key.text) from None
        raise self._error(f"unknown key {key.text!r} in block {opener.text!r}", key.line, key.text)

    def _value(self, key: Token, opener: Token, spec: Option) -> Any:
        token = next(self._tokens, None)
        if token is None or token.kind is Kind.CLOSE:
            raise self._error(f"key {key.text!r} in block {opener.text!r} has no value", key.line, key.text)
        if token.kind is Kind.OPEN:
            raise self._error(f"expected a value for key {key.text!r} in block {opener.text!r}, found '{{'",
                              token.line, key.text)
        try:
            return spec.codec.parse(token.text)
        except ValueError as err:
            raise self._error(f"bad value {token.text!r} for key {key.text!r} in block {opener.text!r}: {err}",
                              token.line, key.text) from None

    def _expect_open(self, key: Token) -> None:
        token = next(self._tokens, None)
        if token is None or token.kind is not Kind.OPEN:
            found = "end of file" if token is None else repr(token.text)
            raise self._error(f"{key.text!r} is a block: expected '{{' after it, found {found}",
                              key.line if token is None else token.line, key.text)

    def _check_required(self, cls: type, table: _Table, found: dict[str, Any], opener: Token) -> None:
        needed: tuple[str, ...] = getattr(cls, "REQUIRES_ONE_OF", ())
        if needed and not any(table.exact[key.lower()][0] in found for key in needed):
            names = " or ".join(repr(key) for key in needed)
            raise self._error(f"block {opener.text!r} needs {names}", opener.line, needed[0])
