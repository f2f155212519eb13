"""The physical host's counter records (2001, 2003-2010), its description (2000), and the
per-interface records (0:1, 0:1005), built from the readers.

A reader that fails (:class:`~hsflowd_py.readers.ReaderError`) costs only the records built from
it: they are left out of the sample and the failure is logged, once per distinct message.

Choices that differ from, or are not visible in, the established agent:

* 2001 lists, as the established agent does, interfaces that are admin-up (IFF_UP, with or
  without carrier: a bridge with no ports is listed), not loopback, have a non-zero MAC, are
  not veth (the established agent leaves out devices with an ethtool peer_ifindex: the host end
  of a container's link) and are not in ``adapters_exclude`` (interfaces owned by containers).
  Admin state rather than carrier, because 2001 says which adapters the host has, not which
  have a carrier at this moment (a list that changed with every unplugged cable).
* 2003 proc_run leaves out the agent itself, which is necessarily running while it reads.
* 2004 mem_shared is Shmem (tmpfs and shared anonymous memory; the established agent sends 0).
* 2005 counts whole, unstacked disks only (readers/diskstats.py) and local writable
  filesystems (readers/mounts.py).
* 2006 sums devices that are up, excluding loopback, VLAN sub-interfaces (their traffic is
  counted on the parent) and bond masters (counted on their slaves); bridges and veths are
  included as the established agent does.
* 0:1 ifType is 6 for Ethernet, 24 for loopback, 1 (other) otherwise.  ifInMulticastPkts is the
  kernel's ``multicast`` count once it is above zero, and unknown (0xFFFFFFFF) while it is zero:
  most devices never count it (lo, veth, bridges, tun, virtio-net leave it at 0), and the
  established agent sends unknown unless a driver counts it (it looks for switch-ASIC ethtool
  names).  ifInUcastPkts is rx_packets minus the multicast count when known (broadcasts are
  included: Linux does not count them); outgoing multicast and all broadcast counts are unknown.
  ifPromiscuousMode is 1 or 0, as the established agent sends and collectors expect.
"""

from __future__ import annotations

import logging
import os
import uuid
from collections.abc import Callable
from collections.abc import Set as AbstractSet
from functools import cache
from pathlib import Path
from typing import Any, TypeVar

from .counters import KERNEL_LONG_BITS, Monotonic
from .readers import ReaderError
from .readers.cpuinfo import read_cpuinfo
from .readers.diskstats import SECTOR_BYTES, read_counted_disks, read_diskstats
from .readers.identity import OS_NAME_LINUX, machine_type, read_hostname, read_machine, read_os_release
from .readers.loadavg import read_loadavg
from .readers.meminfo import read_meminfo
from .readers.mounts import read_disk_space
from .readers.net_dev import read_net_dev
from .readers.netclass import ARPHRD_ETHER, ARPHRD_LOOPBACK, InterfaceInfo
from .readers.netclass import read_interfaces as interfaces
from .readers.snmp import read_snmp
from .readers.stat import read_stat
from .readers.uptime import read_uptime
from .readers.vmstat import read_vmstat
from .sflow.records import (
    UNKNOWN_COUNTER,
    GenericInterface,
    HostAdapter,
    HostAdapters,
    HostCpu,
    HostDescription,
    HostDisk,
    HostMemory,
    HostNetIO,
    Mib2Icmp,
    Mib2Ip,
    Mib2Tcp,
    Mib2Udp,
    PortName,
    Record,
)
from .sflow.xdr import U64

__all__ = ["USER_HZ", "HostCounters", "InterfaceInfo", "interface_counters", "interfaces"]

log = logging.getLogger(__name__)
T = TypeVar("T")

USER_HZ = os.sysconf("SC_CLK_TCK")

CPU_FIELDS = {
    "user": "cpu_user",
    "nice": "cpu_nice",
    "system": "cpu_system",
    "idle": "cpu_idle",
    "iowait": "cpu_wio",
    "irq": "cpu_intr",
    "softirq": "cpu_sintr",
    "steal": "cpu_steal",
    "guest": "cpu_guest",
    "guest_nice": "cpu_guest_nice",
}
"""/proc/stat cpu state → HostCpu field."""

MEMINFO_FIELDS = {
    "mem_total": ("MemTotal",),
    "mem_free": ("MemFree",),
    "mem_shared": ("Shmem",),
    "mem_buffers": ("Buffers",),
    "mem_cached": ("Cached", "SReclaimable"),
    "swap_total": ("SwapTotal",),
    "swap_free": ("SwapFree",),
}
"""HostMemory field (gauges) → the /proc/meminfo keys it sums.  ``mem_cached`` is Cached plus
SReclaimable, as the established agent counts it and as free(1) shows "cache": reclaimable slab
is memory the kernel gives back under pressure like page cache."""

VMSTAT_FIELDS = {"pgpgin": "page_in", "pgpgout": "page_out", "pswpin": "swap_in", "pswpout": "swap_out"}
"""/proc/vmstat key → HostMemory field (counters)."""

