"""A container's or pod's counters (docker, k8s and containerd modules): read from the kernel (or,
failing that, from the engine's stats: ``modules/docker/counters.py``), kept as totals that never
go backwards, and turned into 2101-2104.

Sources, in order of preference:

* the kernel, at no cost to the engine: the cgroup (``hsflowd_py/readers/cgroup.py``) for CPU
  time, memory and block I/O, and ``/proc/<pid>/net/dev`` for network I/O: procfs shows the
  network namespace of the process, so the host reads a container's interface counters without
  entering it.  ``/proc/<pid>`` is held open as a directory, so that once the container's init
  has exited a reused pid cannot hand us another process's counters;
* where a cgroup v1 does not account block I/O (see the cgroup reader), the per-process
  ``/proc/<pid>/io`` summed over the cgroup's processes: a process's figures include those of
  the children it reaped, so the sum stays continuous as processes in the container come and go;
* the engine's stats (``GET /containers/<id>/stats``) when the container's cgroup or /proc
  entry is out of reach (an agent in its own pid or cgroup namespace).

Each counter is a sum over devices or processes fed to :class:`~hsflowd_py.counters.Monotonic`
as one value: a container's counters start with it, so all of a device's count is the
container's (unlike the host's, where a device that appears brings a history that is not ours),
and a sum that drops (a ``docker exec`` process exits and takes its figures along, an interface
is removed, the container restarts under a known id) only sets a new baseline.  A resource that
cannot be read keeps its last totals, which is what a final sample carries once the container is
gone (the established agent sends zeros there).

2103's capacity, allocation and available are not known for a container's filesystem and are
sent as 0 (as the established agent does); so are request counts the source does not give (the
per-process fallback counts bytes, not disk requests) and errs.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hsflowd_py.counters import KERNEL_LONG_BITS, Monotonic
from hsflowd_py.host_counters import NET_DEV_FIELDS
from hsflowd_py.readers import ReaderError
from hsflowd_py.readers import cgroup as cg
from hsflowd_py.readers.diskstats import read_counted_disks
from hsflowd_py.readers.net_dev import parse_net_dev
from hsflowd_py.sflow.records import VirtCpu, VirtDisk, VirtMemory, VirtNetIO

IO_FIELDS = ("rd_bytes", "wr_bytes", "rd_req", "wr_req")
U32_FIELDS = frozenset({"pkts_in", "errs_in", "drops_in", "pkts_out", "errs_out", "drops_out", "rd_req", "wr_req"})
DISKS_REFRESH_S = 60.0


@dataclass
class Reading:
    """Raw figures of one poll, None where the source had nothing."""

    cpu_ns: int | None = None
    memory: int | None = None
    memory_limit: int | None = None
    io: dict[str, int] | None = None
    """rd_bytes, wr_bytes, rd_req, wr_req (the request counts may be absent)."""
    net: dict[str, int] | None = None


class ProcDir:
    """``/proc/<pid>`` held open, so that files are read from this process and never from a
    later one that reused its pid (reads fail with ESRCH/ENOENT once it has exited)."""

    def __init__(self, root: Path, pid: int) -> None:
        self.path = root / "proc" / str(pid)
        self.fd = os.open(self.path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)

    def read(self, name: str) -> str:
        try:
            fd = os.open(name, os.O_RDONLY | os.O_CLOEXEC, dir_fd=self.fd)
            with os.fdopen(fd, "rb") as f:
                return f.read().decode("utf-8", "replace")
        except OSError as err:
            missing = isinstance(err, FileNotFoundError | ProcessLookupError)
            raise ReaderError(err.strerror or str(err), path=self.path / name, missing=missing) from None

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1


class KernelSource:
    """Reads a container's figures from its cgroup and its /proc entry."""

    def __init__(
        self, root: Path, proc: ProcDir, dirs: cg.CgroupDirs, *, own_netns: bool, descendants: bool = False
    ) -> None:
        self.root = root
        self.proc = proc
        self.dirs = dirs
        self.own_netns = own_netns
        self.descendants = descendants
        """The processes are in child cgroups (a pod's containers), not in ``dirs`` itself."""
        """False when the container shares the host's network namespace: its traffic is the host's."""
        self.io_from_tasks: bool | None = None
        """Where block I/O comes from: None until the first reading decides."""

    def read(self, counted_disks: set[tuple[int, int]] | None) -> tuple[Reading, list[ReaderError]]:
        errors: list[ReaderError] = []
        r = Reading()
        try:
            r.cpu_ns = cg.read_cpu_ns(self.dirs)
        except ReaderError as err:
            errors.append(err)
        try:
            mem = cg.read_memory(self.dirs)
            r.memory, r.memory_limit = mem.current, mem.limit
        except ReaderError as err:
            errors.append(err)
        try:
            r.io = self._io(counted_disks)
        except ReaderError as err:
            errors.append(err)
        if self.own_netns:
            try:
                r.net = net_sums(parse_net_dev(self.proc.read("net/dev")))
            except ReaderError as err:
                errors.append(err)
        return r, errors

    def _io(self, counted_disks: set[tuple[int, int]] | None) -> dict[str, int]:
        """From the cgroup if it accounts block I/O, else from its processes; the choice made at the
        first reading sticks, so that the totals never mix the two."""
        if not self.io_from_tasks:
            try:
                devices = cg.read_io(self.dirs)
            except ReaderError as err:
                if not err.missing or self.io_from_tasks is False:
                    raise
                devices = None
            if devices is not None:
                self.io_from_tasks = False
                counts = [c for dev, c in devices.items() if counted_disks is None or dev in counted_disks]
                return {
                    "rd_bytes": sum(c.read_bytes for c in counts),
                    "wr_bytes": sum(c.write_bytes for c in counts),
                    "rd_req": sum(c.reads for c in counts),
                    "wr_req": sum(c.writes for c in counts),
                }
            if self.io_from_tasks is False:
                return {}
            self.io_from_tasks = True
        tasks = cg.read_tasks_io(self.root, cg.read_procs(self.dirs, descendants=self.descendants)).values()
        return {
            "rd_bytes": sum(t.get("read_bytes", 0) for t in tasks),
            "wr_bytes": sum(max(t.get("write_bytes", 0) - t.get("cancelled_write_bytes", 0), 0) for t in tasks),
        }

    def close(self) -> None:
        self.proc.close()


