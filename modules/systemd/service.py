"""One running service as an sFlow data source (3:dsIndex): its identity, cgroup and counters.

Where each figure comes from, first that works (``hsflowd_py/readers/cgroup.py``
explains the cgroup files):

- CPU (2101 cpu_time, ms): the cgroup (cgroup v1 ``cpuacct.usage`` or the
  unified ``cpu.stat`` usage_usec, which cgroup v2 keeps even without the cpu
  controller), else the sum of the processes' ``/proc/<pid>/stat`` times;
- memory (2102): the cgroup's charge and limit, else the processes' resident
  memory; no limit is sent as the host's memory size, the most the service
  can have;
- block I/O (2103): the cgroup's io.stat / blkio, else the processes'
  ``/proc/<pid>/io`` (read_bytes, write_bytes, syscr, syscw), which needs
  ptrace access to them (see the module's ``privileges``).

A figure that cannot be read this round keeps its last value, so the final
sample of a stopped service, whose cgroup systemd has already removed,
carries what was last read, never zeros.  Counters go through Monotonic: a
restarted service's cgroup starts again from zero and its processes come
and go, but the sent counters never step back.

The source can change during a service's life: io.stat appears when systemd
turns on the io controller for the unit, and a v1 ``cpuacct`` or ``blkio``
directory comes and goes with the unit's accounting settings.  Each sent
counter is therefore one running total over members tagged by their source
(the cgroup directory read, or a pid), never one total per source: a member
new to the sum gives only a baseline, so after a change the counter goes on
from the last value sent.  The counts between the old source's last reading
and the new one's first are lost, the price of never stepping back or
jumping by the difference between two unrelated totals.

Choices that the established agent makes the same way: 2101 state is
running (1) while the service is active (only running services are
reported), nr_virt_cpu is 0 (a service has no virtual CPUs), and 2103
capacity/allocation/available are 0.  Addition: the final sample's state is
shutoff (5).
"""

from __future__ import annotations

import logging
import os
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

from hsflowd_py.counters import Monotonic
from hsflowd_py.host_counters import USER_HZ
from hsflowd_py.readers import ReaderError, read_parsed
from hsflowd_py.readers.cgroup import (
    CgroupDirs,
    CgroupMount,
    locate_path,
    parse_procs,
    read_cpu_ns,
    read_io,
    read_memory,
    read_tasks_io,
)
from hsflowd_py.sflow.records import HostDescription, HostParent, Record, VirtCpu, VirtDisk, VirtMemory

from .task_stats import read_tasks_resident, read_tasks_ticks

log = logging.getLogger("hsflowd.systemd")
T = TypeVar("T")

STATE_RUNNING = 1
STATE_SHUTOFF = 5


def service_uuid(host: uuid.UUID, unit: str) -> uuid.UUID:
    """Name-based (SHA-1, version 5) UUID of the unit name under the host's UUID: stable across restarts."""
    return uuid.uuid5(host, unit)


def existing_dirs(mounts: Iterable[CgroupMount], cgroup: str) -> CgroupDirs:
    """The directories of a unit's cgroup that exist.

    systemd names a unit's cgroup the same in every hierarchy but creates it
    in a v1 controller only when that accounting is on for the unit, and a
    v1 directory, where present, wins over the unified one in the reader: a
    missing ``cpuacct`` directory must not hide the unified ``cpu.stat``.
    """
    if not cgroup:
        return CgroupDirs()
    dirs = locate_path(mounts, cgroup)
    unified = dirs.unified if dirs.unified is not None and dirs.unified.is_dir() else None
    return CgroupDirs(unified, {c: d for c, d in dirs.v1.items() if d.is_dir()})


def cgroup_tree(dirs: CgroupDirs) -> list[Path]:
    """The unit's cgroup directory and its descendants (``Delegate=yes`` services make sub-cgroups).

    Processes are listed from the unified tree, else from systemd's own v1
    hierarchy (``name=systemd``), which holds every unit's processes.
    """
    top = dirs.unified if dirs.unified is not None else dirs.v1.get("name=systemd")
    if top is None:
        top = next(iter(dirs.v1.values()), None)
    if top is None:
        return []
    out = [top]
    for base, subdirs, _ in os.walk(top):
        out += [Path(base, d) for d in subdirs]
    return out


def read_pids(dirs: CgroupDirs) -> list[int]:
    pids: list[int] = []
    for d in cgroup_tree(dirs):
        try:
            pids += read_parsed(d / "cgroup.procs", parse_procs)
        except ReaderError as err:
            if not err.missing:  # a sub-cgroup removed while walking is no fault
                raise
    return pids


