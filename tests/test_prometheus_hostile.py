"""The exporter against hostile senders and clients, as a process over real loopback sockets.

Spoofed agent addresses and data sources, concurrent scrapes, idle
connections: each bounded by the exporter's limits, with the defaults
unless a test says otherwise.
"""

from __future__ import annotations

import contextlib
import ipaddress
import os
import re
import socket
import subprocess
import threading
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from procs import Proc, python
from test_prometheus_exporter import Exporter, value

from hsflowd_py.sflow.codec import encode_datagram
from hsflowd_py.sflow.records import HostCpu, HostMemory
from hsflowd_py.sflow.samples import CounterSample, Datagram

pytest.importorskip("prometheus_client")

REAL = "192.0.2.1"


def counters(agent: str, sequence: int = 1, ds_index: int = 1) -> bytes:
    records = [HostMemory(mem_total=1 << 30), HostCpu(cpu_user=sequence)]
    address = ipaddress.ip_address(agent)
    return encode_datagram(
        Datagram(address, 0, sequence, sequence * 1000, [CounterSample(2, ds_index, records, sequence)])
    )


def spoofed(start: int, count: int) -> list[bytes]:
    """Datagrams each claiming a different agent address, as a spoofer sends them."""
    return [counters(str(ipaddress.ip_address("10.0.0.0") + n)) for n in range(start, start + count)]


class Sender:
    """A UDP socket on a loopback address of its own, so the exporter sees it as a sender apart."""

    def __init__(self, exporter: Exporter, address: str) -> None:
        self.exporter = exporter
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind((address, 0))

    def send(self, payloads: list[bytes], batch: int = 2000) -> None:
        for start in range(0, len(payloads), batch):
            before = self.exporter.received()
            chunk = payloads[start : start + batch]
            for payload in chunk:
                self.sock.sendto(payload, ("127.0.0.1", self.exporter.udp))
            self.exporter.wait_received(before + len(chunk))

    def close(self) -> None:
        self.sock.close()


@pytest.fixture
def exporter(request: pytest.FixtureRequest) -> Iterator[Exporter]:
    e = Exporter(*getattr(request, "param", ()))
    yield e
    e.close()


def real_memory(exporter: Exporter) -> list[float]:
    m = exporter.scrape()
    return [v for labels, v in m.get("sflow_mem_total_bytes", []) if labels["agent"] == REAL]


@pytest.mark.parametrize("exporter", [("--prometheus-cache", "0")], indirect=True)  # each batch's count read at once
def test_spoofed_agent_addresses_neither_evict_nor_lock_out_real_agents(exporter: Exporter) -> None:
    real, spoofer = Sender(exporter, "127.0.0.2"), Sender(exporter, "127.0.0.3")
    real.send([counters(REAL, 1), counters(REAL, 2)])
    spoofer.send(spoofed(0, 6_000))
    assert real_memory(exporter) == [1 << 30], "an established agent was pushed out"
    late = "192.0.2.2"
    real.send([counters(late, 1)])
    spoofer.send(spoofed(6_000, 3_000))
    real.send([counters(late, 2)])
    m = exporter.scrape()
    assert value(m, "sflow_mem_total_bytes", agent=late) == 1 << 30, "a new agent was locked out"
    assert value(m, "sflow_collector_agents") <= 1024
    assert value(m, "sflow_collector_evicted_total", what="agent") >= 9_000 - 1024
    real.close()
    spoofer.close()


@pytest.mark.parametrize("exporter", [("--prometheus-cache", "0")], indirect=True)
def test_one_agent_claiming_thousands_of_sources_is_held_to_its_share(exporter: Exporter) -> None:
    sender = Sender(exporter, "127.0.0.4")
    sender.send([counters(REAL)])
    sender.send([counters("203.0.113.9", n + 1, ds_index=n) for n in range(3_000)])
    m = exporter.scrape()
    sources = [labels for labels, _ in m["sflow_mem_total_bytes"]]
    assert sum(1 for labels in sources if labels["agent"] == "203.0.113.9") == 512  # the default share
    assert value(m, "sflow_mem_total_bytes", agent=REAL) == 1 << 30
    assert value(m, "sflow_collector_evicted_total", what="source") == 3_000 - 512
    sender.close()


