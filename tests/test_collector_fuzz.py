"""Mutated switch, router, discard and every-record datagrams through every output of the collector.

A short CI version of ``bench/fuzz.py``: seeds are the device captures of
``../shared/vectors/devices`` and ``tests/fixtures/sflowtool-6.11/records.pcap``;
each example overwrites a few bytes (often a length or count word) of one seed.
Whatever the bytes, decoding gives a datagram or a DecodeError (with the part
decoded before the fault), and text, -g, -j, -J, -l, -t and -T render it without
raising.
"""

from __future__ import annotations

import io
import struct
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

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


@settings(max_examples=1500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.integers(0, len(SEEDS) - 1),
    st.lists(st.tuples(st.integers(0, 1 << 16), WORDS), min_size=1, max_size=4),
    st.integers(0, 1 << 16),
)
def test_mutated_datagrams_render_in_every_output(seed: int, words: list[tuple[int, int]], cut: int) -> None:
    data = bytearray(SEEDS[seed])
    for at, value in words:
        at = (at % max(len(data) - 3, 1)) & ~3
        if at + 4 <= len(data):
            struct.pack_into(">I", data, at, value)
    render_everything(bytes(data[: max(cut, 28)]))


def test_every_seed_renders() -> None:
    assert len(SEEDS) >= 90
    for data in SEEDS:
        render_everything(data)
