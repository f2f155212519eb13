"""A service's counters: from committed cgroup trees (hybrid, v1 without accounting) and a live cgroup."""

from __future__ import annotations

import logging
import os
import shutil
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from hsflowd_py.modules.systemd.service import (
    STATE_RUNNING,
    STATE_SHUTOFF,
    USER_HZ,
    Service,
    existing_dirs,
    service_uuid,
)
from hsflowd_py.modules.systemd.task_stats import PAGE_SIZE, parse_stat_ticks
from hsflowd_py.readers import ReaderError
from hsflowd_py.readers.cgroup import read_mounts
from hsflowd_py.sflow.records import HostDescription, HostParent, VirtCpu, VirtDisk, VirtMemory

FIXTURES = Path(__file__).parent / "fixtures"
HOST_UUID = uuid.UUID("6a0d2c1e-8f0b-4d6e-9c55-3b1c4f0e2a77")
HOST_MEMORY = 16 << 30


def describe(name: str, u: uuid.UUID) -> HostDescription:
    return HostDescription(hostname=name, uuid=u.bytes, machine_type=3, os_name=2, os_release="6.1.0")


def make_service(root: Path, name: str, cgroup: str, logged: set[tuple[str, str]] | None = None) -> Service:
    u = service_uuid(HOST_UUID, name)
    svc = Service(name, u, 100000, root, describe, lambda: HOST_MEMORY, logged=set() if logged is None else logged)
    svc.place(read_mounts(root), cgroup)
    return svc


def by_type(records: list[object]) -> dict[type, object]:
    return {type(r): r for r in records}


def copy_tree(name: str, tmp_path: Path) -> Path:
    root = tmp_path / name
    shutil.copytree(FIXTURES / name, root)
    return root


def test_service_uuid_is_the_name_based_uuid_under_the_host() -> None:
    u = service_uuid(HOST_UUID, "dbus.service")
    assert u == uuid.uuid5(HOST_UUID, "dbus.service") and u.version == 5
    assert service_uuid(HOST_UUID, "dbus.service") == u
    assert service_uuid(HOST_UUID, "cron.service") != u
    assert service_uuid(uuid.uuid4(), "dbus.service") != u


def test_stat_fields_are_counted_after_the_last_parenthesis() -> None:
    line = "4302 (web (worker) 1) S 4301 4301 4301 0 -1 4194560 341 0 0 0 40 20 3 1 20 0 1 0 257600 8192000"
    assert parse_stat_ticks(line) == 40 + 20 + 3 + 1
    with pytest.raises(ReaderError, match="cannot parse"):
        parse_stat_ticks("4302 no parenthesis")


def test_hybrid_host_reads_unified_cpu_v1_memory_and_process_io() -> None:
    """What systemd 252 makes on a hybrid host: the unit's cgroup in the unified tree and in the v1
    memory controller (MemoryAccounting defaults on), none in cpuacct or blkio."""
    root = FIXTURES / "systemd-hybrid"
    svc = make_service(root, "dbus.service", "/system.slice/dbus.service")
    assert svc.dirs.unified == root / "sys/fs/cgroup/unified/system.slice/dbus.service"
    assert set(svc.dirs.v1) == {"memory", "name=systemd"}
    r = by_type(svc.records())
    assert r[HostDescription].hostname == "dbus.service" and r[HostDescription].uuid == svc.uuid.bytes
    assert (r[HostParent].ds_class, r[HostParent].ds_index) == (2, 1)
    assert (r[VirtCpu].state, r[VirtCpu].cpu_time) == (STATE_RUNNING, 25)  # usage_usec 25580
    assert (r[VirtMemory].memory, r[VirtMemory].max_memory) == (741376, HOST_MEMORY)  # no limit: the host's
    d = r[VirtDisk]
    assert (d.rd_req, d.rd_bytes, d.wr_req, d.wr_bytes) == (444, 4096, 9, 8192)  # /proc/34/io


