"""The Docker engine's stats reply as a counters Reading: the fallback source of a container's
counters when its cgroup or /proc entry is out of reach (``hsflowd_py/cgroup_counters.py`` says
how the kernel source is preferred)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from hsflowd_py.cgroup_counters import Reading

from .engine import Malformed

STATS_NET_KEYS = {
    "bytes_in": "rx_bytes",
    "pkts_in": "rx_packets",
    "errs_in": "rx_errors",
    "drops_in": "rx_dropped",
    "bytes_out": "tx_bytes",
    "pkts_out": "tx_packets",
    "errs_out": "tx_errors",
    "drops_out": "tx_dropped",
}
"""VirtNetIO field → key of an interface in the engine's stats ``networks``."""


def _int(obj: Any, *path: str) -> int | None:
    for key in path:
        obj = obj.get(key) if isinstance(obj, Mapping) else None
    if obj is None:
        return None
    if not isinstance(obj, int) or isinstance(obj, bool):
        raise Malformed(f"stats reply field {'.'.join(path)} is {type(obj).__name__}")
    return obj


def _blkio(entries: Any, op: str) -> int:
    if entries is None:
        return 0
    if not isinstance(entries, list):
        raise Malformed("stats reply blkio_stats entry is not a list")
    total = 0
    for e in entries:
        if isinstance(e, Mapping) and isinstance(e.get("op"), str) and e["op"].lower() == op:
            total += _int(e, "value") or 0
    return total


def parse_stats(reply: Mapping[str, Any]) -> Reading:
    """The engine's stats reply (cgroup v1 and v2 shapes) → a Reading."""
    r = Reading(
        cpu_ns=_int(reply, "cpu_stats", "cpu_usage", "total_usage"),
        memory=_int(reply, "memory_stats", "usage"),
        memory_limit=_int(reply, "memory_stats", "limit"),
    )
    blkio = reply.get("blkio_stats")
    if isinstance(blkio, Mapping):
        by_bytes, by_ops = blkio.get("io_service_bytes_recursive"), blkio.get("io_serviced_recursive")
        r.io = {
            "rd_bytes": _blkio(by_bytes, "read"),
            "wr_bytes": _blkio(by_bytes, "write"),
            "rd_req": _blkio(by_ops, "read"),
            "wr_req": _blkio(by_ops, "write"),
        }
    networks = reply.get("networks")
    if isinstance(networks, Mapping):
        r.net = {f: sum(_int(n, key) or 0 for n in networks.values()) for f, key in STATS_NET_KEYS.items()}
    elif networks is not None:
        raise Malformed("stats reply networks is not an object")
    return r
