"""Host counter records built from fixture trees (copied per test), and from the live machine."""

from __future__ import annotations

import json
import logging
import os
import shutil
import socket
import subprocess
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import psutil
import pytest

from hsflowd_py.counters import Monotonic
from hsflowd_py.host_counters import HostCounters, interface_counters, interfaces
from hsflowd_py.readers.identity import host_uuid, machine_type
from hsflowd_py.sflow import records as rec

FIXTURES = Path(__file__).parent / "fixtures"
U32_UNKNOWN = 0xFFFFFFFF
HOST_TAGS = [2001, 2003, 2004, 2005, 2006, 2007, 2008, 2009, 2010]


def tree(tmp_path: Path, name: str) -> Path:
    root = tmp_path / name
    shutil.copytree(FIXTURES / name, root, symlinks=True)
    return root


def fake_statvfs(root: Path, table: dict[str, tuple[int, int, int]]) -> Callable[[str], SimpleNamespace]:
    """statvfs for mount points under ``root``: relative path → (f_blocks, f_bfree, f_bavail) in 4 KiB."""

    def statvfs(path: str) -> SimpleNamespace:
        rel = os.path.relpath(path, root).strip(".")
        if rel not in table:
            raise AssertionError(f"statvfs of {path} was not expected")
        blocks, bfree, bavail = table[rel]
        return SimpleNamespace(f_blocks=blocks, f_bfree=bfree, f_bavail=bavail, f_frsize=4096, f_bsize=4096)

    return statvfs


def by_tag(records: list[rec.Record]) -> dict[int, rec.Record]:
    return {r.FORMAT: r for r in records}


def net_dev(counts: dict[str, tuple[int, int, int, int]]) -> str:
    """/proc/net/dev text from name → (rx_bytes, rx_packets, tx_bytes, tx_packets)."""
    lines = [
        "Inter-|   Receive                                                |  Transmit",
        " face |bytes    packets errs drop fifo frame compressed multicast|bytes    packets errs drop fifo colls carrier compressed",  # noqa: E501
    ]
    for name, (rb, rp, tb, tp) in counts.items():
        lines.append(f"{name:>6}: {rb} {rp} 0 0 0 0 0 0 {tb} {tp} 0 0 0 0 0 0")
    return "\n".join(lines) + "\n"


# ---------------------------------------------------------------- Debian 12, Linux 6.18


@pytest.fixture
def debian(tmp_path: Path) -> tuple[Path, HostCounters]:
    root = tree(tmp_path, "host-debian12")
    return root, HostCounters(root, clock_ticks=100, statvfs=fake_statvfs(root, {"": (66053021, 45000000, 20760000)}))


def test_debian12_records_in_order_and_encodable(debian: tuple[Path, HostCounters]) -> None:
    _, host = debian
    records = host.records()
    assert [r.FORMAT for r in records] == HOST_TAGS
    for r in records:
        wire = r.pack()
        assert type(r).unpack_value(memoryview(wire), 0, len(wire))[0].pack() == wire


def test_debian12_values(debian: tuple[Path, HostCounters]) -> None:
    _, host = debian
    r = by_tag(host.records())
    assert r[2001] == rec.HostAdapters(adapters=[rec.HostAdapter(if_index=4, macs=[bytes.fromhex("02fc00000001")])])
    assert r[2003] == rec.HostCpu(
        load_one=0.30, load_five=0.13, load_fifteen=0.04, proc_run=1, proc_total=87, cpu_num=2, cpu_speed=2599,
        uptime=974, cpu_user=76200, cpu_nice=0, cpu_system=18760, cpu_idle=1844580, cpu_wio=4410, cpu_intr=0,
        cpu_sintr=800, interrupts=214591, contexts=436989, cpu_steal=60, cpu_guest=0, cpu_guest_nice=0,
    )  # fmt: skip
    kib = 1024
    assert r[2004] == rec.HostMemory(
        mem_total=24684084 * kib, mem_free=24326976 * kib, mem_shared=8872 * kib, mem_buffers=1144 * kib,
        mem_cached=(106936 + 103832) * kib, swap_total=0, swap_free=0,  # Cached + SReclaimable
        page_in=1480009, page_out=964688, swap_in=0, swap_out=0,
    )  # fmt: skip
    # vda only: zram0 and the loop devices are left out
    assert r[2005] == rec.HostDisk(
        disk_total=66053021 * 4096, disk_free=20760000 * 4096, part_max_used=5036, reads=46306,
        bytes_read=2960018 * 512, read_time=18775, writes=31006, bytes_written=1929376 * 512, write_time=7130,
    )  # fmt: skip
    assert r[2006] == rec.HostNetIO()  # counts from zero at the first poll
    assert (r[2007].Forwarding, r[2007].DefaultTTL, r[2007].InReceives, r[2007].OutRequests) == (2, 64, 3262, 2093)
    icmp = r[2008]
    assert (icmp.InMsgs, icmp.InDestUnreachs, icmp.InTimeExcds) == (1, 1, 0)  # by name: not shifted
    assert (r[2009].MaxConn, r[2009].ActiveOpens, r[2009].OutRsts) == (U32_UNKNOWN, 20, 18)
    assert (r[2010].InDatagrams, r[2010].OutDatagrams) == (581, 584)


