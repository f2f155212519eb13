"""What the systemd module costs: marking a sampled packet, a socket scan, a service's counter sample.

An echo server runs in a cgroup of its own (as a unit's processes would) and
a few connections to it over loopback are captured off ``lo``, so the samples
are real frames.  Reported, per call, in-process on one core:

* ``resolve`` of a server-side sample found by the cgroup id the tcp module
  leaves on the packet (``packet.cgroup_id``), by the socket tables (after a scan), and of a
  client-side sample already settled as unowned: the per-sample cost of
  ``markTraffic`` once the maps are built;
* one scan (service processes' /proc/<pid>/fd, the four /proc/net tables of
  this machine, filtered), which runs in a worker thread at most once a second;
* ``Service.records()`` of the live service: one counter sample's reading.

    .venv/bin/python bench/systemd_mark.py [--connections 8] [--rounds 20000]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import socket
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from packets import sampled_packet
from test_systemd_owners import Server, capture, expected
from test_systemd_service import LiveCgroup

from hsflowd_py.flow import SampledPacket
from hsflowd_py.modules.systemd.owners import Owners, scan


def per_call_us(fn, rounds: int) -> float:  # type: ignore[no-untyped-def]
    start = time.perf_counter()
    for _ in range(rounds):
        fn()
    return (time.perf_counter() - start) / rounds * 1e6


def fresh(p: SampledPacket, cgroup_id: int | None = None) -> SampledPacket:
    packet = sampled_packet(p.ds_index, p.header, p.direction, frame_length=p.frame_length)
    packet.cgroup_id = cgroup_id
    return packet


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--connections", type=int, default=8)
    ap.add_argument("--rounds", type=int, default=20000)
    args = ap.parse_args()
    os.sched_setaffinity(0, {0})
    cgroup = LiveCgroup("sdbench")
    keep: list[socket.socket] = []
    try:
        server = Server(cgroup)

        def traffic() -> None:
            for _ in range(args.connections):
                c = socket.create_connection(("127.0.0.1", server.port))
                c.sendall(b"x")
                c.recv(10)
                keep.append(c)

        packets = capture(server.port, traffic)
        mine = [p for p in packets if expected(p, server.port)]
        theirs = [p for p in packets if not expected(p, server.port)]
        owners = Owners(Path("/"))
        owners.set_services([server.service])
        asyncio.run(owners.resolve_after_scan(fresh(mine[0])))
        asyncio.run(owners.resolve_after_scan(fresh(theirs[0])))
        cgroup_id = os.stat(server.service.dirs.unified).st_ino if server.service.dirs.unified else 0
        by_id = [fresh(p, cgroup_id) for p in mine]
        by_table = [fresh(p) for p in mine]
        unowned = [fresh(p) for p in theirs]
        for name, batch in (("cgroup id", by_id), ("socket tables", by_table), ("unowned (cached)", unowned)):
            i = iter(range(10**9))

            def one(batch: list[SampledPacket] = batch, i=i) -> None:  # type: ignore[no-untyped-def]
                p = batch[next(i) % len(batch)]
                p.extra.clear()
                owners.resolve(p)

            print(f"resolve, {name:18s} {per_call_us(one, args.rounds):7.2f} us per sample")
        services = [server.service]
        scan_us = per_call_us(lambda: scan(Path("/"), services), 200)
        print(f"scan (1 service, {len(keep) + 2} sockets) {scan_us:9.0f} us")
        tables = sum(len(Path(f"/proc/net/{n}").read_text().splitlines()) for n in ("tcp", "tcp6", "udp", "udp6"))
        print(f"  (/proc/net tables of this machine: {tables} lines)")
        print(f"Service.records()                {per_call_us(server.service.records, 2000):9.1f} us per sample")
    finally:
        for c in keep:
            c.close()
        cgroup.close()


if __name__ == "__main__":
    main()
