"""How long the agent's loop stalls with many containers, packet sampling under load and tcp on.

Starts N busybox containers (default 200, ``sleep``) in the test engine (``tests/dockerd.py``), a
veth pair into a namespace of its own, and the agent in this process with
``docker { }``, ``pcap { dev = <the root end> sampling = --sampling }``, ``tcp { udp = on }``,
``polling = --polling`` and ``checkAdaptors = 1``; iperf3 sends ``--pps`` packets/s of 64-byte
UDP frames across the pair while a task that asks to wake every millisecond records how late each
wake-up is, and a watchdog thread notes where the loop was in each stall over 50 ms.  Printed: the
stall from the agent's start until pcap samples its interface (the eBPF program's load included;
``--dropmon`` adds ``dropmon { }`` and its program's load), then while the containers are being
tracked (``--containers 0``: none started, for the start alone), and over ``--seconds`` after one
more polling round (worst, 99th percentile, median, wake-ups late by more than 10 and 50 ms, where
the loop was), and what the agent counted meanwhile (counter and flow samples, enrich timeouts: a sample held for tcp
that the agent's own stall made late), and the machine's CPU pressure over the window (how often
some task waited for a CPU).  ``--diagnose`` adds, per stall, each thread's CPU and run-queue wait
(``/proc/self/task/*/schedstat``), the steal, the gc collections and where the other threads were:
a stall in which the loop's thread waited on the run queue and no other thread of ours ran is the
machine descheduling it, one in which another of our threads ran is the interpreter lock.
``--trace`` says, for each wake-up late by more than 30 ms, which threads of the whole machine
ran meanwhile (``sched_trace.py``: a perf trace of the context switches): whose work took the CPUs.

iperf3 runs in a session of its own (so in a scheduler autogroup of its own, as a host's
traffic is not the agent's); ``--traffic-session agent`` puts it in the agent's, where the
kernel gives the loop and the two busy iperf3 processes one autogroup's CPU time between them
(the agent's old setting; 25-267 ms stalls against 19-36 ms).  ``--slices 0,500000`` runs one
window per value with the loop's scheduler slice set to it first (``hsflowd_py/sched_slice.py``;
0 is the kernel's default), to compare them under the same load in one run.

To compare two revisions, run it again with the other one first on the path (a checkout with
``hsflowd_py/modules`` linked to its ``modules``)::

    git archive REV | tar -x -C /tmp/before && ln -s ../modules /tmp/before/hsflowd_py/modules
    PYTHONPATH=/tmp/before flock /tmp/hsflowd-heavy.lock .venv/bin/python bench/loop_stall.py

Needs root, iperf3 and Debian's docker.io.  Run under the heavy lock on a shared machine; it
removes its containers (by id) and its namespace at the end.

    flock /tmp/hsflowd-heavy.lock .venv/bin/python bench/loop_stall.py [--containers 200]
        [--pps 100000] [--sampling 100] [--polling 10] [--seconds 30] [--diagnose] [--trace]
        [--traffic-session own|agent] [--slices NS,NS,...] [--dropmon]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import math
import os
import statistics
import subprocess
import sys
import threading
import time
import traceback
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(1, str(ROOT / "bench"))

import dockerd  # noqa: E402 - the test engine lives beside the tests
from containers import start_containers  # noqa: E402
from pcap_netns import veth_pair  # noqa: E402
from sampling import PORT, traffic  # noqa: E402
from sched_trace import SchedTrace  # noqa: E402


class Threads:
    """Per-thread CPU and run-queue wait (``/proc/self/task/*/schedstat``: ns on a CPU, ns runnable
    but waiting for one) and the machine's steal time (``/proc/stat``): what tells a stall spent
    waiting for the interpreter lock (another of our threads on a CPU, the loop's thread asleep)
    from one spent descheduled (the loop's thread runnable, its wait growing, or the vCPU stolen)."""

    def __init__(self) -> None:
        self.fds: dict[int, int] = {}
        self.names: dict[int, str] = {}

    def snapshot(self) -> tuple[dict[int, tuple[int, int]], int]:
        for name in os.listdir("/proc/self/task"):
            tid = int(name)
            if tid not in self.fds:
                with contextlib.suppress(OSError):
                    self.fds[tid] = os.open(f"/proc/self/task/{tid}/schedstat", os.O_RDONLY)
        times: dict[int, tuple[int, int]] = {}
        for tid, fd in list(self.fds.items()):
            try:
                cpu, wait, _ = os.pread(fd, 128, 0).split()
                times[tid] = (int(cpu), int(wait))
            except (OSError, ValueError):
                os.close(self.fds.pop(tid))
        for t in threading.enumerate():
            if t.native_id is not None:
                self.names[t.native_id] = t.name
        with open("/proc/stat") as f:
            steal = int(f.readline().split()[8])
        return times, steal


class Watchdog:
    """A thread that, when the loop has not beaten for 50 ms, notes where the loop's thread is
    (its three innermost frames), once per stall: what the worst stalls were doing.  With
    ``diagnose`` it also notes, per stall, each thread's CPU and run-queue wait over the stall, the
    machine's steal, the collections of the garbage collector that ran in it, and where the other
    threads were (their innermost frame, every 5 ms of the stall)."""

    def __init__(self, diagnose: bool = False) -> None:
        self.beat = time.monotonic()
        self.where: dict[str, int] = {}
        self.stalls: list[str] = []
        self.threads: dict[str, int] = {}
        """Samples of where the other threads were, every 5 ms (``diagnose``)."""
        self.gc_pauses: list[tuple[float, float, int]] = []
        self._gc_began = 0.0
        self._loop_thread = threading.get_ident()
        self._loop_native = threading.get_native_id()
        self._diagnose = diagnose
        self._threads = Threads()
        self._stop = threading.Event()
        if diagnose:
            gc.callbacks.append(self._gc)
        threading.Thread(target=self._watch, name="watchdog", daemon=True).start()

    def _gc(self, phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            self._gc_began = time.monotonic()
        else:
            self.gc_pauses.append((self._gc_began, (time.monotonic() - self._gc_began) * 1000, info["generation"]))

    def _watch(self) -> None:
        stall: float | None = None  # the beat the loop missed, while it is stalled
        healthy = snap = self._threads.snapshot() if self._diagnose else None
        seen: dict[str, int] = {}
        me = threading.get_ident()
        while not self._stop.wait(0.005 if self._diagnose else 0.01):
            beat = self.beat
            late = time.monotonic() - beat > 0.05
            if self._diagnose:
                snap = self._threads.snapshot()
            if stall is not None and (not late or stall != beat):
                if self._diagnose:
                    self._explain(stall, healthy, snap, seen)
                stall, seen = None, {}
            if self._diagnose:
                self._sample_threads(me, seen if late else None)
            if not late:
                healthy = snap
                continue
            if stall is None:
                stall = beat
                frame = sys._current_frames().get(self._loop_thread)
                stack = traceback.extract_stack(frame)[-3:] if frame is not None else []
                key = " < ".join(f"{Path(f.filename).name}:{f.lineno} {f.name}" for f in reversed(stack)) or "?"
                self.where[key] = self.where.get(key, 0) + 1

    def _sample_threads(self, me: int, seen: dict[str, int] | None) -> None:
        """Where each other thread is (its two innermost frames), into ``threads``; into ``seen`` too
        during a stall."""
        names = {t.ident: t.name for t in threading.enumerate()}
        for ident, frame in sys._current_frames().items():
            if ident in (me, self._loop_thread):
                continue
            stack = [frame, frame.f_back] if frame.f_back is not None else [frame]
            where = " < ".join(f"{Path(f.f_code.co_filename).name}:{f.f_lineno} {f.f_code.co_name}" for f in stack)
            key = f"{names.get(ident, '?')}: {where}"
            self.threads[key] = self.threads.get(key, 0) + 1
            if seen is not None:
                seen[key] = seen.get(key, 0) + 1

    def _use(self, t0: dict[int, tuple[int, int]], t1: dict[int, tuple[int, int]]) -> list[tuple[float, float, str]]:
        """(CPU ms, run-queue wait ms, name) of each live thread between two snapshots, most CPU first."""
        used = []
        for tid, (cpu, wait) in t1.items():
            cpu0, wait0 = t0.get(tid, (0, 0))
            name = "LOOP" if tid == self._loop_native else self._threads.names.get(tid, str(tid))
            used.append(((cpu - cpu0) / 1e6, (wait - wait0) / 1e6, name))
        used.sort(reverse=True)
        return used

    def _explain(self, began: float, before: Any, after: Any, seen: dict[str, int]) -> None:
        (t0, steal0), (t1, steal1) = before, after
        lasted = (time.monotonic() - began) * 1000
        used = self._use(t0, t1)
        cpu_text = ", ".join(f"{n} cpu {c:.0f} wait {w:.0f}" for c, w, n in used if c >= 1 or w >= 1 or n == "LOOP")
        gcs = [f"gen{g} {ms:.0f} ms" for at, ms, g in self.gc_pauses if at >= began - 0.01 and ms >= 1]
        top = sorted(seen.items(), key=lambda item: -item[1])[:3]
        self.stalls.append(
            f"~{lasted:.0f} ms: {cpu_text}; steal {(steal1 - steal0) * 10} ms; gc {gcs or 'none'}; others at {top}"
        )

    def cpu(self) -> tuple[dict[int, tuple[int, int]], float]:
        """Each live thread's CPU and wait (ns), and the process's CPU seconds (ended threads too)."""
        times = os.times()
        return self._threads.snapshot()[0], times.user + times.system

    def cpu_since(self, before: tuple[dict[int, tuple[int, int]], float]) -> str:
        """CPU (and run-queue wait) each thread used since ``before``, and what ended threads used."""
        (t0, total0), (t1, total1) = before, self.cpu()
        used = self._use(t0, t1)
        ended = (total1 - total0) * 1000 - sum(c for c, _, _ in used)
        text = ", ".join(f"{n} {c:.0f} ms (wait {w:.0f})" for c, w, n in used if c >= 5 or n == "LOOP")
        return f"{text}; threads that ended meanwhile ~{ended:.0f} ms; process {(total1 - total0) * 1000:.0f} ms"

    def stop(self) -> None:
        self._stop.set()


SPAN_MS = 30
"""Wake-ups later than this are the stalls ``--trace`` explains."""


def cpu_pressure_us() -> int:
    """Microseconds in which some runnable task of the machine waited for a CPU (PSI ``some``)."""
    with open("/proc/pressure/cpu") as f:
        return int(f.readline().rsplit("total=", 1)[1])


async def lateness(
    until: float, lags: list[float], dog: Watchdog, spans: list[tuple[float, float]] | None = None
) -> list[float]:
    """Milliseconds each 1 ms sleep overran, added to ``lags`` until ``until`` (monotonic); the
    wake-ups late by more than ``SPAN_MS`` as (due, woken) into ``spans``."""
    while (start := time.monotonic()) < until:
        dog.beat = start
        await asyncio.sleep(0.001)
        woke = time.monotonic()
        lags.append((woke - start - 0.001) * 1000)
        if spans is not None and lags[-1] > SPAN_MS:
            spans.append((start + 0.001, woke))
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

    dropmon = " dropmon { }" if args.dropmon else ""
    conf = (
        f"sflow {{ polling = {args.polling} checkAdaptors = 1 collector {{ ip = 127.0.0.1 udpport = 9 }}"
        f" docker {{ socket = {engine.socket} }} pcap {{ dev = {dev} sampling = {args.sampling} }}"
        f" tcp {{ udp = on }}{dropmon} }}"
    )
    agent = Agent(parse_config(conf))
    task = asyncio.create_task(agent.run())
    began = time.monotonic()
    starting_lags: list[float] = []
    dog = Watchdog(args.diagnose)
    starting = asyncio.create_task(lateness(began + 300, starting_lags, dog))
    sampled: tuple[float, int] | None = None  # when pcap first sampled, and the wake-ups until then
    while time.monotonic() - began < 300:
        await asyncio.sleep(0.05)
        pcap, docker = agent.modules.get("pcap"), agent.modules.get("docker")
        if sampled is None and pcap is not None and pcap.open:
            sampled = time.monotonic() - began, len(starting_lags)
        if sampled is not None and docker is not None and len(docker.containers) >= args.containers:
            break
    docker = agent.modules["docker"]
    tracked, count = time.monotonic() - began, len(docker.containers)
    starting.cancel()
    assert sampled is not None, "pcap never sampled its interface"
    loader = getattr(agent.modules["pcap"].samplers.get("ebpf"), "loaded", None)
    print(f"agent code: {Path(hsflowd_py.__file__).parent}")
    print(f"{count} containers tracked {tracked:.1f} s after the start; polling = {args.polling}; "
          f"{args.pps} packets/s sampled 1-in-{args.sampling}, tcp {{ udp = on }}{dropmon}; "
          f"{os.cpu_count()} CPUs")  # fmt: skip
    print(f"loop stall from the agent's start until pcap sampled {dev} ({sampled[0]:.1f} s, eBPF loaded by "
          f"{loader.loader if loader else 'nothing'}): {summary(starting_lags[: sampled[1]])}")  # fmt: skip
    if len(starting_lags) > sampled[1]:
        print(f"loop stall from then until the containers were tracked: {summary(starting_lags[sampled[1] :])}")
    report_stalls(dog)
    await lateness(time.monotonic() + args.polling, [], dog)  # one round: every container polled once
    for slice_ns in args.slices or [None]:
        await window(args, agent, dog, slice_ns)
    dog.stop()
    agent.request_stop()
    await task


def report_stalls(dog: Watchdog) -> None:
    """Where the loop was in the stalls the watchdog saw since the last report, and what ran."""
    for where, count in sorted(dog.where.items(), key=lambda item: -item[1])[:5]:
        print(f"  stalled > 50 ms {count}x in {where}")
    for stall in dog.stalls:
        print(f"  stall {stall}")
    dog.where, dog.stalls, dog.threads = {}, [], {}


async def window(args: argparse.Namespace, agent: Any, dog: Watchdog, slice_ns: int | None) -> None:
    """One window of ``--seconds`` with traffic; ``slice_ns`` (not None): the loop's scheduler slice
    asked for first (0: the kernel's default)."""
    if slice_ns is not None:
        from hsflowd_py.sched_slice import request_slice

        refused = request_slice(slice_ns)
        print(f"the loop's slice: {'default' if slice_ns == 0 else f'{slice_ns / 1e6:g} ms'} ({refused or 'asked'})")
    cpu_before, pressure_before = dog.cpu(), cpu_pressure_us()
    before = dict(agent.stats)
    modules_before = {name: agent.modules[name].status() for name in ("pcap", "docker")}
    until = time.monotonic() + args.seconds
    own = args.traffic_session == "own"
    sender = threading.Thread(target=traffic, args=(args.v, args.seconds, args.pps, own), daemon=True)
    trace = SchedTrace() if args.trace else None
    sender.start()
    spans: list[tuple[float, float]] = []
    lags = await lateness(until, [], dog, spans)
    if trace is not None:
        dog.beat = math.inf  # perf writing its trace out is no stall of the agent's
        trace.stop()
    cpu_used = dog.cpu_since(cpu_before)
    contended = (cpu_pressure_us() - pressure_before) / 1e4 / args.seconds
    sender.join()
    delta = {key: agent.stats[key] - before[key] for key in ("counter_samples", "flow_samples", "enrich_timeouts")}
    print(f"loop stall over {args.seconds:g} s after a polling round: {summary(lags)}")
    report_stalls(dog)
    print(f"  the machine meanwhile: some task waited for a CPU {contended:.0f}% of the time (/proc/pressure/cpu)")
    if args.diagnose:
        print(f"  CPU over the {args.seconds:g} s by thread: {cpu_used}")
        for where, count in sorted(dog.threads.items(), key=lambda item: -item[1])[:12]:
            print(f"  {count * 5} ms sampled at {where}")
    if trace is not None:
        windows = trace.windows(spans, threading.get_native_id())
        total: dict[str, float] = {}
        for w in windows:
            print(f"  late > {SPAN_MS} ms, {w.text()}")
            for name, ms in w.ran.items():
                total[name.rsplit(" ", 1)[0]] = total.get(name.rsplit(" ", 1)[0], 0) + ms
        busy = sorted(total.items(), key=lambda item: -item[1])[:10]
        print(f"  over those {len(windows)} stalls, by command (ms): {', '.join(f'{n} {ms:.0f}' for n, ms in busy)}")
    for name in ("pcap", "docker"):
        counters = agent.modules[name].status()
        moved = {k: v - modules_before[name].get(k, 0) for k, v in counters.items() if isinstance(v, int)}
        print(f"  {name} counters that moved: {', '.join(f'{k} {v}' for k, v in moved.items() if v) or 'none'}")
    print(f"  meanwhile: {delta['counter_samples']} counter samples, {delta['flow_samples']} flow samples, "
          f"{delta['enrich_timeouts']} enrich timeouts")  # fmt: skip


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--containers", type=int, default=200)
    p.add_argument("--pps", type=int, default=100_000)
    p.add_argument("--sampling", type=int, default=100)
    p.add_argument("--polling", type=int, default=10)
    p.add_argument("--seconds", type=float, default=30)
    p.add_argument("--diagnose", action="store_true", help="per stall: threads' CPU and wait, steal, gc, frames")
    p.add_argument(
        "--traffic-session",
        choices=("own", "agent"),
        default="own",
        help="iperf3 in a session of its own (a host's traffic is not the agent's), or in the agent's (its autogroup)",
    )
    p.add_argument(
        "--slices",
        type=lambda text: [int(ns) for ns in text.split(",")],
        help="one window per value: the loop's scheduler slice in ns asked first (0: the default), e.g. 0,500000",
    )
    p.add_argument("--dropmon", action="store_true", help="dropmon { } too: its program loaded at start")
    p.add_argument("--trace", action="store_true", help=f"per wake-up late > {SPAN_MS} ms: what ran system-wide (perf)")
    args = p.parse_args()
    if os.geteuid() != 0:
        sys.exit("needs root: namespaces, raw sockets, the Docker engine")
    engine = dockerd.Engine()
    engine.start()
    dockerd.ensure_busybox_image(engine)
    ids: list[str] = []
    try:
        started = time.monotonic()
        if args.containers:
            started_ids = start_containers(engine, f"stall-{os.getpid()}", args.containers, ["sleep", "3600"])
            ids += [cid for cid, _ in started_ids.values()]
        print(f"started {len(ids)} containers in {time.monotonic() - started:.0f} s")
        args.containers = len(ids)  # tracked: at least these (other sessions' containers are tracked too)
        with veth_pair("stal", ipv6=False) as v:
            args.v = v
            server = subprocess.Popen(
                v.exec("iperf3", "-s", "-p", str(PORT)),
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                start_new_session=args.traffic_session == "own",
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
