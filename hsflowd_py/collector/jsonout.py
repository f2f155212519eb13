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
from typing import Any

from .dissect import Note
from .text import DatagramView, Nested, ViewEntry

__all__ = ["format_json", "json_object"]


def _object(entries: list[ViewEntry]) -> dict[str, Any]:
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


def format_json(view: DatagramView, indent: bool = False) -> str:
    """One line per datagram (``-j``), or indented with a blank line after each (``-J``)."""
    if indent:
        return json.dumps(json_object(view), indent=2, ensure_ascii=False) + "\n\n"
    return json.dumps(json_object(view), separators=(",", ":"), ensure_ascii=False) + "\n"
