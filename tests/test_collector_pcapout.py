"""``-t``/``-T`` on hsflowd's own captures, checked by tshark against sflowtool's decodes of the same samples.

The reference: ``/work/shared/vectors/host-flows.jsonl`` is what sflowtool
6.11 decoded from the 653 flow samples in ``host-flows.pcap``.  Every
sampled header written by ``sflowtool-py -r host-flows.pcap -t`` must read
back in tshark with sflowtool's addresses and ports, the length sflowtool
reports less the stripped FCS, the header length sflowtool reports, and the
sample's own 0:1043 timestamp.
"""

from __future__ import annotations

import io
import ipaddress
import json
import struct
import subprocess
from pathlib import Path
from typing import Any

import pytest
from procs import python

from hsflowd_py.collector import pcapout
from hsflowd_py.collector.pcapout import PcapNgWriter, PcapWriter
from hsflowd_py.collector.text import Received
from hsflowd_py.sflow.codec import decode_datagram, encode_datagram
from hsflowd_py.sflow.records import INTERNAL_PORT, ExtendedEgressQueue, ExtendedTimestamp, SampledHeader
from hsflowd_py.sflow.samples import Datagram, DiscardSample, FlowSample

VECTORS = Path("/work/shared/vectors")
needs_vectors = pytest.mark.skipif(not (VECTORS / "host-flows.pcap").is_file(), reason="shared sFlow vectors absent")
FIELDS = ["frame.len", "frame.cap_len", "frame.time_epoch", "ip.src", "ip.dst", "tcp.srcport", "tcp.dstport"]
FIELDS += ["frame.interface_name", "frame.packet_flags_direction"]


def reference_samples() -> list[dict[str, Any]]:
    out = []
    for line in (VECTORS / "host-flows.jsonl").read_text().splitlines():
        for sample in json.loads(line)["samples"]:
            if sample["sampleType"] == "FLOWSAMPLE":
                header = next(e for e in sample["elements"] if e.get("flowSampleType") == "HEADER")
                stamp = next(e for e in sample["elements"] if "timestamp_nS" in e)
                out.append({**sample, **header, **stamp})
    return out


def through_tshark(flag: str) -> list[list[str]]:
    capture = subprocess.run(
        python("-m", "hsflowd_py.collector", "-r", str(VECTORS / "host-flows.pcap"), flag),
        capture_output=True,
        check=True,
    ).stdout
    fields = [x for f in FIELDS for x in ("-e", f)]
    shown = subprocess.run(
        ["tshark", "-r", "-", "-T", "fields", "-E", "separator=;", *fields],
        input=capture,
        capture_output=True,
        check=True,
    )
    return [line.split(";") for line in shown.stdout.decode().splitlines()]


