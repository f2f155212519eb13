"""Mutated switch, router, discard and every-record datagrams through every output of the collector.

A short CI version of ``bench/fuzz.py``: seeds are the device captures of
``../shared/vectors/devices`` and ``tests/fixtures/sflowtool-6.11/records.pcap``;
each example overwrites a few bytes (often a length or count word) of one seed.
Whatever the bytes, decoding gives a datagram or a DecodeError (with the part
decoded before the fault), and text, -g, -j, -J, -l, -t and -T render it without
raising; the Prometheus exporter's decode (only the records it reads built) rejects
exactly what the full decode rejects, with the same error, and takes the rest in.
"""

from __future__ import annotations

import io
import struct
from collections.abc import Callable
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from verdicts import same_verdict

from hsflowd_py.collector.exporter.state import ExportState
from hsflowd_py.collector.jsonout import format_json
from hsflowd_py.collector.lines import format_lines
from hsflowd_py.collector.pcapfile import read_pcap
from hsflowd_py.collector.pcapout import PcapNgWriter, PcapWriter
from hsflowd_py.collector.text import Received, datagram_view, format_grep, format_text
from hsflowd_py.sflow.codec import decode_datagram
from hsflowd_py.sflow.xdr import DecodeError

ORACLE = Path(__file__).parent / "fixtures" / "sflowtool-6.11"
DEVICES = Path("/work/shared/vectors/devices")


def _seeds() -> list[bytes]:
    out = []
    for pcap in [ORACLE / "records.pcap", *sorted(DEVICES.glob("*.pcap"))]:
        with open(pcap, "rb") as f:
            out += [p.payload for p in read_pcap(f)]
    return out


SEEDS = _seeds()
RECEIVED = Received("-", 0, 0, 1_700_000_000, 5)
WORDS = st.sampled_from([0, 1, 3, 0x7FFFFFFF, 0x80000000, 0xFFFFFFF2, 0xFFFFFFFF, 4096, 65535])


def mutations(test: Callable[[int, list[tuple[int, int]], int], None]) -> Any:
    """1,500 examples of a seed, the words written into it and where it is cut."""
    cases = given(
        st.integers(0, len(SEEDS) - 1),
        st.lists(st.tuples(st.integers(0, 1 << 16), WORDS), min_size=1, max_size=4),
        st.integers(0, 1 << 16),
    )
    return settings(max_examples=1500, deadline=None, suppress_health_check=[HealthCheck.too_slow])(cases(test))


def mutated(seed: int, words: list[tuple[int, int]], cut: int) -> bytes:
    """Seed ``seed`` with each (offset, word) of ``words`` written at a word boundary, cut at ``cut``."""
    data = bytearray(SEEDS[seed])
    for at, value in words:
        at = (at % max(len(data) - 3, 1)) & ~3
        if at + 4 <= len(data):
            struct.pack_into(">I", data, at, value)
    return bytes(data[: max(cut, 28)])


def render_everything(data: bytes) -> None:
    try:
        datagram = decode_datagram(data)
    except DecodeError as e:
        datagram = getattr(e, "partial", None)
        if datagram is None:
            return
    view = datagram_view(datagram, len(data), RECEIVED)
    format_text(view), format_grep(view), format_json(view), format_json(view, indent=True)
    format_lines(datagram)
    sink = io.BytesIO()
    PcapWriter(sink).write(datagram, len(data), RECEIVED)
    PcapNgWriter(sink, "test").write(datagram, len(data), RECEIVED)


@mutations
def test_mutated_datagrams_render_in_every_output(seed: int, words: list[tuple[int, int]], cut: int) -> None:
    render_everything(mutated(seed, words, cut))


class _Counts:
    datagrams = 0
    errors = 0


EXPORTER = ExportState(_Counts(), flows=10)


def export(data: bytes) -> None:
    """The exporter's decode gives the full decode's verdict; what it accepts, the exporter takes in."""
    datagram = same_verdict(data, EXPORTER.read)
    if datagram is not None:
        EXPORTER.observe(datagram, 0.0, "192.0.2.1")


@mutations
def test_mutated_datagrams_get_one_verdict_from_the_exporters_decode(
    seed: int, words: list[tuple[int, int]], cut: int
) -> None:
    export(mutated(seed, words, cut))


def test_every_seed_renders() -> None:
    assert len(SEEDS) >= 90
    for data in SEEDS:
        render_everything(data)
        export(data)
