"""The running agent: reload, status, privilege drop, clean stop — real processes on loopback."""

from __future__ import annotations

import json
import os
import pwd
import signal
import subprocess
import time
from pathlib import Path

import pytest
from procs import free_udp_port, json_datagrams, python, start_agent, start_collector

CONFIG = "sflow {{\n  polling = {polling}\n  collector {{ ip = 127.0.0.1 udpport = {port} }}\n}}\n"


def proc_status(pid: int) -> dict[str, str]:
    fields = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        fields[key] = value.strip()
    return fields


def host_samples(collector, seconds: float) -> list[dict]:
    return [d for d in json_datagrams(collector, seconds) if any(s["sourceId"] == "2:1" for s in d["samples"])]


def wait_for(predicate, timeout: float) -> bool:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if predicate():
            return True
        time.sleep(0.1)
    return False


def test_reload_applies_a_good_file_and_refuses_a_broken_one(tmp_path: Path) -> None:
    port = free_udp_port()
    conf = tmp_path / "hsflowd.conf"
    conf.write_text(CONFIG.format(polling=1, port=port))
    auto = tmp_path / "hsflowd.auto"
    with start_collector(port, "-j") as collector, start_agent(conf, auto) as agent:
        assert wait_for(lambda: auto.exists() and "polling=1" in auto.read_text(), 10)
        assert host_samples(collector, 3)
        conf.write_text("sflow {\n  polling = 3\n  bogus = 1\n}\n")
        os.kill(agent.p.pid, signal.SIGHUP)
        time.sleep(1)
        assert agent.p.poll() is None, "a broken reload must not stop the agent"
        assert "polling=1" in auto.read_text()
        assert any("reload refused" in line and "bogus" in line for line in agent.stderr)
        assert host_samples(collector, 3), "the old settings keep running"
        conf.write_text(CONFIG.format(polling=2, port=port))
        os.kill(agent.p.pid, signal.SIGHUP)
        assert wait_for(lambda: "polling=2" in auto.read_text(), 5)
        assert agent.stop() == 0


def test_status_query_reports_counters(tmp_path: Path) -> None:
    port = free_udp_port()
    conf = tmp_path / "hsflowd.conf"
    conf.write_text(CONFIG.format(polling=1, port=port))
    auto = tmp_path / "hsflowd.auto"
    with start_collector(port, "-j") as collector, start_agent(conf, auto):
        assert host_samples(collector, 4)
        out = subprocess.run(
            python("-m", "hsflowd_py", "--status", "-s", str(tmp_path / "status.sock")),
            capture_output=True,
            text=True,
            check=True,
        )
        status = json.loads(out.stdout)
        assert status["datagrams_sent"] >= 1 and status["counter_samples"] >= 1
        assert status["collectors"][f"127.0.0.1:{port}"]["sent"] >= 1
    gone = subprocess.run(
        python("-m", "hsflowd_py", "--status", "-s", str(tmp_path / "status.sock")), capture_output=True, text=True
    )
    assert gone.returncode == 1 and "no agent answers" in gone.stderr


@pytest.mark.skipif(os.geteuid() != 0, reason="dropping privileges needs root")
def test_drops_root_and_keeps_sending(tmp_path: Path) -> None:
    port = free_udp_port()
    conf = tmp_path / "hsflowd.conf"
    conf.write_text(CONFIG.format(polling=1, port=port))
    auto = tmp_path / "hsflowd.auto"
    nobody = pwd.getpwnam("nobody")
    with start_collector(port, "-j") as collector, start_agent(conf, auto, drop_root=True) as agent:
        assert host_samples(collector, 4)
        st = proc_status(agent.p.pid)
        assert st["Uid"].split() == [str(nobody.pw_uid)] * 4
        assert int(st["CapEff"], 16) == 0 and int(st["CapPrm"], 16) == 0
        assert int(st["CapBnd"], 16) == 0 and st["NoNewPrivs"] == "1"
        assert host_samples(collector, 3), "still sending after the drop"
        assert auto.stat().st_uid == 0, "hsflowd.auto stays root's: no other nobody process may rewrite it"


