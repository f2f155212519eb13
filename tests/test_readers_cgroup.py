"""cgroup v1/v2 location and usage, on fixture trees (copied per test) and on a live process."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from hsflowd_py.readers import ReaderError
from hsflowd_py.readers import cgroup as cg

FIXTURES = Path(__file__).parent / "fixtures"
ID = "2bd9fd3505771b9f84efc837f9ee0f8066bb7bdcd5221ea7709c1ad0f82ba27c"


def tree(tmp_path: Path, name: str) -> Path:
    root = tmp_path / name
    shutil.copytree(FIXTURES / name, root)
    return root


def dirs_of(root: Path, pid: int = 4242) -> cg.CgroupDirs:
    return cg.locate(cg.read_mounts(root), cg.read_membership(root, pid))


# ------------------------------------------------------------------ parsers


def test_mountinfo_keeps_cgroup_mounts_with_their_controllers_and_roots() -> None:
    text = (
        "22 1 254:0 / / rw,relatime shared:1 - ext4 /dev/vda rw\n"
        "32 31 0:29 / /sys/fs/cgroup/cpu,cpuacct rw,relatime shared:10 - cgroup cgroup rw,cpu,cpuacct\n"
        "40 31 0:37 / /sys/fs/cgroup/systemd rw - cgroup cgroup rw,xattr,release_agent=/x,name=systemd\n"
        "75 74 0:29 /docker/abc /sys/fs/cgroup/with\\040space ro master:3 - cgroup cgroup rw,memory\n"
        "41 31 0:38 / /sys/fs/cgroup/unified rw,relatime shared:19 - cgroup2 cgroup2 rw,nsdelegate\n"
    )
    mounts = cg.parse_mountinfo(text, Path("/r"))
    assert mounts == [
        cg.CgroupMount(Path("/r/sys/fs/cgroup/cpu,cpuacct"), "/", 1, frozenset({"cpu", "cpuacct"})),
        cg.CgroupMount(Path("/r/sys/fs/cgroup/systemd"), "/", 1, frozenset({"name=systemd"})),
        cg.CgroupMount(Path("/r/sys/fs/cgroup/with space"), "/docker/abc", 1, frozenset({"memory"})),
        cg.CgroupMount(Path("/r/sys/fs/cgroup/unified"), "/", 2),
    ]


def test_mountinfo_malformed_line_is_named() -> None:
    with pytest.raises(ReaderError) as err:
        cg.parse_mountinfo("22 1 254:0 / / rw\n23 1 - cgroup2\n")
    assert err.value.line == 2


def test_membership_splits_combined_controllers_and_keeps_colons_in_paths() -> None:
    text = "4:cpu,cpuacct:/docker/a\n1:name=systemd:/x:y\n0::/system.slice/a.scope\n\n"
    assert cg.parse_membership(text) == {
        "cpu": "/docker/a",
        "cpuacct": "/docker/a",
        "name=systemd": "/x:y",
        "": "/system.slice/a.scope",
    }
    with pytest.raises(ReaderError):
        cg.parse_membership("4:memory\n")


@pytest.mark.parametrize(
    "text, expected",
    [("max\n", None), ("268435456\n", 268435456), ("9223372036854771712\n", None), ("4611686018427387904", None)],
)
def test_limits(text: str, expected: int | None) -> None:
    assert cg.parse_limit(text) == expected


def test_io_stat_reads_keys_by_name() -> None:
    text = "8:16 wbytes=20 rbytes=10 rios=1 wios=2 dbytes=0 dios=0 newkey=7\n253:0 rbytes=5\n"
    assert cg.parse_io_stat(text) == {(8, 16): cg.IoCounts(10, 20, 1, 2), (253, 0): cg.IoCounts(5, 0, 0, 0)}
    with pytest.raises(ReaderError) as err:
        cg.parse_io_stat("8:16 rbytes=1\n8:x rbytes=2\n")
    assert err.value.line == 2


def test_blkio_lines_and_the_closing_total() -> None:
    text = "8:0 Read 10\n8:0 Write 20\n8:0 Total 30\nTotal 30\n"
    assert cg.parse_blkio(text) == {(8, 0): {"Read": 10, "Write": 20, "Total": 30}}
    assert cg.parse_blkio("Total 0\n") == {}
    with pytest.raises(ReaderError):
        cg.parse_blkio("8:0 Read\n")


# ------------------------------------------------------------------ v1 (hybrid) tree


def test_v1_locates_controllers_and_unified(tmp_path: Path) -> None:
    root = tree(tmp_path, "cgroup-v1")
    dirs = dirs_of(root)
    base = root / "sys/fs/cgroup"
    assert dirs.unified == base / "unified/docker" / ID
    assert dirs.v1["cpuacct"] == base / "cpuacct/docker" / ID
    assert dirs.v1["memory"] == base / "memory/docker" / ID
    assert dirs.v1["name=systemd"] == base / "systemd/docker" / ID


def test_v1_usage(tmp_path: Path) -> None:
    dirs = dirs_of(tree(tmp_path, "cgroup-v1"))
    assert cg.read_cpu_ns(dirs) == 19080244  # cpuacct.usage wins over the unified cpu.stat
    assert cg.read_memory(dirs) == cg.Memory(53067776, None)
    assert cg.read_io(dirs) == {(254, 0): cg.IoCounts(0, 20971520, 0, 20), (7, 0): cg.IoCounts(4096, 0, 1, 0)}
    assert cg.read_procs(dirs) == [4242, 4250]


def test_v1_blkio_without_device_lines_is_unknown(tmp_path: Path) -> None:
    root = tree(tmp_path, "cgroup-v1")
    blkio = root / "sys/fs/cgroup/blkio/docker" / ID
    for f in blkio.iterdir():
        f.write_text("Total 0\n")
    assert cg.read_io(dirs_of(root)) is None


def test_v1_plain_blkio_files_when_recursive_are_absent(tmp_path: Path) -> None:
    root = tree(tmp_path, "cgroup-v1")
    for f in (root / "sys/fs/cgroup/blkio/docker" / ID).glob("*_recursive"):
        f.unlink()
    assert cg.read_io(dirs_of(root))[(254, 0)].write_bytes == 20971520  # type: ignore[index]


def test_v1_cpu_from_unified_when_cpuacct_is_not_mounted(tmp_path: Path) -> None:
    root = tree(tmp_path, "cgroup-v1")
    mounts = [m for m in cg.read_mounts(root) if "cpuacct" not in m.controllers]
    dirs = cg.locate(mounts, cg.read_membership(root, 4242))
    assert cg.read_cpu_ns(dirs) == 19113 * 1000


def test_namespaced_mount_root(tmp_path: Path) -> None:
    """Inside a container the hierarchy's /docker/<id> is what is mounted on /sys/fs/cgroup/memory."""
    mounts = [cg.CgroupMount(tmp_path / "sys/fs/cgroup/memory", f"/docker/{ID}", 1, frozenset({"memory"}))]
    assert cg.locate(mounts, {"memory": f"/docker/{ID}/sub"}).v1["memory"] == tmp_path / "sys/fs/cgroup/memory/sub"
    assert not cg.locate(mounts, {"memory": "/docker/other"})
    assert not cg.locate(mounts, {"memory": "/../../docker/other"})