def test_debian12_second_poll_accumulates(debian: tuple[Path, HostCounters]) -> None:
    root, host = debian
    host.records()
    (root / "proc/net/dev").write_text(
        net_dev({"lo": (99999, 999, 99999, 999), "ifb0": (5, 5, 5, 5), "ifb1": (0, 0, 0, 0), "eth0": (127761976 + 1500, 2701 + 3, 130706 + 100, 1540 + 2)})  # noqa: E501
    )
    stat = (root / "proc/stat").read_text().replace("cpu  7620 0 1876 184458 441", "cpu  7630 0 1876 184558 431")
    (root / "proc/stat").write_text(stat)  # iowait stepped back by 10 ticks, as the kernel allows
    r = by_tag(host.records())
    assert r[2006] == rec.HostNetIO(bytes_in=1500, pkts_in=3, bytes_out=100, pkts_out=2)  # eth0 only: lo and ifb down
    assert (r[2003].cpu_user, r[2003].cpu_idle, r[2003].cpu_wio) == (76300, 1845580, 4410)


def test_description(debian: tuple[Path, HostCounters]) -> None:
    root, host = debian
    ident = host_uuid(root, None)
    assert host.description(None, ident) == rec.HostDescription(
        hostname="vm", uuid=ident.bytes, machine_type=3, os_name=2, os_release="6.18.44-fc-v669"
    )
    assert host.description("web-1", ident).hostname == "web-1"


def test_a_failing_reader_costs_only_its_record_and_is_logged_once(
    debian: tuple[Path, HostCounters], caplog: pytest.LogCaptureFixture
) -> None:
    root, host = debian
    (root / "proc/diskstats").unlink()
    (root / "proc/net/snmp").write_text("Tcp: A B\nTcp: 1\n")
    with caplog.at_level(logging.WARNING, logger="hsflowd_py.host_counters"):
        assert [r.FORMAT for r in host.records()] == [2001, 2003, 2004, 2006]
        assert [r.FORMAT for r in host.records()] == [2001, 2003, 2004, 2006]
    messages = [r.getMessage() for r in caplog.records]
    assert messages == [
        f"host counters: {root / 'proc/net/snmp'}:2: 1 values under 2 names in group Tcp",
        f"host counters: {root / 'proc/diskstats'}: does not exist",
    ]


def test_unreadable_description_strings_are_sent_empty(debian: tuple[Path, HostCounters]) -> None:
    root, host = debian
    (root / "proc/sys/kernel/hostname").unlink()
    assert host.description(None, uuid.UUID(int=0)).hostname == ""


# ---------------------------------------------------------------- an older kernel (2.6.32 layout)


@pytest.fixture
def old(tmp_path: Path) -> tuple[Path, HostCounters]:
    root = tree(tmp_path, "host-oldkernel")
    table = {"": (1000, 600, 500), "boot": (100, 90, 85), "home": (2000, 100, 0)}
    return root, HostCounters(root, clock_ticks=100, statvfs=fake_statvfs(root, table))


def test_oldkernel_mib2_by_header_name(old: tuple[Path, HostCounters]) -> None:
    _, host = old
    r = by_tag(host.records())
    assert r[2007].values() == [1, 64, *range(1001, 1018)]
    # Icmp has InTimestampReps (2011) and OutTimestampReps (2024) in the kernel; the sFlow structure
    # has only the latter, so a positional copy would shift everything after InTimestamps.
    assert r[2008].values() == [*range(2001, 2011), 2012, 2013, *range(2014, 2027)]
    assert r[2009].values() == [1, 200, 120000, U32_UNKNOWN, 3005, 3006, 3007, 3008, 9, 3010, 3011, 3012, 3013, 3014, 0]
    assert r[2010].values() == [4001, 4002, 4003, 4004, 4005, 4006, 0]


