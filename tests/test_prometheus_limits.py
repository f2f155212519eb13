"""The exporter's bounds: what a spoofer can make it remember, and whom it can push out.

``ExportState`` is fed decoded datagrams directly here (the same calls the
receive loop makes); ``test_prometheus_hostile.py`` does it over real sockets.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hsflowd_py.collector.exporter.fairshare import FairShare
from hsflowd_py.collector.exporter.state import ExportState, Limits
from hsflowd_py.sflow import records as rec
from hsflowd_py.sflow.samples import CounterSample, Datagram


@dataclass
class Counts:
    datagrams: int = 0
    errors: int = 0


def host(agent: str, ds_index: int = 1, sequence: int = 1) -> Datagram:
    """A host agent's counter datagram: a few series per data source."""
    records = [rec.HostMemory(mem_total=1 << 30), rec.HostCpu(cpu_user=5)]
    return Datagram(
        ipaddress.ip_address(agent), 0, sequence, sequence * 1000, [CounterSample(2, ds_index, records, sequence)]
    )


def spoofed(n: int) -> Datagram:
    return host(str(ipaddress.ip_address("10.0.0.0") + n))


def test_a_flood_of_invented_agents_never_pushes_out_an_established_one() -> None:
    limits = Limits(agents=64)
    state = ExportState(Counts(), limits=limits)
    for second in range(2):  # heard twice: established
        state.observe(host("192.0.2.1", sequence=second + 1), second, "192.0.2.1")
    for n in range(10_000):
        state.observe(spoofed(n), 2, "198.51.100.7")
    assert "192.0.2.1" in state.agents
    assert ("192.0.2.1", 2, 1) in state.sources
    assert len(state.agents) <= limits.agents
    assert state.evicted["agent"] == 10_000 - limits.newcomers


def test_a_new_real_agent_gets_in_while_a_spoofer_floods_from_one_sender() -> None:
    state = ExportState(Counts(), limits=Limits(agents=64))
    for n in range(5_000):
        state.observe(spoofed(n), 0, "198.51.100.7")
    state.observe(host("192.0.2.9"), 0, "192.0.2.9")
    for n in range(5_000, 20_000):  # the spoofer keeps on while the real agent waits for its next interval
        state.observe(spoofed(n), 1, "198.51.100.7")
    state.observe(host("192.0.2.9", sequence=2), 30, "192.0.2.9")
    assert state.agents["192.0.2.9"].datagrams == 2
    assert ("192.0.2.9", 2, 1) in state.sources


def test_established_spoofers_evict_their_own_agents_first() -> None:
    limits = Limits(agents=64)
    state = ExportState(Counts(), limits=limits)
    for real in range(10):
        for sequence in (1, 2):
            state.observe(host(f"192.0.2.{real + 1}", sequence=sequence), sequence, f"192.0.2.{real + 1}")
    for n in range(1_000):  # each spoofed agent sent twice, so that it is established
        state.observe(spoofed(n), 3, "198.51.100.7")
        state.observe(spoofed(n), 3, "198.51.100.7")
    assert all(f"192.0.2.{real + 1}" in state.agents for real in range(10))
    assert len(state.agents) <= limits.agents


def test_agents_outside_the_allowed_networks_are_refused_and_counted() -> None:
    state = ExportState(Counts(), limits=Limits(allow=(ipaddress.ip_network("192.0.2.0/24"),)))
    for n in range(100):
        state.observe(spoofed(n), 0, "198.51.100.7")
    state.observe(host("192.0.2.1"), 0, "192.0.2.1")
    assert list(state.agents) == ["192.0.2.1"]
    assert state.snapshot(0).refused == 100