def test_gone_cgroup_reports_missing(tmp_path: Path) -> None:
    root = tree(tmp_path, "cgroup-v1")
    dirs = dirs_of(root)
    shutil.rmtree(root / "sys/fs/cgroup/memory/docker" / ID)
    with pytest.raises(ReaderError) as err:
        cg.read_memory(dirs)
    assert err.value.missing
    assert cg.read_cpu_ns(dirs) == 19080244, "the other resources still read"


def test_malformed_value_names_the_file(tmp_path: Path) -> None:
    root = tree(tmp_path, "cgroup-v1")
    usage_file = root / "sys/fs/cgroup/cpuacct/docker" / ID / "cpuacct.usage"
    usage_file.write_text("lots\n")
    with pytest.raises(ReaderError) as err:
        cg.read_cpu_ns(dirs_of(root))
    assert err.value.path == usage_file and not err.value.missing


def test_no_dirs_at_all() -> None:
    for read in (cg.read_cpu_ns, cg.read_memory, cg.read_io, cg.read_procs):
        with pytest.raises(ReaderError) as err:
            read(cg.CgroupDirs())
        assert err.value.missing


# ------------------------------------------------------------------ v2 tree


def test_v2_usage(tmp_path: Path) -> None:
    root = tree(tmp_path, "cgroup-v2")
    dirs = dirs_of(root)
    assert dirs.unified == root / f"sys/fs/cgroup/system.slice/docker-{ID}.scope" and not dirs.v1
    assert cg.read_cpu_ns(dirs) == 1513287000
    assert cg.read_memory(dirs) == cg.Memory(53067776, 268435456)
    assert cg.read_io(dirs) == {
        (8, 16): cg.IoCounts(1459200, 314773504, 192, 353),
        (8, 0): cg.IoCounts(90430464, 299008000, 8950, 1252),
    }


def test_v2_unit_path_without_limit_or_io(tmp_path: Path) -> None:
    root = tree(tmp_path, "cgroup-v2")
    dirs = cg.locate_path(cg.read_mounts(root), "/system.slice/ssh.service")
    assert (cg.read_cpu_ns(dirs), cg.read_memory(dirs), cg.read_io(dirs)) == (250000000, cg.Memory(4603904, None), {})
    assert cg.read_procs(dirs) == [611]


def test_tasks_io_skips_exited_processes(tmp_path: Path) -> None:
    root = tree(tmp_path, "cgroup-v2")
    io = cg.read_tasks_io(root, [4242, 4250, 99999])
    assert sorted(io) == [4242, 4250]
    assert io[4242]["write_bytes"] == 20971520 and io[4250]["read_bytes"] == 8192 and io[4250]["syscw"] == 4
    (root / "proc/4250/io").write_text("rchar: x\n")
    with pytest.raises(ReaderError) as err:
        cg.read_tasks_io(root, [4250])
    assert err.value.path == root / "proc/4250/io"


# ------------------------------------------------------------------ live


def test_live_process_cpu_time_grows() -> None:
    """This test process on the running kernel: its cgroup is found and its CPU time moves."""
    root = Path("/")
    dirs = cg.locate(cg.read_mounts(root), cg.read_membership(root, os.getpid()))
    if not dirs:
        pytest.skip("no cgroup hierarchy mounted here")
    before = cg.read_cpu_ns(dirs)
    deadline = os.times().elapsed + 0.2
    while os.times().elapsed < deadline:
        pass
    assert cg.read_cpu_ns(dirs) > before
    assert os.getpid() in cg.read_procs(dirs)