NET_DEV_FIELDS = {
    "bytes_in": "rx_bytes",
    "pkts_in": "rx_packets",
    "errs_in": "rx_errs",
    "drops_in": "rx_drop",
    "bytes_out": "tx_bytes",
    "pkts_out": "tx_packets",
    "errs_out": "tx_errs",
    "drops_out": "tx_drop",
}
"""HostNetIO field → /proc/net/dev column."""

MIB2_RECORDS: tuple[tuple[str, Any, int], ...] = (
    ("Ip", Mib2Ip, 64),  # the kernel folds Ip counters into u64 even on 32-bit machines
    ("Icmp", Mib2Icmp, KERNEL_LONG_BITS),
    ("Tcp", Mib2Tcp, KERNEL_LONG_BITS),
    ("Udp", Mib2Udp, KERNEL_LONG_BITS),
)
"""/proc/net/snmp group → record, with the width of the kernel's counters."""

MIB2_GAUGES = frozenset({"Forwarding", "DefaultTTL", "RtoAlgorithm", "RtoMin", "RtoMax", "MaxConn", "CurrEstab"})

IF_TYPES = {ARPHRD_ETHER: 6, ARPHRD_LOOPBACK: 24}
"""ARPHRD → IANAifType (ethernetCsmacd, softwareLoopback); anything else is other (1)."""


@cache
def _bits(record: Any, name: str) -> int:
    """Width of a record field on the wire: the modulus of its running total."""
    return next(64 if f.type is U64 else 32 for f in record.FIELDS if f.name == name)


def interface_counters(
    info: InterfaceInfo, monotonic: Monotonic, port_name: str | None = None
) -> tuple[GenericInterface, PortName]:
    """The 0:1 and 0:1005 records of one interface; 0:1005 is ``port_name`` when a module named the
    port (``ModuleContext.name_port``), else the kernel's name.

    ``monotonic`` belongs to this interface alone: keep one per interface and drop it when the
    interface goes away.  Its counters start from zero at the first call.
    """
    s = info.stats
    raw = {
        "in_octets": s.get("rx_bytes", 0),
        "in_ucast_pkts": max(s.get("rx_packets", 0) - s.get("multicast", 0), 0),
        "in_multicast_pkts": s.get("multicast", 0),
        "in_discards": s.get("rx_dropped", 0),
        "in_errors": s.get("rx_errors", 0),
        "out_octets": s.get("tx_bytes", 0),
        "out_ucast_pkts": s.get("tx_packets", 0),
        "out_discards": s.get("tx_dropped", 0),
        "out_errors": s.get("tx_errors", 0),
    }
    counts = {
        name: monotonic.update(
            name, value, bits=_bits(GenericInterface, name), source_bits=KERNEL_LONG_BITS, from_zero=True
        )
        for name, value in raw.items()
    }
    if not s.get("multicast", 0):
        counts["in_multicast_pkts"] = UNKNOWN_COUNTER  # never counted by this device (see the module docstring)
    generic = GenericInterface(
        if_index=info.ifindex,
        if_type=IF_TYPES.get(info.arp_type, 1),
        if_speed=info.speed or 0,
        if_direction={"full": 1, "half": 2}.get(info.duplex or "", 0),
        if_status=(1 if info.up else 0) | (2 if info.oper_up else 0),
        in_broadcast_pkts=UNKNOWN_COUNTER,
        in_unknown_protos=UNKNOWN_COUNTER,
        out_multicast_pkts=UNKNOWN_COUNTER,
        out_broadcast_pkts=UNKNOWN_COUNTER,
        promiscuous_mode=1 if info.promiscuous else 0,
        **counts,
    )
    return generic, PortName(name=port_name or info.name)


def _host_adapters(ifs: list[InterfaceInfo], exclude: AbstractSet[int]) -> HostAdapters:
    return HostAdapters(
        adapters=[
            HostAdapter(if_index=i.ifindex, macs=[i.mac])
            for i in ifs
            if i.up and not i.loopback and i.mac and any(i.mac) and not i.veth and i.ifindex not in exclude
        ]
    )


