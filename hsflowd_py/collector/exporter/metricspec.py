"""Prometheus metrics derived from the record table: one declaration per record, not per field.

Each exported counter record declares only what the table cannot say: which
of its numeric fields are gauges (everything else numeric is a counter),
which count milliseconds (exported as seconds), and which are identifiers
rather than measurements.  Names, types, help texts and conversions are then
derived from the table's fields:

* name: ``sflow_`` + the sflowtool label in snake case (``ifInOctets`` →
  ``sflow_if_in_octets``) + a unit; counters get ``_total`` from
  prometheus_client; millisecond fields end in ``_seconds`` (``cpu_user``
  → ``sflow_cpu_user_seconds_total``), hundredths of a percent (the table's
  PERCENT100 type) are divided by 100 and end in ``_percent``, fields
  declared as bytes end in ``_bytes`` (``sflow_mem_total_bytes``);
* 32-bit counters wrap (a busy interface's packet counts within hours): they
  are unwrapped into 64-bit totals per data source, so ``rate()`` never sees
  a false reset;
* a 32- or 64-bit value of all ones is sFlow's "unknown" and is not exported.

Records that name their data source (2000 hostname, 1005 ifName) give the
``name`` label; 2000 and 2002 also become ``_info`` metrics whose labels are
their other fields.  Host adapters (2001) are lists and not exported.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from ...sflow import records as rec
from ...sflow.layout import Field
from ...sflow.xdr import PERCENT100, XdrType

__all__ = ["INFO", "NAMING", "NOT_EXPORTED", "PLANS", "FieldPlan", "InfoPlan", "MetricDef", "metric_name"]

PREFIX = "sflow_"


@dataclass(frozen=True)
class _Declared:
    """What a record's fields are, beyond the counters that are the default."""

    gauges: str = ""
    milliseconds: str = ""
    bytes: str = ""
    skip: str = ""
    renamed: tuple[tuple[str, str], ...] = ()
    """(field, label) where the sflowtool label makes a bad metric name (a gauge ending in ``_total``)."""


_DECLARED: dict[type, _Declared] = {
    rec.GenericInterface: _Declared(gauges="if_speed if_direction if_status promiscuous_mode", skip="if_index if_type"),
    rec.EthernetInterface: _Declared(),
    rec.HostCpu: _Declared(
        gauges="load_one load_five load_fifteen proc_run proc_total cpu_num cpu_speed uptime",
        milliseconds="cpu_user cpu_nice cpu_system cpu_idle cpu_wio cpu_intr cpu_sintr cpu_steal cpu_guest "
        "cpu_guest_nice",
        renamed=(("proc_total", "cpu_processes"),),
    ),
    rec.HostMemory: _Declared(
        gauges="mem_total mem_free mem_shared mem_buffers mem_cached swap_total swap_free",
        bytes="mem_total mem_free mem_shared mem_buffers mem_cached swap_total swap_free",
    ),
    rec.HostDisk: _Declared(
        gauges="disk_total disk_free part_max_used", milliseconds="read_time write_time", bytes="disk_total disk_free"
    ),
    rec.HostNetIO: _Declared(),
    rec.Mib2Ip: _Declared(gauges="Forwarding DefaultTTL ReasmTimeout"),
    rec.Mib2Icmp: _Declared(),
    rec.Mib2Tcp: _Declared(gauges="RtoAlgorithm RtoMin RtoMax MaxConn CurrEstab"),
    rec.Mib2Udp: _Declared(),
    rec.VirtNode: _Declared(gauges="mhz cpus memory memory_free num_domains", bytes="memory memory_free"),
    rec.VirtCpu: _Declared(gauges="state nr_virt_cpu", milliseconds="cpu_time"),
    rec.VirtMemory: _Declared(gauges="memory max_memory", bytes="memory max_memory"),
    rec.VirtDisk: _Declared(gauges="capacity allocation available", bytes="capacity allocation available"),
    rec.VirtNetIO: _Declared(),
    # what switches and application agents send that a person charts
    rec.Lacp: _Declared(
        gauges="attached_agg_id",
        renamed=tuple(
            (field, "lacp_" + name)
            for field, name in (
                ("attached_agg_id", "attached_agg_id"),
                ("LACPDUsRx", "pdus_rx"),
                ("markerPDUsRx", "marker_pdus_rx"),
                ("markerResponsePDUsRx", "marker_response_pdus_rx"),
                ("unknownRx", "unknown_rx"),
                ("illegalRx", "illegal_rx"),
                ("LACPDUsTx", "pdus_tx"),
                ("markerPDUsTx", "marker_pdus_tx"),
                ("markerResponsePDUsTx", "marker_response_pdus_tx"),
            )
        ),
    ),
    rec.Processor: _Declared(
        gauges="cpu_5s cpu_1m cpu_5m total_memory free_memory",
        bytes="total_memory free_memory",
        renamed=(
            ("cpu_5s", "processor_cpu_5s"),
            ("cpu_1m", "processor_cpu_1m"),
            ("cpu_5m", "processor_cpu_5m"),
            ("total_memory", "processor_memory_total"),
            ("free_memory", "processor_memory_free"),
        ),
    ),
    rec.HttpCounters: _Declared(),
    rec.NvidiaGpu: _Declared(
        gauges="device_count processes mem_bytes_total mem_bytes_free temperature_C fan_speed_pc",
        milliseconds="gpu_mS mem_mS",
        bytes="mem_bytes_total mem_bytes_free",
        renamed=(("mem_bytes_total", "nvml_mem_size"), ("mem_bytes_free", "nvml_mem_free")),
    ),
}

