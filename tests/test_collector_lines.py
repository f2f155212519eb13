"""``-l``: FLOW and CNTR lines, checked against sflowtool's own decodes of real captures.

Every FLOW line of ``host-flows.pcap`` must carry the values sflowtool 6.11
decoded for that sample (its JSON), and every line of the agent captures must
equal what the real sflowtool 6.11 printed with ``-l`` (one CNTR line per
counter sample, all zeros without a 0:1 record).
"""

from __future__ import annotations

import ipaddress
import json
import struct
import subprocess
from pathlib import Path
from typing import Any

import pytest
from procs import python

from hsflowd_py.collector.lines import format_lines
from hsflowd_py.sflow.records import INTERNAL_PORT, SampledHeader
from hsflowd_py.sflow.samples import CounterSample, Datagram, FlowSample

VECTORS = Path("/work/shared/vectors")
ORACLE = Path(__file__).parent / "fixtures" / "sflowtool-6.11"
needs_vectors = pytest.mark.skipif(not (VECTORS / "host-flows.pcap").is_file(), reason="shared sFlow vectors absent")
GENERIC = ["ifIndex", "networkType", "ifSpeed", "ifDirection", "ifStatus", "ifInOctets", "ifInUcastPkts"]
GENERIC += ["ifInMulticastPkts", "ifInBroadcastPkts", "ifInDiscards", "ifInErrors", "ifInUnknownProtos"]
GENERIC += ["ifOutOctets", "ifOutUcastPkts", "ifOutMulticastPkts", "ifOutBroadcastPkts", "ifOutDiscards"]
GENERIC += ["ifOutErrors", "ifPromiscuousMode"]


def lines_of(name: str) -> list[list[str]]:
    done = subprocess.run(
        python("-m", "hsflowd_py.collector", "-r", str(VECTORS / f"{name}.pcap"), "-l"),
        capture_output=True,
        text=True,
        check=True,
    )
    return [line.split(",") for line in done.stdout.splitlines()]


def reference(name: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in (VECTORS / f"{name}.jsonl").read_text().splitlines()]


@needs_vectors
def test_flow_lines_carry_what_sflowtool_decoded() -> None:
    flows = [line for line in lines_of("host-flows") if line[0] == "FLOW"]
    samples = [s for d in reference("host-flows") for s in d["samples"] if s["sampleType"] == "FLOWSAMPLE"]
    assert len(flows) == len(samples) == 653
    for line, sample in zip(flows, samples, strict=True):
        h = next(e for e in sample["elements"] if e.get("flowSampleType") == "HEADER")
        icmp = "ICMPType" in h
        expected = [
            "FLOW",
            "192.0.2.2",
            sample["inputPort"],
            sample["outputPort"],
            h["srcMAC"],
            h["dstMAC"],
            f"0x{int(h['ethernet_type']):04x}",
            "0",
            "0",
            h["srcIP"],
            h["dstIP"],
            h["IPProtocol"],
            f"0x{int(h['IPTOS']):02x}",
            h["IPTTL"],
            h["ICMPType"] if icmp else h["TCPSrcPort"],
            h["ICMPCode"] if icmp else h["TCPDstPort"],
            "0x00" if icmp else f"0x{int(h['TCPFlags']):02x}",
            h["sampledPacketSize"],
            h["IPSize"],
            sample["meanSkipCount"],
        ]
        assert line == expected


@needs_vectors
@pytest.mark.parametrize("name", ["host-flows", "docker-containers", "host-ipv6-agent"])
def test_lines_equal_sflowtool_line_by_line(name: str) -> None:
    """The reference: real sflowtool 6.11's ``-l`` of the same capture (tests/fixtures/sflowtool-6.11)."""
    ours = [",".join(line) for line in lines_of(name)]
    assert ours == (ORACLE / f"{name}.lines").read_text().splitlines()
    assert any(line.startswith("CNTR,192.0.2.2,0,0,0,") for line in ours) or name == "host-ipv6-agent"


def _header_sample(protocol: int, header: bytes, frame_length: int, stripped: int = 4) -> FlowSample:
    return FlowSample(0, 5, 256, 0, 0, 5, INTERNAL_PORT, [SampledHeader(protocol, frame_length, stripped, header)])


def _line(sample: FlowSample | CounterSample, agent: str = "192.0.2.1") -> str:
    return format_lines(Datagram(ipaddress.ip_address(agent), 1, 1, 1, [sample])).rstrip("\n")


def test_ipv6_flow_line_counts_the_link_header_in_ipsize_as_sflowtool_does() -> None:
    src, dst = ipaddress.ip_address("fd00::1"), ipaddress.ip_address("fd00::2")
    udp = struct.pack(">HHHH", 5353, 53, 16, 0) + bytes(8)
    ip6 = struct.pack(">IHBB", 0x6A000000, len(udp), 17, 63) + src.packed + dst.packed + udp
    frame = bytes.fromhex("0200000000020200000000018100" "a064" "86dd") + ip6
    assert _line(_header_sample(1, frame, len(frame) + 4), "fd00::9") == (
        "FLOW,fd00:0000:0000:0000:0000:0000:0000:0009,5,1073741823,020000000001,020000000002,0x86dd,100,0,"
        "fd00:0000:0000:0000:0000:0000:0000:0001,fd00:0000:0000:0000:0000:0000:0000:0002,17,0xa0,63,5353,53,0x00,"
        f"{len(frame) + 4},{len(frame)},256"
    )


def test_bare_ipv4_header_and_a_sample_without_header() -> None:
    ip = bytes.fromhex("4510003c00004000fe01") + bytes(2) + bytes([10, 0, 0, 1, 10, 0, 0, 2]) + bytes([8, 0]) + bytes(6)
    assert _line(_header_sample(11, ip, 60, 0)) == (
        "FLOW,192.0.2.1,5,1073741823,000000000000,000000000000,0x0000,0,0,10.0.0.1,10.0.0.2,1,0x10,254,8,0,0x00,60,60,256"
    )
    empty = FlowSample(0, 5, 10, 0, 0, 1, 2, [])
    assert _line(empty) == "FLOW,192.0.2.1,1,2,000000000000,000000000000,0x0000,0,0,-,-,0,0x00,0,0,0,0x00,0,0,10"