def net_sums(devices: Mapping[str, Mapping[str, int]]) -> dict[str, int]:
    """/proc/net/dev of a container's namespace → VirtNetIO sums over its interfaces but lo."""
    members = [d for name, d in devices.items() if name != "lo"]
    return {f: sum(d.get(col, 0) for d in members) for f, col in NET_DEV_FIELDS.items()}


class Totals:
    """A container's running totals and last gauges; what every sample, the final one included, reports."""

    def __init__(self) -> None:
        self.monotonic = Monotonic()
        self.cpu_ms = 0
        self.memory = 0
        self.memory_limit: int | None = None
        self.io: dict[str, int] = dict.fromkeys(IO_FIELDS, 0)
        self.net: dict[str, int] = dict.fromkeys(NET_DEV_FIELDS, 0)
        self.have_net = False
        self.readings = 0

    def add(self, r: Reading) -> None:
        """Fold a reading in; a resource missing from it keeps its last totals."""
        if r.cpu_ns is not None:
            self.cpu_ms = (self.monotonic.update("cpu_ns", r.cpu_ns, bits=64) // 1_000_000) & 0xFFFFFFFF
        if r.memory is not None:
            self.memory, self.memory_limit = r.memory, r.memory_limit
        if r.io is not None:
            for f, raw in r.io.items():
                self.io[f] = self.monotonic.update(("io", f), raw, bits=32 if f in U32_FIELDS else 64)
        if r.net is not None:
            self.have_net = True
            for f, raw in r.net.items():
                self.net[f] = self.monotonic.update(
                    ("net", f), raw, bits=32 if f in U32_FIELDS else 64, source_bits=KERNEL_LONG_BITS
                )
        self.readings += 1

    def records(self, state: int, vcpus: int, default_limit: int) -> list[Any]:
        """2101, 2102, 2103, and 2104 unless the container has no network of its own."""
        out: list[Any] = [
            VirtCpu(state=state, cpu_time=self.cpu_ms, nr_virt_cpu=vcpus),
            VirtMemory(memory=self.memory, max_memory=self.memory_limit or default_limit),
            VirtDisk(**self.io),
        ]
        if self.have_net:
            out.append(VirtNetIO(**self.net))
        return out


class CountedDisks:
    """The whole disks whose I/O a guest's 2103 counts (as for the host: no partitions, no stacked
    devices), shared by a module's guests and read again once a minute: disks come and go rarely,
    and every guest's reading asks.  None (count every device) while they cannot be read."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self._read_at = float("-inf")
        self._disks: set[tuple[int, int]] | None = None

    def get(self) -> set[tuple[int, int]] | None:
        now = time.monotonic()
        if now - self._read_at >= DISKS_REFRESH_S:
            try:
                self._disks = read_counted_disks(self.root)
            except ReaderError:
                self._disks = None
            self._read_at = now
        return self._disks


@dataclass(kw_only=True)
class GuestCounters:
    """What the poller of a container or pod keeps of its counters: read off the loop
    (:meth:`read_from`, on the core's reading thread), taken on it (:meth:`take`) into totals that
    the final sample carries once the guest is gone.  The base of the modules' per-guest records,
    which say where their source is (:meth:`counter_source`)."""

    totals: Totals = field(default_factory=Totals)
    fresh: tuple[Reading, list[ReaderError]] | None = None
    """The last reading made off the loop, not yet added to the totals."""
    logged: set[str] = field(default_factory=set)
    """The faults already logged for this guest (each kind once)."""
    lock: threading.Lock = field(default_factory=threading.Lock)
    """Held by a read under way and by the loop to swap or close the guest's source, so a read
    never uses a closed /proc/<pid> descriptor (or whatever took its number)."""
    gone: bool = False
    """Forgotten: a read still queued finds nothing to do."""

    def counter_source(self) -> KernelSource | None:
        """The guest's source now (a subclass's probe may be swapped, under :attr:`lock`)."""
        raise NotImplementedError

    def read(self, disks: CountedDisks) -> None:
        """Blocking (cgroup and /proc files): on the core's reading thread, or a thread of its own."""
        with self.lock:
            source = self.counter_source()
            if not self.gone and source is not None:
                self.fresh = source.read(disks.get())

    def take(self, log: logging.Logger, who: str) -> None:
        """On the loop: the reading made off it into the totals; a fault logged the first time its
        kind occurs (a missing file is the guest going away, not a fault)."""
        fresh, self.fresh = self.fresh, None
        if fresh is None:
            return
        reading, errors = fresh
        self.totals.add(reading)
        for err in errors:
            if not err.missing and err.reason not in self.logged:
                self.logged.add(err.reason)
                log.warning("%s: %s", who, err)

    def close(self) -> None:
        """The guest is forgotten: no read starts after this one, and its source is closed."""
        with self.lock:
            self.gone = True
            source = self.counter_source()
            if source is not None:
                source.close()
