"""The exporter on switch and application-agent datagrams: what sflowtool decoded, as metrics.

Expected values come from sflowtool 6.11's JSON of the same datagrams
(``../shared/vectors/devices/*.jsonl``): LAG counters per port, Ethernet
counters per port, processor and HTTP counters.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

prometheus_client = pytest.importorskip("prometheus_client")
from test_prometheus_exporter import Exporter, value  # noqa: E402

from hsflowd_py.collector.pcapfile import read_pcap  # noqa: E402

DEVICES = Path("/work/shared/vectors/devices")
needs_devices = pytest.mark.skipif(not DEVICES.is_dir(), reason="device vectors absent")


def _records(name: str, tag: str) -> Iterator[tuple[dict[str, Any], dict[str, Any], dict[str, str]]]:
    for line in (DEVICES / f"{name}.jsonl").read_text().splitlines():
        datagram = json.loads(line)
        for sample in datagram["samples"]:
            for element in sample.get("elements", []):
                if element.get("counterBlock_tag") == tag:
                    yield datagram, sample, element


@pytest.fixture
def exporter() -> Iterator[Exporter]:
    e = Exporter()
    yield e
    e.close()


@needs_devices
def test_lag_ethernet_processor_and_http_counters_are_exported(exporter: Exporter) -> None:
    payloads = []
    for name in ("logstash-with_lag_counters", "logstash-counters_sample"):
        with open(DEVICES / f"{name}.pcap", "rb") as f:
            payloads += [p.payload for p in read_pcap(f)]
    exporter.send(payloads)
    m = exporter.scrape()
    checked = 0
    for datagram, sample, lag in _records("logstash-with_lag_counters", "0:7"):
        where = {"agent": datagram["agent"], "datasource": sample["sourceId"]}
        assert value(m, "sflow_lacp_pdus_rx_total", **where) == int(lag["LACPDUsRx"])
        assert value(m, "sflow_lacp_pdus_tx_total", **where) == int(lag["LACPDUsTx"])
        assert value(m, "sflow_lacp_attached_agg_id", **where) == int(lag["attachedAggID"])
        checked += 1
    for datagram, sample, cpu in _records("logstash-counters_sample", "0:1001"):
        where = {"agent": datagram["agent"], "datasource": sample["sourceId"]}
        assert value(m, "sflow_processor_cpu_5s_percent", **where) == pytest.approx(float(cpu["5s_cpu"]))
        assert value(m, "sflow_processor_memory_free_bytes", **where) == int(cpu["free_memory_bytes"])
        checked += 1
    for datagram, sample, http in _records("logstash-counters_sample", "0:2201"):
        where = {"agent": datagram["agent"], "datasource": sample["sourceId"]}
        assert value(m, "sflow_http_method_get_count_total", **where) == int(http["http_method_get_count"])
        checked += 1
    for datagram, sample, eth in _records("logstash-with_lag_counters", "0:2"):
        where = {"agent": datagram["agent"], "datasource": sample["sourceId"]}
        assert value(m, "sflow_dot3_stats_fcs_errors_total", **where) == int(eth["dot3StatsFCSErrors"])
        checked += 1
    assert checked >= 6
    assert value(m, "sflow_collector_decode_errors_total") == 0


@needs_devices
def test_discard_samples_are_counted_per_agent_and_reason(exporter: Exporter) -> None:
    """Drops per reason: sflowtool's discardReason of each discard sample (0:5), one packet each."""
    names = ("goflow2-3", "goflow2-4")
    payloads = []
    for name in names:
        with open(DEVICES / f"{name}.pcap", "rb") as f:
            payloads += [p.payload for p in read_pcap(f)]
    exporter.send(payloads)
    m = exporter.scrape()
    expected: dict[tuple[str, str], int] = {}
    for name in names:
        for line in (DEVICES / f"{name}.jsonl").read_text().splitlines():
            datagram = json.loads(line)
            for sample in datagram["samples"]:
                if sample["sampleType"] == "DISCARD":
                    key = (datagram["agent"], sample["discardReason"])
                    expected[key] = expected.get(key, 0) + 1
    assert sum(expected.values()) >= 2
    for (agent, reason), count in expected.items():
        assert value(m, "sflow_discarded_packets_total", agent=agent, reason=reason) == count
        assert value(m, "sflow_collector_agent_samples_total", agent=agent, type="discard") == count
    assert len(m["sflow_discarded_packets_total"]) == len(expected)
    assert value(m, "sflow_collector_unknown_samples_total") == 0
