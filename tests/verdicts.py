"""What the full decode and a decode of only some records say of the same bytes: the same thing.

``decode_datagram(data, only)`` builds only the records in ``only`` and checks the others as the
full decode checks them, so both raise the same error for the same bytes and, apart from the
records not built, give the same samples (the partial datagram of an error included).
"""

from __future__ import annotations

import dataclasses
from typing import Any

from hsflowd_py.sflow.codec import decode_datagram
from hsflowd_py.sflow.records import Record
from hsflowd_py.sflow.samples import BrokenRecord, Datagram, UnknownRecord
from hsflowd_py.sflow.xdr import DecodeError


def verdict(data: bytes, only: frozenset[type[Record]] | None = None) -> tuple[str, Datagram | None]:
    """What a decode says of ``data``: its error ("" for none) and the datagram (partial on an error)."""
    try:
        return "", decode_datagram(data, only)
    except DecodeError as e:
        return str(e), getattr(e, "partial", None)


def _built(datagram: Datagram | None, only: frozenset[type[Record]]) -> list[Any]:
    """The samples with only the records ``only`` builds (and unknown and broken ones) left in."""
    if datagram is None:
        return []
    out = []
    for sample in datagram.samples:
        records = getattr(sample, "records", None)
        if records is not None:
            kept = [r for r in records if type(r) in only or isinstance(r, UnknownRecord | BrokenRecord)]
            sample = dataclasses.replace(sample, records=kept)
        out.append(sample)
    return out


def same_verdict(data: bytes, only: frozenset[type[Record]]) -> Datagram | None:
    """Asserts both decodes agree on ``data``; returns the ``only`` decode's datagram (None on an error)."""
    full_error, full = verdict(data)
    error, mine = verdict(data, only)
    assert error == full_error
    assert repr(_built(mine, only)) == repr(_built(full, only))  # by repr: a float field may be NaN
    return None if error else mine