@needs_vectors
@pytest.mark.parametrize("flag", ["-t", "-T"])
def test_every_sampled_header_reads_back_as_sflowtool_decoded_it(flag: str) -> None:
    reference = reference_samples()
    rows = through_tshark(flag)
    assert len(rows) == len(reference) == 653
    for ref, row in zip(reference, rows, strict=True):
        frame_len, cap_len, epoch, src, dst, sport, dport, ifname, direction = row
        assert int(frame_len) == int(ref["sampledPacketSize"]) - int(ref["strippedBytes"])
        assert int(cap_len) == int(ref["headerLen"])
        ports = (ref.get("TCPSrcPort", ""), ref.get("TCPDstPort", ""))  # "" for the pings
        assert (src, dst, sport, dport) == (ref["srcIP"], ref["dstIP"], *ports)
        seconds, fraction = epoch.split(".")
        ns = int(ref["timestamp_nS"])
        if flag == "-t":
            assert (int(seconds), int(fraction[:6])) == (ns // 10**9, ns // 1000 % 10**6)
        else:
            assert int(seconds) * 10**9 + int(fraction) == ns
            assert ifname == "192.0.2.2 0:8"
            outbound = ref["inputPort"] == str(INTERNAL_PORT)
            assert int(direction, 16) & 3 == (2 if outbound else 1)


def _datagram(*samples: FlowSample | DiscardSample) -> Datagram:
    return Datagram(ipaddress.ip_address("192.0.2.9"), 100000, 1, 1000, list(samples))


def _flow(protocol: int, header: bytes, frame_length: int, *extra: object) -> FlowSample:
    return FlowSample(0, 3, 100, 100, 0, 3, INTERNAL_PORT, [SampledHeader(protocol, frame_length, 4, header), *extra])


IPV4_PACKET = bytes.fromhex("450000340000400040060000c0000201c00002020050d431000000000000000050020000abcd0000")


def _records(stream: bytes) -> list[tuple[int, int, int, int, bytes]]:
    """(seconds, microseconds, caplen, length, data) of each record of a classic little-endian pcap stream."""
    assert struct.unpack("<IHHiIII", stream[:24]) == (0xA1B2C3D4, 2, 4, 0, 0, 65535, 1)
    out, at = [], 24
    while at < len(stream):
        seconds, micros, caplen, length = struct.unpack_from("<IIII", stream, at)
        out.append((seconds, micros, caplen, length, stream[at + 16 : at + 16 + caplen]))
        at += 16 + caplen
    return out


def test_bare_ip_headers_get_an_ethernet_header_and_other_protocols_are_counted() -> None:
    out = io.BytesIO()
    writer = PcapWriter(out)
    received = Received("192.0.2.9", 1_700_000_000, 250_000)
    wifi = _flow(15, bytes(40), 100)
    writer.write(_datagram(_flow(11, IPV4_PACKET, len(IPV4_PACKET) + 4), wifi), 0, received)
    [(seconds, micros, caplen, length, data)] = _records(out.getvalue())
    assert (seconds, micros) == (1_700_000_000, 250_000)  # no 0:1043: the receive time
    assert data == bytes(12) + b"\x08\x00" + IPV4_PACKET and caplen == length == 14 + len(IPV4_PACKET)
    assert writer.skipped == 1


def test_a_frame_length_shorter_than_the_header_never_makes_an_invalid_record() -> None:
    out = io.BytesIO()
    frame = bytes(12) + b"\x08\x00" + IPV4_PACKET
    stamp = ExtendedTimestamp(1_795_498_133_315_913_123)
    PcapWriter(out).write(_datagram(_flow(1, frame, 0, stamp)), 0, Received("-", 0, 0, 5, 6))
    [(seconds, micros, caplen, length, _)] = _records(out.getvalue())
    assert (seconds, micros) == (1_795_498_133, 315_913)
    assert caplen == length == len(frame)


def test_pcap_input_time_is_used_when_there_is_no_timestamp_record() -> None:
    out = io.BytesIO()
    PcapWriter(out).write(_datagram(_flow(1, bytes(60), 68)), 0, Received("-", 0, 0, 1_600_000_000, 42))
    [(seconds, micros, caplen, length, _)] = _records(out.getvalue())
    assert (seconds, micros, caplen, length) == (1_600_000_000, 42, 60, 64)


def test_pcapng_has_one_interface_per_agent_and_source() -> None:
    out = io.BytesIO()
    writer = PcapNgWriter(out, "test")
    other_source = FlowSample(0, 4, 10, 10, 0, INTERNAL_PORT, 4, [SampledHeader(1, 64, 4, bytes(60))])
    for _ in range(2):
        writer.write(_datagram(_flow(1, bytes(60), 64), other_source), 0, Received("-", 0, 0, 1, 0))
    stream = out.getvalue()
    blocks = []
    at = 0
    while at < len(stream):
        kind, total = struct.unpack_from("<II", stream, at)
        assert struct.unpack_from("<I", stream, at + total - 4)[0] == total
        blocks.append((kind, stream[at + 8 : at + total - 4]))
        at += total
    assert [k for k, _ in blocks] == [0x0A0D0D0A, 1, 6, 1, 6, 6, 6]
    assert [struct.unpack_from("<I", body)[0] for k, body in blocks if k == 6] == [0, 1, 0, 1]
    assert b"192.0.2.9 0:3" in blocks[1][1] and b"192.0.2.9 0:4" in blocks[3][1]


def test_cli_reports_skipped_headers(tmp_path: Path) -> None:
    payload = encode_datagram(_datagram(_flow(15, bytes(40), 100)))
    udp = struct.pack(">HHHH", 6343, 6343, 8 + len(payload), 0) + payload
    ip = struct.pack(">BBHHHBBH4s4s", 0x45, 0, 20 + len(udp), 0, 0, 64, 17, 0, bytes(4), bytes(4)) + udp
    frame = bytes(12) + b"\x08\x00" + ip
    capture = tmp_path / "one.pcap"
    capture.write_bytes(
        struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 1)
        + struct.pack("<IIII", 1, 0, len(frame), len(frame))
        + frame
    )
    done = subprocess.run(python("-m", "hsflowd_py.collector", "-r", str(capture), "-t"), capture_output=True)
    assert done.returncode == 0 and len(done.stdout) == 24
    assert b"1 sampled headers of a protocol a capture cannot hold were skipped" in done.stderr


