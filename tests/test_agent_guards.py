"""The guard promise around module hooks that the core calls outside the flow and poll paths.

In-process agents on a unix socket in the test's directory: no namespaces, no traffic.
"""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

import pytest

from hsflowd_py import module as module_api
from hsflowd_py import status
from hsflowd_py.agent import Agent
from hsflowd_py.config import Settings, load_config, parse_config

CONFIG = "sflow {{\n  polling = {polling}\n  collector {{ ip = 127.0.0.1 udpport = 9 }}\n}}\n"


class BrokenStatus(module_api.Module):
    """A module whose status hook raises, as a module bug would."""

    name = "broken-status-test"

    def status(self) -> dict[str, int]:
        raise RuntimeError("status bug")


def test_a_raising_status_hook_is_logged_once_and_the_socket_still_answers(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    agent = Agent(
        parse_config(CONFIG.format(polling=20)), auto_path=str(tmp_path / "auto"), status_path=str(tmp_path / "s.sock")
    )
    agent.modules[BrokenStatus.name] = BrokenStatus(agent.context, agent.settings)

    async def scenario() -> list[dict]:
        server = await agent._serve_status()
        assert server is not None
        try:
            loop = asyncio.get_running_loop()
            return [await loop.run_in_executor(None, status.query, str(tmp_path / "s.sock"), 2.0) for _ in range(2)]
        finally:
            server.close()

    with caplog.at_level(logging.ERROR, logger="hsflowd"):
        first, second = asyncio.run(scenario())
        final = agent.status()  # what SIGUSR1 and the last log line show
    assert first["modules"][BrokenStatus.name] == {"status_errors": 1}
    assert second["modules"][BrokenStatus.name] == {"status_errors": 2}
    assert final["modules"][BrokenStatus.name] == {"status_errors": 3} and agent.stats["faults"] == 3
    logged = [r for r in caplog.records if "status failed" in r.getMessage()]
    assert len(logged) == 1 and logged[0].exc_info is not None


def test_a_reload_during_a_module_start_reaches_the_module_it_started(tmp_path: Path) -> None:
    """A second SIGHUP while the first is still starting a module: the new settings reach that module too."""
    gate = asyncio.Event()
    started: list[module_api.Module] = []

    class SlowStart(module_api.Module):
        name = "slow-start-settings-test"

        @classmethod
        def wanted(cls, settings: Settings) -> bool:
            return settings.polling in (7, 8)

        async def start(self) -> None:
            started.append(self)
            await gate.wait()

    conf = tmp_path / "hsflowd.conf"
    conf.write_text(CONFIG.format(polling=30))
    module_api.register(SlowStart)
    try:
        agent = Agent(load_config(conf), config_path=str(conf), auto_path=str(tmp_path / "auto"))

        async def scenario() -> None:
            conf.write_text(CONFIG.format(polling=7))
            first = asyncio.create_task(agent.reload())
            await asyncio.sleep(0.05)
            assert len(started) == 1, "the first reload is starting the module"
            conf.write_text(CONFIG.format(polling=8))
            second = asyncio.create_task(agent.reload())
            await asyncio.sleep(0.05)
            gate.set()
            assert await first and await second

        asyncio.run(scenario())
        assert agent.settings.polling == 8
        assert agent.modules[SlowStart.name] is started[0] and started[0].settings.polling == 8
    finally:
        module_api.MODULES.pop(SlowStart.name, None)
