"""/proc/vmstat: virtual memory event counters by kernel name."""

from __future__ import annotations

from pathlib import Path

from . import key_values, parsing, read_parsed


def parse_vmstat(text: str) -> dict[str, int]:
    """Every ``name value`` line.

    Units differ by name: pgpgin/pgpgout count KiB transferred to or from block devices,
    pswpin/pswpout count pages.
    """
    out: dict[str, int] = {}
    for n, key, value in key_values(text, None):
        with parsing(n, f"{key} {value}"):
            out[key] = int(value)
    return out


def read_vmstat(root: Path) -> dict[str, int]:
    return read_parsed(root / "proc/vmstat", parse_vmstat)
