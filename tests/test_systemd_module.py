"""The systemd module inside a real Agent (without D-Bus): data sources, 0:2100, waiting for tcp's answer."""

from __future__ import annotations

import asyncio
import os
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest
from test_systemd_owners import Server, capture, entities, expected, tcp_exchange
from test_systemd_service import LiveCgroup

from hsflowd_py.agent import Agent
from hsflowd_py.config import parse_config
from hsflowd_py.enrichers import Enricher
from hsflowd_py.flow import Fact, SampledPacket
from hsflowd_py.module import Module
from hsflowd_py.modules.systemd import SystemdModule
from hsflowd_py.modules.systemd.service import service_uuid
from hsflowd_py.modules.systemd.traffic import ServiceMarking
from hsflowd_py.sflow.codec import decode_datagram
from hsflowd_py.sflow.records import ExtendedEntities, HostCpu, HostMemory, VirtCpu, VirtMemory, VirtNode


@pytest.fixture
def sink() -> Iterator[socket.socket]:
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind(("127.0.0.1", 0))
    s.settimeout(0.5)
    yield s
    s.close()


@pytest.fixture
def agents() -> Iterator[list[Agent]]:
    made: list[Agent] = []
    yield made
    for agent in made:
        agent.receivers.close()


def agent_for(agents: list[Agent], sink: socket.socket, tmp_path: Path, systemd: str = "systemd { }") -> Agent:
    settings = parse_config(f"sflow {{ collector {{ ip = 127.0.0.1 udpport = {sink.getsockname()[1]} }} {systemd} }}")
    agent = Agent(settings, auto_path=str(tmp_path / "auto"))
    agent.apply_settings()
    agents.append(agent)
    return agent


def received(sink: socket.socket) -> list:
    samples = []
    while True:
        try:
            samples += decode_datagram(sink.recv(9000)).samples
        except TimeoutError:
            return samples


def test_the_host_sample_counts_services_in_one_virtual_node(
    agents: list[Agent], sink: socket.socket, tmp_path: Path
) -> None:
    agent = agent_for(agents, sink, tmp_path)
    module = SystemdModule(agent.context, agent.settings)
    for name in ("a.service", "b.service", "c.service"):
        module._track(name, "")

    class Containers(Module):
        """A second module reporting 3:N data sources, as the docker module does."""

        name = "four-containers"

        def virtual_domains(self) -> int:
            return 4

    agent.modules = {"systemd": module}
    records = agent.host_records()
    node = records[-1]
    cpu = next(r for r in records if isinstance(r, HostCpu))
    mem = next(r for r in records if isinstance(r, HostMemory))
    assert isinstance(node, VirtNode)
    assert (node.mhz, node.cpus, node.memory, node.num_domains) == (cpu.cpu_speed, cpu.cpu_num, mem.mem_total, 3)
    # with the docker module's containers: one record, both counts
    agent.modules["four-containers"] = Containers(agent.context, agent.settings)
    assert [r.num_domains for r in agent.host_records() if isinstance(r, VirtNode)] == [7]


def test_a_tracked_service_polls_and_sends_its_final_sample(
    agents: list[Agent], sink: socket.socket, tmp_path: Path
) -> None:
    cgroup = LiveCgroup("sdmod")
    try:
        cgroup.start("python3", "-c", "import time; x = b'x' * (32 << 20); print('ready', flush=True); time.sleep(60)")
        agent = agent_for(agents, sink, tmp_path)
        module = SystemdModule(agent.context, agent.settings)
        module._read_host()
        module._track("sleeper.service", cgroup.path)
        svc = module.services["sleeper.service"]
        assert svc.ds_index == agent.ds_indexes.allocate(service_uuid(agent.uuid, "sleeper.service").bytes)
        poller = agent.pollers[(3, svc.ds_index)]
        for _ in range(50):  # until the process has allocated
            if svc.records()[3].memory >= 32 << 20:
                break
            asyncio.run(asyncio.sleep(0.1))
        agent.poll(poller)
        for p in cgroup.procs:
            p.kill()
            p.wait()
    finally:
        cgroup.close()
    module._forget("sleeper.service")
    agent.flush()
    assert (3, svc.ds_index) not in agent.pollers and "sleeper.service" not in module.services
    mine = [s for s in received(sink) if (s.ds_class, s.ds_index) == (3, svc.ds_index)]
    assert len(mine) == 2
    polled, final = ({type(r): r for r in s.records} for s in mine)
    assert polled[VirtCpu].state == 1 and final[VirtCpu].state == 5
    assert final[VirtMemory].memory == polled[VirtMemory].memory >= 32 << 20  # the cgroup is gone: last values
    assert final[VirtCpu].cpu_time >= polled[VirtCpu].cpu_time


@pytest.fixture
def server() -> Iterator[Server]:
    cgroup = LiveCgroup("sdwait")
    try:
        yield Server(cgroup)
    finally:
        cgroup.close()


