"""cgroups v1 and v2: where a process's (or a unit's) cgroup lives, and what it has used.

Used by the docker module (a container's cgroup, found from its init pid) and the systemd
module (a unit's ``ControlGroup`` path).  The API, in the order a caller uses it:

* ``read_mounts(root) -> list[CgroupMount]``: the cgroup hierarchies mounted in the reader's
  view (``proc/self/mountinfo``); read once and keep.
* ``read_membership(root, pid) -> dict[str, str]``: ``/proc/<pid>/cgroup`` as hierarchy →
  path, the unified (v2) hierarchy under the key ``""`` and each v1 controller under its own
  name (``cpu``, ``cpuacct``, ``memory``, ``blkio``, ``name=systemd``…).
* ``locate(mounts, membership) -> CgroupDirs`` turns those paths into directories;
  ``locate_path(mounts, "/system.slice/x.service")`` does it for one path in every hierarchy
  (systemd names a unit's cgroup the same way in all of them).
* ``read_cpu_ns(dirs)``, ``read_memory(dirs)``, ``read_io(dirs)``, ``read_procs(dirs)``: one
  resource each, so that a caller keeps what it read last of a resource whose read failed.
* ``read_tasks_io(root, pids)``: the per-process I/O accounting of ``/proc/<pid>/io``, the
  fallback for block I/O where the cgroup does not account it (see ``read_io``).

Every ``read_*`` raises :class:`~hsflowd_py.readers.ReaderError` (``missing=True`` when the file
is absent: the cgroup went away, or the controller is not enabled for it).

Kernel facts behind the choices:

* A path in ``/proc/<pid>/cgroup`` is relative to the reader's cgroup namespace, and the
  ``root`` field of a cgroup mount in mountinfo says which part of the hierarchy is mounted
  there (a container sees ``/docker/<id>`` mounted on ``/sys/fs/cgroup/cpu``).  A path outside
  every mounted part (``/../..``: the process is outside our cgroup namespace) cannot be read.
* On a hybrid system the controllers live in v1 and the unified tree holds only the core files,
  so a v1 controller directory wins when the process has one; the unified ``cpu.stat`` reports
  ``usage_usec`` even without the cpu controller, so CPU time is readable on pure v2 too.
* v1 memory limits of "none" read as PAGE_COUNTER_MAX pages (9223372036854771712 on 64-bit
  kernels); any limit at or above 2^62 is taken as no limit.  v2 writes ``max``.
* v1 blkio: since Linux 5.x the ``blkio.throttle.*`` statistics are only kept for devices that
  have a throttle rule, and v1 charges buffered writes to the root cgroup at writeback (only
  v2 attributes writeback to the dirtying cgroup), so a v1 cgroup usually reports ``Total 0``
  and no device lines whatever it did: ``read_io`` returns None there (unknown, not zero), and
  ``read_tasks_io`` is the way to attribute I/O to processes.
* ``/proc/<pid>/io`` of a process includes the counts of its reaped children and dead
  threads, so summing it over a cgroup's live processes counts what they and their reaped
  descendants did; ``read_bytes``/``write_bytes`` are what reached the storage layer (a
  buffered write counts when the page is dirtied), ``syscr``/``syscw`` count all read and
  write calls, pipes and sockets included.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from . import ReaderError, parsing, read_parsed, read_per_process, unescape_octal

UNLIMITED = 1 << 62
"""v1 memory limits at or above this are "no limit" (PAGE_COUNTER_MAX pages of 4 KiB, rounded)."""

UNIFIED = ""
"""The key of the unified (v2) hierarchy in a membership map, as ``0::/path`` has no controller."""


@dataclass(frozen=True)
class CgroupMount:
    """One mounted cgroup hierarchy (or part of one)."""

    mount_point: Path
    """Where it is mounted, under the reader's root."""
    hierarchy_root: str
    """The hierarchy's path that is mounted there: ``/`` unless the mount is a namespaced view."""
    version: int
    controllers: frozenset[str] = frozenset()
    """v1 only: ``{"cpu", "cpuacct"}``, ``{"name=systemd"}``…"""


@dataclass(frozen=True)
class CgroupDirs:
    """The directories of one cgroup: unified and/or one per v1 controller."""

    unified: Path | None = None
    v1: Mapping[str, Path] = field(default_factory=dict)

    def __bool__(self) -> bool:
        return self.unified is not None or bool(self.v1)


@dataclass(frozen=True)
class Memory:
    current: int
    """Bytes charged to the cgroup, page cache included (memory.current / memory.usage_in_bytes)."""
    limit: int | None
    """None when the cgroup has no limit."""


@dataclass(frozen=True)
class IoCounts:
    read_bytes: int = 0
    write_bytes: int = 0
    reads: int = 0
    writes: int = 0


# ------------------------------------------------------------------ where


