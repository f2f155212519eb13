"""Per-process CPU time and resident memory, for services whose cgroup does not account them.

The shared cgroup reader (``hsflowd_py/readers/cgroup.py``) has the
per-process I/O fallback (``read_tasks_io``) but not these two, which only the
systemd module needs: on a cgroup v1 host without ``CPUAccounting`` or
``MemoryAccounting`` a service has no ``cpuacct`` or ``memory`` directory of
its own, so its processes are summed instead, as the established agent does.

Kernel facts:

- ``/proc/<pid>/stat``: the command name (field 2) is in parentheses and may
  itself hold spaces and parentheses, so fields are counted after the *last*
  ``)``.  utime, stime, cutime, cstime (fields 14-17) are in clock ticks;
  cutime/cstime hold the CPU of reaped children, so a service that forks
  short-lived workers is charged for them.
- ``/proc/<pid>/statm``: sizes in pages; the second field is the resident set.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

from hsflowd_py.readers import parsing, read_per_process

PAGE_SIZE = os.sysconf("SC_PAGE_SIZE")


def parse_stat_ticks(text: str) -> int:
    """utime + stime + cutime + cstime of one ``/proc/<pid>/stat``, in clock ticks."""
    with parsing(1, text):
        after_comm = text[text.rindex(")") + 2 :].split()
        # after the command: state is field 3, so utime (field 14) is index 11
        return sum(int(v) for v in after_comm[11:15])


def parse_statm_resident(text: str) -> int:
    """Resident pages of one ``/proc/<pid>/statm``."""
    with parsing(1, text):
        return int(text.split()[1])


def read_tasks_ticks(root: Path, pids: Iterable[int]) -> dict[int, int]:
    """CPU ticks per live process (a sum over a changing set: feed it to Monotonic.update_sum)."""
    return read_per_process(root, pids, "stat", parse_stat_ticks)


def read_tasks_resident(root: Path, pids: Iterable[int]) -> int:
    """Bytes resident over the processes (pages shared between them are counted once per process)."""
    return sum(read_per_process(root, pids, "statm", parse_statm_resident).values()) * PAGE_SIZE
