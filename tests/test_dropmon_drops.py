"""dropmon { }: real drops made on purpose in a test namespace, seen as discard samples (0:5).

Each drop is expected with the reason the kernel gives it and the sFlow code the established agent
maps that reason to, decoded by the bundled collector and, where a sflowtool binary is found, by
sflowtool as well (its text is the ground truth for codes and names).  Counts come from the kernel
(/proc/net/snmp in the namespace).  One agent run covers the reasons; the rate limit, ``hide`` and
``start = off`` get short runs of their own.  Needs root and the heavy lock.

Not provoked here: TCP_LISTEN_OVERFLOW.  A SYN that finds the accept queue full is freed as consumed
(counted only in TcpExtListenOverflows), and the race in which a final ACK finds it full (SYNs let in,
then the queue filled before their ACKs) did not happen on a veth even with the ACKs held back
behind a tbf.  IP_OUTNOROUTES cannot be: a local sender with no route gets ENETUNREACH from sendmsg
and no packet is made, so "no route" is a forwarded packet's IP_INNOROUTES.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from dropmon_traffic import (
    discard_samples,
    ipv4_udp_frame,
    nft_drop,
    ns_ifindex,
    qdisc_overflow,
    send_frames,
    sflowtool_discards,
    udp,
)
from netns import VethNamespace, sh
from procs import Proc, free_udp_port, json_datagrams, python, start_agent, start_collector, terminate

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs root (BPF, namespaces)")

SFLOWTOOL = shutil.which("sflowtool") or "/tmp/sflowtool-src/sflowtool"
INTERNAL = 0x3FFFFFFF
NO_ROUTE_DST = "198.51.100.7"


@dataclass
class Run:
    datagrams: list[dict[str, Any]]
    sflowtool: str | None
    log: str
    metrics: str
    """The bundled collector's Prometheus page at the end of the run."""
    pcapng: Path
    """The bundled collector's ``-T`` capture of the run."""

    def discards(self) -> list[dict[str, Any]]:
        """Each discard sample with its records' fields merged in."""
        return discard_samples(self.datagrams)


def free_tcp_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def run_agent(tmp_path: Path, block: str, provoke: Callable[[], None], polling: int = 1) -> Run:
    """The agent with ``dropmon { block }`` sending to the bundled collector (JSON and Prometheus), to
    another one writing ``-T`` pcapng, and to sflowtool, while ``provoke`` makes drops."""
    port, pcap_port, tool_port, prometheus = free_udp_port(), free_udp_port(), free_udp_port(), free_tcp_port()
    collector = start_collector(port, "-j", "--prometheus", f"127.0.0.1:{prometheus}")
    pcapng = tmp_path / "discards.pcapng"
    with pcapng.open("wb") as out:
        capture = subprocess.Popen(python("-m", "hsflowd_py.collector", "-p", str(pcap_port), "-T"), stdout=out)
    tool = Proc([SFLOWTOOL, "-p", str(tool_port)]) if os.access(SFLOWTOOL, os.X_OK) else None
    conf = tmp_path / "hsflowd.conf"
    ports = [port, pcap_port] + ([tool_port] if tool else [])
    collectors = " ".join(f"collector {{ ip = 127.0.0.1 udpport = {p} }}" for p in ports)
    conf.write_text(f"sflow {{\n polling = {polling}\n {collectors}\n dropmon {{ {block} }}\n}}\n")
    agent = start_agent(conf, tmp_path / "hsflowd.auto")
    try:
        wait_for_log(agent, " sending to ")  # logged once the modules have started
        provoke()
        time.sleep(1.0)
    finally:
        agent.stop()
    datagrams = list(json_datagrams(collector, 1.5))
    with urllib.request.urlopen(f"http://127.0.0.1:{prometheus}/metrics", timeout=10) as page:
        metrics = page.read().decode()
    collector.stop()
    terminate(capture)
    text = None
    if tool:
        text = "".join(tool.lines_until(0.5))
        tool.stop()
    return Run(datagrams, text, "".join(agent.stderr), metrics, pcapng)