def test_one_agent_claiming_many_sources_evicts_its_own_oldest() -> None:
    limits = Limits(sources=100, sources_per_agent=40)
    state = ExportState(Counts(), limits=limits)
    state.observe(host("192.0.2.1", ds_index=1), 0, "192.0.2.1")
    for ds_index in range(10_000):
        state.observe(host("203.0.113.1", ds_index=ds_index, sequence=ds_index + 1), 1, "203.0.113.1")
    mine = [k for k in state.sources if k[0] == "203.0.113.1"]
    assert len(mine) == limits.sources_per_agent
    assert sorted(k[2] for k in mine) == list(range(10_000 - 40, 10_000))  # the most recent ones
    assert ("192.0.2.1", 2, 1) in state.sources
    assert state.evicted["source"] == 10_000 - 40


def test_over_the_total_the_agent_holding_most_sources_gives_one_up() -> None:
    limits = Limits(sources=50, sources_per_agent=45)
    state = ExportState(Counts(), limits=limits)
    for n in range(10):
        state.observe(host(f"192.0.2.{n + 1}"), 0, f"192.0.2.{n + 1}")
    for ds_index in range(1_000):
        state.observe(host("203.0.113.1", ds_index=100 + ds_index, sequence=ds_index + 1), 1, "203.0.113.1")
    assert len(state.sources) == 50
    assert all((f"192.0.2.{n + 1}", 2, 1) in state.sources for n in range(10))


@pytest.mark.parametrize(("total", "per_agent"), [(40, 1_000), (1_000, 40)])
def test_series_are_bounded_in_all_and_per_agent(total: int, per_agent: int) -> None:
    state = ExportState(Counts(), limits=Limits(series=total, series_per_agent=per_agent))
    for ds_index in range(500):
        state.observe(host("203.0.113.1", ds_index=ds_index, sequence=ds_index + 1), 0, "203.0.113.1")
    snap = state.snapshot(0)
    exported = sum(len(values) + len(info) for _, values, info in snap.sources)
    assert exported == snap.series <= min(total, per_agent)
    assert exported > min(total, per_agent) - 10  # full, not emptied


def test_expiry_and_eviction_keep_the_accounting_whole() -> None:
    state = ExportState(Counts(), expiry=10, limits=Limits(agents=8, sources=20, sources_per_agent=5, series=60))
    for n in range(300):
        state.observe(host(f"10.1.{n % 13}.1", ds_index=n % 7, sequence=n // 13 + 1), n / 100, f"10.9.0.{n % 3}")
    assert state.series == sum(s.series for s in state.sources.values())
    assert all(
        state.agents[a].series == sum(s.series for k, s in state.sources.items() if k[0] == a) for a in state.agents
    )
    state.tick(100)
    assert (len(state.agents), len(state.sources), state.series) == (0, 0, 0)
    assert (len(state.newcomers), len(state.established), len(state.source_order)) == (0, 0, 0)


@pytest.mark.parametrize("field", ["agents", "sources", "sources_per_agent", "series", "series_per_agent"])
def test_limits_below_one_are_refused(field: str) -> None:
    with pytest.raises(ValueError, match=field.replace("_", " ")):
        Limits(**{field: 0})


@given(st.lists(st.tuples(st.sampled_from("add touch remove victim".split()), st.integers(0, 30), st.integers(0, 4))))
@settings(max_examples=300, deadline=None)
def test_the_victim_is_the_least_recently_seen_of_a_largest_group(steps: list[tuple[str, int, int]]) -> None:
    share: FairShare[int, int] = FairShare()
    model: dict[int, list[int]] = {}  # group → members, least recently seen first
    for op, key, group in steps:
        members = model.setdefault(group, [])
        if op == "add" and all(key not in m for m in model.values()):
            share.add(key, group)
            members.append(key)
        elif op == "touch" and key in members:
            share.touch(key, group)
            members.remove(key)
            members.append(key)
        elif op == "remove" and key in members:
            share.remove(key, group)
            members.remove(key)
        elif op == "victim" and len(share):
            victim, victim_group = share.victim()
            assert len(model[victim_group]) == max(len(m) for m in model.values())
            assert model[victim_group][0] == victim
        assert len(share) == sum(len(m) for m in model.values())
        assert all(share.count(g) == len(m) for g, m in model.items())
