"""Flow metrics: the flow key of a sampled header, and the bounded top-N table with its ``other`` series."""

from __future__ import annotations

import ipaddress
import json
import random
import struct
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hsflowd_py.collector.exporter.flowkey import flow_key, protocol_name, render_address
from hsflowd_py.collector.exporter.topflows import TopFlows
from hsflowd_py.collector.pcapfile import read_pcap
from hsflowd_py.sflow.codec import decode_datagram
from hsflowd_py.sflow.records import SampledHeader
from hsflowd_py.sflow.samples import FlowSample

VECTORS = Path("/work/shared/vectors")


def _labels(key: object) -> tuple[str, ...]:
    return (str(key),)


@pytest.mark.skipif(not (VECTORS / "host-flows.pcap").is_file(), reason="shared sFlow vectors absent")
def test_flow_keys_of_real_headers_match_sflowtools_decode() -> None:
    with open(VECTORS / "host-flows.pcap", "rb") as f:
        headers = [
            r
            for p in read_pcap(f)
            for s in decode_datagram(p.payload).samples
            if isinstance(s, FlowSample)
            for r in s.records
            if isinstance(r, SampledHeader)
        ]
    reference = [
        next(e for e in s["elements"] if e.get("flowSampleType") == "HEADER")
        for line in (VECTORS / "host-flows.jsonl").read_text().splitlines()
        for s in json.loads(line)["samples"]
        if s["sampleType"] == "FLOWSAMPLE"
    ]
    assert len(headers) == len(reference) == 653
    for record, ref in zip(headers, reference, strict=True):
        src, dst, protocol, port = flow_key(record.header_protocol, record.header)  # type: ignore[misc]
        ports = [int(ref[k]) for k in ("TCPSrcPort", "TCPDstPort") if k in ref]
        assert (render_address(src), render_address(dst), protocol) == (ref["srcIP"], ref["dstIP"], 6 if ports else 1)
        assert port == (min(ports) if ports else 0)


def _ipv6(next_header: int, payload: bytes) -> bytes:
    src, dst = ipaddress.ip_address("fd00::1").packed, ipaddress.ip_address("fd00::2").packed
    return struct.pack(">IHBB", 0x60000000, len(payload), next_header, 64) + src + dst + payload


def test_ipv6_extension_headers_vlans_and_bare_ip() -> None:
    udp = struct.pack(">HHHH", 40000, 53, 8, 0)
    hop_by_hop = bytes([17, 0]) + bytes(6)
    frame = bytes(12) + b"\x81\x00\x00\x05\x86\xdd" + _ipv6(0, hop_by_hop + udp)
    key = flow_key(1, frame)
    assert key is not None and key[2:] == (17, 53) and render_address(key[0]) == "fd00::1"
    later_fragment = bytes([17, 0, 0x05, 0x00]) + bytes(4)
    assert flow_key(12, _ipv6(44, later_fragment + udp))[2:] == (17, 0)  # type: ignore[index]
    first_fragment = bytes([17, 0, 0, 1]) + bytes(4)
    assert flow_key(12, _ipv6(44, first_fragment + udp))[2:] == (17, 53)  # type: ignore[index]
    ip4 = bytes.fromhex("45000028000000054006") + bytes(2) + bytes([10, 0, 0, 1, 10, 0, 0, 2]) + udp
    assert flow_key(11, ip4)[2:] == (6, 0)  # type: ignore[index]  # a later IPv4 fragment: no ports
    assert flow_key(1, bytes(12) + b"\x08\x00" + ip4)[2:] == (6, 0)  # type: ignore[index]  # the same in Ethernet
    assert flow_key(1, bytes(12) + b"\x08\x00" + b"\x65" + ip4[1:]) is None  # EtherType IPv4, version 6
    assert flow_key(1, bytes(12) + b"\x08\x06" + bytes(28)) is None  # ARP
    assert flow_key(15, bytes(64)) is None
    assert protocol_name(6) == "tcp" and protocol_name(47) == "47"


@given(st.integers(0, 20), st.binary(max_size=300))
@settings(max_examples=500)
def test_flow_key_never_raises(protocol: int, header: bytes) -> None:
    key = flow_key(protocol, header)
    assert key is None or (len(key[0]) in (4, 16) and 0 <= key[3] < 65536)


def test_the_table_stays_bounded_and_a_heavy_flow_keeps_its_place_through_churn() -> None:
    table = TopFlows(10, _labels, capacity=100)
    rng = random.Random(7)
    added = 0
    for second in range(1, 101):
        for _ in range(1000):
            table.add(rng.getrandbits(64), 100, 1, second)
            added += 100
            assert len(table.flows) <= 100
        table.add("heavy", 50_000, 50, second)
        added += 50_000
        table.rank(second)
    exported = dict((labels, nbytes) for labels, nbytes, _ in table.series())
    assert len(exported) <= 10 and ("heavy",) in exported
    assert sum(exported.values()) + table.other_bytes == added  # every byte in exactly one series


def test_series_only_grow_and_flows_leave_and_return_to_the_top() -> None:
    table = TopFlows(1, _labels, smoothing=1.0, expiry=1000)
    history: dict[tuple[str, ...], int] = {}
    for second in range(1, 40):
        fast = "a" if (second // 10) % 2 == 0 else "b"
        table.add(fast, 10_000, 10, second)
        table.add("b" if fast == "a" else "a", 100, 1, second)
        table.rank(second)
        for labels, nbytes, _ in table.series():
            assert nbytes >= history.get(labels, 0)
            history[labels] = nbytes
        assert len(list(table.series())) <= 1
    assert set(history) == {("a",), ("b",)}


def test_idle_flows_are_forgotten() -> None:
    table = TopFlows(5, _labels, expiry=30)
    table.add("x", 100, 1, 0.5)
    table.rank(1)
    assert [labels for labels, _, _ in table.series()] == [("x",)]
    for second in range(2, 40):
        table.rank(second)
    assert table.flows == {} and list(table.series()) == []
