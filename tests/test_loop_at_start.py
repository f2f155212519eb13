"""The agent's loop keeps answering while its modules do their blocking work: BPF programs loaded
at start, the kernel's symbols read to name where packets were dropped.

A real agent starts in this process with ``pcap`` on eBPF (libbpf) on a veth pair and ``dropmon { }``,
while a task asking to wake every millisecond ticks; then a datagram to a closed port is dropped.
Every call of the libbpf loader (``bpf_loader.load``) and of the symbol reader (``Kallsyms.resolve``)
is watched through a profile hook on the threads started meanwhile (an observer: nothing stands in
for them, and the loop's own thread is not watched): each object must have been loaded, and the
dropping function named, on such a thread, and the loop must have ticked while pcap's program loaded
(the kernel's verifier takes most of a second).  Work on the loop would not be seen at all, and a
loop that blocked waiting for the thread would not tick.
"""

from __future__ import annotations

import asyncio
import gc
import ipaddress
import socket
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import Any

import pytest
from pcap_netns import veth_pair

from hsflowd_py import bpf_loader
from hsflowd_py.agent import Agent
from hsflowd_py.config.parser import parse_config
from hsflowd_py.modules import dropmon
from hsflowd_py.modules.dropmon.kallsyms import Kallsyms
from hsflowd_py.modules.pcap import ebpf_core
from hsflowd_py.sflow.assembler import DatagramAssembler
from hsflowd_py.tasks import cancel


@dataclass
class Call:
    """One call of a watched function: which, its ``path`` argument if any, when it began and ended."""

    function: str
    path: Path | None
    began: float
    ended: float | None = None


WATCHED = {bpf_loader.load.__code__: "load", Kallsyms.resolve.__code__: "resolve"}


class Watch:
    """Notes each call of the ``WATCHED`` functions on the threads started while it is on
    (``threading.setprofile``)."""

    def __init__(self) -> None:
        self.calls: list[Call] = []
        self._open: dict[int, Call] = {}

    def __enter__(self) -> Watch:
        threading.setprofile(self._profile)
        return self

    def __exit__(self, *exc: object) -> None:
        threading.setprofile(None)  # type: ignore[arg-type]

    def _profile(self, frame: FrameType, event: str, arg: Any) -> None:
        function = WATCHED.get(frame.f_code)
        if function is None:
            return
        if event == "call":
            call = self._open[id(frame)] = Call(function, frame.f_locals.get("path"), time.monotonic())
            self.calls.append(call)
        elif event == "return" and (call := self._open.pop(id(frame), None)) is not None:
            call.ended = time.monotonic()


async def ticker(ticks: list[float]) -> None:
    """When each 1 ms wake-up came."""
    while True:
        ticks.append(time.monotonic())
        await asyncio.sleep(0.001)


@pytest.mark.root
def test_blocking_work_runs_off_the_loop_while_it_answers(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HSFLOWD_PY_EBPF_LOADER", "libbpf")  # no fallback to bcc could hide a failed load
    ticks: list[float] = []
    with veth_pair("pcst", ipv6=False) as v:
        conf = f"sflow {{ collector {{ ip = 127.0.0.1 }} pcap {{ dev = {v.host_dev} sampling = 10 }} dropmon {{ }} }}"
        agent = Agent(parse_config(conf), auto_path=str(tmp_path / "hsflowd.auto"))
        agent.flows.assembler = DatagramAssembler(ipaddress.ip_address("192.0.2.1"), 0, 1400, lambda d: None)

        async def start() -> dict[str, Any]:
            ticking = asyncio.create_task(ticker(ticks))
            running = asyncio.create_task(agent.run())
            try:
                for _ in range(600):
                    pcap, drops = agent.modules.get("pcap"), agent.modules.get("dropmon")
                    if pcap is not None and pcap.open and drops is not None:
                        break
                    await asyncio.sleep(0.05)
                drops = agent.modules["dropmon"]
                with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as closed_port:
                    for _ in range(100):  # until the drop is sent (dropmon drains every 0.1 s)
                        closed_port.sendto(b"dropped", ("127.0.0.1", 9))
                        await asyncio.sleep(0.05)
                        if drops.stats["discard_samples"]:
                            break
                return {
                    "open": [(e.tap.name, e.sampler.kind) for e in agent.modules["pcap"].open.values()],
                    "loader": agent.modules["pcap"].samplers["ebpf"].loaded.loader,
                    "dropmon": drops.loaded is not None,
                    "discard samples": drops.stats["discard_samples"] > 0,
                }
            finally:
                agent.request_stop()
                await running
                await cancel(ticking)

        try:
            with Watch() as watch:
                state = asyncio.run(start())
        finally:
            gc.unfreeze()  # the pcap module froze the collector's view at start-up
    assert state == {"open": [(v.host_dev, "ebpf")], "loader": "libbpf", "dropmon": True, "discard samples": True}
    by_object = {call.path: call for call in watch.calls if call.function == "load"}
    assert sorted(by_object) == sorted([ebpf_core.OBJECT, dropmon.OBJECT]), watch.calls
    assert any(call.function == "resolve" for call in watch.calls), "no drop's function was named on a thread"
    assert all(call.ended is not None for call in watch.calls), watch.calls
    pcap_load = by_object[ebpf_core.OBJECT]
    assert pcap_load.ended is not None
    during = [t for t in ticks if pcap_load.began < t < pcap_load.ended]
    assert len(during) >= 2, f"the loop did not answer while pcap's program loaded ({len(ticks)} ticks in all)"