class HostCounters:
    """Reads the host's counters under ``root``; keeps the running totals between polls."""

    def __init__(self, root: Path, clock_ticks: int = USER_HZ, statvfs: Callable[[str], Any] = os.statvfs) -> None:
        self.root = root
        self.clock_ticks = clock_ticks
        self.statvfs = statvfs
        self.monotonic = Monotonic()
        self._logged: set[str] = set()

    def description(self, hostname: str | None, host_uuid: uuid.UUID) -> HostDescription:
        """The 2000 record; ``hostname`` overrides the kernel's.  Unreadable strings are sent empty."""
        return HostDescription(
            hostname=hostname or self._guard(lambda: read_hostname(self.root)) or "",
            uuid=host_uuid.bytes,
            machine_type=machine_type(read_machine(self.root)),
            os_name=OS_NAME_LINUX,
            os_release=self._guard(lambda: read_os_release(self.root)) or "",
        )

    def records(self, adapters_exclude: AbstractSet[int] = frozenset()) -> list[Record]:
        """2001, 2003, 2004, 2005, 2006, 2007, 2008, 2009, 2010, less any whose reader failed."""
        ifs = self._guard(lambda: interfaces(self.root))
        snmp = self._guard(lambda: read_snmp(self.root))
        built = [
            _host_adapters(ifs, adapters_exclude) if ifs is not None else None,
            self._guard(self._cpu),
            self._guard(self._memory),
            self._guard(self._disk),
            self._guard(lambda: self._net_io(ifs)) if ifs is not None else None,
            *(self._mib2(snmp, group, cls, source_bits) for group, cls, source_bits in MIB2_RECORDS),
        ]
        return [r for r in built if r is not None]

    def _guard(self, build: Callable[[], T]) -> T | None:
        try:
            return build()
        except ReaderError as err:
            message = str(err)
            if message not in self._logged:
                self._logged.add(message)
                log.warning("host counters: %s", message)
            return None

    def _cpu(self) -> HostCpu:
        load = read_loadavg(self.root)
        stat = read_stat(self.root, self.clock_ticks)
        info = read_cpuinfo(self.root)
        times = {
            field: self.monotonic.update(("cpu", state), stat.cpu_ms[state], bits=_bits(HostCpu, field))
            for state, field in CPU_FIELDS.items()
        }
        return HostCpu(
            load_one=load.one,
            load_five=load.five,
            load_fifteen=load.fifteen,
            proc_run=max(stat.procs_running - 1, 0),
            proc_total=load.threads,
            cpu_num=info.count,
            cpu_speed=int(info.mhz or 0),
            uptime=int(read_uptime(self.root)),
            interrupts=self.monotonic.update(("cpu", "intr"), stat.interrupts, bits=_bits(HostCpu, "interrupts")),
            contexts=self.monotonic.update(("cpu", "ctxt"), stat.contexts, bits=_bits(HostCpu, "contexts")),
            **times,
        )

    def _memory(self) -> HostMemory:
        mem = read_meminfo(self.root)
        vm = read_vmstat(self.root)
        paging = {
            field: self.monotonic.update(
                ("vmstat", key), vm.get(key, 0), bits=_bits(HostMemory, field), source_bits=KERNEL_LONG_BITS
            )
            for key, field in VMSTAT_FIELDS.items()
        }
        gauges = {field: sum(mem.get(key, 0) for key in keys) for field, keys in MEMINFO_FIELDS.items()}
        return HostMemory(**gauges, **paging)

    def _disk(self) -> HostDisk:
        space = read_disk_space(self.root, self.statvfs)
        counted = read_counted_disks(self.root)
        disks = [d for d in read_diskstats(self.root) if (d.major, d.minor) in counted]

        def total(attr: str, bits: int, source_bits: int = KERNEL_LONG_BITS) -> int:
            raws = {(d.major, d.minor): getattr(d, attr) for d in disks}
            return self.monotonic.update_sum(("disk", attr), raws, bits=bits, source_bits=source_bits)

        return HostDisk(
            disk_total=space.total,
            disk_free=space.free,
            part_max_used=space.part_max_used,
            reads=total("reads", _bits(HostDisk, "reads")),
            bytes_read=total("sectors_read", 64) * SECTOR_BYTES % (1 << 64),
            read_time=total("read_ms", _bits(HostDisk, "read_time"), source_bits=32),
            writes=total("writes", _bits(HostDisk, "writes")),
            bytes_written=total("sectors_written", 64) * SECTOR_BYTES % (1 << 64),
            write_time=total("write_ms", _bits(HostDisk, "write_time"), source_bits=32),
        )

    def _net_io(self, ifs: list[InterfaceInfo]) -> HostNetIO:
        net = read_net_dev(self.root)
        members = [i.name for i in ifs if i.name in net and i.up and not (i.loopback or i.vlan or i.bond_master)]
        totals = {}
        for field, column in NET_DEV_FIELDS.items():
            raws = {name: net[name].get(column, 0) for name in members}
            totals[field] = self.monotonic.update_sum(
                ("nio", field), raws, bits=_bits(HostNetIO, field), source_bits=KERNEL_LONG_BITS, from_zero=True
            )
        return HostNetIO(**totals)

    def _mib2(self, snmp: dict[str, dict[str, int]] | None, group: str, record: Any, source_bits: int) -> Record | None:
        if snmp is None:
            return None
        values = snmp.get(group, {})
        fields = {}
        for f in record.FIELDS:
            raw = values.get(f.name, 0)
            if f.name in MIB2_GAUGES:
                fields[f.name] = raw & 0xFFFFFFFF  # tcpMaxConn -1 (no limit) goes out as 0xFFFFFFFF
            else:
                fields[f.name] = self.monotonic.update((group, f.name), raw, bits=32, source_bits=source_bits)
        return record(**fields)
