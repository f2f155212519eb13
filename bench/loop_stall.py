"""How long the agent's loop stalls with many containers, packet sampling under load and tcp on.

Starts N busybox containers (default 200, ``sleep``) in the test engine (``tests/dockerd.py``), a
veth pair into a namespace of its own, and the agent in this process with
``docker { }``, ``pcap { dev = <the root end> sampling = --sampling }``, ``tcp { udp = on }``,
``polling = --polling`` and ``checkAdaptors = 1``; iperf3 sends ``--pps`` packets/s of 64-byte
UDP frames across the pair while a task that asks to wake every millisecond records how late each
wake-up is, and a watchdog thread notes where the loop was in each stall over 50 ms.  Printed: the
stall while the containers are being tracked, and over ``--seconds`` after one more polling round
(worst, 99th percentile, median, wake-ups late by more than 10 and 50 ms, where the loop was), and
what the agent counted meanwhile (counter and flow samples, enrich timeouts: a sample held for tcp
that the agent's own stall made late).

To compare two revisions, run it again with the other one first on the path (a checkout with
``hsflowd_py/modules`` linked to its ``modules``)::

    git archive REV | tar -x -C /tmp/before && ln -s ../modules /tmp/before/hsflowd_py/modules
    PYTHONPATH=/tmp/before flock /tmp/hsflowd-heavy.lock .venv/bin/python bench/loop_stall.py

Needs root, iperf3 and Debian's docker.io.  Run under the heavy lock on a shared machine; it
removes its containers (by id) and its namespace at the end.

    flock /tmp/hsflowd-heavy.lock .venv/bin/python bench/loop_stall.py [--containers 200]
        [--pps 100000] [--sampling 100] [--polling 10] [--seconds 30]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import subprocess
import sys
import threading
import time
import traceback
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(1, str(ROOT / "bench"))

import dockerd  # noqa: E402 - the test engine lives beside the tests
from containers import start_containers  # noqa: E402
from pcap_netns import veth_pair  # noqa: E402
from sampling import PORT, traffic  # noqa: E402


class Watchdog:
    """A thread that, when the loop has not beaten for 50 ms, notes where the loop's thread is
    (its three innermost frames), once per stall: what the worst stalls were doing."""

    def __init__(self) -> None:
        self.beat = time.monotonic()
        self.where: dict[str, int] = {}
        self._loop_thread = threading.get_ident()
        self._stop = threading.Event()
        threading.Thread(target=self._watch, daemon=True).start()

    def _watch(self) -> None:
        noted = 0.0
        while not self._stop.wait(0.01):
            if time.monotonic() - self.beat > 0.05 and noted != self.beat:
                noted = self.beat
                frame = sys._current_frames().get(self._loop_thread)
                stack = traceback.extract_stack(frame)[-3:] if frame is not None else []
                key = " < ".join(f"{Path(f.filename).name}:{f.lineno} {f.name}" for f in reversed(stack)) or "?"
                self.where[key] = self.where.get(key, 0) + 1

    def stop(self) -> None:
        self._stop.set()


async def lateness(until: float, lags: list[float], dog: Watchdog) -> list[float]:
    """Milliseconds each 1 ms sleep overran, added to ``lags`` until ``until`` (monotonic)."""
    while (start := time.monotonic()) < until:
        dog.beat = start
        await asyncio.sleep(0.001)
        lags.append((time.monotonic() - start - 0.001) * 1000)
    return lags


def summary(lags: list[float]) -> str:
    """Worst, p99 and median lateness of the wake-ups, and how many were late by > 10 and > 50 ms."""
    lags = sorted(lags)
    worst, p99, median = lags[-1], lags[int(len(lags) * 0.99)], statistics.median(lags)
    late10, late50 = sum(lag > 10 for lag in lags), sum(lag > 50 for lag in lags)
    return f"worst {worst:.1f} ms, p99 {p99:.1f} ms, median {median:.2f} ms; late > 10 ms {late10}, > 50 ms {late50}"


async def measure(args: argparse.Namespace, engine: dockerd.Engine, dev: str) -> None:
    import hsflowd_py
    from hsflowd_py.agent import Agent
    from hsflowd_py.config import parse_config

    conf = (
        f"sflow {{ polling = {args.polling} checkAdaptors = 1 collector {{ ip = 127.0.0.1 udpport = 9 }}"
        f" docker {{ socket = {engine.socket} }} pcap {{ dev = {dev} sampling = {args.sampling} }}"
        " tcp { udp = on } }"
    )
    agent = Agent(parse_config(conf))
    task = asyncio.create_task(agent.run())
    began = time.monotonic()
    starting_lags: list[float] = []
    dog = Watchdog()
    starting = asyncio.create_task(lateness(began + 300, starting_lags, dog))
    while time.monotonic() - began < 300:
        await asyncio.sleep(0.5)
        docker = agent.modules.get("docker")
        if docker is not None and len(docker.containers) >= args.containers:
            break
    docker = agent.modules["docker"]
    tracked, count = time.monotonic() - began, len(docker.containers)
    starting.cancel()
    start_lags, start_where, dog.where = list(starting_lags), dog.where, {}
    await asyncio.sleep(args.polling)  # one round: every container polled once on its phase
    before = dict(agent.stats)
    until = time.monotonic() + args.seconds
    sender = threading.Thread(target=traffic, args=(args.v, args.seconds, args.pps), daemon=True)
    sender.start()
    lags = await lateness(until, [], dog)
    dog.stop()
    sender.join()
    after = dict(agent.stats)
    agent.request_stop()
    await task
    delta = {key: after[key] - before.get(key, 0) for key in ("counter_samples", "flow_samples", "enrich_timeouts")}
    print(f"agent code: {Path(hsflowd_py.__file__).parent}")
    print(f"{count} containers tracked {tracked:.1f} s after the start; polling = {args.polling}; "
          f"{args.pps} packets/s sampled 1-in-{args.sampling}, tcp {{ udp = on }}; {os.cpu_count()} CPUs")  # fmt: skip
    print(f"loop stall while the containers were being tracked: {summary(start_lags)}")
    for where, count in sorted(start_where.items(), key=lambda item: -item[1])[:5]:
        print(f"  stalled > 50 ms {count}x in {where}")
    print(f"loop stall over {args.seconds:g} s after one more polling round: {summary(lags)}")
    for where, count in sorted(dog.where.items(), key=lambda item: -item[1])[:5]:
        print(f"  stalled > 50 ms {count}x in {where}")
    print(f"meanwhile: {delta['counter_samples']} counter samples, {delta['flow_samples']} flow samples, "
          f"{delta['enrich_timeouts']} enrich timeouts")  # fmt: skip


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--containers", type=int, default=200)
    p.add_argument("--pps", type=int, default=100_000)
    p.add_argument("--sampling", type=int, default=100)
    p.add_argument("--polling", type=int, default=10)
    p.add_argument("--seconds", type=float, default=30)
    args = p.parse_args()
    if os.geteuid() != 0:
        sys.exit("needs root: namespaces, raw sockets, the Docker engine")
    engine = dockerd.Engine()
    engine.start()
    dockerd.ensure_busybox_image(engine)
    ids: list[str] = []
    try:
        started = time.monotonic()
        started_ids = start_containers(engine, f"stall-{os.getpid()}", args.containers, ["sleep", "3600"])
        ids += [cid for cid, _ in started_ids.values()]
        print(f"started {len(ids)} containers in {time.monotonic() - started:.0f} s")
        args.containers = len(ids)  # tracked: at least these (other sessions' containers are tracked too)
        with veth_pair("stal", ipv6=False) as v:
            args.v = v
            server = subprocess.Popen(
                v.exec("iperf3", "-s", "-p", str(PORT)), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
            )
            try:
                time.sleep(0.5)
                asyncio.run(measure(args, engine, v.host_dev))
            finally:
                server.terminate()
                server.wait(10)
    finally:
        for i in range(0, len(ids), 50):
            engine.docker("rm", "-f", *ids[i : i + 50], check=False)
        engine.stop()


if __name__ == "__main__":
    main()
