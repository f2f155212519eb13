"""Every record of the table survives encode → decode, over the full range of every field.

Strategies are derived from the declared wire types, so a record added to the
table is covered without touching this file.  A round trip cannot catch a
wrong field order (both directions share the table); the sflowtool vectors in
``test_collector_vectors.py`` do.
"""

from __future__ import annotations

import ipaddress
import struct
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from verdicts import same_verdict, verdict

from hsflowd_py.collector.pcapfile import read_pcap
from hsflowd_py.sflow import xdr
from hsflowd_py.sflow.codec import decode_datagram, encode_datagram
from hsflowd_py.sflow.layout import Struct
from hsflowd_py.sflow.records import (
    COUNTER_RECORDS,
    FLOW,
    FLOW_RECORDS,
    ExtendedTimestamp,
    ExtendedUser,
    HostCpu,
    Record,
    SampledHeader,
)
from hsflowd_py.sflow.samples import CounterSample, Datagram, FlowSample

U32 = st.integers(0, 2**32 - 1)
U64 = st.integers(0, 2**64 - 1)
_TEXT = st.text(st.characters(blacklist_categories=("Cs",)), max_size=8)  # ≤ 32 UTF-8 bytes: fits every string<n>

_FIXED: dict[Any, st.SearchStrategy[Any]] = {
    xdr.U32: U32,
    xdr.U64: U64,
    xdr.PERCENT100: U32,
    xdr.FLOAT: st.floats(width=32, allow_nan=False),
    xdr.MAC: st.binary(min_size=6, max_size=6),
    xdr.UUID: st.binary(min_size=16, max_size=16),
    xdr.IPV4: st.ip_addresses(v=4),
    xdr.IPV6: st.ip_addresses(v=6),
    xdr.OPAQUE: st.binary(max_size=300),
    xdr.ADDRESS: st.ip_addresses(),
    xdr.U8: st.integers(0, 255),
    xdr.HEX64: U64,
}


def values_of(t: Any) -> st.SearchStrategy[Any]:
    """A strategy for any value the wire type can carry."""
    if t in _FIXED:
        return _FIXED[t]
    item = getattr(t, "item", None)
    if item is not None:
        inner = structs(item) if isinstance(item, type) and issubclass(item, Struct) else values_of(item.xdr)
        return st.lists(inner, max_size=4)
    if t.name == "u32list":
        return st.lists(U32, max_size=4).map(tuple)
    if t.name.startswith("string<"):
        return _TEXT
    if t.fmt == "I":  # enumerations: any u32, names or not
        return U32
    raise AssertionError(f"no strategy for wire type {t.name}")


def structs(cls: type[Struct]) -> st.SearchStrategy[Struct]:
    return st.builds(lambda values: cls(*values), st.tuples(*(values_of(f.type) for f in cls.FIELDS)))


def in_datagram(record: Record) -> Datagram:
    if record.KIND == FLOW:
        sample: Any = FlowSample(0, 8, 10, 100, 0, 1, 2, [record], sequence=7)
    else:
        sample = CounterSample(2, 1, [record], sequence=7)
    return Datagram(ipaddress.ip_address("192.0.2.1"), 100000, 1, 1000, [sample])


ALL_RECORDS = sorted({*FLOW_RECORDS.values(), *COUNTER_RECORDS.values()}, key=lambda c: (c.KIND, c.FORMAT))


@pytest.mark.parametrize("cls", ALL_RECORDS, ids=lambda c: f"{c.KIND}-{c.FORMAT}-{c.__name__}")
@given(data=st.data())
@settings(max_examples=60)
def test_record_round_trips(cls: type[Record], data: st.DataObject) -> None:
    record = data.draw(structs(cls))
    datagram = in_datagram(record)
    decoded = decode_datagram(encode_datagram(datagram))
    assert decoded == datagram
    assert decoded.samples[0].records[0] == record