def test_pcapng_forgets_the_oldest_interface_rather_than_remember_every_source(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(pcapout, "MAX_INTERFACES", 2)
    out = io.BytesIO()
    writer = PcapNgWriter(out, "test")
    for ds_index in (3, 4, 5, 3):
        sample = FlowSample(0, ds_index, 10, 10, 0, INTERNAL_PORT, 4, [SampledHeader(1, 64, 4, bytes(60))])
        writer.write(_datagram(sample), 0, Received("-", 0, 0, 1, 0))
    kinds = []
    stream = out.getvalue()
    at = 0
    while at < len(stream):
        kind, total = struct.unpack_from("<II", stream, at)
        kinds.append(kind)
        at += total
    assert kinds == [0x0A0D0D0A, 1, 6, 1, 6, 1, 6, 1, 6]  # 0:3 was forgotten for 0:5, and described again
    names = subprocess.run(
        ["tshark", "-r", "-", "-T", "fields", "-e", "frame.interface_name"], input=stream, capture_output=True
    ).stdout.decode()
    assert names.split() == ["192.0.2.9", "0:3", "192.0.2.9", "0:4", "192.0.2.9", "0:5", "192.0.2.9", "0:3"]


KILLER = bytes.fromhex(
    "00000005000000010af800010000000000000001000003e800000001000000030000006c0000000100000000000000010000000a000000"
    "64000000000000000000000001000000003fffffff0000000100000001000000380000000bffffffff000000000000002645000026000100"
    "00401100000af801010af8010204d2005000120000787878787878787878780000"
)
"""Issue #21 item 1: an IPv4 header sample whose frame length is 0xFFFFFFFF (+14 for the Ethernet header)."""


@pytest.mark.parametrize("writer", [PcapWriter, lambda out: PcapNgWriter(out, "test")])
def test_a_frame_length_near_2_to_the_32_is_clamped_not_fatal(writer: Any) -> None:
    out = io.BytesIO()
    writer(out).write(decode_datagram(KILLER), len(KILLER), Received("-", 0, 0, 5, 6))
    assert out.getvalue().count(b"\x45\x00\x00\x26") == 1  # the frame was written, with a 32-bit length


def test_compact_and_discard_samples_reach_pcap_and_pcapng(tmp_path: Path) -> None:
    """A switch's compact flow sample (../shared/vectors/devices) and a discard sample: tshark reads both back."""
    devices = VECTORS / "devices"
    if not devices.is_dir():
        pytest.skip("device vectors absent")
    frame = bytes(12) + b"\x08\x00" + IPV4_PACKET
    discard = DiscardSample(0, 3, 1, 7, 0, 258, [ExtendedEgressQueue(4), SampledHeader(1, len(frame) + 4, 4, frame)], 9)
    dgram = tmp_path / "discard.pcap"
    payload = encode_datagram(_datagram(discard))
    # a capture of two datagrams: a switch's compact flow sample, then our discard sample
    raw = (devices / "logstash-flow_sample_eth_vlan.pcap").read_bytes()
    udp_header = struct.pack(">HHHH", 40000, 6343, 8 + len(payload), 0)
    ip = struct.pack(">BBHHHBBH4s4s", 0x45, 0, 28 + len(payload), 0, 0, 64, 17, 0, bytes([192, 0, 2, 10]), bytes(4))
    eth = bytes(12) + b"\x08\x00" + ip + udp_header + payload
    dgram.write_bytes(raw + struct.pack("<IIII", 1, 0, len(eth), len(eth)) + eth)
    switch_sample = json.loads((devices / "logstash-flow_sample_eth_vlan.jsonl").read_text())["samples"][0]
    header = next(e for e in switch_sample["elements"] if e.get("flowSampleType") == "HEADER")
    for flag in ("-t", "-T"):
        capture = subprocess.run(
            python("-m", "hsflowd_py.collector", "-r", str(dgram), flag), capture_output=True, check=True
        ).stdout
        shown = subprocess.run(
            ["tshark", "-r", "-", "-T", "fields", "-e", "ip.src", "-e", "ip.dst"],
            input=capture,
            capture_output=True,
            check=True,
        ).stdout.decode().split("\n")
        assert shown[:2] == [f"{header['srcIP']}\t{header['dstIP']}", "192.0.2.1\t192.0.2.2"], flag