@pytest.mark.parametrize("exporter", [("--prometheus-max-series", "500")], indirect=True)
def test_series_in_all_are_bounded(exporter: Exporter) -> None:
    sender = Sender(exporter, "127.0.0.4")
    sender.send([counters(f"203.0.113.{n}") for n in range(1, 200)])
    m = exporter.scrape()
    held = sum(1 for samples in m.values() for labels, _ in samples if "datasource" in labels)
    assert 400 < held == value(m, "sflow_collector_series") <= 500
    sender.close()


@pytest.mark.parametrize("exporter", [("--prometheus-agents", "192.0.2.0/24")], indirect=True)
def test_only_allowed_agent_networks_are_taken_in(exporter: Exporter) -> None:
    sender = Sender(exporter, "127.0.0.4")
    sender.send([*spoofed(0, 300), counters(REAL)])
    m = exporter.scrape()
    assert [labels["agent"] for labels, _ in m["sflow_mem_total_bytes"]] == [REAL]
    assert value(m, "sflow_collector_refused_total") == 300
    sender.close()


@pytest.mark.parametrize("exporter", [("--prometheus-cache", "5")], indirect=True)
def test_concurrent_scrapes_share_one_render(exporter: Exporter) -> None:
    bodies: list[bytes] = []
    url = f"http://127.0.0.1:{exporter.http}/metrics"
    threads = [
        threading.Thread(target=lambda: bodies.append(urllib.request.urlopen(url, timeout=10).read()))
        for _ in range(20)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(bodies) == 20 and len(set(bodies)) == 1  # one render: even the process's CPU time is the same
    assert value(exporter.scrape(), "sflow_collector_http_renders_total") == 1


def fd_count(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@pytest.mark.parametrize("exporter", [("--prometheus-connections", "4", "--prometheus-timeout", "1")], indirect=True)
def test_idle_connections_are_bounded_timed_out_and_never_block_a_scrape(exporter: Exporter) -> None:
    pid = exporter.proc.p.pid
    before = fd_count(pid)
    idle = [socket.create_connection(("127.0.0.1", exporter.http)) for _ in range(60)]
    for s in idle[:3]:
        s.sendall(b"GET /metr")  # a request begun and never finished
    time.sleep(0.3)
    assert fd_count(pid) <= before + 4
    cpu = cpu_seconds(pid)
    time.sleep(0.5)
    assert cpu_seconds(pid) - cpu < 0.1  # nothing spins while connections wait
    started = time.monotonic()
    assert value(exporter.scrape(), "sflow_collector_agents") == 0  # answered while 60 connections are held
    assert time.monotonic() - started < 1
    for s in idle:
        s.settimeout(3)
        with contextlib.suppress(ConnectionResetError):  # reset, where the exporter left a request unread
            assert s.recv(1) == b""  # closed by the exporter: to make room, or after the timeout
        s.close()
    m = exporter.scrape()
    assert value(m, "sflow_collector_http_dropped_total") >= 60 + 1 - 4
    assert fd_count(pid) <= before + 1


def test_metrics_are_served_on_loopback_unless_told_otherwise() -> None:
    proc = Proc(python("-m", "hsflowd_py.collector", "-p", "0", "--prometheus", "0"))
    try:
        deadline = time.monotonic() + 15
        found = None
        while found is None and time.monotonic() < deadline:
            found = next((m for line in list(proc.stderr) if (m := re.search(r"serving metrics on (\S+)", line))), None)
            time.sleep(0.05)
        assert found is not None, proc.stderr
        assert found.group(1).startswith("http://127.0.0.1:")
    finally:
        assert proc.stop() == 0


@pytest.mark.parametrize(
    ("flag", "text"),
    [
        ("--prometheus-max-agents", "0"),
        ("--prometheus-max-series-per-agent", "-5"),
        ("--prometheus-agents", "10.0.0.0/33"),
        ("--prometheus-connections", "0"),
        ("--prometheus-timeout", "0"),
        ("--prometheus-cache", "nan"),
    ],
)
def test_bad_limits_are_refused_naming_the_flag(flag: str, text: str) -> None:
    done = subprocess.run(
        python("-m", "hsflowd_py.collector", "-p", "0", "--prometheus", "127.0.0.1:0", flag, text),
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert done.returncode == 2 and flag in done.stderr and "Traceback" not in done.stderr, done.stderr
