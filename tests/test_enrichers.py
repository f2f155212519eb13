"""The core orders enrichers from what they declare they read and write, not from where they were listed."""

from __future__ import annotations

import pytest

from hsflowd_py.enrichers import Enricher, EnricherCycle, order_enrichers
from hsflowd_py.flow import Fact
from hsflowd_py.modules.systemd.traffic import ServiceMarking
from hsflowd_py.modules.tcp import SocketInfo
from hsflowd_py.traffic_map import OwnerMarking


def test_the_shipped_enrichers_run_writer_before_reader_whatever_the_names() -> None:
    """docker writes the netns tcp reads; tcp writes the socket systemd reads."""
    docker, tcp, systemd = (object.__new__(c) for c in (OwnerMarking, SocketInfo, ServiceMarking))
    for names in (("docker", "tcp", "systemd"), ("z", "y", "x"), ("b", "c", "a")):
        listed = [("systemd", names[2], systemd), ("tcp", names[1], tcp), ("docker", names[0], docker)]
        assert [owner for owner, _ in order_enrichers(listed)] == ["docker", "tcp", "systemd"], names


def test_unrelated_enrichers_run_in_name_order() -> None:
    a, b = Enricher(), Enricher()
    assert [o for o, _ in order_enrichers([("b", "b", b), ("a", "a", a)])] == ["a", "b"]


def test_a_cycle_is_refused_with_the_enrichers_named() -> None:
    class Ping(Enricher):
        reads, writes = Fact.NETNS, Fact.SOCKET

    class Pong(Enricher):
        reads, writes = Fact.SOCKET, Fact.NETNS

    with pytest.raises(EnricherCycle, match="ping Ping, pong Pong"):
        order_enrichers([("x", "ping", Ping()), ("y", "pong", Pong())])


def test_a_failing_enricher_is_counted_against_its_module_and_the_sample_still_goes(tmp_path, caplog) -> None:
    """The guard's promise holds on the hot path: one raise is logged once and counted, never fatal."""
    import socket

    from hsflowd_py.agent import Agent
    from hsflowd_py.config import parse_config
    from hsflowd_py.flow import DIRECTION_OUT
    from hsflowd_py.module import Module
    from hsflowd_py.sflow.codec import decode_datagram

    class Broken(Enricher):
        def enrich(self, packet: object) -> None:
            raise RuntimeError("broken on purpose")

    class Owner(Module):
        name = "broken-test"

    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sink:
        sink.bind(("127.0.0.1", 0))
        sink.settimeout(1)
        settings = parse_config(f"sflow {{ collector {{ ip = 127.0.0.1 udpport = {sink.getsockname()[1]} }} }}")
        agent = Agent(settings, auto_path=str(tmp_path / "auto"))
        agent.apply_settings()
        owner = Owner(agent.context, settings)
        agent.flows.set_enrichers([(owner, "broken", Broken())])
        with caplog.at_level("ERROR"):
            for _ in range(3):
                agent.flows.interface(7, 10, True).emit(
                    sample_pool=1, drops=0, direction=DIRECTION_OUT, frame_length=64, header=bytes(60), start=0,
                    length=60, timestamp_ns=1,
                )  # fmt: skip
        agent.flush()
        samples = decode_datagram(sink.recv(9000)).samples
        agent.receivers.close()
    assert len(samples) == 3 and owner.stats["enrich_errors"] == 3 and agent.stats["faults"] == 3
    assert sum("broken on purpose" in (r.exc_text or "") for r in caplog.records) == 1
