"""The pcap module's own bookkeeping, in process: what it does when the eBPF build process dies, the flow
sequence of an interface it reopens, and the descriptors a classic sampler that cannot open leaves behind.

The module runs inside a real :class:`Agent` whose datagrams are kept rather than sent, on a real veth pair.
"""

from __future__ import annotations

import asyncio
import gc
import ipaddress
import json
import os
import socket
import subprocess
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest
from netns import VethNamespace
from pcap_netns import veth_pair
from test_pcap_samplers import Sink

from hsflowd_py.agent import Agent
from hsflowd_py.config.parser import parse_config
from hsflowd_py.modules.pcap import PcapModule, ebpf, ebpf_build
from hsflowd_py.modules.pcap.cbpf import CbpfSampler
from hsflowd_py.modules.pcap.interfaces import Tap
from hsflowd_py.modules.pcap.sampler import SamplerError
from hsflowd_py.sflow.assembler import DatagramAssembler
from hsflowd_py.sflow.codec import decode_datagram
from hsflowd_py.sflow.samples import FlowSample

DIES = {
    "silently": ("import sys\nsys.exit(0)\n", "ended without replying (exit status 0)"),
    "segfault": ("import os, signal\nos.kill(os.getpid(), signal.SIGSEGV)\n", "(killed by SIGSEGV)"),
    "traceback": ("raise IndexError('list index out of range')\n", "(exit status 1): IndexError: list index"),
}


@pytest.fixture
def frozen_gc() -> Iterator[None]:
    """The module freezes the collector's view at start-up; give the rest of the test process its own back."""
    yield
    gc.unfreeze()


def builder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, script: str) -> None:
    """Run ``script`` as the eBPF build process (same arguments and socket as the real one), the only loader."""
    monkeypatch.setenv("HSFLOWD_PY_EBPF_LOADER", "bcc")
    path = tmp_path / "builder.py"
    path.write_text(script)
    monkeypatch.setattr(ebpf, "BUILDER", str(path))


@pytest.mark.parametrize("how", list(DIES))
def test_a_build_process_that_dies_without_replying_says_how(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, how: str
) -> None:
    script, expected = DIES[how]
    builder(tmp_path, monkeypatch, script)
    with pytest.raises(SamplerError, match="the eBPF build process ended without replying") as e:
        asyncio.run(ebpf.build())
    assert expected in str(e.value)


def test_a_reply_that_is_not_json_is_a_sampler_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    builder(tmp_path, monkeypatch, "import socket, sys\nsocket.socket(fileno=int(sys.argv[1])).send(b'\\x00oops')\n")
    with pytest.raises(SamplerError, match=r"sent an unreadable reply: b'\\x00oops'"):
        asyncio.run(ebpf.build())


def test_an_exception_without_a_message_is_still_reported(monkeypatch: pytest.MonkeyPatch) -> None:
    """MemoryError() (LLVM out of memory) has an empty message: the build process reports its type."""

    def out_of_memory(source: str, cflags: list[str]) -> None:
        raise MemoryError

    monkeypatch.setattr(ebpf_build, "build", out_of_memory)
    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    with ours:
        assert ebpf_build.main(["ebpf_build.py", str(theirs.detach()), "sampler.bpf.c"]) == 1
        reply = json.loads(ours.recv(65536))
    assert reply["ok"] is False and reply["error"].startswith("MemoryError")


def agent_for(conf: str, sent: list[bytes]) -> Agent:
    """A real agent whose datagrams land in ``sent``."""
    agent = Agent(parse_config(f"sflow {{ collector {{ ip = 127.0.0.1 }} {conf} }}"))
    agent.flows.assembler = DatagramAssembler(ipaddress.ip_address("192.0.2.1"), 0, 1400, sent.extend)
    return agent