def test_oldkernel_cpu_memory_disk(old: tuple[Path, HostCounters]) -> None:
    _, host = old
    r = by_tag(host.records())
    cpu = r[2003]
    assert (cpu.cpu_num, cpu.cpu_speed, cpu.proc_run, cpu.proc_total, cpu.uptime) == (4, 2400, 2, 214, 86400)
    assert (cpu.cpu_steal, cpu.cpu_guest, cpu.cpu_guest_nice) == (700, 8000, 0)  # no guest_nice column in 2.6.32
    assert (r[2004].mem_shared, r[2004].page_out, r[2004].swap_out) == (65536 * 1024, 12345678, 3400)
    disk = r[2005]
    # sda and sr0; not the partitions, the LVM volumes on sda2, loop0 or ram0
    assert (disk.reads, disk.writes, disk.read_time) == (50000 + 12, 80000, 300000 + 40)
    assert (disk.bytes_read, disk.bytes_written) == ((4000000 + 96) * 512, 6000000 * 512)
    # /, /boot and /home once each: the bind mount, the read-only images and nfs are left out
    assert (disk.disk_total, disk.disk_free) == ((1000 + 100 + 2000) * 4096, (500 + 85 + 0) * 4096)
    assert disk.part_max_used == 10000


def test_oldkernel_adapters(old: tuple[Path, HostCounters]) -> None:
    _, host = old
    # up, not loopback, not veth; bond slaves, VLAN, bridge and tap included; eth3 is down
    assert [a.if_index for a in by_tag(host.records())[2001].adapters] == [2, 3, 4, 5, 6, 7, 8]
    assert [a.if_index for a in by_tag(host.records(adapters_exclude={8, 2}))[2001].adapters] == [3, 4, 5, 6, 7]


def test_oldkernel_net_io_sums_members_only(old: tuple[Path, HostCounters]) -> None:
    root, host = old
    host.records()
    names = ["lo", "eth0", "eth1", "eth2", "bond0", "eth0.100", "br0", "vnet0", "vethA", "eth3"]
    (root / "proc/net/dev").write_text(net_dev({n: (1 << i, 1, 0, 0) for i, n in enumerate(names)}))
    host.records()  # a baseline for every device (the rewritten file restarted each counter)
    (root / "proc/net/dev").write_text(net_dev({n: (2 << i, 2, 0, 0) for i, n in enumerate(names)}))
    nio = by_tag(host.records())[2006]
    # eth0, eth1, eth2, br0, vnet0, vethA: not lo, bond0 (counted on its slaves), eth0.100 (on eth0), eth3 (down)
    assert nio.bytes_in == sum(1 << names.index(n) for n in ("eth0", "eth1", "eth2", "br0", "vnet0", "vethA"))
    assert nio.pkts_in == 6


def test_oldkernel_description(old: tuple[Path, HostCounters]) -> None:
    root, host = old
    desc = host.description(None, host_uuid(root, None))
    assert (desc.hostname, desc.os_release) == ("centos6.example.com", "2.6.32-754.35.1.el6.x86_64")
    assert desc.uuid == uuid.UUID("4c4c4544-0042-3510-8056-b4c04f4e4b31").bytes  # DMI, no machine-id then
    assert desc.machine_type == machine_type(os.uname().machine)


# ---------------------------------------------------------------- interface records


def test_interface_counters_count_from_zero(tmp_path: Path) -> None:
    root = tree(tmp_path, "host-oldkernel")
    eth0 = next(i for i in interfaces(root) if i.name == "eth0")
    mono = Monotonic()
    generic, name = interface_counters(eth0, mono)
    assert name == rec.PortName(name="eth0")
    assert generic == rec.GenericInterface(
        if_index=2, if_type=6, if_speed=0, if_direction=0, if_status=3,
        in_broadcast_pkts=U32_UNKNOWN, in_unknown_protos=U32_UNKNOWN,
        out_multicast_pkts=U32_UNKNOWN, out_broadcast_pkts=U32_UNKNOWN, promiscuous_mode=1,
    )  # fmt: skip
    stats = root / "sys/class/net/eth0/statistics"
    for counter, add in {"rx_bytes": 9000, "rx_packets": 50, "multicast": 8, "tx_bytes": 7000, "tx_dropped": 1}.items():
        (stats / counter).write_text(str(int((stats / counter).read_text()) + add))
    (root / "sys/class/net/eth0/speed").write_text("1000\n")
    (root / "sys/class/net/eth0/duplex").write_text("half\n")
    eth0 = next(i for i in interfaces(root) if i.name == "eth0")
    generic, _ = interface_counters(eth0, mono)
    assert (generic.in_octets, generic.in_ucast_pkts, generic.in_multicast_pkts) == (9000, 42, 8)
    assert (generic.out_octets, generic.out_ucast_pkts, generic.out_discards) == (7000, 0, 1)
    assert (generic.if_speed, generic.if_direction) == (1_000_000_000, 2)


