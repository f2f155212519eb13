"""/proc/uptime: seconds since boot."""

from __future__ import annotations

from pathlib import Path

from . import ReaderError, parsing, read_parsed


def parse_uptime(text: str) -> float:
    """Seconds since boot (the first field; the second is idle time summed over all CPUs)."""
    line = text.strip()
    if not line:
        raise ReaderError("empty", line=1)
    with parsing(1, line):
        return float(line.split()[0])


def read_uptime(root: Path) -> float:
    return read_parsed(root / "proc/uptime", parse_uptime)