def parse_mountinfo(text: str, root: Path = Path("/")) -> list[CgroupMount]:
    """The cgroup and cgroup2 mounts of a ``/proc/<pid>/mountinfo``, mount points put under ``root``.

    A line is ``id parent major:minor root mount-point options [optional…] - fstype source
    super-options``; the optional fields vary in number, so the fields after ``-`` are found by
    the separator, not by position.
    """
    out = []
    for n, line in enumerate(text.splitlines(), 1):
        fields = line.split()
        if "-" not in fields:
            continue
        sep = fields.index("-")
        if sep < 6 or len(fields) < sep + 4:
            raise ReaderError(f"cannot parse {line.strip()!r}", line=n)
        fstype = fields[sep + 1]
        if fstype not in ("cgroup", "cgroup2"):
            continue
        mount_point = root / unescape_octal(fields[4]).lstrip("/")
        hierarchy_root = unescape_octal(fields[3])
        if fstype == "cgroup2":
            out.append(CgroupMount(mount_point, hierarchy_root, 2))
        else:
            options = set(fields[sep + 3].split(","))
            controllers = frozenset(
                o for o in options if o not in _V1_MOUNT_OPTIONS and not o.startswith("release_agent=")
            )
            out.append(CgroupMount(mount_point, hierarchy_root, 1, controllers))
    return out


_V1_MOUNT_OPTIONS = frozenset({"rw", "ro", "noprefix", "clone_children", "xattr", "cpuset_v2_mode", "favordynmods"})


def read_mounts(root: Path) -> list[CgroupMount]:
    """The cgroup hierarchies as the reader (this process) sees them."""
    return read_parsed(root / "proc/self/mountinfo", lambda text: parse_mountinfo(text, root))


def parse_membership(text: str) -> dict[str, str]:
    """``/proc/<pid>/cgroup``: ``hierarchy-id:controllers:path`` lines → controller → path.

    ``0::/path`` is the unified hierarchy (key ``""``); ``4:cpu,cpuacct:/path`` gives the path
    to both ``cpu`` and ``cpuacct``.  The path may itself contain ``:``.
    """
    out: dict[str, str] = {}
    for n, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        parts = line.split(":", 2)
        if len(parts) != 3 or not parts[2].startswith("/"):
            raise ReaderError(f"cannot parse {line.strip()!r}", line=n)
        _, controllers, path = parts
        if not controllers:
            out[UNIFIED] = path
        for c in controllers.split(","):
            if c:
                out[c] = path
    return out


def read_membership(root: Path, pid: int) -> dict[str, str]:
    return read_parsed(root / f"proc/{pid}/cgroup", parse_membership)


def _under(mount: CgroupMount, path: str) -> Path | None:
    """The directory of hierarchy path ``path`` in this mount, or None if the mount does not show it."""
    if ".." in path.split("/"):
        return None
    base = mount.hierarchy_root.rstrip("/")
    if path != base and not path.startswith(base + "/"):
        return None
    return mount.mount_point / path[len(base) :].lstrip("/")


def locate(mounts: Iterable[CgroupMount], membership: Mapping[str, str]) -> CgroupDirs:
    """The directories of the cgroups a process belongs to, in the hierarchies mounted here."""
    unified = None
    v1: dict[str, Path] = {}
    for m in mounts:
        if m.version == 2:
            path = membership.get(UNIFIED)
            if unified is None and path is not None:
                unified = _under(m, path)
            continue
        for c in m.controllers:
            path = membership.get(c)
            if c not in v1 and path is not None and (d := _under(m, path)) is not None:
                v1[c] = d
    return CgroupDirs(unified, v1)


def locate_path(mounts: Iterable[CgroupMount], path: str) -> CgroupDirs:
    """The directories of one cgroup path in every hierarchy (a systemd unit's ``ControlGroup``)."""
    mounts = list(mounts)
    keys = {c for m in mounts for c in m.controllers} | {UNIFIED}
    return locate(mounts, dict.fromkeys(keys, path))


# ------------------------------------------------------------------ parsers


def parse_int(text: str) -> int:
    """A file holding one integer (cpuacct.usage, memory.current…)."""
    with parsing(1, text):
        return int(text.strip())


def parse_flat_keyed(text: str) -> dict[str, int]:
    """``key value`` lines (cpu.stat, memory.stat, /proc/<pid>/io with its colons)."""
    out = {}
    for n, line in enumerate(text.splitlines(), 1):
        parts = line.replace(":", " ").split()
        if len(parts) != 2:
            continue
        with parsing(n, line):
            out[parts[0]] = int(parts[1])
    return out


def parse_limit(text: str) -> int | None:
    """memory.max (``max`` = none) or memory.limit_in_bytes (huge = none)."""
    value = text.strip()
    if value == "max":
        return None
    limit = parse_int(value)
    return None if limit >= UNLIMITED else limit


def _device(text: str, n: int, line: str) -> tuple[int, int]:
    with parsing(n, line):
        major, minor = text.split(":")
        return int(major), int(minor)


def parse_io_stat(text: str) -> dict[tuple[int, int], IoCounts]:
    """v2 io.stat: ``MAJ:MIN rbytes=… wbytes=… rios=… wios=… dbytes=… dios=…`` per device.

    Keys are read by name; ones a kernel adds later (discards, flushes) are ignored.
    """
    out = {}
    for n, line in enumerate(text.splitlines(), 1):
        parts = line.split()
        if not parts:
            continue
        dev = _device(parts[0], n, line)
        with parsing(n, line):
            values = {k: int(v) for k, _, v in (p.partition("=") for p in parts[1:])}
        out[dev] = IoCounts(
            values.get("rbytes", 0), values.get("wbytes", 0), values.get("rios", 0), values.get("wios", 0)
        )
    return out


