"""sflowtool's ``-j``/``-J`` output: the datagram view as one JSON object.

Keys are the text output's names and every value is a string (sflowtool's
choice, so 64-bit counters survive JSON readers that use doubles); samples go
under ``"samples"``, records under ``"elements"``, and the host adapters of a
2001 record under ``"adaptor_list"``/``"mac_list"`` instead of the text form's
flattened ``adaptor_N_...`` names.  Lines sflowtool prints only as text
(``skipping unknown ...``, ``NO_DECODE ...``) have no JSON form.
"""

from __future__ import annotations

import json
import re
from itertools import chain
from typing import Any

from .dissect import Note
from .text import DatagramView, Nested, ViewEntry

__all__ = ["format_json", "json_object"]


def _object(entries: list[ViewEntry]) -> dict[str, Any]:
    pairs = [e for e in entries if type(e) is tuple]
    if len(pairs) == len(entries):  # no note, no nested list: the common case, built in one call
        return dict(pairs)  # type: ignore[arg-type]
    out: dict[str, Any] = {}
    for entry in entries:
        if isinstance(entry, Note):
            continue
        if isinstance(entry, Nested):
            out[entry.key] = [item if isinstance(item, str) else _object(item) for item in entry.items]
        else:
            out[entry[0]] = entry[1]
    return out


def json_object(view: DatagramView) -> dict[str, Any]:
    """The datagram as sflowtool's JSON structure."""
    top = _object(view.fields)
    samples = []
    for sample in view.samples:
        obj = _object(sample.fields)
        if sample.elements is not None:
            obj["elements"] = [_object(e) for e in sample.elements]
        samples.append(obj)
    top["samples"] = samples
    return top


_quoted = json.encoder.encode_basestring  # the C encoder of json.dumps(..., ensure_ascii=False)
_NEEDS_ESCAPE = re.compile(r'["\\\x00-\x1f]')
"""What JSON must escape in a string; most objects hold none, and are then written without the encoder."""


def _members(entries: list[ViewEntry]) -> str:
    """An object's members as compact JSON, written straight from the entries: keys are the
    table's labels (plain ASCII); values go through json's own string encoder."""
    q = _quoted
    pairs = [e for e in entries if type(e) is tuple]
    if len(pairs) == len(entries):  # no note, no nested list: the common case
        if _NEEDS_ESCAPE.search("".join([v for _, v in pairs])) is None:  # numbers, addresses, hex...
            return ",".join([f'"{k}":"{v}"' for k, v in pairs])
        return ",".join([f'"{k}":{q(v)}' for k, v in pairs])
    parts = []
    for entry in entries:
        if type(entry) is tuple:
            parts.append(f'"{entry[0]}":{_quoted(entry[1])}')
        elif isinstance(entry, Nested):
            items = ",".join(_quoted(i) if isinstance(i, str) else "{" + _members(i) + "}" for i in entry.items)
            parts.append(f'"{entry.key}":[{items}]')
    return ",".join(parts)


def _compact(view: DatagramView) -> str:
    """``-j``: the same text ``json.dumps(json_object(view), separators=(",", ":"))`` gives, at
    several times its speed (no dictionaries in between); the collector's busiest JSON path."""
    return _plain_compact(view) or _escaped_compact(view)


def _escaped_compact(view: DatagramView) -> str:
    samples = []
    for sample in view.samples:
        members = _members(sample.fields)
        if sample.elements is not None:
            elements = ",".join("{" + _members(e) + "}" for e in sample.elements)
            members += f',"elements":[{elements}]'
        samples.append("{" + members + "}")
    return "{" + _members(view.fields) + ',"samples":[' + ",".join(samples) + "]}"


_pair = '":"'.join
_pairs = '","'.join
_PAIRS_ONLY = {tuple}
_ESCAPED = b'"\\' + bytes(range(0x20))
"""What JSON escapes in a string: the double quote, the backslash and control characters."""


def _plain_compact(view: DatagramView) -> str | None:
    """``_escaped_compact``'s text for the common datagram: every entry a (name, value) pair and no
    value that JSON escapes.  Each object's members are one C-level join of its pairs, and the
    escaping is checked once on the whole text: outside values it holds only the structure's own
    quotes (table labels are plain ASCII), so any other quote, backslash or control character
    means a value needs escaping.  None when the datagram is not of that kind."""
    lists = [view.fields]
    for sample in view.samples:
        lists.append(sample.fields)
        if sample.elements:
            lists += sample.elements
    sizes = list(map(len, lists))
    if 0 in sizes or set(map(type, chain.from_iterable(lists))) != _PAIRS_ONLY:
        return None
    members = ['{"' + _pairs(map(_pair, entries)) + '"' for entries in lists]
    at, keyed = 1, 1  # the datagram's object, then "samples"
    samples = []
    for sample in view.samples:
        if sample.elements is None:
            samples.append(members[at] + "}")
            at += 1
            continue
        n = len(sample.elements)
        samples.append(members[at] + ',"elements":[' + "},".join(members[at + 1 : at + 1 + n]) + ("}]}" if n else "]}"))
        at += 1 + n
        keyed += 1
    text = members[0] + ',"samples":[' + ",".join(samples) + "]}"
    encoded = text.encode()  # a byte scan is several times faster than a regular expression here
    if len(encoded) - len(encoded.translate(None, _ESCAPED)) != 4 * sum(sizes) + 2 * keyed:
        return None
    return text


def format_json(view: DatagramView, indent: bool = False) -> str:
    """One line per datagram (``-j``), or indented with a blank line after each (``-J``)."""
    if indent:
        return json.dumps(json_object(view), indent=2, ensure_ascii=False) + "\n\n"
    return _compact(view) + "\n"
