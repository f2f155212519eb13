"""/proc/diskstats parsing and the /sys/block rules for which devices are summed."""

from __future__ import annotations

from pathlib import Path

import pytest

from hsflowd_py.readers import ReaderError
from hsflowd_py.readers.diskstats import DiskStats, parse_dev, parse_diskstats, read_counted_disks

VDA = DiskStats(254, 0, "vda", 46306, 2960018, 18775, 31006, 1929376, 7130)


@pytest.mark.parametrize(
    "line",
    [
        " 254       0 vda 46306 9798 2960018 18775 31006 14264 1929376 7130 0 6868 26854",  # 2.6.25+
        " 254       0 vda 46306 9798 2960018 18775 31006 14264 1929376 7130 0 6868 26854 0 0 0 0",  # 4.18 discards
        " 254       0 vda 46306 9798 2960018 18775 31006 14264 1929376 7130 0 6868 26854 7092 58 154272 737 3541 211",
    ],
)
def test_every_kernel_generation_of_full_lines(line: str) -> None:
    assert parse_diskstats(line + "\n") == [VDA]


def test_pre_2_6_25_partition_lines_are_skipped() -> None:
    text = "   8    0 sda 100 5 800 60 200 7 1600 90 0 120 150\n   8    1 sda1 90 720 190 1520\n\n"
    assert [d.name for d in parse_diskstats(text)] == ["sda"]


@pytest.mark.parametrize(
    "text, line",
    [
        ("   8    0 sda 1 2 3 4 5 6 7 8 9 10 11\n   8    1 sda1 1 2 3 4 5\n", 2),
        ("   8    0 sda 1 2 x 4 5 6 7 8 9 10 11\n", 1),
    ],
)
def test_malformed(text: str, line: int) -> None:
    with pytest.raises(ReaderError) as err:
        parse_diskstats(text)
    assert err.value.line == line


def test_parse_dev() -> None:
    assert parse_dev("259:3\n") == (259, 3)
    with pytest.raises(ReaderError):
        parse_dev("259")


def block_tree(root: Path, devices: dict[str, str], slaves: dict[str, list[str]]) -> Path:
    for name, dev in devices.items():
        (root / "sys/block" / name).mkdir(parents=True)
        (root / "sys/block" / name / "dev").write_text(dev + "\n")
    for name, members in slaves.items():
        (root / "sys/block" / name / "slaves").mkdir()
        for m in members:
            (root / "sys/block" / name / "slaves" / m).write_text("")
    return root


def test_counted_disks_are_whole_unstacked_hardware_disks(tmp_path: Path) -> None:
    devices = {
        "sda": "8:0", "nvme0n1": "259:0", "cciss!c0d0": "104:0", "sr0": "11:0", "md0": "9:0",
        "dm-0": "253:0", "loop0": "7:0", "ram0": "1:0", "zram0": "252:0", "vdb": "254:16",
    }  # fmt: skip
    root = block_tree(tmp_path, devices, {"md0": ["sda", "nvme0n1"], "dm-0": ["md0"], "vdb": []})
    assert read_counted_disks(root) == {(8, 0), (259, 0), (104, 0), (11, 0), (254, 16)}


def test_a_device_that_vanishes_mid_read_is_skipped(tmp_path: Path) -> None:
    root = block_tree(tmp_path, {"sda": "8:0"}, {})
    (root / "sys/block/sdb").mkdir()
    assert read_counted_disks(root) == {(8, 0)}


def test_without_sys_block_nothing_can_be_told_apart(tmp_path: Path) -> None:
    with pytest.raises(ReaderError) as err:
        read_counted_disks(tmp_path)
    assert err.value.missing and err.value.path == tmp_path / "sys/block"


def test_bad_dev_file_is_located(tmp_path: Path) -> None:
    root = block_tree(tmp_path, {"sda": "eight:zero"}, {})
    with pytest.raises(ReaderError) as err:
        read_counted_disks(root)
    assert err.value.path == root / "sys/block/sda/dev"
