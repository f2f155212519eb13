"""SIGHUP and dns-sd {}: a changed block starts discovery over, a removed one hands back to the file."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from dnsmasq import Dnsmasq, Zone, available

from hsflowd_py.agent import Agent, Discovered
from hsflowd_py.config import load_config

pytestmark = pytest.mark.skipif(not available(), reason="needs Debian's dnsmasq")


async def until(check: Callable[[], bool], timeout: float = 5) -> None:
    end = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < end, "not within the timeout"
        await asyncio.sleep(0.05)


def dns_sd_conf(domain: str, server: Dnsmasq) -> str:
    return f"sflow {{ dns-sd {{ domain = {domain} server = 127.0.0.1 port = {server.port} firstQuery = 0 }} }}\n"


def test_reload_restarts_discovery_or_ends_it(tmp_path: Path) -> None:
    one, two = Dnsmasq(tmp_path / "1"), Dnsmasq(tmp_path / "2")
    for server, zone, port in ((one, "example.test", 7001), (two, "other.test", 7002)):
        server.workdir.mkdir()
        server.start(Zone(name=zone, srv=[(f"c.{zone}", port)], hosts={f"c.{zone}": ["127.0.0.1"]}))
    conf = tmp_path / "hsflowd.conf"

    async def scenario() -> None:
        conf.write_text(dns_sd_conf(".example.test", one))
        agent = Agent(load_config(conf), config_path=str(conf))
        assert await agent.reload()  # starts the modules the file asks for
        await until(lambda: agent.discovered.collectors == (("127.0.0.1", 7001),))

        conf.write_text(dns_sd_conf(".other.test", two))
        assert await agent.reload()
        await until(lambda: agent.discovered.collectors == (("127.0.0.1", 7002),))

        conf.write_text("sflow { collector { ip = 127.0.0.1 udpport = 7003 } }\n")
        assert await agent.reload()
        assert "dns-sd" not in agent.modules
        assert agent.discovered == Discovered()
        assert agent.collector_targets() == [("127.0.0.1", 7003, None)]
        agent.receivers.close()

    try:
        asyncio.run(scenario())
    finally:
        one.stop()
        two.stop()
