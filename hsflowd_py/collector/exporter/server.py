"""The ``/metrics`` endpoint: the exporter's state through prometheus_client.

The only module that imports prometheus_client (Debian:
python3-prometheus-client), so the collector runs without it unless
``--prometheus`` is given.  A custom collector builds the metric families
from a snapshot at each render: series exist only for what the state holds
now, so expired agents, data sources and flows simply stop appearing.

The HTTP side is built so that scrapers, or anyone who can reach the port,
cannot multiply its cost:

* one asyncio loop on one thread serves every connection, so a render is
  never run twice at once, and a rendered body is served to every request
  within ``cache`` seconds of it (concurrent scrapes share one render, and
  one copy of the body: it is written out in slices);
* at most ``connections`` connections are open; one more closes the oldest
  connection that has not sent a whole request yet (else the newcomer), so
  idle connections cannot hold the port;
* every connection has ``timeout`` seconds for its request and response,
  and carries one request (``Connection: close``);
* asyncio's accept loop backs off when out of file descriptors instead of
  spinning.

What it refused or cut short is counted in ``sflow_collector_http_*``.
"""

from __future__ import annotations

import asyncio
import gzip
import socket
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, fields
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, ProcessCollector, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

from ..forward import Forwarder
from ..outputs import PROG
from .metricspec import PREFIX
from .state import OTHER, ExportState, Snapshot

__all__ = ["DEFAULT_ADDRESS", "HttpCounts", "MetricsServer", "families", "parse_listen"]

DEFAULT_ADDRESS = "127.0.0.1"
"""Loopback unless told otherwise: the metrics tell who talks to whom."""
REQUEST_LIMIT = 8192
"""Bytes of request line and headers; a longer request is cut off."""
SLICE = 1 << 16
"""Bytes of body handed to a connection at a time: the body is shared, never copied per connection."""

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
    return host or DEFAULT_ADDRESS, int(port)


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


@dataclass
class HttpCounts:
    """What the HTTP side did, exported as ``sflow_collector_http_<field>_total``."""

    requests: int = 0
    renders: int = 0
    dropped: int = 0
    timeouts: int = 0
    bad_requests: int = 0


_HTTP_HELP = {
    "requests": "HTTP requests answered",
    "renders": "Times the metrics were rendered; requests within the cache time share one",
    "dropped": "HTTP connections closed to stay within the connection limit",
    "timeouts": "HTTP connections closed for taking too long to send a request or read the answer",
    "bad_requests": "HTTP requests that were not a well-formed GET or HEAD",
}


def _discard_family(snap: Snapshot) -> Any:
    family = CounterMetricFamily(
        f"{PREFIX}discarded_packets",
        "Packets the agent reported discarded (discard samples, 0:5), per agent and reason as sflowtool names it "
        "(discardReason); one per sample, as sFlow gives discard samples no sampling rate",
        labels=("agent", "reason"),
    )
    for agent, reasons in snap.discards.items():
        for reason, count in reasons.items():
            family.add_metric((agent, reason), count)
    return family


def _collector_families(snap: Snapshot, forwarder: Forwarder | None) -> Iterator[Any]:
    def counter(name: str, help_text: str, value: float) -> Any:
        return CounterMetricFamily(f"{PREFIX}collector_{name}", help_text, value=value)

    yield counter("datagrams", "Datagrams received, decodable or not", snap.datagrams)
    yield counter("decode_errors", "Datagrams that did not decode (truncated, bad lengths, garbage)", snap.errors)
    skipped = "of a type the decoder does not know, skipped by length"
    yield counter("unknown_records", f"Records {skipped}", snap.unknown_records)
    yield counter("unknown_samples", f"Samples {skipped}", snap.unknown_samples)
    yield counter("export_failures", "Decoded datagrams the exporter failed to take in (see stderr)", snap.failures)
    yield counter("refused", "Datagrams from agents outside the allowed networks, not taken in", snap.refused)
    evicted = CounterMetricFamily(
        f"{PREFIX}collector_evicted",
        "Agents and data sources forgotten before their expiry to stay within the exporter's limits",
        labels=("what",),
    )
    for what, count in snap.evicted.items():
        evicted.add_metric((what,), count)
    yield evicted
    yield GaugeMetricFamily(
        f"{PREFIX}collector_series", "Series of data sources held (not counting flows and the collector's)", snap.series
    )
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
        for kind in ("flow", "counter", "discard", "other"):
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


def families(
    state: ExportState, forwarder: Forwarder | None, now: float | None = None, http: HttpCounts | None = None
) -> Iterator[Any]:
    """Every metric family of one scrape."""
    snap = state.snapshot(time.monotonic() if now is None else now)
    yield from _source_families(snap)
    yield from _flow_families(snap)
    yield _discard_family(snap)
    yield from _collector_families(snap, forwarder)
    if http is not None:
        for f in fields(http):
            yield CounterMetricFamily(f"{PREFIX}collector_http_{f.name}", _HTTP_HELP[f.name], getattr(http, f.name))


class _StateCollector:
    def __init__(self, state: ExportState, forwarder: Forwarder | None, http: HttpCounts) -> None:
        self.state = state
        self.forwarder = forwarder
        self.http = http

    def collect(self) -> Iterator[Any]:
        return families(self.state, self.forwarder, http=self.http)


class _BadRequest(Exception):
    """The request was not one we answer; the status to send."""


