"""/proc/stat: CPU time by state, interrupts, context switches, runnable threads."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from . import ReaderError, parsing, read_parsed

CPU_STATES = ("user", "nice", "system", "idle", "iowait", "irq", "softirq", "steal", "guest", "guest_nice")
"""Columns of the ``cpu`` line in kernel order.

Kernels added them over time (iowait/irq/softirq in 2.5.41, steal in 2.6.11, guest in 2.6.24,
guest_nice in 2.6.33); columns an older kernel lacks read as 0.  Note that the kernel already
counts guest time inside user and guest_nice inside nice: they are reported as given.
"""


@dataclass(frozen=True)
class Stat:
    cpu_ms: dict[str, int]
    """Milliseconds per CPU_STATES name, summed over all CPUs."""
    interrupts: int
    contexts: int
    procs_running: int
    """Runnable threads, the reader itself included."""


def parse_stat(text: str, clock_ticks: int = 100) -> Stat:
    """``clock_ticks`` is USER_HZ (``os.sysconf("SC_CLK_TCK")``): /proc/stat counts in its ticks."""
    cpu_ms: dict[str, int] | None = None
    singles = {"intr": 0, "ctxt": 0, "procs_running": 0}
    for n, line in enumerate(text.splitlines(), 1):
        key, _, rest = line.partition(" ")
        if key == "cpu":
            with parsing(n, line):
                ticks = [int(v) for v in rest.split()[: len(CPU_STATES)]]
            ticks += [0] * (len(CPU_STATES) - len(ticks))
            cpu_ms = {state: t * 1000 // clock_ticks for state, t in zip(CPU_STATES, ticks, strict=True)}
        elif key in singles:
            # "intr" is followed by one count per interrupt line; the first is the total.
            with parsing(n, line):
                singles[key] = int(rest.split()[0])
    if cpu_ms is None:
        raise ReaderError("no 'cpu' line")
    return Stat(cpu_ms, singles["intr"], singles["ctxt"], singles["procs_running"])


def read_stat(root: Path, clock_ticks: int = 100) -> Stat:
    return read_parsed(root / "proc/stat", lambda text: parse_stat(text, clock_ticks))
