"""Through the agent's core to a collector: samples of a live connection, handed to a real Agent as a sampler
would, leave with 0:2209 as the bundled collector (a separate process) decodes it, matching ``ss -tin``.
"""

from __future__ import annotations

import asyncio
import os
import socket
import time
from collections.abc import Iterator

import pytest
from netns import VethNamespace
from procs import free_udp_port, json_datagrams, start_collector
from tcp_traffic import Capture, Frame, clamp_mss, sink, ss_info, tcp_payload

from hsflowd_py.agent import Agent
from hsflowd_py.config import parse_config
from hsflowd_py.flow import DIRECTION_IN, DIRECTION_OUT
from hsflowd_py.packet import parse

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs root for namespaces and AF_PACKET")

PORT = 5255


@pytest.fixture(scope="module")
def link() -> Iterator[VethNamespace]:
    with VethNamespace("tcpg", 47) as ns:
        clamp_mss(ns, 1200)
        yield ns


def frames_of(cap: Capture, port: int, want: int) -> list[Frame]:
    frames: list[Frame] = []
    end = time.monotonic() + 3
    while len(frames) < want and time.monotonic() < end:
        f = cap.read(0.1)
        flow = parse(f.data, 1) if f else None
        if flow is not None and flow.proto == 6 and port in (flow.sport, flow.dport):
            frames.append(f)  # type: ignore[arg-type]
    return frames


def test_flow_samples_carry_tcp_info_to_the_collector(link: VethNamespace) -> None:
    port = free_udp_port()
    collector = start_collector(port, "-j")
    try:
        with sink(link, PORT), Capture(link.host_dev) as cap:
            client = socket.create_connection((link.ns_ip, PORT))
            with client:
                client.sendall(bytes(50000))
                frames = frames_of(cap, PORT, 30)
                ss = ss_info(client.getsockname()[1])

                async def body() -> dict[str, int]:
                    agent = Agent(
                        parse_config(f"sflow {{ collector {{ ip = 127.0.0.1 udpport = {port} }} tcp {{ }} }}")
                    )
                    agent.apply_settings()
                    await agent._sync_modules()
                    emit = agent.flows.interface(cap.ifindex, 10, True).emit
                    for _ in range(2):  # held for the look-up, then answered at once from its answer
                        for f in frames:
                            emit(
                                sample_pool=100,
                                drops=0,
                                direction=DIRECTION_OUT if f.outgoing else DIRECTION_IN,
                                frame_length=f.length + 4,
                                header=f.data,
                                start=0,
                                length=len(f.data),
                                timestamp_ns=time.time_ns(),
                            )
                        while len(agent.flows.held):
                            await asyncio.sleep(0.01)
                    agent.flush()
                    status = agent.modules["tcp"].status()
                    for m in list(agent.modules.values()):
                        await agent._stop_module(m)
                    agent.receivers.close()
                    return status

                status = asyncio.run(body())
        samples = []
        for d in json_datagrams(collector, 5):
            samples += [s for s in d["samples"] if s["sampleType_tag"] == "0:3"]
            if len(samples) >= 2 * len(frames):
                break
    finally:
        collector.stop()
    assert len(samples) == 2 * len(frames) and status["annotated"] == 2 * len(frames), status
    by_header: dict[str, list[dict]] = {}
    for s in samples:
        for e in s["elements"]:
            if e.get("flowBlock_tag") == "0:1":
                by_header.setdefault(e["headerBytes"], []).append(s)
    checked = [(f, sample) for f in frames for sample in by_header["-".join(f"{b:02X}" for b in f.data)]]
    assert len(checked) >= 2 * len(frames)
    for f, sample in checked:
        info = next(e for e in sample["elements"] if e.get("flowBlock_tag") == "0:2209")
        assert info["tcpinfo_direction"] == ("sent" if f.outgoing else "received")
        assert int(info["tcpinfo_send_mss"]) == ss["mss"] == 1200 - 12
        assert int(info["tcpinfo_rtt_uS_min"]) / 1000 >= ss["min_rtt"] - 0.0011
        assert int(info["tcpinfo_path_mtu"]) == 1500
        if tcp_payload(f) > 0:
            assert sample["inputPort"] == "1073741823" and sample["outputPort"] == str(cap.ifindex)