def _parse_request(head: bytes) -> tuple[str, str, bool]:
    """(method, path, gzip accepted) from the request line and headers."""
    lines = head.decode("latin-1").split("\r\n")
    parts = lines[0].split(" ")
    if len(parts) != 3 or not parts[2].startswith("HTTP/"):
        raise _BadRequest("400 Bad Request")
    method, target, _ = parts
    if method not in ("GET", "HEAD"):
        raise _BadRequest("405 Method Not Allowed")
    path = target.split("?", 1)[0]
    if path not in ("/", "/metrics"):
        raise _BadRequest("404 Not Found")
    gzip_ok = any(
        name.strip().lower() == "accept-encoding" and "gzip" in value.lower()
        for name, _, value in (line.partition(":") for line in lines[1:])
    )
    return method, path, gzip_ok


class MetricsServer:
    """``/metrics`` on ``addr:port``, served by one asyncio loop on a daemon thread."""

    def __init__(
        self,
        state: ExportState,
        forwarder: Forwarder | None,
        addr: str,
        port: int,
        *,
        connections: int = 64,
        timeout: float = 10.0,
        cache: float = 1.0,
    ) -> None:
        self.http = HttpCounts()
        self.registry = CollectorRegistry(auto_describe=False)
        self.registry.register(_StateCollector(state, forwarder, self.http))  # type: ignore[arg-type]
        ProcessCollector(registry=self.registry)
        self.connections = connections
        self.timeout = timeout
        self.cache = cache
        family = socket.getaddrinfo(addr, port, type=socket.SOCK_STREAM)[0][0]
        self.sock = socket.create_server((addr, port), family=family, backlog=connections)
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self._run, name="metrics", daemon=True)
        self.open: dict[asyncio.StreamWriter, bool] = {}  # → whether its request is in
        self._rendered: tuple[float, bytes] | None = None
        self._gzipped: bytes | None = None
        self._told = False

    @property
    def address(self) -> tuple[str, int]:
        host, port = self.sock.getsockname()[:2]
        return str(host), int(port)

    def start(self) -> None:
        self.thread.start()

    def close(self) -> None:
        if self.thread.is_alive():
            self.loop.call_soon_threadsafe(self.loop.stop)
            self.thread.join()
        else:
            self.sock.close()

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)
        self.loop.set_exception_handler(self._loop_error)
        server = self.loop.run_until_complete(asyncio.start_server(self._serve, sock=self.sock, limit=REQUEST_LIMIT))
        try:
            self.loop.run_forever()
        finally:
            server.close()
            for writer in list(self.open):
                writer.close()
            tasks = asyncio.all_tasks(self.loop)
            for task in tasks:
                task.cancel()
            self.loop.run_until_complete(asyncio.gather(*tasks, return_exceptions=True))
            self.loop.close()

    def _loop_error(self, loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
        """Out of descriptors on accept (asyncio backs off a second) or a peer gone: not worth a line; a bug is."""
        error = context.get("exception")
        if error is None or isinstance(error, OSError) or self._told:
            return
        self._told = True
        print(f"{PROG}: metrics server: {error!r} (told once)", file=sys.stderr, flush=True)

    def _admit(self, writer: asyncio.StreamWriter) -> bool:
        """Within the limit, or by closing the oldest connection whose request is not in yet."""
        self.open[writer] = False
        if len(self.open) <= self.connections:
            return True
        self.http.dropped += 1
        idle = next((w for w, busy in self.open.items() if not busy and w is not writer), None)
        if idle is None:
            del self.open[writer]
            return False
        del self.open[idle]
        idle.close()
        return True

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            if not self._admit(writer):
                return
            async with asyncio.timeout(self.timeout):
                head = await reader.readuntil(b"\r\n\r\n")
                if writer not in self.open:
                    return  # closed to make room while it was sending
                self.open[writer] = True
                try:
                    method, _, gzip_ok = _parse_request(head)
                except _BadRequest as e:
                    self.http.bad_requests += 1
                    writer.write(f"HTTP/1.1 {e}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n".encode())
                    await writer.drain()
                    return
                body = self._body(gzip_ok)
                self.http.requests += 1
                encoding = "Content-Encoding: gzip\r\n" if gzip_ok else ""
                writer.write(
                    f"HTTP/1.1 200 OK\r\nContent-Type: {CONTENT_TYPE_LATEST}\r\n{encoding}"
                    f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n".encode()
                )
                if method == "GET":
                    view = memoryview(body)
                    for start in range(0, len(body), SLICE):
                        writer.write(view[start : start + SLICE])
                        await writer.drain()
                await writer.drain()
        except TimeoutError:
            self.http.timeouts += 1
        except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, ConnectionError, UnicodeError):
            if writer in self.open:  # not one closed to make room
                self.http.bad_requests += 1
        finally:
            self.open.pop(writer, None)
            writer.close()

    def _body(self, gzipped: bool) -> bytes:
        """The rendered metrics, rendered at most once per ``cache`` seconds and shared."""
        if self._rendered is None or time.monotonic() - self._rendered[0] >= self.cache:
            self._rendered = None  # let the old body go before the new one is built
            self._gzipped = None
            self.http.renders += 1  # before, so that the body counts itself
            body = generate_latest(self.registry)
            self._rendered = (time.monotonic(), body)
        if not gzipped:
            return self._rendered[1]
        if self._gzipped is None:
            self._gzipped = gzip.compress(self._rendered[1], compresslevel=1)
        return self._gzipped
