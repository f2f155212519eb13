"""A container's counters from fixture trees (cgroup v1 and v2), and the totals that never go backwards."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from hsflowd_py.cgroup_counters import KernelSource, ProcDir, Reading, Totals, net_sums
from hsflowd_py.readers import cgroup as cg
from hsflowd_py.sflow import records as rec

FIXTURES = Path(__file__).parent / "fixtures"
ID = "2bd9fd3505771b9f84efc837f9ee0f8066bb7bdcd5221ea7709c1ad0f82ba27c"
NET = {
    "bytes_in": 126400,
    "pkts_in": 1210,
    "errs_in": 1,
    "drops_in": 2,
    "bytes_out": 100000,
    "pkts_out": 920,
    "errs_out": 3,
    "drops_out": 4,
}
"""eth0 + eth1 of the fixtures' proc/4242/net/dev (lo left out)."""


def source(tmp_path: Path, name: str, own_netns: bool = True) -> tuple[Path, KernelSource]:
    root = tmp_path / name
    shutil.copytree(FIXTURES / name, root)
    dirs = cg.locate(cg.read_mounts(root), cg.read_membership(root, 4242))
    return root, KernelSource(root, ProcDir(root, 4242), dirs, own_netns=own_netns)


def test_v1_reading(tmp_path: Path) -> None:
    _, src = source(tmp_path, "cgroup-v1")
    r, errors = src.read(counted_disks={(254, 0)})
    assert errors == []
    assert (r.cpu_ns, r.memory, r.memory_limit) == (19080244, 53067776, None)
    assert r.io == {"rd_bytes": 0, "wr_bytes": 20971520, "rd_req": 0, "wr_req": 20}  # the loop device is not counted
    assert r.net == NET
    src.close()


def test_v2_reading(tmp_path: Path) -> None:
    _, src = source(tmp_path, "cgroup-v2")
    r, errors = src.read(counted_disks=None)
    assert errors == []
    assert (r.cpu_ns, r.memory, r.memory_limit) == (1513287000, 53067776, 268435456)
    assert r.io == {"rd_bytes": 1459200 + 90430464, "wr_bytes": 314773504 + 299008000, "rd_req": 9142, "wr_req": 1605}


def test_block_io_from_processes_where_v1_does_not_account_it(tmp_path: Path) -> None:
    root, src = source(tmp_path, "cgroup-v1")
    for f in (root / "sys/fs/cgroup/blkio/docker" / ID).iterdir():
        f.write_text("Total 0\n")
    r, errors = src.read(counted_disks=None)
    assert errors == []
    # proc/4242/io + proc/4250/io, cancelled writes taken off; no request counts from this source
    assert r.io == {"rd_bytes": 4096 + 8192, "wr_bytes": 20971520 + 1048576 - 4096}
    assert src.io_from_tasks is True


def test_host_network_namespace_has_no_net_reading(tmp_path: Path) -> None:
    _, src = source(tmp_path, "cgroup-v2", own_netns=False)
    r, _ = src.read(None)
    assert r.net is None


def test_gone_container_gives_missing_errors(tmp_path: Path) -> None:
    root, src = source(tmp_path, "cgroup-v2")
    shutil.rmtree(root / f"sys/fs/cgroup/system.slice/docker-{ID}.scope")
    shutil.rmtree(root / "proc/4242")
    r, errors = src.read(None)
    assert r == Reading()
    assert errors and all(e.missing for e in errors)


def test_proc_dir_is_bound_to_the_process_not_the_pid(tmp_path: Path) -> None:
    """A directory replaced under the same pid (a reused pid) is not read through the held one."""
    root, src = source(tmp_path, "cgroup-v2")
    shutil.rmtree(root / "proc/4242")
    (root / "proc/4242/net").mkdir(parents=True)
    (root / "proc/4242/net/dev").write_text("not the container's\n")
    r, errors = src.read(None)
    assert r.net is None and any(e.missing for e in errors)


def test_net_sums_leave_out_loopback() -> None:
    devices = {"lo": {"rx_bytes": 5}, "eth0": {"rx_bytes": 7, "tx_drop": 1}, "eth1": {"rx_bytes": 1}}
    sums = net_sums(devices)
    assert sums["bytes_in"] == 8 and sums["drops_out"] == 1 and sums["pkts_in"] == 0


def by_tag(records: list[rec.Record]) -> dict[int, rec.Record]:
    return {r.FORMAT: r for r in records}


def test_totals_never_go_backwards_and_keep_the_last_values() -> None:
    t = Totals()
    t.add(Reading(cpu_ns=5_000_000_000, memory=100, memory_limit=None, io={"rd_bytes": 10, "wr_bytes": 20}, net=NET))
    t.add(Reading(cpu_ns=6_500_000_000, memory=300, memory_limit=1000, io={"rd_bytes": 15, "wr_bytes": 20}, net=NET))
    first = by_tag(t.records(state=1, vcpus=2, default_limit=4096))
    assert first[2101] == rec.VirtCpu(state=1, cpu_time=6500, nr_virt_cpu=2)
    assert first[2102] == rec.VirtMemory(memory=300, max_memory=1000)
    assert (first[2103].rd_bytes, first[2103].wr_bytes) == (15, 20)
    assert first[2104].bytes_in == NET["bytes_in"]
    # a restart under the same id: the cgroup's counters start again from small values
    t.add(Reading(cpu_ns=1_000_000, memory=50, io={"rd_bytes": 1, "wr_bytes": 2}, net=dict.fromkeys(NET, 0)))
    t.add(Reading(cpu_ns=3_000_000, memory=60, io={"rd_bytes": 4, "wr_bytes": 2}, net=dict.fromkeys(NET, 1)))
    after = by_tag(t.records(state=1, vcpus=2, default_limit=4096))
    assert after[2101].cpu_time == 6502 and after[2103].rd_bytes == 18 and after[2104].bytes_in == NET["bytes_in"] + 1
    assert after[2102] == rec.VirtMemory(memory=60, max_memory=4096)  # gauge as read; no limit: the default
    # the container is gone: nothing more can be read, the final sample carries the last values
    t.add(Reading())
    final = by_tag(t.records(state=4, vcpus=2, default_limit=4096))
    assert final[2101] == rec.VirtCpu(state=4, cpu_time=6502, nr_virt_cpu=2)
    assert [final[k] for k in (2102, 2103, 2104)] == [after[k] for k in (2102, 2103, 2104)]


def test_totals_without_a_network_reading_leave_out_2104() -> None:
    t = Totals()
    t.add(Reading(cpu_ns=1))
    assert sorted(by_tag(t.records(1, 1, 0))) == [2101, 2102, 2103]


@pytest.mark.parametrize("bits_field", ["pkts_in", "wr_req"])
def test_32_bit_fields_wrap(bits_field: str) -> None:
    t = Totals()
    big = (1 << 32) - 1
    if bits_field == "pkts_in":
        t.add(Reading(net={**dict.fromkeys(NET, 0), "pkts_in": big}))
        t.add(Reading(net={**dict.fromkeys(NET, 0), "pkts_in": big + 3}))
        assert t.net["pkts_in"] == 2
    else:
        t.add(Reading(io={"wr_req": big}))
        t.add(Reading(io={"wr_req": big + 3}))
        assert t.io["wr_req"] == 2
