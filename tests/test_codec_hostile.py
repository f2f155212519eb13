"""Hostile input: the decoder either returns a datagram or raises DecodeError, and never hangs.

Whatever decodes must also print (text, grep and JSON): the collector runs the
whole path on every datagram a stranger sends it.
"""

from __future__ import annotations

import ipaddress
import json
import struct

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hsflowd_py.collector.jsonout import format_json
from hsflowd_py.collector.text import Received, datagram_view, format_grep, format_text
from hsflowd_py.sflow.codec import decode_datagram, encode_datagram
from hsflowd_py.sflow.records import (
    ExtendedTcpInfo,
    ExtendedTimestamp,
    HostAdapter,
    HostAdapters,
    HostDescription,
    PortName,
    SampledHeader,
)
from hsflowd_py.sflow.samples import CounterSample, Datagram, FlowSample, UnknownRecord, UnknownSample
from hsflowd_py.sflow.xdr import DecodeError

FRAME = bytes.fromhex(
    "7a65a9ff20ba76bf27fd16ee080045000034248740004006003b0afc00010afc0002" "9df2145191d8de9b00000000a002faf016290000"
)


def rich_datagram() -> bytes:
    flow = FlowSample(
        0,
        8,
        10,
        10,
        0,
        0x3FFFFFFF,
        8,
        sequence=1,
        records=[
            ExtendedTcpInfo(2, 1448, 536),
            ExtendedTimestamp(1795498133315913000),
            SampledHeader(1, len(FRAME) + 4, 4, FRAME),
        ],
    )
    counters = CounterSample(
        2,
        1,
        sequence=1,
        records=[
            HostAdapters([HostAdapter(4, [b"\x02\xfc\0\0\0\x01", b"\x02\xfc\0\0\0\x02"])]),
            HostDescription("vm", bytes(range(16)), 3, 2, "6.1"),
        ],
    )
    return encode_datagram(Datagram(ipaddress.ip_address("192.0.2.2"), 100000, 1, 3487, [flow, counters]))


RICH = rich_datagram()
RECEIVED = Received("192.0.2.9", 1, 2)


def decode_and_print(data: bytes) -> Datagram | None:
    """The collector's whole path; None when the datagram is refused."""
    try:
        datagram = decode_datagram(data)
    except DecodeError:
        return None
    view = datagram_view(datagram, len(data), RECEIVED)
    assert format_text(view).endswith("endDatagram   =================================\n")
    assert len(format_grep(view).splitlines()) == len(format_text(view).splitlines())
    json.loads(format_json(view))
    json.loads(format_json(view, indent=True))
    return datagram


def test_the_rich_datagram_decodes() -> None:
    assert decode_and_print(RICH) is not None


def test_every_truncation_is_a_decode_error() -> None:
    for n in range(len(RICH)):
        with pytest.raises(DecodeError):
            decode_datagram(RICH[:n])


def test_trailing_bytes_are_ignored_as_sflowtool_ignores_them() -> None:
    """goflow2-2 in ../shared/vectors/devices: sflowtool decodes the samples and ignores 332 bytes after them."""
    assert decode_datagram(RICH + b"\0\0\0\0" * 83) == decode_datagram(RICH)


def put_u32(data: bytes, offset: int, value: int) -> bytes:
    return data[:offset] + struct.pack(">I", value) + data[offset + 4 :]


FIRST_SAMPLE_LENGTH = 28 + 4  # IPv4 datagram header, then the first sample's tag
FIRST_RECORD_LENGTH = FIRST_SAMPLE_LENGTH + 4 + 44 + 4  # flow sample header (11 words), then the record tag


@pytest.mark.parametrize("length", [0xFFFFFFFC, len(RICH), 4])
def test_sample_length_not_matching_the_datagram_is_a_decode_error(length: int) -> None:
    with pytest.raises(DecodeError, match="sample 0"):
        decode_datagram(put_u32(RICH, FIRST_SAMPLE_LENGTH, length))


@pytest.mark.parametrize("length", [0xFFFFFFFF, 0x7FFFFFFF, 1000, 4, 0])
def test_record_length_not_matching_its_layout_is_a_decode_error(length: int) -> None:
    with pytest.raises(DecodeError, match="record 0"):
        decode_datagram(put_u32(RICH, FIRST_RECORD_LENGTH, length))