@pytest.mark.parametrize("name, if_type, status", [("lo", 24, 3), ("eth3", 6, 0), ("vnet0", 6, 3), ("br0", 6, 3)])
def test_interface_type_and_status(tmp_path: Path, name: str, if_type: int, status: int) -> None:
    info = next(i for i in interfaces(tree(tmp_path, "host-oldkernel")) if i.name == name)
    generic, _ = interface_counters(info, Monotonic())
    assert (generic.if_type, generic.if_status, generic.promiscuous_mode) == (if_type, status, 0)


# ---------------------------------------------------------------- the live machine


def ip_links() -> list[dict[str, Any]]:
    """The root namespace's links as iproute2 reads them over netlink (not sysfs, which the agent reads)."""
    out = subprocess.run(["ip", "-d", "-j", "link", "show"], capture_output=True, text=True, check=True).stdout
    return json.loads(out)


def adapters_by_rule(links: list[dict[str, Any]]) -> set[int]:
    """0:2001's rule, the established agent's: admin-up (IFF_UP, carrier or not), not loopback, a
    non-zero MAC, not the host end of a container link (veth; macvlan/ipvlan look the same in sysfs)."""
    return {
        link["ifindex"]
        for link in links
        if "UP" in link["flags"]
        and "LOOPBACK" not in link["flags"]
        and link.get("address", "00:00:00:00:00:00").strip("0:") != ""
        and link.get("linkinfo", {}).get("info_kind") not in ("veth", "macvlan", "ipvlan")
    }


def test_live_machine_agrees_with_psutil_and_os() -> None:
    root = Path("/")
    host = HostCounters(root)
    r = by_tag(host.records())
    assert [t for t in HOST_TAGS if t in r] == HOST_TAGS, "every reader works on this machine"

    desc = host.description(None, host_uuid(root, None))
    assert desc.hostname == socket.gethostname()
    assert desc.os_release == os.uname().release
    assert desc.machine_type == machine_type(os.uname().machine)

    assert r[2003].cpu_num == psutil.cpu_count()
    assert abs(r[2003].uptime - (time.time() - psutil.boot_time())) < 5
    assert r[2004].mem_total == psutil.virtual_memory().total
    assert r[2004].swap_total == psutil.swap_memory().total

    root_fs = os.statvfs("/")
    assert r[2005].disk_total >= root_fs.f_blocks * root_fs.f_frsize


def test_live_links_agree_with_psutil_and_iproute2() -> None:
    """Whatever links the machine has (a bridge with no carrier, another session's veths): the
    expectation is read from the kernel at the same moment, never assumed.  Links that change
    while the three are read (a concurrent test's veth) make the round start again."""
    root = Path("/")
    host = HostCounters(root)
    for _ in range(10):
        before = ip_links()
        ifs = interfaces(root)
        adapters = {a.if_index for a in by_tag(host.records())[2001].adapters}
        stats = psutil.net_if_stats()
        names = set(socket.if_nameindex())
        after = ip_links()
        if [(x["ifindex"], x["flags"]) for x in before] == [(x["ifindex"], x["flags"]) for x in after]:
            break
    else:
        pytest.fail("the machine's links kept changing for 10 rounds")

    assert {(i.ifindex, i.name) for i in ifs} == names == {(link["ifindex"], link["ifname"]) for link in after}
    # psutil's isup is IFF_RUNNING (admin up and operationally up), not IFF_UP: docker0 without
    # containers is up with no carrier. sysfs ``flags`` never shows IFF_RUNNING; operstate does.
    assert {i.name: (i.up and i.operstate in ("up", "unknown"), i.mtu) for i in ifs} == {
        n: (s.isup, s.mtu) for n, s in stats.items()
    }
    assert adapters == adapters_by_rule(after)
