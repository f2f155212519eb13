"""/proc/diskstats, and /sys/block to tell which of its lines are disks worth adding up.

/proc/diskstats lists partitions and stacked devices beside the disks they live on, so summing
every line counts the same I/O two or three times (the established agent sums partitions with
their disks).  Only devices that are whole disks and sit directly on hardware are counted:

* whole disks are the entries of /sys/block (partitions are not listed there), matched to
  diskstats lines by major:minor from their ``dev`` file, which also sidesteps name mangling
  (``cciss/c0d0`` in diskstats is ``cciss!c0d0`` in sysfs);
* stacked devices are left out because their I/O is counted again on the disks below: any
  device with entries in ``slaves/`` (device-mapper ``dm-N`` for LVM, LUKS and multipath,
  software RAID ``mdN``, bcache);
* ``loop``, ``ram`` and ``zram`` devices are left out: a loop device's I/O lands on the disk
  holding its backing file, and ram/zram I/O never reaches a disk.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from . import ReaderError, list_dir, parsing, read_optional, read_parsed

SECTOR_BYTES = 512
"""diskstats counts 512-byte sectors whatever the device's real sector size."""

_MEMORY_OR_FILE_BACKED = ("loop", "ram", "zram")


@dataclass(frozen=True)
class DiskStats:
    major: int
    minor: int
    name: str
    reads: int
    sectors_read: int
    read_ms: int
    """An unsigned int in the kernel on every architecture: wraps at 2^32 ms (about 49.7 days)."""
    writes: int
    sectors_written: int
    write_ms: int
    """Wraps at 2^32 like read_ms."""


def parse_diskstats(text: str) -> list[DiskStats]:
    """Lines of 14 fields or more (2.6.25 and later; 4.18 and 5.5 appended discard and flush fields).

    Kernels before 2.6.25 printed partitions with only 4 counters (7 fields); such lines are
    partitions, never counted, and are skipped.
    """
    out = []
    for n, line in enumerate(text.splitlines(), 1):
        fields = line.split()
        if not fields or len(fields) == 7:
            continue
        if len(fields) < 14:
            raise ReaderError(f"{len(fields)} fields, expected 14 or more", line=n)
        with parsing(n, line):
            major, minor = int(fields[0]), int(fields[1])
            reads, _, sectors_read, read_ms, writes, _, sectors_written, write_ms = (int(v) for v in fields[3:11])
        out.append(DiskStats(major, minor, fields[2], reads, sectors_read, read_ms, writes, sectors_written, write_ms))
    return out


def read_diskstats(root: Path) -> list[DiskStats]:
    return read_parsed(root / "proc/diskstats", parse_diskstats)


def parse_dev(text: str) -> tuple[int, int]:
    """A sysfs ``dev`` file: ``major:minor``."""
    with parsing(1, text):
        major, minor = text.strip().split(":")
        return int(major), int(minor)


def read_counted_disks(root: Path) -> set[tuple[int, int]]:
    """major:minor of the block devices whose I/O is added up (see the module docstring)."""
    block = root / "sys/block"
    out = set()
    for name in list_dir(block):
        if name.startswith(_MEMORY_OR_FILE_BACKED) or _has_slaves(block / name):
            continue
        dev = read_optional(block / name / "dev")
        if dev is None:
            continue  # the device went away while we looked
        try:
            out.add(parse_dev(dev))
        except ReaderError as err:
            raise err.at(block / name / "dev") from None
    return out


def _has_slaves(device: Path) -> bool:
    try:
        return bool(os.listdir(device / "slaves"))
    except OSError:
        return False
