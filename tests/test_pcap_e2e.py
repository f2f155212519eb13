"""The pcap module end to end: the real agent process sampling a veth pair with real traffic, the bundled
collector's JSON as the judge, the kernel's counters and the traffic we sent as ground truth."""

from __future__ import annotations

import contextlib
import ctypes
import errno
import itertools
import os
import signal
import struct
import subprocess
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from netns import VethNamespace, sh
from pcap_netns import veth_pair
from procs import Proc, free_udp_port, json_datagrams, start_agent, start_collector

from hsflowd_py import bpf, status

pytestmark = pytest.mark.root
INTERNAL = "1073741823"
IPERF_PORT = 5235


def packets(dev: str) -> int:
    base = Path("/sys/class/net", dev, "statistics")
    return int((base / "rx_packets").read_text()) + int((base / "tx_packets").read_text())


def write_config(tmp_path: Path, port: int, body: str, polling: int = 2, extra: str = "") -> Path:
    conf = tmp_path / "hsflowd.conf"
    conf.write_text(
        f"sflow {{\n polling = {polling}\n {extra}\n collector {{ ip = 127.0.0.1 udpport = {port} }}\n{body}\n}}\n"
    )
    return conf


def wait_for_log(agent: Proc, text: str, timeout: float = 20) -> str:
    """The first agent log line containing ``text``; fails with the agent's log if none comes."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        for line in list(agent.stderr):
            if text in line:
                return line
        if agent.p.poll() is not None:
            break
        time.sleep(0.05)
    pytest.fail(f"agent never logged {text!r}:\n{''.join(agent.stderr)[-3000:]}")


def require_sampler(agent: Proc, dev: str, kind: str) -> None:
    line = wait_for_log(agent, f"sampling {dev} ")
    if kind == "ebpf" and "eBPF" not in line:
        reason = [x for x in agent.stderr if "eBPF sampler is unavailable" in x]
        pytest.skip(f"eBPF sampler unavailable here: {''.join(reason).strip()}")
    assert ("eBPF" if kind == "ebpf" else "classic BPF") in line


def flow_samples(datagrams: list[dict[str, Any]], ifindex: int) -> list[dict[str, Any]]:
    return [
        s
        for d in datagrams
        for s in d["samples"]
        if s["sampleType"] == "FLOWSAMPLE" and s["sourceId"] == f"0:{ifindex}"
    ]


def header_of(sample: dict[str, Any]) -> dict[str, str]:
    return next(e for e in sample["elements"] if e["flowBlock_tag"] == "0:1")


@contextlib.contextmanager
def iperf_server(v: VethNamespace) -> Iterator[None]:
    server = subprocess.Popen(
        v.exec("iperf3", "-s", "-p", str(IPERF_PORT)), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    time.sleep(0.5)
    try:
        yield
    finally:
        server.send_signal(signal.SIGTERM)
        server.wait(10)


def iperf(v: VethNamespace, *args: str) -> None:
    subprocess.run(["iperf3", "-c", v.ns_ip, "-p", str(IPERF_PORT), *args], check=True, capture_output=True, timeout=60)


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["cbpf", "ebpf"])
def test_iperf_tcp_and_udp_both_ways(tmp_path: Path, kind: str) -> None:
    port = free_udp_port()
    with veth_pair("pce2") as v, iperf_server(v):
        for cmd in (["ethtool", "-K", v.host_dev], v.exec("ethtool", "-K", v.ns_dev)):
            sh(*cmd, "tso", "off", "gso", "off", "gro", "off")  # one packet in the kernel is one on the wire
        ifindex = v.host_ifindex
        host_mac = Path(f"/sys/class/net/{v.host_dev}/address").read_text().strip().replace(":", "")
        conf = write_config(tmp_path, port, f"pcap {{ dev = {v.host_dev} sampling = 10 sampler = {kind} }}")
        with start_collector(port, "-j") as collector, start_agent(conf, tmp_path / "auto") as agent:
            require_sampler(agent, v.host_dev, kind)
            before, started_ns = packets(v.host_dev), time.time_ns()
            iperf(v, "-n", "100M")  # TCP, data from the host into the namespace
            iperf(v, "-R", "-n", "100M")  # TCP, data from the namespace to the host
            iperf(v, "-u", "-b", "400M", "-l", "1200", "-n", "40M")  # UDP out
            iperf(v, "-u", "-R", "-b", "400M", "-l", "1200", "-n", "40M")  # UDP in
            time.sleep(1.5)  # the last samples leave the ring and the agent's next flush
            counted, ended_ns = packets(v.host_dev) - before, time.time_ns()
            time.sleep(1)
            agent.stop()
            datagrams = list(json_datagrams(collector, 8))
    flows = flow_samples(datagrams, ifindex)
    seqs = [int(s["sampleSequenceNo"]) for s in flows]
    last = flows[seqs.index(max(seqs))]
    emitted, pool = max(seqs), int(last["samplePool"])
    assert counted >= 200_000
    assert abs(pool - counted) <= 0.01 * counted, (pool, counted)
    assert abs(emitted - counted / 10) <= 0.02 * counted / 10, (emitted, counted)
    assert len(flows) >= 0.99 * emitted, "the collector should have received nearly every sample"
    assert last["dropEvents"] == "0" and {s["meanSkipCount"] for s in flows} == {"10"}

    kinds: Counter[tuple[str, str, bool]] = Counter()
    for s in flows:
        h = header_of(s)
        src, dst = h.get("srcIP"), h.get("dstIP")
        if {src, dst} != {v.host_ip, v.ns_ip}:
            continue  # ARP, neighbour discovery
        sent = src == v.host_ip
        assert (s["inputPort"], s["outputPort"]) == ((INTERNAL, str(ifindex)) if sent else (str(ifindex), INTERNAL))
        assert (h["srcMAC"] == host_mac) == sent and (h["dstMAC"] == host_mac) == (not sent)
        assert int(h["sampledPacketSize"]) == int(h["headerLen"]) + 4 or int(h["headerLen"]) == 128
        assert (
            started_ns - 10**9
            <= int(next(e for e in s["elements"] if e["flowBlock_tag"] == "0:1043")["timestamp_nS"])
            <= ended_ns
        )
        proto = {"6": "TCP", "17": "UDP"}[h["IPProtocol"]]
        server_port = h[f"{proto}DstPort"] if sent else h[f"{proto}SrcPort"]
        assert server_port == str(IPERF_PORT), h  # who sent what: the namespace holds the server
        kinds[(proto, "out" if sent else "in", int(h["sampledPacketSize"]) > 1000)] += 1
    # data went both ways over TCP and UDP; ACKs came back against each TCP direction
    for key in [("TCP", "out", True), ("TCP", "in", True), ("UDP", "out", True), ("UDP", "in", True)]:
        assert kinds[key] >= 1000, kinds
    assert kinds[("TCP", "in", False)] >= 50 and kinds[("TCP", "out", False)] >= 50, kinds

    counters = [
        {e["counterBlock_tag"]: e for e in s["elements"]}
        for d in datagrams
        for s in d["samples"]
        if s["sampleType"] == "COUNTERSSAMPLE" and s["sourceId"] == f"0:{ifindex}"
    ]
    assert counters, "the sampled interface gets counter samples"
    assert counters[-1]["0:1005"]["ifName"] == v.host_dev and counters[-1]["0:1"]["ifIndex"] == str(ifindex)
    assert "0:2" not in counters[-1]  # a veth has no MAC layer counters


@pytest.mark.parametrize("kind", ["cbpf", "ebpf"])
def test_interfaces_that_come_and_go_are_picked_up_and_dropped(tmp_path: Path, kind: str) -> None:
    port = free_udp_port()
    bridge = f"pcbr{os.getpid() % 100000}"
    conf = write_config(
        tmp_path,
        port,
        f'pcap {{ dev.pattern = "^{bridge}$" sampling = 1 sampler = {kind} }}',
        polling=1,
        extra="checkAdaptors = 1",
    )
    tmp_path.chmod(0o755)  # the agent drops to nobody: its status socket and auto file live here
    with start_collector(port, "-j") as collector, start_agent(conf, tmp_path / "auto", drop_root=True) as agent:
        wait_for_log(agent, "running as nobody")  # interfaces that come later are opened with what pcap kept
        with veth_pair("pcbr") as v:
            sh("ip", "link", "add", bridge, "type", "bridge")
            try:
                sh("ip", "addr", "flush", "dev", v.host_dev)
                sh("ip", "link", "set", v.host_dev, "master", bridge)
                sh("ip", "addr", "add", f"{v.host_ip}/24", "dev", bridge)
                sh("ip", "link", "set", bridge, "up")
                ifindex = int(Path(f"/sys/class/net/{bridge}/ifindex").read_text())
                require_sampler(agent, bridge, kind)
                subprocess.run(["ping", "-c", "20", "-i", "0.05", v.ns_ip], check=True, capture_output=True)
                time.sleep(1.5)
            finally:
                sh("ip", "link", "del", bridge)
        wait_for_log(agent, f"stopped sampling {bridge}")
        time.sleep(2)
        assert agent.p.poll() is None, "the agent keeps running"
        agent.stop()
        datagrams = list(json_datagrams(collector, 5))
    flows = flow_samples(datagrams, ifindex)
    echoes = [h for h in map(header_of, flows) if h.get("IPProtocol") == "1"]
    assert len(echoes) >= 40  # 20 requests and 20 replies, every one sampled
    assert all(s["sampleType"] != "FLOWSAMPLE" for d in datagrams[-2:] for s in d["samples"])
    assert any(s["sourceId"] == "2:1" for d in datagrams[-2:] for s in d["samples"]), "host counters carry on"
    log = "".join(agent.stderr)
    assert "Traceback" not in log and " ERROR " not in log, log[-3000:]
    assert "flushing the kernel's datagram failed" not in log, log[-3000:]  # hsflowd_flush runs as nobody too


def test_a_sampler_that_cannot_open_an_interface_says_why_and_the_others_carry_on(tmp_path: Path) -> None:
    """Without CAP_NET_RAW the classic sampler cannot open its raw socket; the eBPF one needs no raw socket."""
    port = free_udp_port()
    with veth_pair("pcfa") as a, veth_pair("pcfb") as b:
        conf = write_config(
            tmp_path,
            port,
            f"pcap {{ dev = {a.host_dev} sampling = 1 sampler = cbpf }}\n"
            f"pcap {{ dev = {b.host_dev} sampling = 1 sampler = ebpf }}",
            extra="checkAdaptors = 1",  # retried every second: still logged once
        )
        auto = tmp_path / "auto"
        with start_collector(port, "-j") as collector:
            no_raw = ("setpriv", "--bounding-set", "-net_raw", "--inh-caps", "-net_raw")
            with start_agent(conf, auto, wrapper=no_raw) as agent:
                line = wait_for_log(agent, f"cannot sample {a.host_dev}")
                assert "no permission for a raw socket" in line and "CAP_NET_RAW" in line
                require_sampler(agent, b.host_dev, "ebpf")
                subprocess.run(["ping", "-c", "5", "-i", "0.05", b.ns_ip], check=True, capture_output=True)
                subprocess.run(["ping", "-c", "5", "-i", "0.05", a.ns_ip], check=True, capture_output=True)
                time.sleep(1.5)
                agent.stop()
            datagrams = list(json_datagrams(collector, 4))
        assert (
            len([h for h in map(header_of, flow_samples(datagrams, b.host_ifindex)) if h.get("IPProtocol") == "1"])
            >= 10
        )
        assert flow_samples(datagrams, a.host_ifindex) == []
        assert sum(x.count(f"cannot sample {a.host_dev}") for x in agent.stderr) == 1, "logged once, not per retry"


def test_without_kernel_headers_the_classic_sampler_takes_over(tmp_path: Path) -> None:
    """bcc cannot compile without the kernel's headers (here: pointed at an empty tree) and is the only
    loader allowed: the agent says so once, and every interface, even one whose block asks for eBPF, is
    sampled by classic BPF."""
    port = free_udp_port()
    empty = tmp_path / "no-kernel-headers"
    empty.mkdir()
    with veth_pair("pcnh") as a, veth_pair("pcnj") as b:
        conf = write_config(
            tmp_path,
            port,
            f"pcap {{ dev = {a.host_dev} sampling = 1 }}\npcap {{ dev = {b.host_dev} sampling = 1 sampler = ebpf }}",
        )
        wrapper = ("env", f"BCC_KERNEL_SOURCE={empty}", "HSFLOWD_PY_EBPF_LOADER=bcc")
        with start_collector(port, "-j") as collector, start_agent(conf, tmp_path / "auto", wrapper=wrapper) as agent:
            for dev in (a.host_dev, b.host_dev):
                assert "classic BPF" in wait_for_log(agent, f"sampling {dev} ")
            for v in (a, b):
                subprocess.run(["ping", "-c", "5", "-i", "0.05", v.ns_ip], check=True, capture_output=True)
            time.sleep(1.5)
            agent.stop()
            datagrams = list(json_datagrams(collector, 4))
        for v in (a, b):
            echoes = [h for h in map(header_of, flow_samples(datagrams, v.host_ifindex)) if h.get("IPProtocol") == "1"]
            assert len(echoes) == 10
    log = "".join(agent.stderr)
    assert log.count("the eBPF sampler is unavailable") == 1 and "kconfig.h" in log
    assert f"{b.host_dev}: sampler = ebpf, but eBPF is unavailable" in log


@pytest.mark.parametrize("kind", ["cbpf", "ebpf"])
def test_a_reload_changes_the_rate_in_place(tmp_path: Path, kind: str) -> None:
    """SIGHUP with a new rate: the open interface is re-rated without being reopened, so its sample
    sequence and pool carry on."""
    port = free_udp_port()
    with veth_pair("pcrl") as v:
        ifindex = v.host_ifindex
        conf = write_config(tmp_path, port, f"pcap {{ dev = {v.host_dev} sampling = 1 sampler = {kind} }}")
        with start_collector(port, "-j") as collector, start_agent(conf, tmp_path / "auto") as agent:
            require_sampler(agent, v.host_dev, kind)
            subprocess.run(["ping", "-c", "10", "-i", "0.02", v.ns_ip], check=True, capture_output=True)
            conf.write_text(conf.read_text().replace("sampling = 1 ", "sampling = 2 "))
            time.sleep(1.2)
            agent.p.send_signal(signal.SIGHUP)
            wait_for_log(agent, f"{v.host_dev} now sampled 1-in-2")
            subprocess.run(["ping", "-f", "-c", "500", v.ns_ip], check=True, capture_output=True)
            time.sleep(1.5)
            agent.stop()
            datagrams = list(json_datagrams(collector, 4))
    flows = flow_samples(datagrams, ifindex)
    rates = [s["meanSkipCount"] for s in flows]
    switch = rates.index("2")
    assert set(rates[:switch]) == {"1"} and set(rates[switch:]) == {"2"} and switch >= 20
    assert [int(s["sampleSequenceNo"]) for s in flows] == list(range(1, len(flows) + 1))
    pools = [int(s["samplePool"]) for s in flows]
    # sorted across the switch: the pool carried on; counting all 1,020 packets sent, less those after
    # the last sample (each unsampled with p = 1/2 at 1-in-2: 20 in a row one run in a million)
    assert pools == sorted(pools) and pools[-1] >= 1000 + 20 - 20
    assert "".join(agent.stderr).count(f"pcap: sampling {v.host_dev} (ifIndex") == 1, "not reopened"


def echo_samples(datagrams: list[dict[str, Any]], ifindex: int) -> list[dict[str, Any]]:
    """The flow samples of ICMP echo requests and replies (whatever else crossed the link meanwhile)."""
    return [s for s in flow_samples(datagrams, ifindex) if header_of(s).get("IPProtocol") == "1"]


def test_an_enricher_added_and_removed_by_reloads_loses_no_sample(tmp_path: Path) -> None:
    """``tcp { }`` added by a reload: the eBPF samples are read back through the enricher; removed by the
    next, they go straight into datagrams as the kernel wrote them again.  In each phase the samples
    reach the collector while the agent runs (a ping every 50 ms: each finds the agent asleep, and
    wakes it; none is left waiting in the ring for the agent's stop), and none is lost or numbered
    twice.  Without the enricher the kernel builds the datagrams; with it, it builds at most the one it
    was building when the enricher came."""
    port = free_udp_port()
    with veth_pair("pcen") as v:
        ifindex = v.host_ifindex
        pcap = f"pcap {{ dev = {v.host_dev} sampling = 1 sampler = ebpf }}"
        bodies = [pcap, pcap + " tcp { udp = on }", pcap]
        conf = write_config(tmp_path, port, bodies[0], polling=0)
        datagrams: list[dict[str, Any]] = []
        read = [(0, 0)]  # samples read, and datagrams the kernel built, after each phase
        with start_collector(port, "-j") as collector, start_agent(conf, tmp_path / "auto") as agent:
            require_sampler(agent, v.host_dev, "ebpf")
            for phase, body in enumerate(bodies):
                if phase:
                    write_config(tmp_path, port, body, polling=0)
                    agent.p.send_signal(signal.SIGHUP)
                    wait_for_log(agent, "reloaded", timeout=10)
                    agent.stderr.clear()
                before = len(echo_samples(datagrams, ifindex))
                subprocess.run(["ping", "-c", "5", "-i", "0.05", v.ns_ip], check=True, capture_output=True)
                for d in json_datagrams(collector, 5):
                    datagrams.append(d)
                    if len(echo_samples(datagrams, ifindex)) - before >= 10:
                        break
                assert len(echo_samples(datagrams, ifindex)) - before == 10, (phase, "".join(agent.stderr)[-2000:])
                pcap = status.query(str(tmp_path / "status.sock"))["modules"]["pcap"]
                read.append((pcap["ebpf_samples"], pcap["ebpf_kernel_datagrams"]))
            agent.stop()
            datagrams += json_datagrams(collector, 3, quiet_s=1)
    flows = flow_samples(datagrams, ifindex)
    assert [int(s["sampleSequenceNo"]) for s in flows] == list(range(1, len(flows) + 1))
    assert len(echo_samples(datagrams, ifindex)) == 30
    (samples, built) = zip(*read, strict=True)
    grew = [b - a for a, b in itertools.pairwise(built)]
    assert grew[0] >= 1 and grew[1] <= 1 and grew[2] >= 1, read
    assert all(b - a >= 10 for a, b in itertools.pairwise(samples)), read


def full_tcx_hook(ifindex: int) -> list[int]:
    """Fill the interface's tcx ingress hook with the programs it takes (up to BPF_MPROG_MAX), each a
    program of two instructions that returns TC_ACT_UNSPEC; returns their links' descriptors."""
    insns = struct.pack("<BBhiBBhi", 0xB7, 0, 0, -1, 0x95, 0, 0, 0)  # r0 = -1; exit
    code, license_ = ctypes.create_string_buffer(insns, len(insns)), ctypes.create_string_buffer(b"GPL")
    attr = struct.pack("=IIQQ", 3, 2, ctypes.addressof(code), ctypes.addressof(license_)) + bytes(96)
    links: list[int] = []
    try:
        while len(links) < 64:
            prog = bpf._bpf(5, attr)  # BPF_PROG_LOAD of a BPF_PROG_TYPE_SCHED_CLS program
            try:
                links.append(bpf.tcx_attach(prog, ifindex, bpf.BPF_TCX_INGRESS))
            finally:
                os.close(prog)  # the link holds the program
    except OSError as e:
        if e.errno != errno.ERANGE or not links:  # ERANGE: the hook is full
            for link in links:
                os.close(link)
            raise
    return links


def test_when_the_hook_refuses_the_ebpf_program_auto_falls_back_to_classic(tmp_path: Path) -> None:
    """Other tools' programs fill the tcx hook the eBPF sampler needs: an interface whose block says
    ``auto`` is sampled by classic BPF instead, one whose block says ``ebpf`` is not."""
    port = free_udp_port()
    with veth_pair("pctc") as a, veth_pair("pctd") as b:
        try:
            links = [link for v in (a, b) for link in full_tcx_hook(v.host_ifindex)]
        except OSError as e:
            pytest.skip(f"no tcx here: {e}")
        try:
            conf = write_config(
                tmp_path,
                port,
                f"pcap {{ dev = {a.host_dev} sampling = 1 }}\n"
                f"pcap {{ dev = {b.host_dev} sampling = 1 sampler = ebpf }}",
            )
            with start_collector(port, "-j") as collector, start_agent(conf, tmp_path / "auto") as agent:
                fallback = wait_for_log(agent, f"{a.host_dev}: eBPF cannot sample it")
                if "eBPF sampler is unavailable" in "".join(agent.stderr):
                    pytest.skip("eBPF sampler unavailable here")
                assert "classic BPF" in wait_for_log(agent, f"sampling {a.host_dev} ")
                refused = wait_for_log(agent, f"cannot sample {b.host_dev}")
                for v in (a, b):
                    subprocess.run(["ping", "-c", "5", "-i", "0.05", v.ns_ip], check=True, capture_output=True)
                time.sleep(1.5)
                agent.stop()
                datagrams = list(json_datagrams(collector, 4))
            assert (
                len([h for h in map(header_of, flow_samples(datagrams, a.host_ifindex)) if h.get("IPProtocol") == "1"])
                == 10
            )
            assert flow_samples(datagrams, b.host_ifindex) == []
            assert "tcx" in fallback and "tcx" in refused
        finally:
            for link in links:
                os.close(link)