async def ping(v: VethNamespace, count: int) -> None:
    """``count`` echoes and their replies, then time for the last of them to leave the kernel's rings."""
    proc = await asyncio.create_subprocess_exec(
        "ping", "-c", str(count), "-i", "0.02", v.ns_ip, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    assert await proc.wait() == 0
    await asyncio.sleep(0.3)


def flow_samples(sent: list[bytes], ifindex: int) -> list[FlowSample]:
    return [
        s
        for d in sent
        for s in decode_datagram(d).samples
        if isinstance(s, FlowSample) and (s.ds_class, s.ds_index) == (0, ifindex)
    ]


@pytest.mark.root
@pytest.mark.usefixtures("frozen_gc")
def test_auto_falls_back_to_classic_bpf_when_the_build_process_dies(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    runs = tmp_path / "runs"
    builder(tmp_path, monkeypatch, f"open({str(runs)!r}, 'a').write('run\\n')\n{DIES['segfault'][0]}")
    sent: list[bytes] = []
    with veth_pair("pcbd") as v:
        agent = agent_for(f"pcap {{ dev = {v.host_dev} sampling = 1 }}", sent)

        async def run() -> tuple[str | None, list[str]]:
            module = PcapModule(agent.context, agent.settings)
            await module.start()
            try:
                await ping(v, 3)
                agent.flush()
                await module.reconcile()  # the next check does not try to build again
                return module.ebpf_unavailable, [e.sampler.kind for e in module.open.values()]
            finally:
                await module.stop()

        unavailable, kinds = asyncio.run(run())
        ifindex = v.host_ifindex
    assert unavailable is not None and "killed by SIGSEGV" in unavailable
    assert kinds == ["cbpf"]
    assert runs.read_text() == "run\n", "built once, not at every check"
    assert len(flow_samples(sent, ifindex)) >= 6


@pytest.mark.root
@pytest.mark.usefixtures("frozen_gc")
@pytest.mark.parametrize("how", ["module restart", "sampler change"])
def test_an_interface_reopened_restarts_its_flow_sequence(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, how: str
) -> None:
    """The new sampler counts the pool from 0 again; sequence 1 tells the collector the data source restarted,
    rather than a running sequence whose pool went backwards."""
    builder(tmp_path, monkeypatch, DIES["silently"][0])  # sampler = auto gets classic BPF, without waiting on bcc
    sent: list[bytes] = []
    with veth_pair("pcsq") as v:
        agent = agent_for(f"pcap {{ dev = {v.host_dev} sampling = 1 sampler = cbpf }}", sent)

        async def run() -> None:
            module = PcapModule(agent.context, agent.settings)
            await module.start()
            await ping(v, 5)
            agent.flush()
            if how == "module restart":
                await module.stop()
                module = PcapModule(agent.context, agent.settings)
                await module.start()
            else:  # what a reload does: new settings, then the reconcile it schedules
                block = replace(agent.settings.pcap[0], sampler="auto")
                module.reconfigure(agent.settings.with_block("pcap", (block,)))
                await module.reconcile()
            try:
                assert len(module.open) == 1
                await ping(v, 5)
                agent.flush()
            finally:
                await module.stop()

        asyncio.run(run())
        ifindex = v.host_ifindex
    flows = flow_samples(sent, ifindex)
    seqs = [s.sequence for s in flows]
    assert 1 in seqs[1:], f"the sequence ran on across the reopen: {seqs}"
    restart = seqs.index(1, 1)
    assert restart >= 10 and len(seqs) - restart >= 10, seqs
    assert seqs == [*range(1, restart + 1), *range(1, len(seqs) - restart + 1)]
    pools = [s.sample_pool for s in flows]
    assert pools[restart] < pools[restart - 1], "the reopened interface's pool starts again"


@pytest.mark.root
def test_a_classic_sampler_that_cannot_read_the_counters_leaks_no_descriptor(tmp_path: Path) -> None:
    """The interface vanished between its two statistics files: the one already opened is closed again."""
    stats = tmp_path / "sys/class/net/gone0/statistics"
    stats.mkdir(parents=True)
    (stats / "rx_packets").write_text("7\n")
    tap = Tap("gone0", 999_999, 1, 128, False, "cbpf", None, True)

    async def run() -> None:
        sampler = CbpfSampler(Sink(), tmp_path)
        with pytest.raises(SamplerError, match="No such file"):
            sampler.open(tap)
        sampler.stop()

    before = sorted(os.listdir("/proc/self/fd"))
    asyncio.run(run())
    assert sorted(os.listdir("/proc/self/fd")) == before
