"""Counter definitions shared with the established agent, pinned against this machine's /proc and /sys:
2004 mem_cached is Cached + SReclaimable (what free(1) shows as cache), and 0:1
ifInMulticastPkts is unknown (0xFFFFFFFF) on a device that has never counted multicast."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest
from test_pcap_interfaces import iface

from hsflowd_py.counters import Monotonic
from hsflowd_py.host_counters import HostCounters, interface_counters
from hsflowd_py.readers.netclass import read_interfaces
from hsflowd_py.sflow import records as rec

UNKNOWN = 0xFFFFFFFF
SLACK = 16 << 20
"""How far the page cache may move between two reads of it on a busy shared machine."""


def meminfo_kib(key: str) -> int:
    return int(re.search(rf"^{key}:\s+(\d+) kB$", Path("/proc/meminfo").read_text(), re.M)[1])  # type: ignore[index]


def memory() -> rec.HostMemory:
    return next(r for r in HostCounters(Path("/")).records() if isinstance(r, rec.HostMemory))


def test_mem_cached_is_cached_plus_sreclaimable_of_proc_meminfo() -> None:
    expected = (meminfo_kib("Cached") + meminfo_kib("SReclaimable")) * 1024
    if meminfo_kib("SReclaimable") * 1024 < 4 * SLACK:
        pytest.skip("too little reclaimable slab here to tell Cached from Cached + SReclaimable")
    assert abs(memory().mem_cached - expected) < SLACK


@pytest.mark.skipif(shutil.which("free") is None, reason="needs procps free")
def test_mem_cached_is_what_free_shows_as_cache() -> None:
    lines = subprocess.run(["free", "-b", "-w"], capture_output=True, text=True, check=True).stdout.splitlines()
    header, mem = lines[0].split(), lines[1].split()[1:]
    assert abs(memory().mem_cached - int(mem[header.index("cache")])) < SLACK


def test_multicast_is_unknown_exactly_where_sys_never_counted_it() -> None:
    seen = {}
    for info in read_interfaces(Path("/")):
        counted = int(Path(f"/sys/class/net/{info.name}/statistics/multicast").read_text())
        generic, _ = interface_counters(info, Monotonic())
        seen[info.name] = (counted == 0, generic.in_multicast_pkts == UNKNOWN)
    assert seen and all(never == unknown for never, unknown in seen.values()), seen
    assert seen["lo"] == (True, True)


def test_a_device_that_counts_multicast_reports_it_and_leaves_it_out_of_unicast() -> None:
    monotonic = Monotonic()
    interface_counters(iface("eth0", 2, stats={"rx_packets": 100, "multicast": 4}), monotonic)
    generic, _ = interface_counters(iface("eth0", 2, stats={"rx_packets": 130, "multicast": 10}), monotonic)
    assert (generic.in_multicast_pkts, generic.in_ucast_pkts) == (6, 24)
    quiet = Monotonic()
    interface_counters(iface("veth0", 3, stats={"rx_packets": 100}), quiet)
    generic, _ = interface_counters(iface("veth0", 3, stats={"rx_packets": 130}), quiet)
    assert (generic.in_multicast_pkts, generic.in_ucast_pkts) == (UNKNOWN, 30)
