"""The ``/metrics`` endpoint: the exporter's state through prometheus_client.

The only module that imports prometheus_client (Debian:
python3-prometheus-client), so the collector runs without it unless
``--prometheus`` is given.  A custom collector builds the metric families
from a snapshot at each scrape: series exist only for what the state holds
now, so expired agents, data sources and flows simply stop appearing.

The HTTP server is prometheus_client's WSGI app on a threading server of
our own, so that the bound port can be read back (``:0`` picks one) and the
server closed cleanly.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from socketserver import ThreadingMixIn
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from prometheus_client import CollectorRegistry, ProcessCollector, make_wsgi_app
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

from ..forward import Forwarder
from .metricspec import PREFIX
from .state import OTHER, ExportState, Snapshot

__all__ = ["MetricsServer", "families", "parse_listen"]

_SOURCE_LABELS = ("agent", "datasource", "name")
_FLOW_LABELS = {"ip": ("agent", "src", "dst"), "port": ("agent", "src", "dst", "protocol", "port")}
_FLOW_HELP = {
    "ip": "per (source, destination) address pair",
    "port": "per (source, destination, protocol, service port); the service port is the lower of the two",
}


def parse_listen(text: str) -> tuple[str, int]:
    """``[ADDR:]PORT`` → (address, port); IPv6 addresses in brackets (``[::1]:9343``)."""
    host, sep, port = text.rpartition(":")
    host = host.strip("[]") if sep else ""
    if not port.isdigit() or int(port) > 65535:
        raise ValueError(f"--prometheus {text!r} is not [ADDR:]PORT")
    return host or "0.0.0.0", int(port)


def _source_families(snap: Snapshot) -> Iterator[Any]:
    grouped: dict[Any, Any] = {}
    for labels, values, info in snap.sources:
        for metric, value in values.items():
            family = grouped.get(metric)
            if family is None:
                kind = CounterMetricFamily if metric.kind == "counter" else GaugeMetricFamily
                family = grouped[metric] = kind(metric.name, metric.help, labels=_SOURCE_LABELS)
            family.add_metric(labels, value)
        for metric, pairs in info.items():
            names = _SOURCE_LABELS + tuple(name for name, _ in pairs)
            family = grouped.get(metric)
            if family is None:
                family = grouped[metric] = GaugeMetricFamily(metric.name, metric.help, labels=names)
            family.add_metric(labels + tuple(value for _, value in pairs), 1)
    yield from grouped.values()


def _flow_families(snap: Snapshot) -> Iterator[Any]:
    for table, series in snap.flows.items():
        names = _FLOW_LABELS[table]
        other = (OTHER,) * len(names)
        for unit, index, total in (("bytes", 1, series.other_bytes), ("packets", 2, series.other_packets)):
            family = CounterMetricFamily(
                f"{PREFIX}flow_{table}_{unit}",
                f"Sampled {unit} scaled by the sampling rate, {_FLOW_HELP[table]}: the top flows by rate, "
                f"the rest in one series labelled {OTHER}",
                labels=names,
            )
            for row in series.exported:
                family.add_metric(row[0], row[index])
            family.add_metric(other, total)
            yield family
    tracked = GaugeMetricFamily(
        f"{PREFIX}collector_flows_tracked", "Candidate flows held in each flow table", labels=("table",)
    )
    for table, series in snap.flows.items():
        tracked.add_metric((table,), series.tracked)
    yield tracked


def _collector_families(snap: Snapshot, forwarder: Forwarder | None) -> Iterator[Any]:
    def counter(name: str, help_text: str, value: float) -> Any:
        return CounterMetricFamily(f"{PREFIX}collector_{name}", help_text, value=value)

    yield counter("datagrams", "Datagrams received, decodable or not", snap.datagrams)
    yield counter("decode_errors", "Datagrams that did not decode (truncated, bad lengths, garbage)", snap.errors)
    skipped = "of a type the decoder does not know, skipped by length"
    yield counter("unknown_records", f"Records {skipped}", snap.unknown_records)
    yield counter("unknown_samples", f"Samples {skipped}", snap.unknown_samples)
    yield counter("export_failures", "Decoded datagrams the exporter failed to take in (see stderr)", snap.failures)
    yield counter("refused", "Agents or data sources not tracked: over the exporter's bounds", snap.refused)
    per_agent = {
        "datagrams": ("agent_datagrams", "Datagrams decoded, per agent"),
        "lost": ("agent_lost_datagrams", "Datagrams lost on the way, from gaps in sequence numbers, per agent"),
    }
    for key, (name, help_text) in per_agent.items():
        family = CounterMetricFamily(f"{PREFIX}collector_{name}", help_text, labels=("agent",))
        for agent, stats in snap.agents.items():
            family.add_metric((agent,), stats[key])
        yield family
    samples = CounterMetricFamily(
        f"{PREFIX}collector_agent_samples", "Samples decoded, per agent and type", labels=("agent", "type")
    )
    for agent, stats in snap.agents.items():
        for kind in ("flow", "counter", "other"):
            samples.add_metric((agent, kind), stats[kind])
    yield samples
    yield GaugeMetricFamily(f"{PREFIX}collector_agents", "Agents heard from within the expiry time", len(snap.agents))
    yield GaugeMetricFamily(
        f"{PREFIX}collector_data_sources", "Data sources with counters within the expiry time", len(snap.sources)
    )
    if forwarder is not None:
        sent = CounterMetricFamily(f"{PREFIX}collector_forwarded", "Datagrams forwarded (-f)", labels=("target",))
        errors = CounterMetricFamily(
            f"{PREFIX}collector_forward_errors", "Datagrams not forwarded: target down, buffer full", labels=("target",)
        )
        for target in forwarder.targets:
            sent.add_metric((target.name,), target.sent)
            errors.add_metric((target.name,), target.errors)
        yield sent
        yield errors


def families(state: ExportState, forwarder: Forwarder | None, now: float | None = None) -> Iterator[Any]:
    """Every metric family of one scrape."""
    snap = state.snapshot(time.monotonic() if now is None else now)
    yield from _source_families(snap)
    yield from _flow_families(snap)
    yield from _collector_families(snap, forwarder)


class _StateCollector:
    def __init__(self, state: ExportState, forwarder: Forwarder | None) -> None:
        self.state = state
        self.forwarder = forwarder

    def collect(self) -> Iterator[Any]:
        return families(self.state, self.forwarder)


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        """Scrapes every few seconds would flood stderr."""


class MetricsServer:
    """prometheus_client's WSGI app on ``addr:port``, served by a daemon thread."""

    def __init__(self, state: ExportState, forwarder: Forwarder | None, addr: str, port: int) -> None:
        registry = CollectorRegistry(auto_describe=False)
        registry.register(_StateCollector(state, forwarder))  # type: ignore[arg-type]
        ProcessCollector(registry=registry)
        family = socket.getaddrinfo(addr, port, type=socket.SOCK_STREAM)[0][0]

        class Server(ThreadingMixIn, WSGIServer):
            address_family = family
            daemon_threads = True

        self.httpd = make_server(addr, port, make_wsgi_app(registry), Server, handler_class=_QuietHandler)
        self.thread = threading.Thread(target=self.httpd.serve_forever, name="metrics", daemon=True)

    @property
    def address(self) -> tuple[str, int]:
        host, port = self.httpd.server_address[:2]
        return str(host), int(port)

    def start(self) -> None:
        self.thread.start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