def parse_blkio(text: str) -> dict[tuple[int, int], dict[str, int]]:
    """v1 blkio ``MAJ:MIN Op value`` lines (Read, Write, Sync, Async, Discard, Total); the
    closing ``Total N`` line sums the others and is skipped."""
    out: dict[tuple[int, int], dict[str, int]] = {}
    for n, line in enumerate(text.splitlines(), 1):
        parts = line.split()
        if len(parts) != 3:
            if not parts or (len(parts) == 2 and parts[0] == "Total"):
                continue
            raise ReaderError(f"cannot parse {line.strip()!r}", line=n)
        dev = _device(parts[0], n, line)
        with parsing(n, line):
            out.setdefault(dev, {})[parts[1]] = int(parts[2])
    return out


def parse_procs(text: str) -> list[int]:
    out = []
    for n, line in enumerate(text.splitlines(), 1):
        if line.strip():
            with parsing(n, line):
                out.append(int(line))
    return out


# ------------------------------------------------------------------ readers


def _no(what: str, dirs: CgroupDirs) -> ReaderError:
    return ReaderError(f"no {what} accounting for this cgroup", path=dirs.unified, missing=True)


def read_cpu_ns(dirs: CgroupDirs) -> int:
    """CPU time used by the cgroup, in nanoseconds."""
    if "cpuacct" in dirs.v1:
        return read_parsed(dirs.v1["cpuacct"] / "cpuacct.usage", parse_int)
    if dirs.unified is not None:
        path = dirs.unified / "cpu.stat"
        stat = read_parsed(path, parse_flat_keyed)
        if "usage_usec" not in stat:
            raise ReaderError("no usage_usec", path=path)
        return stat["usage_usec"] * 1000
    raise _no("cpu", dirs)


def read_memory(dirs: CgroupDirs) -> Memory:
    if "memory" in dirs.v1:
        d = dirs.v1["memory"]
        return Memory(
            read_parsed(d / "memory.usage_in_bytes", parse_int), read_parsed(d / "memory.limit_in_bytes", parse_limit)
        )
    if dirs.unified is not None:
        d = dirs.unified
        return Memory(read_parsed(d / "memory.current", parse_int), read_parsed(d / "memory.max", parse_limit))
    raise _no("memory", dirs)


def read_io(dirs: CgroupDirs) -> dict[tuple[int, int], IoCounts] | None:
    """Block I/O per device (major, minor); None where v1 does not account it (module docstring)."""
    if "blkio" in dirs.v1:
        d = dirs.v1["blkio"]
        by_bytes = _read_blkio(d, "blkio.throttle.io_service_bytes")
        by_ops = _read_blkio(d, "blkio.throttle.io_serviced")
        if not by_bytes and not by_ops:
            return None
        return {
            dev: IoCounts(
                by_bytes.get(dev, {}).get("Read", 0),
                by_bytes.get(dev, {}).get("Write", 0),
                by_ops.get(dev, {}).get("Read", 0),
                by_ops.get(dev, {}).get("Write", 0),
            )
            for dev in by_bytes.keys() | by_ops.keys()
        }
    if dirs.unified is not None:
        return read_parsed(dirs.unified / "io.stat", parse_io_stat)
    raise _no("block I/O", dirs)


def _read_blkio(d: Path, name: str) -> dict[tuple[int, int], dict[str, int]]:
    """The ``_recursive`` file (descendants included, for slices) when the kernel has it."""
    try:
        return read_parsed(d / f"{name}_recursive", parse_blkio)
    except ReaderError as err:
        if not err.missing:
            raise
    return read_parsed(d / name, parse_blkio)


def read_procs(dirs: CgroupDirs, *, descendants: bool = False) -> list[int]:
    """Pids of the processes in the cgroup itself (with ``descendants``: and in every cgroup below
    it, as a Kubernetes pod's processes all are, one cgroup per container), in the reader's pid
    namespace.  A child cgroup removed during the walk is left out."""
    d = dirs.unified if dirs.unified is not None else next(iter(dirs.v1.values()), None)
    if d is None:
        raise _no("process", dirs)
    pids = read_parsed(d / "cgroup.procs", parse_procs)
    if descendants:
        for parent, children, _ in os.walk(d):
            for child in children:
                with contextlib.suppress(ReaderError):
                    pids += read_parsed(Path(parent) / child / "cgroup.procs", parse_procs)
    return pids


def read_tasks_io(root: Path, pids: Iterable[int]) -> dict[int, dict[str, int]]:
    """``/proc/<pid>/io`` of each process still there: rchar, wchar, syscr, syscw, read_bytes,
    write_bytes, cancelled_write_bytes.  A process that exited meanwhile is left out."""
    return read_per_process(root, pids, "io", parse_flat_keyed)
