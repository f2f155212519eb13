"""Flow samples as Wireshark sees them: an independent decoder checks every field it can read.

Wireshark 4.0's sFlow dissector knows 0:1 (sampled header) but not 0:1043 (timestamp), and it
does not skip a record it does not know: it reads on from the unknown record's body.  The
agent therefore puts the sampled header first (``flow_encoder.py``): Wireshark decodes the
whole 0:1 record and the packet inside it (Ethernet, IP, TCP/UDP/ICMP), then shows 0:1043 as
"Unknown sample format" with its tag and length, the last record of the sample, so nothing
after it is misread.  The timestamp's value is the one field it cannot check; the
collector's decode does (``test_pcap_e2e.py``).  Counter samples are off here (polling = 0):
Wireshark misreads the host counter records it does not know (2000-2010) and marks the rest
of their datagram malformed.

What is checked, for every flow sample in the capture, against the bundled collector's
decode of the same capture and against the traffic that was sent: sequence number, source,
rate, pool, drops, input and output, record count and formats, header protocol, frame
length, stripped bytes, header length, the header bytes, and the addresses and ports of the
packet inside.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import time
import xml.etree.ElementTree as ET
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

import pytest
from pcap_netns import veth_pair
from procs import free_udp_port, python, start_agent
from test_pcap_e2e import iperf, iperf_server, wait_for_log, write_config

pytestmark = [pytest.mark.root, pytest.mark.skipif(shutil.which("tshark") is None, reason="tshark not installed")]


def pdml_flow_samples(pcap: Path, port: int) -> list[list[dict[str, list[str]]]]:
    """Per datagram, per flow sample: every field name under the sample with its shown values, in order."""
    out = subprocess.run(
        ["tshark", "-r", str(pcap), "-d", f"udp.port=={port},sflow", "-T", "pdml"],
        capture_output=True,
        check=True,
    ).stdout
    datagrams = []
    for packet in ET.fromstring(out).iter("packet"):
        sflow = next(p for p in packet.iter("proto") if p.get("name") == "sflow")
        samples = []
        for sample in sflow.findall("field"):
            if not (sample.get("show") or "").startswith("Expanded flow sample"):
                continue
            fields: dict[str, list[str]] = defaultdict(list)
            for f in sample.iter("field"):
                if f.get("name"):
                    fields[f.get("name", "")].append(f.get("show", ""))
            samples.append(fields)
        datagrams.append(samples)
    return datagrams


def wait_for_capture(tshark: subprocess.Popen[str]) -> None:
    """tshark says "Capturing on ..." once its capture runs: a fixed sleep is too short on a busy machine."""
    assert tshark.stderr is not None
    for line in tshark.stderr:
        if line.startswith("Capturing on"):
            return
    pytest.fail(f"tshark did not start capturing (exit status {tshark.wait()})")


def test_wireshark_reads_every_flow_sample_field_it_knows(tmp_path: Path) -> None:
    port = free_udp_port()
    cap = tmp_path / "flows.pcap"
    with veth_pair("pcws") as v, iperf_server(v):
        conf = write_config(tmp_path, port, f"pcap {{ dev = {v.host_dev} sampling = 2 }}", polling=0)
        tshark = subprocess.Popen(
            ["tshark", "-q", "-i", "lo", "-f", f"udp port {port}", "-F", "pcap", "-w", str(cap)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        try:
            wait_for_capture(tshark)
            with start_agent(conf, tmp_path / "auto") as agent:
                wait_for_log(agent, f"sampling {v.host_dev} ")
                subprocess.run(["ping", "-c", "40", "-i", "0.01", v.ns_ip], check=True, capture_output=True)
                iperf(v, "-n", "1M", "-l", "64K")
                iperf(v, "-u", "-R", "-b", "10M", "-l", "500", "-n", "200K")
                time.sleep(1.5)
            time.sleep(1)
        finally:
            os.kill(tshark.pid, signal.SIGTERM)
            tshark.wait(10)
        ifindex = v.host_ifindex
    ours = subprocess.run(python("-m", "hsflowd_py.collector", "-r", str(cap), "-j"), capture_output=True, text=True)
    decoded = [json.loads(line) for line in ours.stdout.splitlines()]
    theirs = pdml_flow_samples(cap, port)
    assert len(theirs) == len(decoded) >= 3

    seen: Counter[str] = Counter()
    for wireshark, collector in zip(theirs, decoded, strict=True):
        flows = [s for s in collector["samples"] if s["sampleType"] == "FLOWSAMPLE"]
        assert len(wireshark) == len(flows) == int(collector["samplesInPacket"])
        for w, c in zip(wireshark, flows, strict=True):
            check_sample(w, c, ifindex)
            h = next(e for e in c["elements"] if e["flowBlock_tag"] == "0:1")
            if h.get("srcIP") in (v.host_ip, v.ns_ip):
                assert {h["srcIP"], h["dstIP"]} == {v.host_ip, v.ns_ip}
                assert w["ip.src"][-1] == h["srcIP"] and w["ip.dst"][-1] == h["dstIP"]
                proto = {"1": "icmp", "6": "tcp", "17": "udp"}[h["IPProtocol"]]
                if proto != "icmp":
                    label = proto.upper()
                    assert w[f"{proto}.srcport"][-1] == h[f"{label}SrcPort"]
                    assert w[f"{proto}.dstport"][-1] == h[f"{label}DstPort"]
                    assert "5235" in (h[f"{label}SrcPort"], h[f"{label}DstPort"])
                seen[proto] += 1
    assert seen["icmp"] >= 20 and seen["tcp"] >= 50 and seen["udp"] >= 50, seen


def first(fields: dict[str, list[str]], name: str) -> str:
    return fields[name][0]


def check_sample(w: dict[str, list[str]], c: dict[str, Any], ifindex: int) -> None:
    """One flow sample, field by field: Wireshark's reading against the collector's."""
    assert first(w, "sflow.flow_sample.sequence_number") == c["sampleSequenceNo"]
    assert (
        f"{first(w, 'sflow.flow_sample.source_id_type')}:{first(w, 'sflow.flow_sample.source_id_index')}"
        == (c["sourceId"])
        == f"0:{ifindex}"
    )
    assert first(w, "sflow.flow_sample.sampling_rate") == c["meanSkipCount"] == "2"
    assert first(w, "sflow.flow_sample.sample_pool") == c["samplePool"]
    assert first(w, "sflow.flow_sample.dropped_packets") == c["dropEvents"] == "0"
    assert first(w, "sflow.flow_sample.input_interface_value") == c["inputPort"]
    assert first(w, "sflow.flow_sample.output_interface_value") == c["outputPort"]
    assert {c["inputPort"], c["outputPort"]} in ({str(ifindex), "1073741823"}, {"0"})
    assert first(w, "sflow.flow_sample.flow_record") == "2"
    assert w["sflow_245.flow_record_format"] == ["1", "1043"]
    assert w["sflow_5.flow_data_length"][1] == "8"  # 0:1043: a u64 of nanoseconds
    h = next(e for e in c["elements"] if e["flowBlock_tag"] == "0:1")
    assert first(w, "sflow_245.header_protocol") == h["headerProtocol"] == "1"
    assert first(w, "sflow_245.header.frame_length") == h["sampledPacketSize"]
    assert first(w, "sflow_245.header.payload_stripped") == h["strippedBytes"] == "4"
    assert first(w, "sflow_245.header.sampled_header_length") == h["headerLen"]
    shown = first(w, "sflow_245.header").replace(":", "").upper()  # Wireshark shows the XDR padding too
    length = 2 * int(h["headerLen"])
    assert shown[:length] == h["headerBytes"].replace("-", "") and set(shown[length:]) <= {"0"}
    assert w["eth.src"][0].replace(":", "") == h["srcMAC"] and w["eth.dst"][0].replace(":", "") == h["dstMAC"]
