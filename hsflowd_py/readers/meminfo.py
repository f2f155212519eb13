"""/proc/meminfo: memory sizes by kernel name."""

from __future__ import annotations

from pathlib import Path

from . import key_values, parsing, read_parsed


def parse_meminfo(text: str) -> dict[str, int]:
    """Every ``Key: value [kB]`` line; sizes in bytes.

    The kernel's "kB" means KiB (1024 bytes).  Lines without a unit (``HugePages_Total``) are counts
    and are kept as they are.
    """
    out: dict[str, int] = {}
    for n, key, value in key_values(text, ":"):
        with parsing(n, f"{key}: {value}"):
            number, _, unit = value.partition(" ")
            out[key] = int(number) * (1024 if unit.strip() == "kB" else 1)
    return out


def read_meminfo(root: Path) -> dict[str, int]:
    return read_parsed(root / "proc/meminfo", parse_meminfo)
