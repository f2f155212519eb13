"""End to end: the agent follows a real dnsmasq's SRV and TXT records, the bundled collectors receive.

One agent run walks through the scenarios in turn, since each change waits
for a query: TTL 10 s (dnsmasq --local-ttl), so a change must show within
12 s.  The file names no collector and polls every 30 s; DNS says poll every
second, which is also what makes datagrams arrive quickly enough to check.
"""

from __future__ import annotations

import ipaddress
import itertools
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from dnsmasq import Dnsmasq, Zone, available
from procs import Proc, free_udp_port, json_datagrams, start_agent, start_collector

pytestmark = pytest.mark.skipif(not available(), reason="needs Debian's dnsmasq")

TTL = 10
WITHIN = TTL + 2
TXT = ["txtvers=1", "sampling=10", "polling=1", "headerBytes=64", "sampling.http=50", "polling.http=20"]


def wait_for(what: str, check: Callable[[], bool], timeout: float, agent: Proc) -> float:
    """Seconds until ``check()`` holds; fails with the agent's log if it does not within ``timeout``."""
    start = time.monotonic()
    while time.monotonic() - start < timeout:
        if check():
            return time.monotonic() - start
        assert agent.p.poll() is None, f"agent exited: {''.join(agent.stderr)[-3000:]}"
        time.sleep(0.1)
    raise AssertionError(f"{what} not within {timeout} s; agent log:\n{''.join(agent.stderr)[-3000:]}")


def drain(collector: Proc) -> list[dict[str, Any]]:
    return list(json_datagrams(collector, 0.05))


def collectors_in(auto: Path) -> list[str]:
    if not auto.exists():
        return []
    return sorted(line.removeprefix("collector=") for line in auto.read_text().splitlines() if "collector=" in line)


def has_host_sample(d: dict[str, Any]) -> bool:
    return any(s["sourceId"] == "2:1" for s in d["samples"])


@pytest.fixture
def setup(tmp_path: Path) -> Iterator[tuple[Dnsmasq, Proc, Proc, int, int, Path]]:
    port_a, port_b = free_udp_port(), free_udp_port()
    a, b = start_collector(port_a, "-j"), start_collector(port_b, "-j")
    dnsmasq = Dnsmasq(tmp_path, ttl=TTL)
    yield dnsmasq, a, b, port_a, port_b, tmp_path
    dnsmasq.stop()
    a.stop()
    b.stop()


def test_agent_follows_dns(setup: tuple[Dnsmasq, Proc, Proc, int, int, Path]) -> None:
    dnsmasq, a, b, port_a, port_b, tmp = setup
    conf = tmp / "hsflowd.conf"
    conf.write_text(
        f"sflow {{\n  dns-sd {{ domain = .example.test server = 127.0.0.1 port = {dnsmasq.port} firstQuery = 1 }}\n}}\n"
    )
    auto = tmp / "hsflowd.auto"
    agent = start_agent(conf, auto, "-d")
    try:
        # no collector in the file and no DNS server yet: the agent runs and sends nothing
        time.sleep(2)
        assert agent.p.poll() is None, "".join(agent.stderr)
        assert auto.exists() and collectors_in(auto) == []
        assert drain(a) == [] and drain(b) == []

        # the server comes up: the pending query is retried and the SRV target gets the datagrams
        dnsmasq.start(Zone(srv=[("a.example.test", port_a)], txt=TXT, hosts={"a.example.test": ["127.0.0.1"]}))
        hosts = []
        for d in json_datagrams(a, 15):
            if has_host_sample(d):
                hosts.append(d)
            if len(hosts) == 3:
                break
        assert len(hosts) == 3, "".join(agent.stderr)[-3000:]
        # polling = 1 from TXT, not the file's 30
        uptimes = [int(d["sysUpTime"]) for d in hosts]
        assert all(500 <= t1 - t0 <= 1600 for t0, t1 in itertools.pairwise(uptimes)), uptimes
        text = auto.read_text()
        assert collectors_in(auto) == [f"127.0.0.1 {port_a}"]
        for line in ("sampling=10", "polling=1", "header=64", "sampling.http=50", "polling.http=20"):
            assert line in text.splitlines()

        # the SRV record moves to another target: the agent follows within TTL + 2 s
        dnsmasq.restart(Zone(srv=[("b.example.test", port_b)], txt=TXT, hosts={"b.example.test": ["127.0.0.1"]}))
        changed = time.monotonic()
        assert next(json_datagrams(b, WITHIN), None) is not None, "".join(agent.stderr)[-3000:]
        moved_after = time.monotonic() - changed
        assert collectors_in(auto) == [f"127.0.0.1 {port_b}"]
        drain(a)
        time.sleep(2.5)
        assert drain(a) == [], "the old collector still receives"

        # two SRV records, one whose target has only an IPv6 address
        dnsmasq.restart(
            Zone(
                srv=[("a.example.test", port_a), ("six.example.test", port_b)],
                txt=TXT,
                hosts={"a.example.test": ["127.0.0.1"], "six.example.test": ["::1"]},
            )
        )
        wait_for("two collectors", lambda: len(collectors_in(auto)) == 2, WITHIN, agent)
        assert collectors_in(auto) == [f"127.0.0.1 {port_a}", f"::1 {port_b}"]
        drain(a)
        drain(b)
        to_a = next(json_datagrams(a, 3), None)
        to_b = next(json_datagrams(b, 3), None)
        assert to_a is not None and to_b is not None
        sources = {ipaddress.ip_address(d["datagramSourceIP"]) for d in (to_a, to_b)}
        assert sources == {ipaddress.ip_address("127.0.0.1"), ipaddress.ip_address("::1")}

        # the DNS server dies: the query fails, the agent says so once and keeps sending to both
        dnsmasq.stop()
        killed_at = len(agent.stderr)
        log_failed = "DNS-SD query for _sflow._udp.example.test failed, keeping"
        wait_for("a failed query", lambda: log_failed in "".join(agent.stderr[killed_at:]), WITHIN + 6, agent)
        wait_for("a second failed query", lambda: "failed again" in "".join(agent.stderr[killed_at:]), 10, agent)
        drain(a)
        drain(b)
        assert next(json_datagrams(a, 3), None) is not None and next(json_datagrams(b, 3), None) is not None
        assert collectors_in(auto) == [f"127.0.0.1 {port_a}", f"::1 {port_b}"]

        # back, without the SRV record: the agent stops sending and says so
        dnsmasq.start(Zone(txt=TXT))
        wait_for("no collectors", lambda: collectors_in(auto) == [], WITHIN, agent)
        drain(a)
        drain(b)
        time.sleep(2.5)
        assert drain(a) == [] and drain(b) == []
        log = "".join(agent.stderr[killed_at:])
        assert log.count(log_failed) == 1, "a failure streak is logged once"
        assert "answers again" in log and "no SRV record for _sflow._udp.example.test:" in log
        assert "Traceback" not in "".join(agent.stderr)
        print(f"moved to the new SRV target {moved_after:.1f} s after the change (TTL {TTL} s)")
    finally:
        assert agent.stop() == 0