class SocketAnswer(Enricher):
    """Writes what tcp writes (``Fact.SOCKET``), at once or when the test answers, as tcp does after its look-up."""

    reads = Fact.NONE
    writes = Fact.SOCKET

    def __init__(self, cgroup_id: int) -> None:
        self.cgroup_id = cgroup_id
        self.later: list[tuple[asyncio.Future[None], SampledPacket]] = []
        self.at_once = False

    def enrich(self, packet: SampledPacket) -> asyncio.Future[None] | None:
        if self.at_once:
            packet.cgroup_id = self.cgroup_id
            return None
        fut = asyncio.get_running_loop().create_future()
        self.later.append((fut, packet))
        return fut

    def answer(self) -> None:
        for fut, packet in self.later:
            packet.cgroup_id = self.cgroup_id
            fut.set_result(None)


def test_marking_waits_for_the_enricher_whose_answer_it_reads(
    agents: list[Agent], tmp_path: Path, sink: socket.socket, server: Server
) -> None:
    """The core runs marking (reads SOCKET) after the enricher that writes it, and only once a held
    sample's answer is in; a sample answered at once is marked at once and never held."""
    packets = [p for p in capture(server.port, lambda: tcp_exchange(server.port)) if expected(p, server.port)]
    agent = agent_for(agents, sink, tmp_path, "systemd { markTraffic = on }")
    module = SystemdModule(agent.context, agent.settings)
    module.services["echo.service"] = server.service
    module.owners.set_services([server.service])
    assert server.service.dirs.unified is not None
    answers = SocketAnswer(os.stat(server.service.dirs.unified).st_ino)
    (marking,) = module.enrichers()
    agent.flows.set_enrichers([(module, "systemd", marking), (module, "zzz-tcp", answers)])  # names would put tcp last

    def emit(p: SampledPacket) -> None:  # as a sampler hands a packet over
        agent.flows.interface(p.ds_index, 1, True).emit(
            sample_pool=1, drops=0, direction=p.direction, frame_length=p.frame_length, header=p.header, start=0,
            length=len(p.header), timestamp_ns=1,
        )  # fmt: skip

    async def run() -> None:
        emit(packets[0])
        await asyncio.sleep(0.05)
        (held,) = [p for _, p in answers.later]
        assert len(agent.flows.held) == 1 and entities(held) is None, "marking waits for the answer"
        answers.answer()
        await asyncio.sleep(0)  # the answer's done-callbacks run: marking, then the sample is packed
        assert entities(held) == expected(packets[0], server.port)
        answers.at_once = True
        emit(packets[1])  # marked on the spot, never held
        assert len(agent.flows.held._queue) == 0 or agent.flows.held._queue[-1].packet is held
        agent.flush()

    asyncio.run(run())
    assert module.owners.stats["scans"] == 0
    assert module.status()["marked"] == 2
    sent = [s for s in received(sink) if s.ds_index == packets[0].ds_index]
    marks = [tuple(r.values()) for s in sent for r in s.records if isinstance(r, ExtendedEntities)]
    assert marks == [expected(packets[0], server.port), expected(packets[1], server.port)]


def test_marking_is_an_enricher_only_with_mark_traffic(
    agents: list[Agent], sink: socket.socket, tmp_path: Path
) -> None:
    for text, want in (("systemd { markTraffic = on }", [ServiceMarking]), ("systemd { }", [])):
        agent = agent_for(agents, sink, tmp_path, text)
        module = SystemdModule(agent.context, agent.settings)
        assert [type(e) for e in module.enrichers()] == want
    module.reconfigure(parse_config("sflow { collector { ip = 127.0.0.1 } systemd { markTraffic = on } }"))
    assert [type(e) for e in module.enrichers()] == [ServiceMarking], "a reload turns marking on"


def test_cgroup_root_picks_the_tree_to_read_when_two_are_mounted(tmp_path: Path) -> None:
    """An agent in a container may see its own cgroups and the host's (mounted under /host)."""
    (tmp_path / "proc/self").mkdir(parents=True)
    (tmp_path / "proc/self/mountinfo").write_text(
        "30 25 0:26 / /sys/fs/cgroup rw,nosuid,nodev,noexec,relatime - cgroup2 cgroup2 rw,nsdelegate\n"
        "41 25 0:26 / /host/sys/fs/cgroup rw,nosuid,nodev,noexec,relatime - cgroup2 cgroup2 rw,nsdelegate\n"
    )
    (tmp_path / "proc/meminfo").write_text("MemTotal:       16318412 kB\n")
    for text, mount_points in (
        ("systemd { cgroupRoot = /host/sys/fs/cgroup }", [tmp_path / "host/sys/fs/cgroup"]),
        ("systemd { }", [tmp_path / "sys/fs/cgroup"]),
        ("systemd { cgroupRoot = /nowhere }", [tmp_path / "sys/fs/cgroup", tmp_path / "host/sys/fs/cgroup"]),
    ):
        settings = parse_config(f"sflow {{ collector {{ ip = 127.0.0.1 }} {text} }}")
        module = SystemdModule(Agent(settings, root=tmp_path, auto_path=str(tmp_path / "auto")).context, settings)
        module._read_host()
        assert [m.mount_point for m in module.mounts] == mount_points, text
        assert module.mem_total == 16318412 * 1024
