"""/proc/mounts, and the space on the local filesystems it lists (statvfs).

Which mounts count as local disk space:

* the source is a block device (``/dev/...``), or the type stores on local devices without
  naming one (zfs datasets are ``pool/name``, ubifs volumes ``ubi0:name``); this leaves out
  every pseudo filesystem (proc, sysfs, cgroup, devtmpfs, tmpfs: memory, not disk), overlay
  (its space is that of the filesystem holding its layers) and network filesystems;
* not a loop device: its space is a file on another filesystem that is already counted;
* not read-only: images mounted read-only (squashfs snaps, ISO files) are always 100% full and
  would pin part_max_used at 100%;
* each source once: bind mounts and btrfs subvolumes repeat a device that holds one pool of space.

Sizes follow df: total = f_blocks * f_frsize (statvfs counts blocks in fragment units; the
established agent multiplies by f_bsize), free = f_bavail (what unprivileged users can still
use), and percent used = used / (used + available), rounded up.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from . import ReaderError, read_parsed, unescape_octal

LOCAL_TYPES_WITHOUT_DEVICE = frozenset({"zfs", "ubifs"})

@dataclass(frozen=True)
class Mount:
    source: str
    mountpoint: str
    fstype: str
    options: tuple[str, ...]

    @property
    def read_only(self) -> bool:
        return "ro" in self.options


@dataclass(frozen=True)
class DiskSpace:
    total: int
    free: int
    part_max_used: int
    """Used space of the fullest filesystem in hundredths of a percent."""


def parse_mounts(text: str) -> list[Mount]:
    out = []
    for n, line in enumerate(text.splitlines(), 1):
        fields = line.split()
        if not fields:
            continue
        if len(fields) < 4:
            raise ReaderError(f"{len(fields)} fields, expected 6", line=n)
        source, mountpoint, fstype, options = fields[:4]
        out.append(Mount(unescape_octal(source), unescape_octal(mountpoint), fstype, tuple(options.split(","))))
    return out


def read_mounts(root: Path) -> list[Mount]:
    return read_parsed(root / "proc/mounts", parse_mounts)


def is_local_disk(mount: Mount) -> bool:
    """Whether the mount's space counts as local disk space (see the module docstring)."""
    on_device = mount.source.startswith("/dev/") and not mount.source.startswith("/dev/loop")
    return (on_device or mount.fstype in LOCAL_TYPES_WITHOUT_DEVICE) and not mount.read_only


def disk_space(root: Path, mounts: Iterable[Mount], statvfs: Callable[[str], Any]) -> DiskSpace:
    """Space on the local filesystems among ``mounts``; ``statvfs`` is ``os.statvfs`` or a stand-in.

    Mount points are taken inside ``root``.  A mount that statvfs refuses (gone since
    /proc/mounts was read, or not visible from this mount namespace) is left out.
    """
    total = free = worst = 0
    seen: set[str] = set()
    for m in mounts:
        if not is_local_disk(m) or m.source in seen:
            continue
        seen.add(m.source)
        try:
            st = statvfs(str(root / m.mountpoint.lstrip("/")))
        except OSError:
            continue
        if not st.f_blocks:
            continue
        used = (st.f_blocks - st.f_bfree) * st.f_frsize
        avail = st.f_bavail * st.f_frsize
        total += st.f_blocks * st.f_frsize
        free += avail
        if used + avail:
            worst = max(worst, -(-used * 10000 // (used + avail)))
    return DiskSpace(total, free, worst)


def read_disk_space(root: Path, statvfs: Callable[[str], Any]) -> DiskSpace:
    return disk_space(root, read_mounts(root), statvfs)
