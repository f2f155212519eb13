"""DNS-SD TXT strings (``key=value``) into overrides of the agent's settings.

The keys are the established agent's (REFERENCE.md section 5) and their
values go through the very codecs that parse hsflowd.conf, found on the
Settings fields, so ``sampling=10K`` or ``agent.cidr=!10.0.0.0/8`` mean in DNS
exactly what they mean in the file.  Keys are case-insensitive, as in the
established agent.  A string that is not ``key=value``, an unknown key or a
bad value is returned as a problem and ignored; the rest still applies.  Values
are bounded as in the file (the established agent applies TXT numbers without
any range check, so ``sampling=4294967297`` became 1 there), except where it
clamps: ``headerBytes`` above 256 is 256.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from hsflowd_py.config import Settings
from hsflowd_py.config.errors import excerpt
from hsflowd_py.config.schema import Option, config_fields, parse_suffix, suffix_families
from hsflowd_py.config.values import MAX_VALUE_CHARS, parse_int

TXT_KEYS = ("sampling", "sampling.bps_ratio", "polling", "agentIP", "agent", "agent.cidr", "headerBytes")
"""Keys a TXT string may set, spelled as in hsflowd.conf; ``sampling.<speed>``, ``sampling.<app>`` and
``polling.<app>`` come with ``sampling`` and ``polling``."""

CLAMPED = {"headerbytes": 256}
"""Keys whose too-large values the established agent's dynamic_config_line clamps, by lower-case key."""

IGNORED_KEYS = ("txtvers",)
"""RFC 6763 section 6.7: the TXT record format version, nothing to apply."""

_PLAIN = {
    spec.key.lower(): (name, spec)
    for name, spec in config_fields(Settings)
    if isinstance(spec, Option) and spec.key in TXT_KEYS and spec.suffix is None
}
_FAMILIES = {key: family for key, family in suffix_families(Settings).items() if key in TXT_KEYS}


@dataclass(frozen=True)
class TxtSettings:
    """Overrides as (Settings field name, value) pairs, sorted by field, and what was ignored and why."""

    overrides: tuple[tuple[str, Any], ...]
    problems: tuple[str, ...]


def parse_txt(strings: Iterable[bytes]) -> TxtSettings:
    """Apply the TXT strings in order: a repeated key keeps its last value, ``agent.cidr`` collects them all."""
    values: dict[str, Any] = {}
    problems: list[str] = []
    for raw in strings:
        try:
            text = raw.decode()
        except UnicodeDecodeError:
            problems.append(f"TXT {excerpt(str(raw)[2:-1])}: not UTF-8 text; ignored")
            continue
        key, equals, value = (part.strip() for part in text.partition("="))
        value = value.replace('"', "")  # double quotes only switch separators off, as in the file
        if not equals or not key:
            problems.append(f"TXT {excerpt(text)}: not key=value; ignored")
            continue
        try:
            _apply(values, key, value)
        except ValueError as e:
            problems.append(f"TXT {excerpt(key)}={excerpt(value)}: {e}; ignored")
    return TxtSettings(tuple(sorted(values.items())), tuple(problems))


def _apply(values: dict[str, Any], key: str, value: str) -> None:
    lower = key.lower()
    if lower in IGNORED_KEYS:
        return
    if lower in CLAMPED and len(value) <= MAX_VALUE_CHARS:
        value = str(min(parse_int(value), CLAMPED[lower]))
    if lower in _PLAIN:
        name, option = _PLAIN[lower]
        parsed = option.codec.read(value)
        values[name] = (*values.get(name, ()), parsed) if option.repeat else parsed
        return
    family, dot, suffix = lower.partition(".")
    if dot and family in _FAMILIES:
        name, option, parsed = parse_suffix(_FAMILIES[family], key.partition(".")[2])
        values[name] = {**values.get(name, {}), parsed: option.codec.read(value)}
        return
    raise ValueError("not a DNS-SD setting")