def test_stop_flushes_pending_flow_samples(tmp_path: Path) -> None:
    """Samples still held in the assembler when the agent stops are sent before it exits."""
    import asyncio
    import socket

    from hsflowd_py.agent import Agent
    from hsflowd_py.config import parse_config
    from hsflowd_py.flow import DIRECTION_OUT
    from hsflowd_py.sflow.codec import decode_datagram

    sink = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sink.bind(("127.0.0.1", 0))
    sink.settimeout(2)
    settings = parse_config(
        CONFIG.format(polling=0, port=sink.getsockname()[1]).replace("polling", "datagramBytes = 8192\n  polling")
    )
    agent = Agent(settings, auto_path=str(tmp_path / "auto"))

    async def scenario() -> None:
        task = asyncio.create_task(agent.run())
        await asyncio.sleep(0.2)
        emit = agent.flows.interface(7, 10, True).emit
        for _ in range(5):
            emit(
                sample_pool=100, drops=0, direction=DIRECTION_OUT, frame_length=64, header=bytes(60), start=0,
                length=60, timestamp_ns=1,
            )  # fmt: skip
        assert agent.assembler is not None and agent.assembler.pending == 5
        agent.request_stop()
        await task

    asyncio.run(scenario())
    samples: list = []
    while True:
        try:
            samples += decode_datagram(sink.recv(9000)).samples
        except TimeoutError:
            break
    flows = [s for s in samples if getattr(s, "sampling_rate", None) == 10]
    assert [f.sequence for f in flows] == [1, 2, 3, 4, 5]
    assert all(f.ds_index == 7 and f.output == 7 for f in flows)
    sink.close()


def test_two_reloads_at_once_start_a_module_once_and_none_after_stop(tmp_path: Path) -> None:
    """Two SIGHUPs while a module is still starting: one instance; a reload once stopping: none."""
    import asyncio

    from hsflowd_py import module as module_api
    from hsflowd_py.agent import Agent
    from hsflowd_py.config import Settings, load_config

    started: list[module_api.Module] = []
    gate = asyncio.Event()

    class SlowStart(module_api.Module):
        name = "slow-start-test"

        @classmethod
        def wanted(cls, settings: Settings) -> bool:
            return settings.polling == 7

        async def start(self) -> None:
            started.append(self)
            await gate.wait()

    conf = tmp_path / "hsflowd.conf"
    conf.write_text(CONFIG.format(polling=30, port=9))
    module_api.register(SlowStart)
    try:
        agent = Agent(load_config(conf), config_path=str(conf), auto_path=str(tmp_path / "auto"))

        async def scenario() -> None:
            conf.write_text(CONFIG.format(polling=7, port=9))
            first, second = asyncio.create_task(agent.reload()), asyncio.create_task(agent.reload())
            await asyncio.sleep(0.1)
            gate.set()
            assert await first and await second
            assert len(started) == 1 and agent.modules["slow-start-test"] is started[0]
            agent.request_stop()
            conf.write_text(CONFIG.format(polling=30, port=9))
            assert not await agent.reload(), "a reload while stopping changes nothing"
            assert agent.settings.polling == 7

        asyncio.run(scenario())
    finally:
        module_api.MODULES.pop(SlowStart.name, None)


def test_settings_discovered_while_a_module_starts_reach_that_module(tmp_path: Path) -> None:
    """DNS-SD learns a setting while a reload is starting a module: the module, not yet among the
    running ones when the news comes, gets it as soon as the reload lets go of the module lock."""
    import asyncio

    from hsflowd_py import module as module_api
    from hsflowd_py.agent import Agent
    from hsflowd_py.config import Settings, load_config
    from hsflowd_py.module_context import Discovered

    gate = asyncio.Event()
    starting = asyncio.Event()

    class SlowStart(module_api.Module):
        name = "slow-start-discovered-test"

        @classmethod
        def wanted(cls, settings: Settings) -> bool:
            return settings.polling == 7

        async def start(self) -> None:
            starting.set()
            await gate.wait()

    conf = tmp_path / "hsflowd.conf"
    conf.write_text(CONFIG.format(polling=30, port=9))
    module_api.register(SlowStart)
    try:
        agent = Agent(load_config(conf), config_path=str(conf), auto_path=str(tmp_path / "auto"))

        async def scenario() -> None:
            conf.write_text(CONFIG.format(polling=7, port=9))
            reload = asyncio.create_task(agent.reload())
            await starting.wait()
            agent.set_discovered(Discovered(overrides=(("sampling", 77),)))
            gate.set()
            assert await reload
            for _ in range(100):
                await asyncio.sleep(0.01)
                if agent.modules[SlowStart.name].settings.sampling == 77:
                    break
            assert agent.settings.sampling == 77
            assert agent.modules[SlowStart.name].settings.sampling == 77

        asyncio.run(scenario())
    finally:
        module_api.MODULES.pop(SlowStart.name, None)
