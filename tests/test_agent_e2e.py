"""End to end on loopback: the agent's host counters, decoded by the bundled collector and by Wireshark."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest
from procs import ROOT, free_udp_port, json_datagrams, python, start_agent, start_collector


def meminfo_kb(key: str) -> int:
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1])
    raise KeyError(key)


def snmp(group: str, name: str) -> int:
    lines = [ln.split() for ln in Path("/proc/net/snmp").read_text().splitlines() if ln.startswith(group + ":")]
    return int(lines[1][lines[0].index(name)])


def adapters_expected() -> dict[int, str]:
    """Up, non-loopback interfaces with a MAC, veths excluded, as iproute2 (not sysfs) reports them."""
    links = json.loads(subprocess.run(["ip", "-j", "-d", "link", "show"], capture_output=True, check=True).stdout)
    out = {}
    for link in links:
        kind = link.get("linkinfo", {}).get("info_kind")
        mac = link.get("address", "")
        if link["ifname"] == "lo" or "UP" not in link["flags"] or kind == "veth" or mac in ("", "00:00:00:00:00:00"):
            continue
        out[link["ifindex"]] = mac.replace(":", "")
    return out


def example_config(tmp_path: Path, port: int) -> Path:
    text = (ROOT / "hsflowd.conf.example").read_text().replace("udpport = 6343", f"udpport = {port}")
    assert f"udpport = {port}" in text, "the example config should send to 127.0.0.1 udpport = 6343"
    conf = tmp_path / "hsflowd.conf"
    conf.write_text(text)
    return conf


def host_elements(datagram: dict[str, Any]) -> dict[str, dict[str, Any]] | None:
    for sample in datagram["samples"]:
        if sample["sourceId"] == "2:1":
            return {e["counterBlock_tag"]: e for e in sample["elements"]}
    return None


@pytest.fixture
def agent_and_collector(tmp_path: Path):
    port = free_udp_port()
    collector = start_collector(port, "-j")
    auto = tmp_path / "hsflowd.auto"
    agent = start_agent(example_config(tmp_path, port), auto)
    yield agent, collector, auto, port
    agent.stop()
    collector.stop()


def test_host_counters_match_the_machine(agent_and_collector: Any) -> None:
    agent, collector, auto, port = agent_and_collector
    hosts = []
    datagrams = []
    for d in json_datagrams(collector, 12):
        datagrams.append(d)
        if (h := host_elements(d)) is not None:
            hosts.append((d, h, time.time()))
        if len(hosts) == 2:
            break
    assert len(hosts) == 2, f"no host samples; agent stderr: {''.join(agent.stderr)[-2000:]}"
    d, h, _ = hosts[-1]
    assert d["datagramVersion"] == "5" and d["agentSubId"] == "100001"
    assert [int(x["packetSequenceNo"]) for x in datagrams] == list(range(1, len(datagrams) + 1))
    desc = h["0:2000"]
    assert desc["hostname"] == socket.gethostname()
    assert desc["os_name"] == "2" and desc["os_release"] == os.uname().release
    assert desc["machine_type"] == "3"
    cpu = h["0:2003"]
    assert int(cpu["cpu_num"]) == os.cpu_count()
    uptime = float(Path("/proc/uptime").read_text().split()[0])
    assert abs(int(cpu["cpu_uptime"]) - uptime) < 5
    assert int(h["0:2004"]["mem_total"]) == meminfo_kb("MemTotal") * 1024
    adapters = {int(a["ifIndex"]): a["mac_list"][0] for a in h["0:2001"]["adaptor_list"]}
    assert adapters == adapters_expected()
    assert abs(int(h["0:2009"]["tcpActiveOpens"]) - snmp("Tcp", "ActiveOpens")) < 50
    assert abs(int(h["0:2010"]["udpOutDatagrams"]) - snmp("Udp", "OutDatagrams")) < 1000
    assert abs(int(h["0:2007"]["ipInReceives"]) - snmp("Ip", "InReceives")) < 2000
    # polling = 2: consecutive host samples about 2 s apart in agent uptime
    t0 = int(hosts[0][0]["sysUpTime"])
    t1 = int(hosts[1][0]["sysUpTime"])
    assert 1500 <= t1 - t0 <= 3500
    text = auto.read_text()
    assert f"collector=127.0.0.1 {port}" in text and "polling=2" in text
    assert agent.stop() == 0


@pytest.mark.skipif(shutil.which("tshark") is None, reason="tshark not installed")
def test_wireshark_decodes_without_errors(tmp_path: Path) -> None:
    port = free_udp_port()
    cap = tmp_path / "agent.pcap"
    tshark = subprocess.Popen(
        ["tshark", "-q", "-i", "lo", "-f", f"udp port {port}", "-a", "duration:9", "-F", "pcap", "-w", str(cap)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    time.sleep(2)
    agent = start_agent(example_config(tmp_path, port), tmp_path / "auto")
    try:
        tshark.wait(timeout=30)
    finally:
        agent.stop()
        if tshark.poll() is None:
            os.kill(tshark.pid, signal.SIGTERM)
            tshark.wait()
    decode = ["tshark", "-r", str(cap), "-d", f"udp.port=={port},sflow"]
    fields = ["sflow_245.version", "sflow_245.agent", "sflow_245.sub_agent_id", "sflow_245.sequence_number"]
    fields += ["sflow_245.numsamples", "sflow_5.sample_length"]
    cmd = [*decode, "-T", "fields", "-E", "separator=;", *(x for f in fields for x in ("-e", f))]
    rows = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout.split()
    ours = subprocess.run(python("-m", "hsflowd_py.collector", "-r", str(cap), "-j"), capture_output=True, text=True)
    decoded = [json.loads(line) for line in ours.stdout.splitlines()]
    assert len(rows) == len(decoded) >= 3
    for row, d in zip(rows, decoded, strict=True):
        version, agent, sub_agent, seq, count, lengths = row.split(";")
        assert (version, agent, sub_agent, seq, count) == (
            "5", d["agent"], d["agentSubId"], d["packetSequenceNo"], d["samplesInPacket"]
        )
        assert len(lengths.split(",")) == int(count)
    # Wireshark 4.0's sFlow dissector does not skip counter records it does not know (2000-2010)
    # and then reads their bodies as records: it flags the established agent's own captures the
    # same way (103 "Malformed" errors on host-flows.pcap). What it can decode, the datagram and
    # sample headers above, must agree with ours.
