"""What a sampled interface costs (issue #21 item 7): the classic sampler's ring is sized from the
interface's rate and speed, an interface holds two descriptors, and running out of descriptors is
logged once instead of failing again for every interface at every check.

Figures for hundreds and thousands of interfaces come from ``bench/interfaces.py``."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest
from netns import ns_exec, sh
from pcap_netns import veth_pair
from procs import Proc, free_udp_port, python
from test_pcap_samplers import Sink

from hsflowd_py.modules.pcap.cbpf import CbpfSampler
from hsflowd_py.modules.pcap.interfaces import Tap

pytestmark = pytest.mark.root

BUDGET = 150 * 2**20 // 300
"""Issue #21: 300 sampled interfaces in at most 150 MB."""


def ring_mapping_bytes(sock_fd: int) -> int:
    """The size of this process's mapping of the socket's ring, as the kernel lists it."""
    inode = os.fstat(sock_fd).st_ino
    total = 0
    for line in Path("/proc/self/maps").read_text().splitlines():
        if line.endswith(f"socket:[{inode}]"):
            start, end = (int(x, 16) for x in line.split()[0].split("-"))
            total += end - start
    return total


def tap_of(name: str, rate: int) -> Tap:
    """The interface as the module would choose it: its speed from the kernel (a bridge has none)."""
    ifindex = int(Path(f"/sys/class/net/{name}/ifindex").read_text())
    try:
        speed: int | None = int(Path(f"/sys/class/net/{name}/speed").read_text()) * 1_000_000
    except OSError:
        speed = None
    return Tap(name, ifindex, rate, 128, False, "cbpf", None, True, speed)


def test_a_ring_fits_the_interface_and_holds_two_descriptors() -> None:
    """A bridge (no speed) at the default 1-in-400 costs far less than the old fixed 4 MB ring, and
    two descriptors (its socket and the one Python's mmap keeps; there were four); a 10G veth
    sampled 1-in-2 gets a bigger ring than the bridge."""
    bridge = f"hcbr{os.getpid() % 100000}"
    sh("ip", "link", "add", bridge, "type", "bridge")
    try:
        with veth_pair("pcost") as v:

            async def run() -> tuple[int, int, int]:
                sampler = CbpfSampler(Sink(), Path("/"))
                before = len(os.listdir("/proc/self/fd"))
                slow = tap_of(bridge, 400)
                sampler.open(slow)
                fds = len(os.listdir("/proc/self/fd")) - before
                fast = tap_of(v.host_dev, 2)
                sampler.open(fast)
                sizes = [ring_mapping_bytes(sampler.rings[t.ifindex].sock.fileno()) for t in (slow, fast)]
                sampler.stop()
                return fds, *sizes

            fds, bridge_ring, veth_ring = asyncio.run(run())
    finally:
        sh("ip", "link", "del", bridge, check=False)
    assert fds == 2
    assert 0 < bridge_ring <= BUDGET // 2, bridge_ring
    assert veth_ring > bridge_ring


def test_running_out_of_descriptors_is_logged_once_and_not_retried_at_every_check(tmp_path: Path) -> None:
    """120 bridges under a 256-descriptor limit: the agent samples what fits while keeping
    descriptors for the rest of itself, says once that it ran out, keeps running with no
    traceback, and does not try the rest again at each check."""
    ns = f"hsfpy-nofile-{os.getpid() % 100000}"
    sh("ip", "netns", "add", ns)
    try:
        batch = "\n".join(f"link add dmy{i} type bridge" for i in range(120))
        subprocess.run(ns_exec(ns, "ip", "-batch", "-"), input=batch, text=True, check=True)
        conf = tmp_path / "hsflowd.conf"
        conf.write_text(
            "sflow {\n polling = 0\n checkAdaptors = 1\n"
            f" collector {{ ip = 127.0.0.1 udpport = {free_udp_port()} }}\n"
            ' pcap { dev.pattern = "^dmy" sampler = cbpf }\n}\n'
        )
        args = ["-d", "-f", str(conf), "-o", str(tmp_path / "auto"), "-s", str(tmp_path / "status.sock"), "-P"]
        agent = Proc(ns_exec(ns, "prlimit", "--nofile=256:256", *python("-m", "hsflowd_py", *args)))
        with agent:
            time.sleep(5)
            assert agent.p.poll() is None, "".join(agent.stderr)
            agent.p.send_signal(signal.SIGTERM)
            agent.p.wait(10)
    finally:
        sh("ip", "netns", "del", ns, check=False)
    err = "".join(agent.stderr)
    sampled = err.count("pcap: sampling dmy")
    faults = [line for line in agent.stderr if "cannot sample" in line]
    assert 20 < sampled < 120, err
    assert len(faults) == 1 and "file descriptor" in faults[0], err
    assert "Traceback" not in err