@pytest.mark.parametrize(
    ("offset", "message"),
    [
        (24, "samples exceeds the limit"),  # samples in the datagram
        (FIRST_SAMPLE_LENGTH + 44, "records exceeds the limit"),  # records in the flow sample
    ],
)
def test_huge_counts_are_refused_at_once(offset: int, message: str) -> None:
    with pytest.raises(DecodeError, match=message):
        decode_datagram(put_u32(RICH, offset, 0xFFFFFFFF))


@pytest.mark.parametrize("count", [0xFFFFFFFF, 65536, 3])
def test_huge_array_counts_cannot_run_past_the_record(count: int) -> None:
    adapters = encode_datagram(
        Datagram(ipaddress.ip_address("10.0.0.1"), 1, 1, 1, [CounterSample(2, 1, [HostAdapters([])])])
    )
    with pytest.raises(DecodeError):
        decode_datagram(put_u32(adapters, len(adapters) - 4, count))


def test_bad_version_and_address_type_are_decode_errors() -> None:
    with pytest.raises(DecodeError, match="version 4"):
        decode_datagram(put_u32(RICH, 0, 4))
    with pytest.raises(DecodeError, match="address type 3"):
        decode_datagram(put_u32(RICH, 4, 3))


def test_unknown_records_are_skipped_by_length_and_printed_as_sflowtool_does() -> None:
    unknown = UnknownRecord((4413 << 12) | 5, b"abcdefg")
    datagram = Datagram(
        ipaddress.ip_address("10.0.0.1"),
        1,
        1,
        1,
        [
            CounterSample(0, 3, [unknown, PortName("eth0")], sequence=9),
            FlowSample(0, 3, 1, 1, 0, 1, 2, [UnknownRecord(2000, b"")], sequence=1),
        ],
    )
    decoded = decode_and_print(encode_datagram(datagram))
    assert decoded is not None
    assert decoded.samples[0].records == [unknown, PortName("eth0")]
    view = datagram_view(decoded, 0, RECEIVED)
    lines = format_text(view).splitlines()
    assert lines[lines.index("counterBlock_tag 4413:5") + 1] == "skipping unknown counters_sample_element: 4413:5 len=7"
    assert lines[lines.index("counterBlock_tag 0:1005") + 1] == "ifName eth0"
    assert "skipping unknown flow_sample_element: 0:2000 len=0" in lines
    elements = json.loads(format_json(view))["samples"][0]["elements"]
    assert elements == [{"counterBlock_tag": "4413:5"}, {"counterBlock_tag": "0:1005", "ifName": "eth0"}]


def test_unknown_sample_types_are_skipped_by_length() -> None:
    datagram = Datagram(
        ipaddress.ip_address("10.0.0.1"),
        1,
        1,
        1,
        [
            UnknownSample(6, b"\0" * 12),
            CounterSample(0, 3, [PortName("eth0")]),
        ],
    )
    decoded = decode_and_print(encode_datagram(datagram))
    assert decoded == datagram
    view = datagram_view(decoded, 0, RECEIVED)
    lines = format_text(view).splitlines()
    assert lines[lines.index("sampleType_tag 0:6") + 1] == "skipping unknown sample: 0:6 len=12"
    assert json.loads(format_json(view))["samples"][0] == {"sampleType_tag": "0:6"}


@settings(max_examples=3000, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=600))
def test_random_bytes(data: bytes) -> None:
    decode_and_print(data)


@settings(max_examples=3000, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=300))
def test_random_bytes_after_a_valid_header(tail: bytes) -> None:
    decode_and_print(RICH[:28] + tail)


@settings(max_examples=3000, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.tuples(st.integers(0, len(RICH) - 1), st.integers(0, 255)), min_size=1, max_size=6))
def test_corrupted_valid_datagrams(changes: list[tuple[int, int]]) -> None:
    data = bytearray(RICH)
    for offset, value in changes:
        data[offset] = value
    decode_and_print(bytes(data))


def test_a_record_length_declared_without_its_padding_decodes_as_in_sflowtool() -> None:
    """sflowtool checks a record's length rounded up to 4 (lengthCheck); some agents declare a sampled
    header's record length without the opaque's padding (16 + 13 = 29 bytes, not 32)."""
    header = SampledHeader(1, 64, 4, bytes(range(13)))
    datagram = Datagram(ipaddress.ip_address("10.0.0.1"), 1, 1, 1, [FlowSample(0, 8, 1, 1, 0, 1, 2, [header])])
    data = bytearray(encode_datagram(datagram))
    at = data.index(struct.pack(">II", 1, 32))  # the record's tag and length
    struct.pack_into(">I", data, at + 4, 29)
    assert decode_datagram(bytes(data)) == datagram
