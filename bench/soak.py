"""Soak: the agent under sampling traffic and container churn for a long time; resources stay flat.

Runs the real agent (pcap on a veth into a namespace, tcp, docker with the test engine) against a
bundled collector, sends UDP traffic across the veth all along, and starts and stops containers
every few seconds. Every minute it prints the agent's RSS, open file descriptors, threads and the
datagrams the collector received; at the end, start and end figures side by side.

    .venv/bin/python bench/soak.py --minutes 30 --containers 50
"""

from __future__ import annotations

import argparse
import os
import socket
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

import dockerd
from netns import VethNamespace
from procs import free_udp_port, start_agent, start_collector


def resources(pid: int) -> tuple[float, int, int]:
    status = Path(f"/proc/{pid}/status").read_text().splitlines()
    rss = next(int(line.split()[1]) for line in status if line.startswith("VmRSS:")) / 1024
    threads = next(int(line.split()[1]) for line in status if line.startswith("Threads:"))
    return rss, len(os.listdir(f"/proc/{pid}/fd")), threads


def churn(image: str, count: int, stop: threading.Event) -> None:
    """Keep ``count`` short-lived containers coming and going."""
    n = 0
    while not stop.is_set():
        name = f"hsfpy-soak-{n % count}"
        dockerd.docker("rm", "-f", name, check=False)
        dockerd.docker("run", "-d", "--name", name, image, "sleep", str(2 + n % 5), check=False)
        n += 1
        stop.wait(0.2)
    for i in range(count):
        dockerd.docker("rm", "-f", f"hsfpy-soak-{i}", check=False)


def traffic(target: str, stop: threading.Event) -> None:
    """About 20k small UDP packets a second across the veth."""
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    payload = b"x" * 22
    while not stop.is_set():
        for _ in range(2000):
            s.sendto(payload, (target, 9))
        time.sleep(0.1)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--minutes", type=float, default=30)
    p.add_argument("--containers", type=int, default=50)
    args = p.parse_args()
    engine = dockerd.Engine()
    engine.start()
    image = dockerd.ensure_busybox_image()
    stop = threading.Event()
    with tempfile.TemporaryDirectory() as tmp, VethNamespace("soak", subnet=95) as v:
        port = free_udp_port()
        conf = Path(tmp, "hsflowd.conf")
        conf.write_text(
            f"sflow {{\n polling = 10\n sampling = 100\n collector {{ ip = 127.0.0.1 udpport = {port} }}\n"
            f" pcap {{ dev = {v.host_dev} }}\n tcp {{ }}\n docker {{ socket = {dockerd.SOCKET} }}\n}}\n"
        )
        collector = start_collector(port, "-g")
        agent = start_agent(conf, Path(tmp, "hsflowd.auto"))
        time.sleep(5)
        threads = [
            threading.Thread(target=churn, args=(image, args.containers, stop), daemon=True),
            threading.Thread(target=traffic, args=(v.ns_ip, stop), daemon=True),
        ]
        for t in threads:
            t.start()
        before = resources(agent.p.pid)
        print(f"before churn: RSS {before[0]:.1f} MB, {before[1]} fds, {before[2]} threads", flush=True)
        start: tuple[float, int, int] | None = None  # the first reading under load is the baseline
        end_at = time.monotonic() + args.minutes * 60
        lines = 0
        try:
            while time.monotonic() < end_at and agent.p.poll() is None:
                time.sleep(60)
                while not collector.lines.empty():
                    collector.lines.get()
                    lines += 1
                rss, fds, nthreads = resources(agent.p.pid)
                start = start or (rss, fds, nthreads)
                print(
                    f"{time.strftime('%H:%M:%S')} RSS {rss:.1f} MB, {fds} fds, {nthreads} threads, "
                    f"{lines} collector lines",
                    flush=True,
                )
        finally:
            stop.set()
            for t in threads:
                t.join(60)
            end = resources(agent.p.pid) if agent.p.poll() is None else (0.0, 0, 0)
            agent.stop()
            collector.stop()
    engine.stop()
    start = start or before
    print(f"end:   RSS {end[0]:.1f} MB, {end[1]} fds, {end[2]} threads")
    print(f"first minute under load: RSS {start[0]:.1f} MB, {start[1]} fds")
    return 0 if end[1] and end[1] <= start[1] + 5 and end[0] <= start[0] * 1.2 + 5 else 1


if __name__ == "__main__":
    sys.exit(main())
