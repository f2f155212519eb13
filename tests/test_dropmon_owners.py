"""dropmon { } with docker { markTraffic = on }: a real drop of one container's packet to another
names both containers in the discard sample's 0:2210.

Container ``a`` sends UDP to a closed port of container ``b`` (from inside ``a``'s namespace, through
the test engine's bridge), so ``b``'s kernel drops it (NO_SOCKET).  The agent process runs with both
modules; its datagrams are decoded by the bundled collector and, where a sflowtool binary is found,
by sflowtool.  The containers' dsIndexes are the ones their own counter samples (3:N, hostname = the
container's name) carry.  Needs root, the test engine and the heavy lock.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from dockerd import Engine, containers
from dropmon_traffic import discard_samples, sflowtool_discards
from procs import Proc, free_udp_port, json_datagrams, start_agent, start_collector

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs root (BPF, namespaces)")

SFLOWTOOL = "/tmp/sflowtool-src/sflowtool"
CLOSED_PORT = 7411


def counter_indexes(datagrams: list[dict[str, Any]]) -> dict[str, int]:
    """Container name → its dsIndex, from the containers' counter samples."""
    out = {}
    for d in datagrams:
        for s in d["samples"]:
            cls, index = s["sourceId"].split(":")
            if cls == "3" and s.get("sampleType_tag") != "0:5":
                for e in s.get("elements", []):
                    if e.get("counterBlock_tag") == "0:2000":
                        out[e["hostname"]] = int(index)
    return out


def discards_to(datagrams: list[dict[str, Any]], port: int) -> list[dict[str, Any]]:
    return [s for s in discard_samples(datagrams) if s.get("discarded_UDPDstPort") == str(port)]


def send_from(pid: int, ip: str, port: int, count: int) -> None:
    code = (
        "import socket, time\n"
        "s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\n"
        f"for _ in range({count}):\n"
        f"    s.sendto(b'drop me', ({ip!r}, {port})); time.sleep(0.05)\n"
    )
    subprocess.run(["nsenter", "-t", str(pid), "-n", sys.executable, "-c", code], check=True, timeout=20)


def test_a_dropped_packet_between_containers_names_both(
    docker_engine: Engine, busybox_image: str, tmp_path: Path
) -> None:
    port, tool_port = free_udp_port(), free_udp_port()
    collector = start_collector(port, "-j")
    tool = Proc([SFLOWTOOL, "-p", str(tool_port)]) if os.access(SFLOWTOOL, os.X_OK) else None
    ports = [port] + ([tool_port] if tool else [])
    collectors = " ".join(f"collector {{ ip = 127.0.0.1 udpport = {p} }}" for p in ports)
    conf = tmp_path / "hsflowd.conf"
    conf.write_text(
        f"sflow {{\n polling = 1\n {collectors}\n docker {{ socket = {docker_engine.socket} markTraffic = on }}\n"
        " dropmon { limit = 1000 }\n}\n"
    )
    agent = start_agent(conf, tmp_path / "hsflowd.auto")
    datagrams: list[dict[str, Any]] = []
    try:
        with containers(docker_engine, "dropmark") as cs:
            a = cs.run("a", "sleep", "60")
            b = cs.run("b", "sleep", "60")
            deadline = time.monotonic() + 20
            while not {a.name, b.name} <= set(counter_indexes(datagrams)):
                assert time.monotonic() < deadline, "".join(agent.stderr)[-3000:]
                datagrams += json_datagrams(collector, 0.5)
            send_from(a.pid, b.ip, CLOSED_PORT, 5)
            datagrams += json_datagrams(collector, 1.5)
    finally:
        agent.stop()
        collector.stop()
    text = "".join(tool.lines_until(0.5)) if tool else None
    if tool:
        tool.stop()
    ds = counter_indexes(datagrams)
    ds_a, ds_b = ds[a.name], ds[b.name]
    samples = discards_to(datagrams, CLOSED_PORT)
    assert len(samples) == 5, ("".join(agent.stderr)[-3000:], samples)
    for s in samples:
        assert s["discarded_linux_drop_reason"] == "NO_SOCKET"
        assert (s["discarded_srcIP"], s["discarded_dstIP"]) == (a.ip, b.ip)
        marked = [s.get(f"discarded_entities_{k}") for k in ("src_class", "src_index", "dst_class", "dst_index")]
        assert marked == ["3", str(ds_a), "3", str(ds_b)], s
    if text is None:
        pytest.skip(f"no sflowtool at {SFLOWTOOL}: the bundled collector's decoding alone was checked")
    theirs = sflowtool_discards(text)
    for s in samples:
        t = theirs[s["sampleSequenceNo"]]
        assert t["discarded_UDPDstPort"] == str(CLOSED_PORT)
        got = [t[f"discarded_entities_{k}"] for k in ("src_class", "src_index", "dst_class", "dst_index")]
        assert got == ["3", str(ds_a), "3", str(ds_b)], t