NAMING: dict[type, str] = {rec.HostDescription: "hostname", rec.PortName: "name"}
"""Records that name their data source, and the field that holds the name."""

_INFO_NAMES: dict[type, str] = {rec.HostDescription: "host_info", rec.HostParent: "host_parent_info"}

NOT_EXPORTED: frozenset[type] = frozenset(
    (
        rec.HostAdapters,
        # Rarely sent (token ring, 100VG, 802.11, radio, SFP lanes, OpenFlow, JVM/JMX, memcache,
        # application, VDI, OVS, PFC, Broadcom tables, VLAN): printed by every output, not exported.
        rec.TokenRing,
        rec.VG,
        rec.Vlan,
        rec.Ieee80211,
        rec.Sfp,
        rec.Pfc,
        rec.Radio,
        rec.OpenFlowPort,
        rec.Jvm,
        rec.Jmx,
        rec.Memcache,
        rec.AppCounters,
        rec.AppResources,
        rec.Memcache2,
        rec.Vdi,
        rec.AppWorkers,
        rec.OvsDatapath,
        rec.BroadcomTables,
    )
)


@dataclass(frozen=True, eq=False)
class MetricDef:
    """One exported metric; made once per field at import, so compared and hashed by identity (a
    dictionary key for every value the exporter sets: a generated field-wise hash cost more than
    the rest of its bookkeeping)."""

    name: str
    kind: str  # "gauge" or "counter"
    help: str


@dataclass(frozen=True)
class FieldPlan:
    """How one field of one record becomes one sample value."""

    attr: str
    metric: MetricDef
    scale: float
    unknown: int | None
    wraps32: bool


@dataclass(frozen=True)
class InfoPlan:
    metric: MetricDef
    fields: tuple[tuple[str, str, XdrType], ...]  # (attr, label name, type that prints it)


def snake(label: str) -> str:
    """``ifInOctets`` → ``if_in_octets``, ``dot3StatsFCSErrors`` → ``dot3_stats_fcs_errors``."""
    out = re.sub(r"(?<=[a-z0-9])(?=[A-Z])", "_", label)
    return re.sub(r"(?<=[A-Z]{2})(?=[A-Z][a-z])", "_", out).lower()


def metric_name(label: str, unit: str = "") -> str:
    """``sflow_`` + the label in snake case + the unit (``seconds``, ``bytes``, ``percent``)."""
    return PREFIX + snake(label.removesuffix("_mS")) + (f"_{unit}" if unit else "")


def _names(record: type, words: str) -> set[str]:
    names = set(words.split())
    known = {f.name for f in record.FIELDS}
    if names - known:
        raise ValueError(f"{record.__name__} has no field(s) {sorted(names - known)} (metricspec)")
    return names


def _plan_field(record: type, f: Field, declared: _Declared) -> FieldPlan | None:
    fmt = getattr(f.type, "fmt", None)
    if fmt not in ("I", "Q", "f") or f.name in _names(record, declared.skip):
        return None
    ms = f.name in _names(record, declared.milliseconds)
    gauge = f.name in _names(record, declared.gauges)
    percent = f.type is PERCENT100
    unit = "seconds" if ms else "percent" if percent else "bytes" if f.name in _names(record, declared.bytes) else ""
    renamed = dict(declared.renamed)
    _names(record, " ".join(renamed))
    label = renamed.get(f.name, f.label)
    tag = f"{record.ENTERPRISE}:{record.FORMAT}"
    notes = [f"sFlow {record.__name__} ({tag}) field {f.label}"]
    if ms:
        notes.append("milliseconds exported as seconds")
    if percent:
        notes.append("hundredths of a percent exported as percent")
    wraps = fmt == "I" and not gauge
    if wraps:
        notes.append("32-bit counter unwrapped")
    metric = MetricDef(metric_name(label, unit), "gauge" if gauge else "counter", "; ".join(notes))
    unknown = {"I": 0xFFFFFFFF, "Q": 0xFFFFFFFFFFFFFFFF}.get(fmt)
    return FieldPlan(f.name, metric, 0.001 if ms else 0.01 if percent else 1.0, unknown, wraps)


def _plans() -> dict[type, tuple[FieldPlan, ...]]:
    plans = {}
    for record, declared in _DECLARED.items():
        found = (_plan_field(record, f, declared) for f in record.FIELDS)
        plans[record] = tuple(p for p in found if p is not None)
    return plans


def _info() -> dict[type, InfoPlan]:
    out = {}
    for record, name in _INFO_NAMES.items():
        fields = tuple((f.name, snake(f.label), f.type) for f in record.FIELDS if f.name != NAMING.get(record))
        labels = ", ".join(label for _, label, _ in fields)
        help_text = f"sFlow {record.__name__} ({record.ENTERPRISE}:{record.FORMAT}) as labels: {labels}"
        out[record] = InfoPlan(MetricDef(PREFIX + name, "gauge", help_text), fields)
    return out


PLANS: dict[type, tuple[FieldPlan, ...]] = _plans()
INFO: dict[type, InfoPlan] = _info()
