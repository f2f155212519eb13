"""The exporter's metric table and state: names from the record table, unwrapping, naming, expiry, lost datagrams."""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hsflowd_py.collector.exporter import state as state_module
from hsflowd_py.collector.exporter.metricspec import INFO, NAMING, NOT_EXPORTED, PLANS, _Declared, _plan_field
from hsflowd_py.collector.exporter.state import AgentState, ExportState
from hsflowd_py.sflow import records as rec
from hsflowd_py.sflow.codec import decode_datagram, encode_datagram
from hsflowd_py.sflow.records import COUNTER_RECORDS
from hsflowd_py.sflow.samples import CounterSample, Datagram, FlowSample, UnknownRecord
from hsflowd_py.sflow.xdr import DecodeError

AGENT = ipaddress.ip_address("192.0.2.5")


@dataclass
class Counts:
    datagrams: int = 0
    errors: int = 0


def metric(name: str) -> object:
    return next(p for plans in PLANS.values() for p in plans if p.metric.name == name)


def values(state: ExportState, name: str) -> dict[tuple[str, str, str], float]:
    snap = state.snapshot(state.last_tick)
    return {labels: v for labels, vals, _ in snap.sources for m, v in vals.items() if m.name == name}


def test_every_counter_record_of_the_table_is_exported_or_deliberately_not() -> None:
    accounted = set(PLANS) | set(NAMING) | set(INFO) | NOT_EXPORTED
    assert set(COUNTER_RECORDS.values()) <= accounted


def test_names_are_unique_valid_and_follow_the_conventions() -> None:
    names = [p.metric.name for plans in PLANS.values() for p in plans]
    assert len(names) == len(set(names))
    assert all(re.fullmatch(r"sflow_[a-z][a-z0-9_]*", n) and not n.endswith("_total") for n in names)
    cpu_user = metric("sflow_cpu_user_seconds")
    assert (cpu_user.metric.kind, cpu_user.scale, cpu_user.wraps32) == ("counter", 0.001, True)  # type: ignore[attr-defined]
    assert metric("sflow_mem_total_bytes").metric.kind == "gauge"  # type: ignore[attr-defined]
    assert metric("sflow_if_in_octets").wraps32 is False  # type: ignore[attr-defined]
    assert metric("sflow_if_in_ucast_pkts").wraps32 is True  # type: ignore[attr-defined]
    assert metric("sflow_disk_partition_max_used_percent").scale == 0.01  # type: ignore[attr-defined]
    assert metric("sflow_vcpu_cpu_seconds").metric.kind == "counter"  # type: ignore[attr-defined]
    assert metric("sflow_ip_reasm_oks").metric.kind == "counter"  # type: ignore[attr-defined]
    assert metric("sflow_dot3_stats_fcs_errors").metric.kind == "counter"  # type: ignore[attr-defined]


def test_a_declaration_naming_a_field_the_record_lacks_is_refused() -> None:
    with pytest.raises(ValueError, match="HostMemory has no field"):
        _plan_field(rec.HostMemory, rec.HostMemory.FIELDS[0], _Declared(gauges="mem_totl"))


def _counters(state: ExportState, now: float, *records: object, ds: tuple[int, int] = (2, 1), seq: int = 1) -> None:
    state.observe(Datagram(AGENT, 100001, seq, seq * 1000, [CounterSample(*ds, list(records), seq)]), now)  # type: ignore[arg-type]


def test_32_bit_counters_are_unwrapped_and_unknown_values_left_out() -> None:
    state = ExportState(Counts())
    generic = {"if_index": 3, "if_speed": 10**9, "in_octets": 5, "in_multicast_pkts": rec.UNKNOWN_COUNTER}
    _counters(state, 0, rec.GenericInterface(**generic, in_ucast_pkts=0xFFFFFF00), rec.PortName("eth0"), ds=(0, 3))
    _counters(state, 1, rec.GenericInterface(**generic, in_ucast_pkts=0x100), rec.PortName("eth0"), ds=(0, 3), seq=2)
    labels = ("192.0.2.5", "0:3", "eth0")
    assert values(state, "sflow_if_in_ucast_pkts") == {labels: 0xFFFFFF00 + 0x200}
    assert values(state, "sflow_if_speed") == {labels: 1e9}
    assert values(state, "sflow_if_in_multicast_pkts") == {}


def test_each_32_bit_counter_of_a_record_is_unwrapped_on_its_own() -> None:
    """A field reading unknown keeps its total and starts at its first known reading; a step back
    far from a wrap is a restart (adds nothing, counters.py); the record's other fields go on."""
    state = ExportState(Counts())
    readings = [(rec.UNKNOWN_COUNTER, 10), (100, 20), (rec.UNKNOWN_COUNTER, 30), (50, 40), (70, 50)]
    exported = []
    for seq, (ucast, discards) in enumerate(readings, 1):
        _counters(state, seq, rec.GenericInterface(if_index=4, in_ucast_pkts=ucast, in_discards=discards), ds=(0, 4))
        exported.append((values(state, "sflow_if_in_ucast_pkts"), values(state, "sflow_if_in_discards")))
    labels = ("192.0.2.5", "0:4", "")
    assert [(u.get(labels), d[labels]) for u, d in exported] == [(None, 10), (100, 20), (100, 30), (100, 40), (120, 50)]


