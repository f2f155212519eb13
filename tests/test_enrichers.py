"""The core orders enrichers from what they declare they read and write, not from where they were listed."""

from __future__ import annotations

import pytest

from hsflowd_py.enrichers import Enricher, EnricherCycle, order_enrichers
from hsflowd_py.flow import Fact
from hsflowd_py.modules.docker.marking import ContainerMarking
from hsflowd_py.modules.systemd.traffic import ServiceMarking
from hsflowd_py.modules.tcp import SocketInfo


def test_the_shipped_enrichers_run_writer_before_reader_whatever_the_names() -> None:
    """docker writes the netns tcp reads; tcp writes the socket systemd reads."""
    docker, tcp, systemd = (object.__new__(c) for c in (ContainerMarking, SocketInfo, ServiceMarking))
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
