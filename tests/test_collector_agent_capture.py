"""The agent on loopback sampling a veth; ``sflowtool-py -t``/``-T`` piped into the real tcpdump and tshark.

The agent's pcap module (classic BPF sampler, 1 in 1 so that every packet
is there) samples real UDP, TCP, ICMP and IPv6 traffic into a namespace; the
collector turns its flow samples into a capture stream; tcpdump and tshark
must show each packet with its addresses, ports and lengths.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path

import pytest
from netns import VethNamespace
from procs import Proc, start_agent
from test_collector_sampler import finish, start_collector_into, traffic

pytestmark = [pytest.mark.root, pytest.mark.skipif(os.geteuid() != 0, reason="needs root for namespaces")]


def _agent(tmp_path: Path, port: int, dev: str) -> Proc:
    config = tmp_path / "hsflowd.conf"
    config.write_text(
        "sflow {\n  polling = 30\n  sampling = 1\n  sampling.bps_ratio = 0\n"
        f"  collector {{ ip = 127.0.0.1 udpport = {port} }}\n  pcap {{ dev = {dev} sampler = cbpf }}\n}}\n"
    )
    agent = start_agent(config, tmp_path / "hsflowd.auto")
    deadline = time.monotonic() + 20
    while not any(f"sampling {dev}" in line for line in agent.stderr):
        assert agent.p.poll() is None and time.monotonic() < deadline, "".join(agent.stderr)
        time.sleep(0.05)
    return agent


@dataclass(frozen=True)
class Run:
    host_ip: str
    ns_ip: str
    ns_ip6: str
    ifindex: int
    out: str
    err: str


def sampled_by_the_agent(tmp_path: Path, tag: str, subnet: int, flag: str, reader: list[str]) -> Run:
    collector, consumer, port = start_collector_into([flag], reader)
    with VethNamespace(tag, subnet) as v:
        agent = _agent(tmp_path, port, v.host_dev)
        ifindex = v.host_ifindex
        try:
            traffic(v)
            time.sleep(1.5)  # the agent flushes what is pending at least once a second
        finally:
            assert agent.stop() == 0, "".join(agent.stderr)
    out, err = finish(collector, consumer)
    return Run(v.host_ip, v.ns_ip, v.ns_ip6, ifindex, out, err)


def test_agent_samples_read_by_tcpdump(tmp_path: Path) -> None:
    r = sampled_by_the_agent(tmp_path, "coat", 67, "-t", ["tcpdump", "-nn", "-r", "-"])
    lines = r.out.splitlines()
    udp = [line for line in lines if f"IP {r.host_ip}.40001 > {r.ns_ip}.41007: UDP, length" in line]
    assert [int(line.rsplit(" ", 1)[1]) for line in udp] == [10, 300, 1400], r.out + r.err
    replies = [line for line in lines if f"IP {r.ns_ip}.41007 > {r.host_ip}.40001: UDP, length" in line]
    assert [int(line.rsplit(" ", 1)[1]) for line in replies] == [10, 20, 20]  # the echo server sends 20 at most
    tcp = [line for line in lines if f"IP {r.host_ip}.40002 > {r.ns_ip}.41007: Flags" in line]
    assert "Flags [S]" in tcp[0] and any("length 500" in line for line in tcp)
    assert sum(f"IP {r.host_ip} > {r.ns_ip}: ICMP echo request" in line for line in lines) == 2
    assert sum(f"IP {r.ns_ip} > {r.host_ip}: ICMP echo reply" in line for line in lines) == 2
    assert any(f"> {r.ns_ip6}.41008: UDP, length 100" in line for line in lines)


def test_agent_samples_read_by_tshark_from_pcapng(tmp_path: Path) -> None:
    fields = ["frame.len", "ip.len", "ip.src", "ip.dst", "udp.srcport", "udp.dstport", "udp.length"]
    fields += ["frame.interface_name", "frame.packet_flags_direction"]
    reader = ["tshark", "-r", "-", "-T", "fields", "-E", "separator=;", *(x for f in fields for x in ("-e", f))]
    r = sampled_by_the_agent(tmp_path, "coaT", 68, "-T", reader)
    rows = [line.split(";") for line in r.out.splitlines()]
    assert rows, r.err
    udp = []
    for frame_len, ip_len, src, dst, sport, dport, udp_len, ifname, direction in rows:
        assert ifname.endswith(f" 0:{r.ifindex}")
        if ip_len:
            assert int(frame_len) == 14 + int(ip_len.split(",")[0])  # the whole frame, FCS stripped
        if src in (r.host_ip, r.ns_ip):
            assert int(direction, 16) & 3 == (2 if src == r.host_ip else 1)  # sent by the host, or received
        if (src, dst, sport, dport) == (r.host_ip, r.ns_ip, "40001", "41007"):
            udp.append((int(frame_len), int(udp_len)))
    assert udp == [(42 + n, 8 + n) for n in (10, 300, 1400)]
