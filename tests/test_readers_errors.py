"""Every reader reports a missing or malformed file as a ReaderError naming the file and line."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from hsflowd_py.readers import ReaderError
from hsflowd_py.readers.cpuinfo import read_cpuinfo
from hsflowd_py.readers.diskstats import read_diskstats
from hsflowd_py.readers.loadavg import read_loadavg
from hsflowd_py.readers.meminfo import read_meminfo
from hsflowd_py.readers.mounts import read_mounts
from hsflowd_py.readers.net_dev import read_net_dev
from hsflowd_py.readers.snmp import read_snmp
from hsflowd_py.readers.stat import read_stat
from hsflowd_py.readers.uptime import read_uptime
from hsflowd_py.readers.vmstat import read_vmstat

READERS: list[tuple[Callable[[Path], Any], str, str, int]] = [
    (read_loadavg, "proc/loadavg", "0.1 0.2\n", 1),
    (read_stat, "proc/stat", "cpu  1 2 3 4\nctxt x\n", 2),
    (read_uptime, "proc/uptime", "soon\n", 1),
    (read_cpuinfo, "proc/cpuinfo", "processor\t: 0\ncpu MHz\t\t: ?\n", 2),
    (read_meminfo, "proc/meminfo", "MemTotal: 1 kB\nMemFree: ? kB\n", 2),
    (read_vmstat, "proc/vmstat", "pgpgin ?\n", 1),
    (read_diskstats, "proc/diskstats", "   8 0 sda 1 2 3\n", 1),
    (read_mounts, "proc/mounts", "/dev/sda1\n", 1),
    (read_net_dev, "proc/net/dev", "Inter-|\n face |bytes|bytes\n eth0: 1\n", 3),
    (read_snmp, "proc/net/snmp", "Tcp: A B\nTcp: 1\n", 2),
]


@pytest.mark.parametrize("reader, rel, bad, line", READERS, ids=[r[1] for r in READERS])
def test_missing_file(tmp_path: Path, reader: Callable[[Path], Any], rel: str, bad: str, line: int) -> None:
    with pytest.raises(ReaderError) as err:
        reader(tmp_path)
    assert err.value.missing and err.value.path == tmp_path / rel
    assert str(err.value) == f"{tmp_path / rel}: does not exist"


@pytest.mark.parametrize("reader, rel, bad, line", READERS, ids=[r[1] for r in READERS])
def test_malformed_file(tmp_path: Path, reader: Callable[[Path], Any], rel: str, bad: str, line: int) -> None:
    (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
    (tmp_path / rel).write_text(bad)
    with pytest.raises(ReaderError) as err:
        reader(tmp_path)
    assert not err.value.missing
    assert str(err.value).startswith(f"{tmp_path / rel}:{line}: ")


def test_unreadable_file_is_not_missing(tmp_path: Path) -> None:
    (tmp_path / "proc/loadavg").mkdir(parents=True)  # reading a directory fails with EISDIR
    with pytest.raises(ReaderError) as err:
        read_loadavg(tmp_path)
    assert not err.value.missing and err.value.path == tmp_path / "proc/loadavg"