@dataclass
class Service:
    """A tracked service; ``records()`` is its poller's collect function."""

    name: str
    uuid: uuid.UUID
    ds_index: int
    root: Path
    describe: Callable[[str, uuid.UUID], HostDescription]
    """The host's 2000 builder (machine type and OS are the host's)."""
    host_memory: Callable[[], int]
    cgroup: str = ""
    dirs: CgroupDirs = field(default_factory=CgroupDirs)
    monotonic: Monotonic = field(default_factory=Monotonic)
    cpu_ms: int = 0
    memory: int = 0
    max_memory: int = 0
    io: tuple[int, int, int, int] = (0, 0, 0, 0)
    """rd_req, rd_bytes, wr_req, wr_bytes as last sent."""
    logged: set[tuple[str, str]] = field(default_factory=set)

    def place(self, mounts: Iterable[CgroupMount], cgroup: str) -> None:
        """Where the service's cgroup is now (called at every refresh: a restart may move it)."""
        self.cgroup = cgroup
        self.dirs = existing_dirs(mounts, cgroup)

    def records(self, state: int = STATE_RUNNING) -> list[Record]:
        pids = self._attempt("processes", lambda: read_pids(self.dirs)) if self.dirs else None
        self._read_cpu(pids)
        self._read_memory(pids)
        self._read_io(pids)
        rd_req, rd_bytes, wr_req, wr_bytes = self.io
        return [
            self.describe(self.name, self.uuid),
            HostParent(ds_class=2, ds_index=1),
            VirtCpu(state=state, cpu_time=self.cpu_ms, nr_virt_cpu=0),
            VirtMemory(memory=self.memory, max_memory=self.max_memory),
            VirtDisk(rd_req=rd_req, rd_bytes=rd_bytes, wr_req=wr_req, wr_bytes=wr_bytes),
        ]

    def final_records(self) -> list[Record]:
        """The last sample: whatever can still be read, else the last values, state shutoff."""
        return self.records(STATE_SHUTOFF)

    # ------------------------------------------------------------ readings

    def _cgroup_source(self, v1_controller: str) -> Path | None:
        """The directory the cgroup reader takes a figure from (its v1 controller's, else the unified one):
        the member key of a cgroup reading, so that a change of directory counts as a change of source."""
        return self.dirs.v1.get(v1_controller, self.dirs.unified)

    def _read_cpu(self, pids: list[int] | None) -> None:
        ns = self._attempt("cgroup CPU time", lambda: read_cpu_ns(self.dirs)) if self.dirs else None
        ms: dict[Path | int | None, int]
        if ns is not None:
            ms = {self._cgroup_source("cpuacct"): ns // 1_000_000}
        elif (
            pids and (ticks := self._attempt("process CPU time", lambda: read_tasks_ticks(self.root, pids))) is not None
        ):
            ms = {pid: t * 1000 // USER_HZ for pid, t in ticks.items()}
        else:
            return
        self.cpu_ms = self.monotonic.update_sum("cpu", ms, bits=32)

    def _read_memory(self, pids: list[int] | None) -> None:
        mem = self._attempt("cgroup memory", lambda: read_memory(self.dirs)) if self.dirs else None
        if mem is not None:
            self.memory = mem.current
            self.max_memory = mem.limit if mem.limit is not None else self.host_memory()
        elif (
            pids
            and (resident := self._attempt("process memory", lambda: read_tasks_resident(self.root, pids))) is not None
        ):
            self.memory = resident
            self.max_memory = self.host_memory()
        elif not self.max_memory:  # nothing to read (no processes left): the limit is still the host's
            self.max_memory = self.host_memory()

    def _read_io(self, pids: list[int] | None) -> None:
        devices = self._attempt("cgroup I/O", lambda: read_io(self.dirs)) if self.dirs else None
        counts: dict[tuple[Path | None, tuple[int, int]] | int, tuple[int, int, int, int]]
        if devices is not None:
            source = self._cgroup_source("blkio")
            counts = {(source, d): (c.reads, c.read_bytes, c.writes, c.write_bytes) for d, c in devices.items()}
        elif pids and (tasks := self._attempt("process I/O", lambda: read_tasks_io(self.root, pids))) is not None:
            counts = {
                p: (t.get("syscr", 0), t.get("read_bytes", 0), t.get("syscw", 0), t.get("write_bytes", 0))
                for p, t in tasks.items()
            }
        else:
            return

        def total(key: str, i: int, bits: int) -> int:
            return self.monotonic.update_sum(key, {m: c[i] for m, c in counts.items()}, bits=bits)

        self.io = (total("rd_req", 0, 32), total("rd_bytes", 1, 64), total("wr_req", 2, 32), total("wr_bytes", 3, 64))

    def _attempt(self, what: str, read: Callable[[], T]) -> T | None:
        """A reading, or None when its source is absent (normal) or broken.

        A broken source is logged once per kind of failure for all services
        together (``logged`` is shared): without the privileges to read other
        users' processes, every service would otherwise log the same thing.
        """
        try:
            return read()
        except ReaderError as err:
            if not err.missing and (what, err.reason) not in self.logged:
                self.logged.add((what, err.reason))
                log.warning("systemd: %s: cannot read %s: %s (not logged again for any service)", self.name, what, err)
            return None
