"""What each interface costs the agent: memory and descriptors per sampled interface, and how
long the interface check stalls the loop with thousands of interfaces.

In a network namespace of its own (deleted at the end, with everything in it) the script makes
``--sampled`` bridges (no link speed, like the bridges of issue #21) and ``--veths`` veth ends
(veth pairs; patterns skip veths, so they are read at every check but not sampled), then runs
the agent in this process with ``pcap { dev.pattern = "^bsb" sampler = <--sampler> }``,
``checkAdaptors = 1`` and ``polling = 0`` (the counter pollers, which read every interface too,
are another matter).  Printed:

* RSS before the agent starts and once every bridge is sampled, and the difference per
  sampled interface; descriptors the same way (``/proc/self/fd``);
* the loop's stall over ``--seconds`` of interface checks: a task that asks to wake every
  millisecond records how late each wake-up is (max, 99th percentile, wake-ups late > 10 ms);
* with ``--nofile N`` the descriptor limit (soft and hard) is N first: how many bridges get
  sampled under it, and how many times the module logged running out.

Needs root (namespaces).  Run under the heavy lock on a shared machine:

    flock /tmp/hsflowd-heavy.lock .venv/bin/python bench/interfaces.py [--sampled 300] [--veths 2000]
        [--sampler cbpf] [--seconds 10] [--nofile 1024]
"""

from __future__ import annotations

import argparse
import asyncio
import io
import logging
import os
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path


def rss_kb(status: io.TextIOBase) -> int:
    status.seek(0)
    return next(int(line.split()[1]) for line in status if line.startswith("VmRSS:"))


def descriptors() -> int:
    """Open descriptors (listing /proc/self/fd takes one, which is not counted)."""
    try:
        return len(os.listdir("/proc/self/fd")) - 1
    except OSError:  # none left to list with
        return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


def make_interfaces(sampled: int, veths: int) -> None:
    lines = [f"link add bsb{i} type bridge" for i in range(sampled)]
    lines += [f"link set bsb{i} up" for i in range(sampled)]
    lines += [f"link add bva{i} type veth peer name bvb{i}" for i in range(veths // 2)]
    subprocess.run(["ip", "-batch", "-"], input="\n".join(lines), text=True, check=True)


class FaultCount(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.descriptor_faults = 0

    def emit(self, record: logging.LogRecord) -> None:
        if "file descriptor" in record.getMessage():
            self.descriptor_faults += 1


async def measure(args: argparse.Namespace) -> None:
    from hsflowd_py.agent import Agent
    from hsflowd_py.agent_address import local_addresses
    from hsflowd_py.config import parse_config
    from hsflowd_py.modules.pcap.interfaces import choose
    from hsflowd_py.readers.netclass import read_interfaces

    faults = FaultCount()
    logging.getLogger("hsflowd").addHandler(faults)
    conf = (
        "sflow {\n polling = 0\n checkAdaptors = 1\n collector { ip = 127.0.0.1 udpport = 9 }\n"
        f' pcap {{ dev.pattern = "^bsb" sampler = {args.sampler} }}\n}}\n'
    )
    status = open("/proc/self/status")  # noqa: SIM115 - opened before the agent can take every descriptor
    rss0, fds0 = rss_kb(status), descriptors()
    agent = Agent(parse_config(conf))
    task = asyncio.create_task(agent.run())
    started = time.monotonic()
    while time.monotonic() - started < 120:
        await asyncio.sleep(0.5)
        pcap = agent.modules.get("pcap")
        if pcap is not None and (len(pcap.open) >= args.sampled or faults.descriptor_faults):
            break
    await asyncio.sleep(1.5)
    pcap = agent.modules["pcap"]
    rss1, fds1, opened = rss_kb(status), descriptors(), len(pcap.open)
    lags: list[float] = []
    end = time.monotonic() + args.seconds
    while time.monotonic() < end:
        t = time.monotonic()
        await asyncio.sleep(0.001)
        lags.append((time.monotonic() - t - 0.001) * 1000)
    refusals = pcap.stats["fd_refusals"]
    agent.request_stop()
    await task
    t0 = time.perf_counter()
    infos = read_interfaces(Path("/"))
    t1 = time.perf_counter()
    choose(infos, agent.settings)
    t2 = time.perf_counter()
    local_addresses()
    t3 = time.perf_counter()
    per = max(opened, 1)
    print(f"interfaces: {args.sampled} bridges sampled ({args.sampler}) + {args.veths} veth ends, "
          f"limit {resource.getrlimit(resource.RLIMIT_NOFILE)[0]} descriptors")  # fmt: skip
    print(f"sampled: {opened}; descriptor faults logged: {faults.descriptor_faults}; fd_refusals: {refusals}")
    print(f"RSS: {rss0 / 1024:.1f} MB before, {rss1 / 1024:.1f} MB sampling, {(rss1 - rss0) / per:.0f} kB/interface")
    print(f"descriptors: {fds0} before, {fds1} sampling, {(fds1 - fds0) / per:.2f} per interface")
    lags.sort()
    print(f"loop lag over {args.seconds:.0f} s of checks: max {lags[-1]:.1f} ms, "
          f"p99 {lags[int(len(lags) * 0.99)]:.1f} ms, median {statistics.median(lags):.2f} ms, "
          f"{sum(lag > 10 for lag in lags)} wake-ups late by > 10 ms")  # fmt: skip
    print(f"one check's parts, timed alone: reading {len(infos)} interfaces {(t1 - t0) * 1000:.0f} ms (a thread), "
          f"choosing {(t2 - t1) * 1000:.1f} ms, agent address refresh {(t3 - t2) * 1000:.1f} ms (loop)")  # fmt: skip


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--sampled", type=int, default=300)
    p.add_argument("--veths", type=int, default=2000)
    p.add_argument("--sampler", default="cbpf", choices=["cbpf", "ebpf", "auto"])
    p.add_argument("--seconds", type=float, default=10)
    p.add_argument("--nofile", type=int)
    p.add_argument("--inside", action="store_true", help=argparse.SUPPRESS)
    args = p.parse_args()
    if os.geteuid() != 0:
        print("needs root (a network namespace of its own)", file=sys.stderr)
        return 1
    if args.inside:
        if args.nofile:
            resource.setrlimit(resource.RLIMIT_NOFILE, (args.nofile, args.nofile))
        make_interfaces(args.sampled, args.veths)
        asyncio.run(measure(args))
        return 0
    ns = f"hsflowd-bench-{os.getpid()}"
    subprocess.run(["ip", "netns", "add", ns], check=True)
    try:
        return subprocess.run(["ip", "netns", "exec", ns, sys.executable, *sys.argv, "--inside"]).returncode
    finally:
        subprocess.run(["ip", "netns", "del", ns], check=False)


if __name__ == "__main__":
    sys.exit(main())
