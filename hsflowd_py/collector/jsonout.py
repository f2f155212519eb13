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
    twice its speed (no dictionaries in between); the collector's busiest JSON path."""
    samples = []
    for sample in view.samples:
        members = _members(sample.fields)
        if sample.elements is not None:
            elements = ",".join("{" + _members(e) + "}" for e in sample.elements)
            members += f',"elements":[{elements}]'
        samples.append("{" + members + "}")
    return "{" + _members(view.fields) + ',"samples":[' + ",".join(samples) + "]}"


def format_json(view: DatagramView, indent: bool = False) -> str:
    """One line per datagram (``-j``), or indented with a blank line after each (``-J``)."""
    if indent:
        return json.dumps(json_object(view), indent=2, ensure_ascii=False) + "\n\n"
    return _compact(view) + "\n"