@given(
    agent=st.ip_addresses(),
    header=st.tuples(U32, U32, U32),
    flow=st.tuples(U32, U32, U32, U32, U32, U32, U32, U32, U32, U32),
    counter=st.tuples(U32, U32, U32),
)
def test_datagram_and_sample_headers_round_trip(agent: Any, header: Any, flow: Any, counter: Any) -> None:
    seq, dsc, dsi, rate, pool, drops, in_fmt, inp, out_fmt, out = flow
    samples: list[Any] = [
        FlowSample(dsc, dsi, rate, pool, drops, inp, out, [], seq, in_fmt, out_fmt),
        CounterSample(counter[0], counter[1], [], counter[2]),
    ]
    datagram = Datagram(agent, *header, samples=samples)
    assert decode_datagram(encode_datagram(datagram)) == datagram


VECTORS = Path("/work/shared/vectors")


@pytest.mark.skipif(not VECTORS.is_dir(), reason="shared sFlow vectors not present")
@pytest.mark.parametrize("name", ["host-flows", "host-ipv6-agent", "docker-containers"])
def test_established_agent_datagrams_re_encode_to_the_same_values(name: str) -> None:
    """Byte equality is not expected (hsflowd leaves garbage in XDR padding); decoded values are."""
    with open(VECTORS / f"{name}.pcap", "rb") as f:
        for packet in read_pcap(f):
            datagram = decode_datagram(packet.payload)
            again = encode_datagram(datagram)
            assert len(again) == len(packet.payload)
            assert decode_datagram(again) == datagram


ONLY = frozenset((SampledHeader, HostCpu))


@pytest.mark.skipif(not VECTORS.is_dir(), reason="shared sFlow vectors not present")
def test_a_decode_of_only_some_records_is_the_full_decode_without_the_others() -> None:
    """The exporter's decode: the same samples, each with only the chosen records, none taken for unknown."""
    seen: set[type] = set()
    for path in sorted(VECTORS.glob("*.pcap")) + sorted((VECTORS / "devices").glob("*.pcap")):
        with open(path, "rb") as f:
            for packet in read_pcap(f):
                same_verdict(packet.payload, ONLY)
                error, kept = verdict(packet.payload, ONLY)
                seen.update(type(r) for s in kept.samples for r in getattr(s, "records", ()))
    assert {SampledHeader, HostCpu} <= seen


def _flow_datagram(*records: bytes) -> bytes:
    """One expanded flow sample holding ``records`` (each tag, length and body, as on the wire)."""
    body = struct.pack(">11I", 1, 0, 3, 1, 1, 0, 0, 3, 0, 0, len(records)) + b"".join(records)
    sample = struct.pack(">II", 3, len(body)) + body
    return struct.pack(">IIIIIII", 5, 1, 0x7F000001, 0, 1, 0, 1) + sample


def test_a_record_not_built_is_checked_as_the_full_decode_checks_it() -> None:
    """The rule for records a decode does not build: a wrong layout inside a length that fits the sample
    is the full decode's error, not a record skipped; a fixed-size record is checked by its length."""
    user = ExtendedUser(1, "alice", 1, "bob").pack()
    bad_string = user[:4] + struct.pack(">I", 4000) + user[8:]  # a string longer than its record
    timestamp = ExtendedTimestamp(7).pack()
    cases = {
        "a string overrunning its record": struct.pack(">II", ExtendedUser.tag(), len(user)) + bad_string,
        "a fixed record 4 bytes too long": struct.pack(">II", ExtendedTimestamp.tag(), 12) + timestamp + bytes(4),
        "a fixed record 4 bytes too short": struct.pack(">II", ExtendedTimestamp.tag(), 4) + timestamp[:4],
    }
    for what, record in cases.items():
        data = _flow_datagram(record)
        error, _ = verdict(data, ONLY)
        assert error, what
        same_verdict(data, ONLY)
    good = _flow_datagram(struct.pack(">II", ExtendedUser.tag(), len(user)) + user)
    assert verdict(good, ONLY)[0] == ""
    same_verdict(good, ONLY)
