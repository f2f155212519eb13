"""/proc/meminfo and /proc/vmstat: key → value files."""

from __future__ import annotations

import pytest

from hsflowd_py.readers import ReaderError
from hsflowd_py.readers.meminfo import parse_meminfo
from hsflowd_py.readers.vmstat import parse_vmstat


@pytest.mark.parametrize(
    "text, expected",
    [
        ("MemTotal:       24684084 kB\n", {"MemTotal": 24684084 * 1024}),
        ("HugePages_Total:       7\n", {"HugePages_Total": 7}),  # a count, no unit
        ("MemFree: 1 kB\n\nno separator here\nShmem:  0 kB\n", {"MemFree": 1024, "Shmem": 0}),
        ("", {}),
    ],
)
def test_parse_meminfo(text: str, expected: dict[str, int]) -> None:
    assert parse_meminfo(text) == expected


@pytest.mark.parametrize("text, line", [("MemTotal: lots kB\n", 1), ("MemFree: 1 kB\nCached:\n", 2)])
def test_malformed_meminfo(text: str, line: int) -> None:
    with pytest.raises(ReaderError) as err:
        parse_meminfo(text)
    assert err.value.line == line


@pytest.mark.parametrize(
    "text, expected",
    [
        ("nr_free_pages 128000\npgpgin 1480009\npgpgout 964688\npswpin 0\n", {
            "nr_free_pages": 128000, "pgpgin": 1480009, "pgpgout": 964688, "pswpin": 0}),
        ("pgpgin 5\n\nlonely\n", {"pgpgin": 5}),
    ],
)  # fmt: skip
def test_parse_vmstat(text: str, expected: dict[str, int]) -> None:
    assert parse_vmstat(text) == expected


def test_malformed_vmstat() -> None:
    with pytest.raises(ReaderError) as err:
        parse_vmstat("pgpgin 1\npgpgout -x\n")
    assert err.value.line == 2