def test_units_names_and_info_labels() -> None:
    state = ExportState(Counts())
    cpu = rec.HostCpu(cpu_user=1500, load_one=0.5)
    disk = rec.HostDisk(part_max_used=4321)
    host = rec.HostDescription("web1", bytes(range(16)), 3, 2, "6.1")
    _counters(state, 0, cpu, disk, host, rec.HostParent(2, 1), UnknownRecord(7 << 12 | 1, b"\0" * 4), ds=(3, 100001))
    labels = ("192.0.2.5", "3:100001", "web1")
    assert values(state, "sflow_cpu_user_seconds") == {labels: 1.5}
    assert values(state, "sflow_cpu_load_one") == {labels: 0.5}
    assert values(state, "sflow_disk_partition_max_used_percent") == {labels: pytest.approx(43.21)}
    [(_, _, info)] = state.snapshot(0).sources
    by_name = {m.name: pairs for m, pairs in info.items()}
    assert by_name["sflow_host_info"] == (
        ("uuid", "00010203-0405-0607-0809-0a0b0c0d0e0f"),
        ("machine_type", "3"),
        ("os_name", "2"),
        ("os_release", "6.1"),
    )
    assert by_name["sflow_host_parent_info"] == (("parent_ds_class", "2"), ("parent_ds_index", "1"))
    assert state.unknown_records == 1


def test_silent_agents_and_sources_expire_and_their_flows_with_them() -> None:
    state = ExportState(Counts(), expiry=10)
    _counters(state, 0, rec.HostMemory(mem_total=100))
    state.ip_flows.add(("192.0.2.5", b"\1" * 4, b"\2" * 4), 100, 1, 0)
    state.tick(5)
    assert len(state.sources) == 1 and len(state.agents) == 1 and len(state.ip_flows.flows) == 1
    state.tick(11)
    assert (len(state.sources), len(state.agents), len(state.ip_flows.flows)) == (0, 0, 0)


@pytest.mark.parametrize(
    ("sequence", "lost"),
    [
        ([(1, 100), (2, 200), (5, 500)], 2),  # two missing
        ([(1, 100), (2, 200), (2, 200), (3, 300)], 0),  # a duplicate
        ([(10, 1000), (12, 1200), (11, 1100), (13, 1300)], 1),  # 11 came late: counted lost once, not twice
        ([(500, 50_000), (1, 10), (2, 20)], 0),  # the agent restarted
        ([(0xFFFFFFFF, 10), (0, 20), (2, 30)], 1),  # the sequence wrapped
    ],
)
def test_lost_datagrams_from_sequence_gaps(sequence: list[tuple[int, int]], lost: int) -> None:
    agent = AgentState(0)
    for number, uptime in sequence:
        agent.sequence(100000, number, uptime)
    assert agent.lost == lost


def test_sub_agents_are_sequenced_apart() -> None:
    agent = AgentState(0)
    for number in (1, 2, 3):
        agent.sequence(100000, number, number)
        agent.sequence(100001, number, number)
    assert agent.lost == 0


FRAME = bytes.fromhex("7a65a9ff20ba76bf27fd16ee08004500003424874000400600000afc00010afc00029df2145191d8de9b")
BASE = encode_datagram(
    Datagram(
        AGENT,
        100000,
        7,
        1000,
        [
            FlowSample(0, 8, 10, 10, 0, 8, 0x3FFFFFFF, [rec.SampledHeader(1, 70, 4, FRAME)], 1),
            CounterSample(
                2,
                1,
                [rec.HostDescription("vm", bytes(16), 3, 2, "6.1"), rec.HostCpu(cpu_user=5), rec.HostDisk(reads=9)],
                1,
            ),
            CounterSample(0, 8, [rec.GenericInterface(if_index=8, in_ucast_pkts=4), rec.PortName("eth0")], 1),
        ],
    )
)


@given(st.lists(st.tuples(st.integers(0, len(BASE) - 1), st.integers(0, 255)), max_size=6))
@settings(max_examples=400, deadline=None)
def test_whatever_decodes_the_exporter_takes_in_and_exports(changes: list[tuple[int, int]]) -> None:
    data = bytearray(BASE)
    for at, byte in changes:
        data[at] = byte
    try:
        datagram = decode_datagram(bytes(data))
    except DecodeError:
        return
    state = ExportState(Counts())
    state.observe(datagram, 0)
    state.observe(datagram, 1.5)
    assert state.snapshot(3).agents


def test_sub_agents_followed_per_agent_are_bounded() -> None:
    agent_state = AgentState(0)
    for sub_agent in range(state_module.MAX_SUB_AGENTS + 10):
        agent_state.sequence(sub_agent, 1, 1)
    assert len(agent_state.sequences) == state_module.MAX_SUB_AGENTS
