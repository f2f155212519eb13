"""/proc/loadavg: load averages and the running/total thread counts."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from . import ReaderError, parsing, read_parsed


@dataclass(frozen=True)
class LoadAvg:
    one: float
    five: float
    fifteen: float
    running: int
    """Runnable threads, the reader itself included (the kernel counts whoever is reading)."""
    threads: int
    """All threads in the system (the kernel's nr_threads), not processes."""


def parse_loadavg(text: str) -> LoadAvg:
    line = text.strip()
    if not line:
        raise ReaderError("empty", line=1)
    with parsing(1, line):
        fields = line.split()
        running, threads = fields[3].split("/")
        return LoadAvg(float(fields[0]), float(fields[1]), float(fields[2]), int(running), int(threads))


def read_loadavg(root: Path) -> LoadAvg:
    return read_parsed(root / "proc/loadavg", parse_loadavg)
