"""/proc/mounts parsing and the statvfs sum over local filesystems."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pytest

from hsflowd_py.readers import ReaderError
from hsflowd_py.readers.mounts import DiskSpace, Mount, disk_space, is_local_disk, parse_mounts


def test_parse_mounts_decodes_octal_escapes() -> None:
    text = "/dev/sdb1 /mnt/my\\040disk\\011tab ext4 rw,relatime 0 0\nproc /proc proc rw 0 0\n\n"
    assert parse_mounts(text) == [
        Mount("/dev/sdb1", "/mnt/my disk\ttab", "ext4", ("rw", "relatime")),
        Mount("proc", "/proc", "proc", ("rw",)),
    ]


def test_short_line_is_malformed() -> None:
    with pytest.raises(ReaderError) as err:
        parse_mounts("proc /proc proc rw 0 0\n/dev/sda1 /boot\n")
    assert err.value.line == 2


@pytest.mark.parametrize(
    "line, local",
    [
        ("/dev/vda / ext4 rw,relatime 0 0", True),
        ("/dev/mapper/vg-root / xfs rw 0 0", True),
        ("/dev/nvme0n1p2 /home btrfs rw,subvol=/home 0 0", True),
        ("rpool/ROOT/ubuntu / zfs rw,xattr 0 0", True),
        ("ubi0:rootfs / ubifs rw 0 0", True),
        ("/dev/sda1 /boot ext4 ro,relatime 0 0", False),  # read-only
        ("/dev/loop3 /snap/core/1 squashfs ro 0 0", False),
        ("/dev/loop0 /mnt/img ext4 rw 0 0", False),  # a file on another filesystem
        ("tmpfs /dev/shm tmpfs rw 0 0", False),
        ("overlay /var/lib/docker/overlay2/x/merged overlay rw 0 0", False),
        ("server:/export /mnt nfs4 rw 0 0", False),
        ("//server/share /mnt cifs rw 0 0", False),
        ("proc /proc proc rw 0 0", False),
        ("cgroup2 /sys/fs/cgroup cgroup2 rw 0 0", False),
    ],
)
def test_is_local_disk(line: str, local: bool) -> None:
    assert is_local_disk(parse_mounts(line)[0]) is local


def fs(blocks: int, bfree: int, bavail: int, frsize: int = 4096, bsize: int = 4096) -> SimpleNamespace:
    return SimpleNamespace(f_blocks=blocks, f_bfree=bfree, f_bavail=bavail, f_frsize=frsize, f_bsize=bsize)


def test_disk_space_sums_local_filesystems_once_each(tmp_path: Path) -> None:
    mounts = parse_mounts(
        "/dev/vda / ext4 rw 0 0\n"
        "/dev/vdb /data xfs rw 0 0\n"
        "/dev/vdb /srv/bind xfs rw 0 0\n"  # bind mount: same source, counted once
        "/dev/vdc /gone ext4 rw 0 0\n"  # statvfs fails
        "/dev/vdd /empty ext4 rw 0 0\n"  # zero blocks
        "tmpfs /tmp tmpfs rw 0 0\n"
    )
    table = {"": fs(1000, 500, 450), "data": fs(100, 10, 10, frsize=1024, bsize=65536), "empty": fs(0, 0, 0)}
    calls = []

    def statvfs(path: str) -> SimpleNamespace:
        calls.append(path)
        rel = str(Path(path).relative_to(tmp_path)).strip(".")
        if rel not in table:
            raise FileNotFoundError(path)
        return table[rel]

    space = disk_space(tmp_path, mounts, statvfs)
    # total uses f_frsize, not f_bsize; free is f_bavail; used% = used / (used + avail), rounded up
    assert space == DiskSpace(total=1000 * 4096 + 100 * 1024, free=450 * 4096 + 10 * 1024, part_max_used=9000)
    assert calls == [str(tmp_path), str(tmp_path / "data"), str(tmp_path / "gone"), str(tmp_path / "empty")]


@pytest.mark.parametrize(
    "st, pct",
    [
        (fs(1000, 500, 450), 5264),  # 500 / 950 = 52.63..%, like df: reserved blocks are neither
        (fs(3, 2, 2), 3334),
        (fs(100, 100, 100), 0),
        (fs(100, 0, 0), 10000),
    ],
)
def test_percent_used_rounds_up(tmp_path: Path, st: SimpleNamespace, pct: int) -> None:
    assert disk_space(tmp_path, parse_mounts("/dev/sda / ext4 rw 0 0"), lambda _p: st).part_max_used == pct
