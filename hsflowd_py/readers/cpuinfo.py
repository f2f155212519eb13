"""/proc/cpuinfo: number of online CPUs and their clock.

The file's layout differs by architecture: x86 and arm64 give a ``processor : N`` line per CPU,
s390 gives ``processor N: ...`` lines; x86 gives ``cpu MHz : 2599.998``, powerpc gives
``clock : 2900.000000MHz`` and arm64 gives no clock at all (``mhz`` is then None).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from . import key_values, parsing, read_parsed

_PROCESSOR = re.compile(r"processor( \d+)?")


@dataclass(frozen=True)
class CpuInfo:
    count: int
    mhz: float | None
    """Clock of the first CPU listed."""


def parse_cpuinfo(text: str) -> CpuInfo:
    count = 0
    mhz: float | None = None
    for n, key, value in key_values(text, ":"):
        if _PROCESSOR.fullmatch(key):
            count += 1
        elif mhz is None and key in ("cpu MHz", "clock"):
            with parsing(n, f"{key}: {value}"):
                mhz = float(value.removesuffix("MHz"))
    return CpuInfo(count, mhz)


def read_cpuinfo(root: Path) -> CpuInfo:
    return read_parsed(root / "proc/cpuinfo", parse_cpuinfo)