def v1_expected_ms(ticks_by_pid: dict[int, int]) -> int:
    return sum(t * 1000 // USER_HZ for t in ticks_by_pid.values())


def test_v1_without_accounting_sums_the_processes_sub_cgroups_included() -> None:
    root = FIXTURES / "systemd-v1"
    svc = make_service(root, "web.service", "/system.slice/web.service")
    assert svc.dirs.unified is None and set(svc.dirs.v1) == {"name=systemd"}
    r = by_type(svc.records())
    assert r[VirtCpu].cpu_time == v1_expected_ms({4301: 150 + 50 + 10 + 5, 4302: 40 + 20, 4310: 7 + 3})
    assert r[VirtMemory].memory == (1200 + 800 + 100) * PAGE_SIZE
    assert r[VirtMemory].max_memory == HOST_MEMORY
    d = r[VirtDisk]
    assert (d.rd_req, d.rd_bytes, d.wr_req, d.wr_bytes) == (11 + 22 + 33, 3 * 4096, 6, 3 * 12288)


def test_counters_never_step_back_and_the_final_sample_keeps_the_last_values(tmp_path: Path) -> None:
    root = copy_tree("systemd-v1", tmp_path)
    svc = make_service(root, "web.service", "/system.slice/web.service")
    first = by_type(svc.records())
    # a worker exits, the main process uses 100 more ticks
    procs = root / "sys/fs/cgroup/systemd/system.slice/web.service/cgroup.procs"
    procs.write_text("4301\n")
    shutil.rmtree(root / "proc/4302")
    stat = root / "proc/4301/stat"
    stat.write_text(stat.read_text().replace(" 150 50 10 5 ", " 250 50 10 5 "))
    second = by_type(svc.records())
    assert second[VirtCpu].cpu_time == first[VirtCpu].cpu_time + v1_expected_ms({4301: 100})
    assert second[VirtDisk].rd_req == first[VirtDisk].rd_req  # 4302's I/O stays counted
    assert second[VirtMemory].memory == (1200 + 100) * PAGE_SIZE  # a gauge: what is resident now
    # systemd removes the cgroup when the service stops: the final sample carries what was read last
    shutil.rmtree(root / "sys/fs/cgroup/systemd/system.slice/web.service")
    final = by_type(svc.final_records())
    assert final[VirtCpu].state == STATE_SHUTOFF
    assert final[VirtCpu].cpu_time == second[VirtCpu].cpu_time > 0
    assert final[VirtMemory].memory == second[VirtMemory].memory > 0
    assert final[VirtDisk].values() == second[VirtDisk].values()


def disk(records: list[object]) -> tuple[int, int, int, int]:
    d = by_type(records)[VirtDisk]
    return d.rd_req, d.rd_bytes, d.wr_req, d.wr_bytes


def test_io_goes_on_from_the_last_value_sent_when_its_source_changes(tmp_path: Path) -> None:
    """systemd turns the io controller on and off for the unit: io.stat comes and goes, and the
    figures switch between it and the processes' /proc/<pid>/io, two unrelated totals."""
    root = copy_tree("systemd-hybrid", tmp_path)
    svc = make_service(root, "dbus.service", "/system.slice/dbus.service")
    assert svc.dirs.unified is not None
    io, io_stat = root / "proc/34/io", svc.dirs.unified / "io.stat"
    assert disk(svc.records()) == (444, 4096, 9, 8192)
    io.write_text(io.read_text().replace("syscr: 444", "syscr: 454"))
    assert disk(svc.records()) == (454, 4096, 9, 8192)
    # io.stat appears, smaller in requests and larger in bytes than the processes' figures: neither shows
    io_stat.write_text("8:0 rbytes=1048576 wbytes=0 rios=5 wios=1 dbytes=0 dios=0\n")
    assert disk(svc.records()) == (454, 4096, 9, 8192)
    io_stat.write_text("8:0 rbytes=1052672 wbytes=4096 rios=15 wios=2 dbytes=0 dios=0\n")
    assert disk(svc.records()) == (464, 8192, 10, 12288)
    # and goes again: the process's figure, read before, is only a new baseline
    io_stat.unlink()
    io.write_text(io.read_text().replace("syscr: 454", "syscr: 474"))
    assert disk(svc.records()) == (464, 8192, 10, 12288)
    io.write_text(io.read_text().replace("syscr: 474", "syscr: 484"))
    assert disk(svc.records()) == (474, 8192, 10, 12288)


def test_cpu_goes_on_from_the_last_value_sent_when_a_v1_cpuacct_directory_comes_and_goes(tmp_path: Path) -> None:
    """CPUAccounting turned on makes the unit's v1 cpuacct directory, which the reader prefers to the
    unified cpu.stat; turned off, it goes and cpu.stat is read again."""
    root = copy_tree("systemd-hybrid", tmp_path)
    cgroup = "/system.slice/dbus.service"
    svc = make_service(root, "dbus.service", cgroup)
    mounts = read_mounts(root)
    assert by_type(svc.records())[VirtCpu].cpu_time == 25
    cpuacct = root / "sys/fs/cgroup/cpuacct/system.slice/dbus.service"
    cpuacct.mkdir(parents=True)
    (cpuacct / "cpuacct.usage").write_text("9000000000\n")
    svc.place(mounts, cgroup)
    assert "cpuacct" in svc.dirs.v1
    assert by_type(svc.records())[VirtCpu].cpu_time == 25
    (cpuacct / "cpuacct.usage").write_text("9005000000\n")
    assert by_type(svc.records())[VirtCpu].cpu_time == 30
    shutil.rmtree(cpuacct)
    svc.place(mounts, cgroup)
    assert by_type(svc.records())[VirtCpu].cpu_time == 30  # cpu.stat's 25 ms is a baseline again
    assert svc.dirs.unified is not None
    stat = svc.dirs.unified / "cpu.stat"
    stat.write_text(stat.read_text().replace("usage_usec 25580", "usage_usec 35580"))
    assert by_type(svc.records())[VirtCpu].cpu_time == 40


def test_a_service_without_a_cgroup_reports_zeros_and_the_host_memory() -> None:
    svc = make_service(FIXTURES / "systemd-hybrid", "systemd-remount-fs.service", "")
    assert not svc.dirs
    r = by_type(svc.records())
    assert (r[VirtCpu].cpu_time, r[VirtMemory].memory, r[VirtMemory].max_memory) == (0, 0, HOST_MEMORY)


def test_a_broken_file_is_logged_once_for_all_services(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    root = copy_tree("systemd-hybrid", tmp_path)
    (root / "proc/34/io").write_text("syscr: many\n")
    logged: set[tuple[str, str]] = set()
    a = make_service(root, "dbus.service", "/system.slice/dbus.service", logged)
    b = make_service(root, "dbus-twin.service", "/system.slice/dbus.service", logged)
    with caplog.at_level(logging.WARNING, logger="hsflowd.systemd"):
        for svc in (a, b, a):
            r = by_type(svc.records())
            assert r[VirtCpu].cpu_time == 25  # the other figures are still read
    lines = [rec.getMessage() for rec in caplog.records]
    assert len(lines) == 1
    assert "dbus.service: cannot read process I/O" in lines[0] and "proc/34/io:1: cannot parse" in lines[0]


# ------------------------------------------------------------------ a live cgroup


class LiveCgroup:
    """A cgroup of this test's own in the unified hierarchy, holding processes it starts.

    ``path`` is the cgroup's name in the hierarchy, as systemd's ControlGroup would give it.
    """

    def __init__(self, tag: str) -> None:
        mount = next((m for m in read_mounts(Path("/")) if m.version == 2), None)
        if os.geteuid() != 0 or mount is None:
            pytest.skip("needs root and a mounted cgroup v2 (unified) hierarchy")
        name = f"hsflowd-test-{tag}-{os.getpid()}"
        self.path = mount.hierarchy_root.rstrip("/") + "/" + name
        self.dir = mount.mount_point / name
        self.dir.mkdir()
        self.procs: list[subprocess.Popen[bytes]] = []

    def start(self, *args: str) -> subprocess.Popen[bytes]:
        """A process that moves itself into the cgroup before it runs ``args`` (so its sockets are made there)."""
        procs_file = str(self.dir / "cgroup.procs")

        def join() -> None:
            with open(procs_file, "w") as f:
                f.write("0")

        p = subprocess.Popen(args, preexec_fn=join, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
        self.procs.append(p)
        return p

    def close(self) -> None:
        for p in self.procs:
            if p.poll() is None:
                os.kill(p.pid, signal.SIGKILL)
            p.wait()
            if p.stdout is not None:
                p.stdout.close()
        for _ in range(50):  # the kernel frees the cgroup a moment after its last process is reaped
            try:
                self.dir.rmdir()
                return
            except OSError:
                time.sleep(0.05)
        self.dir.rmdir()


@pytest.fixture
def live_cgroup() -> Iterator[LiveCgroup]:
    cg = LiveCgroup("sdsvc")
    yield cg
    cg.close()


BURN_AND_HOLD = "import sys, time\nx = b'x' * (64 << 20)\nsys.stdout.write('ready\\n'); sys.stdout.flush()\n" \
    "end = time.monotonic() + 30\nwhile time.monotonic() < end: pass\n"  # fmt: skip


def test_a_live_service_shows_its_cpu_and_memory(live_cgroup: LiveCgroup) -> None:
    mounts = read_mounts(Path("/"))
    assert existing_dirs(mounts, live_cgroup.path).unified == live_cgroup.dir
    svc = Service("burner.service", service_uuid(HOST_UUID, "burner.service"), 100001, Path("/"), describe,
                  lambda: HOST_MEMORY)  # fmt: skip
    svc.place(mounts, live_cgroup.path)
    before = by_type(svc.records())
    p = live_cgroup.start(sys.executable, "-c", BURN_AND_HOLD)
    assert p.stdout is not None and p.stdout.readline() == b"ready\n"
    time.sleep(1.0)
    after = by_type(svc.records())
    burnt = after[VirtCpu].cpu_time - before[VirtCpu].cpu_time
    assert 500 <= burnt <= 2500, f"{burnt} ms of CPU in about 1 s of busy loop"
    assert after[VirtMemory].memory >= 64 << 20
