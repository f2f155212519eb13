"""Parse hsflowd.conf text into :class:`Settings`.

The grammar is tiny -- ``sflow { (key value | block { ... })* }`` -- so this is a
recursive descent over the token list, driven by the key tables that the
settings dataclasses declare (``schema.py``).  Adding a key means adding one
field; nothing here changes.  Modules' blocks are declared in their own folders
(``blocks.py``) and read from there at each parse.

Blocks of the established agent that hsflowd-py does not implement are refused
with their own message rather than skipped: an operator who configured
``psample {}`` or ``kvm {}`` relies on the data it produces, and an agent that
starts without it would hide that loss until someone noticed the gap in their
graphs.  Failing at start-up, naming the block and line, surfaces it at once.  An operator
who knows and accepts the loss (the same file feeding both agents on a fleet) starts the agent
with ``--skip-unsupported`` (``skip_unsupported=True`` here): each such block or key is then
skipped and named in ``Settings.warnings``, which ``--check`` prints and the agent logs.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from . import values as v
from .blocks import ModuleBlock, declared_blocks
from .errors import ConfigError, excerpt
from .lexer import Kind, Token, tokenize
from .schema import Block, Family, Option, config_fields, parse_suffix, suffix_families
from .settings import Settings

UNSUPPORTED_BLOCKS = frozenset(
    "kvm xen nflog ulog psample ovs nvml cumulus dent os10 opx sonic eapi vpp json"
    " epcap dbus nlroute".split()
)
"""Blocks of the established agent's ``sflow {}`` that hsflowd-py does not implement (``json {}``:
the listener for sub-agents' JSON-encoded samples; ``epcap {}``: its eBPF variant of ``pcap {}``,
for which this agent has ``pcap { sampler = ebpf }``)."""

UNSUPPORTED_LEGACY_KEYS = {
    "jsonport": "json",
    "jsonfifo": "json",
    "uloggroup": "ulog",
    "ulogprobability": "ulog",
    "nfloggroup": "nflog",
    "nflogprobability": "nflog",
    "xen.update.dominfo": "xen",
    "xen.dsk": "xen",
}
"""Old ``sflow {}``-level spellings of keys of unsupported blocks, by the block they configure."""

_SKIP_HINT = "start with --skip-unsupported to skip it with a warning"
_MAX_FILE_BYTES = 1 << 20
"""A config file larger than this is refused unread: real ones are a few kilobytes."""

UNSUPPORTED_KEYS = {"collector": frozenset({"namespace"})}
"""Keys of the established agent's core blocks that hsflowd-py does not implement: ``namespace``
(send from another network namespace).  A module's own are in its declaration (``pcap``'s ``vport``)."""


@dataclass(frozen=True)
class _Table:
    """Keys of one block, lower-cased: exact keys and ``key.<suffix>`` families."""

    exact: dict[str, tuple[str, Option | Block]]
    families: dict[str, Family]


@functools.cache
def _table(cls: type) -> _Table:
    exact = {
        spelling.lower(): (name, spec)
        for name, spec in config_fields(cls)
        if not (isinstance(spec, Option) and spec.suffix is not None)
        for spelling in (spec.key, *(spec.aliases if isinstance(spec, Option) else ()))
    }
    return _Table(exact, suffix_families(cls))


def _top_table(blocks: tuple[ModuleBlock, ...]) -> _Table:
    """The keys of ``sflow {}``: the core's, each module's block and the legacy keys it declares."""
    core = _table(Settings)
    exact = dict(core.exact)
    for block in blocks:
        exact[block.key.lower()] = (block.attr, block)
        if block.legacy is not None:
            exact.update(_table(block.legacy).exact)
    return _Table(exact, core.families)


def parse_config(text: str, source: str = "<string>", skip_unsupported: bool = False) -> Settings:
    """Settings from hsflowd.conf ``text``; ``source`` names it in error messages."""
    return _Parser(tokenize(text, source), source, skip_unsupported).parse()


def load_config(path: str | os.PathLike[str], skip_unsupported: bool = False) -> Settings:
    """Settings from the file at ``path``; an unreadable file is a ConfigError like any other."""
    source = os.fspath(path)
    try:
        with open(path, encoding="utf-8") as file:
            text = file.read(_MAX_FILE_BYTES + 1)
        if len(text) > _MAX_FILE_BYTES:
            raise ConfigError(f"larger than {_MAX_FILE_BYTES} characters: not a configuration file", source)
    except OSError as err:
        raise ConfigError(f"cannot read configuration: {err.strerror or err}", source) from err
    except UnicodeDecodeError as err:
        raise ConfigError(f"not UTF-8 text: {err.reason} at byte {err.start}", source) from err
    return parse_config(text, source, skip_unsupported)


class _Parser:
    """One pass over the tokens; every error names the source and the line."""

    def __init__(self, tokens: list[Token], source: str, skip_unsupported: bool):
        self._tokens: Iterator[Token] = iter(tokens)
        self._source = source
        self._skip_unsupported = skip_unsupported
        self._warnings: list[str] = []
        self._modules = declared_blocks()
        self._by_key = {block.key.lower(): block for block in self._modules}

    def parse(self) -> Settings:
        head = next(self._tokens, None)
        if head is None:
            raise self._error("the file must start with 'sflow {', found end of file", 1)
        if head.kind is not Kind.WORD or head.text.lower() != "sflow":
            raise self._error(f"the file must start with 'sflow {{', found {excerpt(head.text)}", head.line, head.text)
        self._expect_open(head)
        top = _top_table(self._modules)
        fields = self._block(Settings, head, top)
        extra = next(self._tokens, None)
        if extra is not None:
            raise self._error(f"unexpected {excerpt(extra.text)} after the closing brace of {head.text!r}",
                              extra.line, extra.text)
        blocks = self._module_blocks(fields)
        needed = (*Settings.REQUIRES_ONE_OF, *(b.key for b in self._modules if b.supplies_collectors))
        self._check_required(needed, top, {**fields, **blocks}, head)
        return Settings(**fields, blocks=blocks, source=self._source, warnings=tuple(self._warnings))

    def _module_blocks(self, fields: dict[str, Any]) -> dict[str, Any]:
        """The modules' blocks taken out of ``fields`` (with their legacy keys folded in), by attr."""
        blocks = {}
        for block in self._modules:
            value = fields.pop(block.attr, None)
            if block.legacy is not None and block.fold is not None:
                legacy = {name: fields.pop(name) for name, _ in config_fields(block.legacy) if name in fields}
                value = block.fold(value, legacy)
            if value is not None:
                blocks[block.attr] = value
        return blocks

    def _error(self, message: str, line: int, key: str | None = None) -> ConfigError:
        return ConfigError(message, self._source, line, key)

    def _block(self, cls: type, opener: Token, top: _Table | None = None) -> dict[str, Any]:
        """Keyword arguments for ``cls`` from the tokens up to the brace that closes ``opener``;
        ``top`` is the table of ``sflow {}`` itself, which has the modules' blocks too."""
        table = top or _table(cls)
        found: dict[str, Any] = {}
        while True:
            token = next(self._tokens, None)
            if token is None:
                self._unclosed(opener)
                break
            if token.kind is Kind.CLOSE:
                break
            if token.kind is Kind.OPEN:
                raise self._error(f"unexpected '{{' in block {opener.text!r}, expected a key", token.line)
            if not self._unsupported(token, opener, top is not None):
                self._entry(token, opener, table, found)
        if top is None:
            self._check_required(getattr(cls, "REQUIRES_ONE_OF", ()), table, found, opener)
        return {name: tuple(value) if isinstance(value, list) else value for name, value in found.items()}

    def _unsupported(self, token: Token, opener: Token, top: bool) -> bool:
        """True if ``token`` starts a block or key this agent lacks and it was skipped (with a
        warning); a ConfigError naming it unless skipping was asked for; False for any other key."""
        lowered = token.text.lower()
        if top and lowered in self._by_key:
            return False  # a module here declares it (k8s, dropmon once they exist)
        if top and lowered in UNSUPPORTED_BLOCKS:
            what = f"block {token.text!r} is not supported by hsflowd-py"
        elif top and lowered in UNSUPPORTED_LEGACY_KEYS:
            module = UNSUPPORTED_LEGACY_KEYS[lowered]
            what = f"key {token.text!r} configures block {module!r}, which is not supported by hsflowd-py"
        elif lowered in self._unsupported_keys(opener.text.lower()):
            what = f"key {token.text!r} in block {opener.text!r} is not supported by hsflowd-py"
        else:
            return False
        if not self._skip_unsupported:
            raise self._error(f"{what} ({_SKIP_HINT})", token.line, token.text)
        if top and lowered in UNSUPPORTED_BLOCKS:
            self._skip_block(token)
        else:
            self._skip_value(token, opener)
        self._warnings.append(f"{self._source}:{token.line}: {what}; skipped")
        return True

    def _unsupported_keys(self, block: str) -> frozenset[str]:
        declared = self._by_key.get(block)
        return declared.unsupported if declared is not None else UNSUPPORTED_KEYS.get(block, frozenset())

    def _skip_block(self, opener: Token) -> None:
        """Consume ``{ ... }`` after ``opener``, nested blocks included (``opx { port { } }``)."""
        self._expect_open(opener)
        depth = 1
        for token in self._tokens:
            depth += {Kind.OPEN: 1, Kind.CLOSE: -1}.get(token.kind, 0)
            if depth == 0:
                return
        self._unclosed(opener)

    def _unclosed(self, opener: Token) -> None:
        """End of file inside a block: the established agent logs it and keeps the file ("we
        tolerated it before"), so this is a warning, not an error."""
        self._warnings.append(
            f"{self._source}:{opener.line}: block {opener.text!r} is never closed; read to the end of the file"
        )

    def _skip_value(self, key: Token, opener: Token) -> None:
        token = next(self._tokens, None)
        if token is None or token.kind is not Kind.WORD:
            raise self._error(f"key {key.text!r} in block {opener.text!r} has no value", key.line, key.text)

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
        if spec.ignored:
            self._warnings.append(
                f"{self._source}:{key.line}: key {key.text!r} in block {opener.text!r} is accepted and ignored: "
                f"{spec.ignored}"
            )
        if spec.suffix is not None:
            found.setdefault(name, {})[suffix] = value
        elif spec.repeat:
            found.setdefault(name, []).append(value)
        else:
            found[name] = value  # a scalar given twice: the last one wins, as in the established agent

    def _lookup(self, key: Token, opener: Token, table: _Table) -> tuple[str, Option | Block, Any]:
        """(field name, spec, parsed suffix or None) for ``key``, or an unknown-key error."""
        lowered = key.text.lower()
        if len(lowered) > v.MAX_VALUE_CHARS:
            raise self._error(f"unknown key {excerpt(key.text)} in block {opener.text!r}", key.line, key.text)
        if lowered in table.exact:
            return *table.exact[lowered], None
        family, dot, _ = lowered.partition(".")
        if dot and family in table.families:
            suffix_text = key.text.partition(".")[2]
            try:
                return parse_suffix(table.families[family], suffix_text)
            except ValueError as err:
                raise self._error(f"unknown key {excerpt(key.text)} in block {opener.text!r} ({err})",
                                  key.line, key.text) from None
        raise self._error(f"unknown key {excerpt(key.text)} in block {opener.text!r}", key.line, key.text)

    def _value(self, key: Token, opener: Token, spec: Option) -> Any:
        token = next(self._tokens, None)
        if token is None or token.kind is Kind.CLOSE:
            raise self._error(f"key {key.text!r} in block {opener.text!r} has no value", key.line, key.text)
        if token.kind is Kind.OPEN:
            raise self._error(f"expected a value for key {key.text!r} in block {opener.text!r}, found '{{'",
                              token.line, key.text)
        try:
            return spec.codec.read(token.text)
        except ValueError as err:
            raise self._error(f"bad value {excerpt(token.text)} for key {key.text!r} in block {opener.text!r}: {err}",
                              token.line, key.text) from None

    def _expect_open(self, key: Token) -> None:
        token = next(self._tokens, None)
        if token is None or token.kind is not Kind.OPEN:
            found = "end of file" if token is None else excerpt(token.text)
            raise self._error(f"{key.text!r} is a block: expected '{{' after it, found {found}",
                              key.line if token is None else token.line, key.text)

    def _check_required(self, needed: tuple[str, ...], table: _Table, found: dict[str, Any], opener: Token) -> None:
        if needed and not any(table.exact[key.lower()][0] in found for key in needed):
            names = " or ".join(repr(key) for key in needed)
            raise self._error(f"block {opener.text!r} needs {names}", opener.line, needed[0])
