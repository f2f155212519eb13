"""Pollers with a blocking read: read off the loop in one batch per tick, at most a budget of them,
collected back on the loop; those over the budget move to the next tick for good.

An in-process agent sending to a discard port on loopback; no namespaces, no traffic.
"""

from __future__ import annotations

import asyncio
import threading
import time
from pathlib import Path

import pytest

from hsflowd_py.agent import READS_PER_TICK, Agent
from hsflowd_py.config import parse_config
from hsflowd_py.pollers import PollerSpec
from hsflowd_py.sflow.records import HostAdapters, HostParent, Record

CONFIG = "sflow { polling = 10 collector { ip = 127.0.0.1 udpport = 9 } }"


class Source:
    """A data source whose read notes the thread it ran on, and whose collect notes the loop's."""

    def __init__(self, fail: bool = False) -> None:
        self.fail = fail
        self.read_on: list[int] = []
        self.collected_on: list[int] = []

    def read(self) -> None:
        if self.fail:
            raise OSError("the source went away")
        self.read_on.append(threading.get_ident())

    def collect(self) -> list[Record]:
        self.collected_on.append(threading.get_ident())
        return [HostParent(ds_class=2, ds_index=1)]


def test_reads_run_off_the_loop_within_the_budget_and_spread_over_ticks(tmp_path: Path) -> None:
    agent = Agent(parse_config(CONFIG), auto_path=str(tmp_path / "auto"))
    total = READS_PER_TICK * 2 + 5
    sources = [Source() for _ in range(total)]
    broken, dropped = Source(fail=True), Source()

    async def scenario() -> tuple[int, list[int], list[int]]:
        agent.apply_settings()
        for index, source in enumerate([broken, dropped, *sources]):
            agent.add_poller(PollerSpec(3, index + 1, source.collect, f"source {index}", True, source.read))
        loop_thread = threading.get_ident()
        per_tick = []
        for tick in range(4):
            if tick:
                await asyncio.sleep(1.0)  # the agent's tick interval: the postponed ones are due again
            agent.tick()
            if tick == 0:
                agent.remove_poller(3, 2)  # gone while its read is under way: never collected
            for _ in range(500):
                await asyncio.sleep(0.01)
                if not any(p.reading for p in agent.pollers.values()):
                    break
            per_tick.append(sum(len(s.collected_on) for s in sources))
        return loop_thread, per_tick, [p.next_due > time.monotonic() + 5 for p in agent.pollers.values()]

    loop_thread, per_tick, later = asyncio.run(scenario())
    assert per_tick == [READS_PER_TICK - 2, 2 * READS_PER_TICK - 2, total, total]
    assert all(len(s.read_on) == 1 and s.read_on[0] != loop_thread for s in sources)
    assert all(s.collected_on == [loop_thread] for s in sources)
    assert broken.collected_on == [] and dropped.read_on and dropped.collected_on == []
    assert agent.stats["faults"] == 1 and agent.stats["counter_samples"] == total
    assert all(later), "each polled once, next due an interval after its own tick"


def test_the_host_sample_is_read_off_the_loop_with_container_ports_left_out(tmp_path: Path) -> None:
    """The host poller declares its read: the records read on another thread make the next host
    sample, the ports containers claimed by then left out as on the loop."""
    agent = Agent(parse_config(CONFIG), auto_path=str(tmp_path / "auto"))
    on_loop = agent.host_records()
    adapters = next(r for r in on_loop if isinstance(r, HostAdapters)).adapters
    if not adapters:
        pytest.skip("no adapter in this host's sample to leave out")
    agent.context.claim_container_ports([adapters[0].if_index])
    reader = threading.Thread(target=agent.read_host)
    reader.start()
    reader.join()
    off_loop = agent.host_records()
    assert [type(r) for r in off_loop] == [type(r) for r in on_loop]
    ported = next(r for r in off_loop if isinstance(r, HostAdapters)).adapters
    assert [a.if_index for a in ported] == [a.if_index for a in adapters[1:]]