def wait_for_log(agent: Proc, text: str, count: int = 1, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while sum(text in line for line in agent.stderr) < count and time.monotonic() < deadline:
        time.sleep(0.1)
    assert sum(text in line for line in agent.stderr) >= count, (text, "".join(agent.stderr)[-2000:])


def snmp(v: VethNamespace, group: str, name: str) -> int:
    text = subprocess.run(v.exec("cat", "/proc/net/snmp"), capture_output=True, text=True, check=True).stdout
    rows = [line.split() for line in text.splitlines() if line.startswith(group + ":")]
    return int(rows[1][rows[0].index(name)])


@pytest.fixture(scope="module")
def veth() -> Any:
    with VethNamespace("drop", subnet=93, ipv6=False) as v:
        sh(*v.exec("sysctl", "-qw", "net.ipv4.ip_forward=1"))
        nft_drop(v, 7001)
        yield v


@pytest.fixture(scope="module")
def reasons_run(veth: VethNamespace, tmp_path_factory: pytest.TempPathFactory) -> Run:
    v = veth

    def provoke() -> None:
        udp(v.ns_ip, 7001)  # nftables drop rule
        udp(v.ns_ip, 7002)  # closed port
        qdisc_overflow(v, 7003)
        send_frames(v, [ipv4_udp_frame(v, v.ns_ip, 7005, b"c" * 20, bad_checksum=True)])
        send_frames(v, [ipv4_udp_frame(v, v.ns_ip, 7006, b"t" * 20, claimed_extra=100)])
        send_frames(v, [ipv4_udp_frame(v, NO_ROUTE_DST, 7007, b"r" * 20)])

    return run_agent(tmp_path_factory.mktemp("dropmon"), "limit = 1000", provoke)


def kernel_functions() -> set[str]:
    return {line.split()[2] for line in Path("/proc/kallsyms").read_text().splitlines() if line.split()[1] in "tTwW"}


def found(run: Run, reason: str, **fields: str) -> list[dict[str, Any]]:
    return [
        s
        for s in run.discards()
        if s.get("discarded_linux_drop_reason") == reason and all(s.get(k) == v for k, v in fields.items())
    ]


CASES = {
    # reason: (sFlow code, sflowtool's name, the packet's fields, received: in on the namespace's end)
    "NETFILTER_DROP": (258, "acl", {"discarded_UDPDstPort": "7001"}, True),
    "NO_SOCKET": (3, "port_unreachable", {"discarded_UDPDstPort": "7002"}, True),
    "QDISC_DROP": (261, "traffic_shaping", {"discarded_UDPDstPort": "7003"}, False),
    "IP_CSUM": (313, "ip_1_parsing", {"discarded_dstMAC": None}, True),
    "PKT_TOO_SMALL": (324, "pkt_too_small", {"discarded_dstMAC": None}, True),
    "IP_INNOROUTES": (0, "net_unreachable", {"discarded_dstIP": NO_ROUTE_DST}, True),
}


@pytest.mark.parametrize("reason", sorted(CASES))
def test_each_drop_is_a_discard_sample_with_its_reason_and_code(
    reasons_run: Run, veth: VethNamespace, reason: str
) -> None:
    code, name, fields, received = CASES[reason]
    wanted = {k: v for k, v in fields.items() if v is not None}
    samples = found(reasons_run, reason, **wanted)
    seen = sorted({str(s.get("discarded_linux_drop_reason")) for s in reasons_run.discards()})
    assert samples, f"no {reason} sample; reasons seen: {seen}"
    s = samples[0]
    assert (s["discardCode"], s["discardReason"]) == (str(code), name)
    assert s["sourceId"] == "0:0"
    index = ns_ifindex(veth)
    if received:
        assert (s["inputPort"], s["outputPort"]) == (str(index), "0")
    else:
        assert (s["inputPort"], s["outputPort"]) == (str(INTERNAL), str(index))
    assert s["discarded_symbol"] in kernel_functions()
    assert s["discarded_headerProtocol"] == "1", "an Ethernet header: the MAC header is there on a veth"
    assert abs(int(s["discarded_timestamp_nS"]) / 1e9 - time.time()) < 120


def test_the_udp_drop_names_the_function_that_dropped_it(reasons_run: Run) -> None:
    (s, *_) = found(reasons_run, "NO_SOCKET", discarded_UDPDstPort="7002")
    assert s["discarded_symbol"].startswith("__udp4_lib_rcv")


def test_a_broken_header_is_the_frame_as_sent(reasons_run: Run, veth: VethNamespace) -> None:
    """The copied header of the bad-checksum and truncated frames is byte for byte the frame sent."""
    for reason, frame in (
        ("IP_CSUM", ipv4_udp_frame(veth, veth.ns_ip, 7005, b"c" * 20, bad_checksum=True)),
        ("PKT_TOO_SMALL", ipv4_udp_frame(veth, veth.ns_ip, 7006, b"t" * 20, claimed_extra=100)),
    ):
        headers = [bytes.fromhex(s["discarded_headerBytes"].replace("-", "")) for s in found(reasons_run, reason)]
        assert frame in headers, (reason, frame.hex(), [h.hex() for h in headers])


def test_discard_samples_never_share_a_datagram(reasons_run: Run) -> None:
    kinds = [{s.get("sampleType_tag") == "0:5" for s in d["samples"]} for d in reasons_run.datagrams]
    assert {True} in kinds and {False} in kinds, "discard and counter datagrams both expected (polling = 1)"
    assert all(len(k) == 1 for k in kinds), "a datagram mixes discard samples with others"


def test_sflowtool_decodes_the_same_samples(reasons_run: Run) -> None:
    if reasons_run.sflowtool is None:
        pytest.skip(f"no sflowtool at {SFLOWTOOL} (build it from sflow/sflowtool with gcc)")
    theirs = sflowtool_discards(reasons_run.sflowtool)
    ours = {s["sampleSequenceNo"]: s for s in reasons_run.discards()}
    assert ours and set(ours) == set(theirs)
    keys = ("sourceId", "dropEvents", "inputPort", "outputPort", "discardCode", "discardReason")
    for seq, s in ours.items():
        t = theirs[seq]
        assert {k: t[k] for k in keys} == {k: s[k] for k in keys}
        assert t.get("discarded_linux_drop_reason") == s.get("discarded_linux_drop_reason")
        assert t.get("discarded_symbol") == s.get("discarded_symbol")
    for reason, (code, name, _, _) in CASES.items():
        assert any(t.get("discarded_linux_drop_reason") == reason and t["discardCode"] == str(code)
                   and t["discardReason"] == name for t in theirs.values()), reason  # fmt: skip


def flood(v: VethNamespace, port: int, seconds: float) -> tuple[int, float]:
    """UDP to a closed port in the namespace as fast as one process sends, for about ``seconds``;
    the drops the kernel counted (Udp NoPorts in the namespace) and how long it took."""
    before = snmp(v, "Udp", "NoPorts")
    start = time.monotonic()
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        for i in range(1_000_000):
            s.sendto(b"f", (v.ns_ip, port))
            if i % 500 == 0 and time.monotonic() > start + seconds:
                break
    return snmp(v, "Udp", "NoPorts") - before, time.monotonic() - start


def test_the_rate_limit_holds_a_flood_to_limit_a_second_and_counts_the_rest(
    veth: VethNamespace, tmp_path: Path
) -> None:
    limit = 20
    flooded, seconds = 0, 0.0

    def provoke() -> None:
        nonlocal flooded, seconds
        flooded, seconds = flood(veth, 7010, 2.0)
        time.sleep(1.2)  # the bucket fills again: the next drop is sent, with the count so far
        udp(veth.ns_ip, 7011)

    run = run_agent(tmp_path, f"limit = {limit} max = 100000000", provoke, polling=0)
    sent = found(run, "NO_SOCKET", discarded_UDPDstPort="7010")
    assert flooded > 10 * limit * seconds, f"the flood made only {flooded} drops"
    assert limit * seconds * 0.8 <= len(sent) <= limit * (seconds + 0.2) + limit // 10
    (last,) = found(run, "NO_SOCKET", discarded_UDPDstPort="7011")
    assert flooded - len(sent) <= int(last["dropEvents"]) <= flooded + 1000


def test_max_trip_stops_the_module_after_a_flood(veth: VethNamespace, tmp_path: Path) -> None:
    def provoke() -> None:
        flood(veth, 7010, 2.5)
        time.sleep(1.2)
        udp(veth.ns_ip, 7011)

    run = run_agent(tmp_path, "limit = 20 max = 1000 max_trip = 2", provoke, polling=0)
    assert "dropmon: stopped by max_trip" in run.log
    assert found(run, "NO_SOCKET", discarded_UDPDstPort="7010")
    assert not found(run, "NO_SOCKET", discarded_UDPDstPort="7011")


def test_hide_leaves_out_matching_reasons_and_functions(veth: VethNamespace, tmp_path: Path) -> None:
    def provoke() -> None:
        udp(veth.ns_ip, 7001)  # NETFILTER_DROP in nft_do_chain: hidden by function
        udp(veth.ns_ip, 7002)  # NO_SOCKET: hidden by reason, in the kernel
        send_frames(veth, [ipv4_udp_frame(veth, veth.ns_ip, 7005, b"c" * 20, bad_checksum=True)])

    run = run_agent(tmp_path, 'hide = "NO_SOCKET|^nft_do_chain$"', provoke, polling=0)
    reasons = {s.get("discarded_linux_drop_reason") for s in run.discards()}
    assert "IP_CSUM" in reasons
    assert not reasons & {"NO_SOCKET", "NETFILTER_DROP"}


def test_start_off_sends_nothing(veth: VethNamespace, tmp_path: Path) -> None:
    run = run_agent(tmp_path, "start = off", lambda: udp(veth.ns_ip, 7002), polling=0)
    assert "module dropmon started" not in run.log and "BPF program" not in run.log
    assert run.discards() == []


def test_a_reload_turns_start_on_and_off(veth: VethNamespace, tmp_path: Path) -> None:
    """SIGHUP with ``start`` off → on loads the program (drops are sent), on → off unloads it."""
    port = free_udp_port()
    collector = start_collector(port, "-j")
    conf = tmp_path / "hsflowd.conf"

    def configure(start: str) -> None:
        conf.write_text(
            f"sflow {{\n polling = 0\n collector {{ ip = 127.0.0.1 udpport = {port} }}\n"
            f" dropmon {{ start = {start} }}\n}}\n"
        )

    def discards_to(dport: int) -> int:
        udp(veth.ns_ip, dport, count=3)
        samples = discard_samples(list(json_datagrams(collector, 1.0)))
        return sum(s.get("discarded_UDPDstPort") == str(dport) for s in samples)

    configure("off")
    agent = start_agent(conf, tmp_path / "hsflowd.auto")
    try:
        wait_for_log(agent, " sending to ")
        counts = [discards_to(7021)]
        configure("on")
        agent.p.send_signal(signal.SIGHUP)
        wait_for_log(agent, "module dropmon started")
        counts.append(discards_to(7022))
        configure("off")
        agent.p.send_signal(signal.SIGHUP)
        wait_for_log(agent, "dropmon: stopped monitoring drops")
        counts.append(discards_to(7023))
    finally:
        agent.stop()
        collector.stop()
    assert counts == [0, 3, 0], "".join(agent.stderr)[-2000:]


def test_prometheus_counts_the_drops_per_agent_and_reason(reasons_run: Run) -> None:
    """One discarded packet per discard sample, by sflowtool's reason name (its text where it runs)."""
    names = [s["discardReason"] for s in reasons_run.discards()]
    if reasons_run.sflowtool is not None:
        names = [s["discardReason"] for s in sflowtool_discards(reasons_run.sflowtool).values()]
    expected: dict[str, float] = {}
    for name in names:
        expected[name] = expected.get(name, 0) + 1
    exported = {
        reason: float(value)
        for reason, value in re.findall(
            r'^sflow_discarded_packets_total\{agent="[^"]+",reason="([^"]+)"\} (\S+)$', reasons_run.metrics, flags=re.M
        )
    }
    assert exported == expected


def test_the_pcapng_holds_every_discarded_packet(reasons_run: Run) -> None:
    """``-T``: each discard sample's header is a packet tshark reads, with the reason in its comment."""
    if shutil.which("tshark") is None:
        pytest.skip("no tshark")
    fields = ["frame.cap_len", "frame.comment", "udp.dstport"]
    out = subprocess.run(
        ["tshark", "-r", str(reasons_run.pcapng), "-T", "fields", *(a for f in fields for a in ("-e", f))],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    packets = [line.split("\t") for line in out.splitlines()]
    with_header = [s for s in reasons_run.discards() if "discarded_headerBytes" in s]
    assert len(packets) == len(with_header)
    assert [int(p[0]) for p in packets] == [int(s["discarded_headerLen"]) for s in with_header]
    comments = {p[1] for p in packets if p[2] in ("7001", "7002")}
    assert any("acl (258)" in c for c in comments) and any("port_unreachable (3)" in c for c in comments), comments
