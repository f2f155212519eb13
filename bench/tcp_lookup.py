"""CPU cost per flow sample with and without ``tcp { }``, on frames of live connections.

Frames of real TCP connections (root namespace -> a sink in a test namespace,
data out and ACKs back) are captured off the veth, then fed to an in-process
agent the way a sampler does (``FlowPath.interface(...).emit``), in bursts of
``--burst`` samples per loop iteration, through encoding and UDP delivery to a
local socket.  With ``tcp { }`` each sample takes the enriched path: parse,
local test, a sock_diag look-up (merged with in-flight ones for the same
socket), the core's hold, the 2209 record.  The connections stay open, so
every look-up finds its socket.

Reported: the module's own CPU per sample (enrich() and the replies, no core);
the agent process's CPU time (user + system, which includes the
kernel's side of the netlink look-ups) per sample, the share of samples that
got 2209, look-ups per sample (what merging saved), the plain parse cost, and
per round the tcp path's cost over the plain path's.

With ``--old DIR`` (a ``git archive`` of another commit) each round also runs that tree's agent on
the same frames: every run of a round, old and new, is then a child process of its own (``CHILD``),
so that both are measured alike.  ``--profile`` prints where the tcp path's time goes (cProfile of
one in-process run).

    .venv/bin/python bench/tcp_lookup.py [--samples 20000] [--burst 20] [--connections 8] [--old DIR] [--profile]
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import json
import os
import pickle
import pstats
import socket
import subprocess
import sys
import tempfile
import time
import timeit
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from netns import VethNamespace
from packets import sampled_packet
from tcp_traffic import Capture, Frame, sink

from hsflowd_py.agent import Agent
from hsflowd_py.config import parse_config
from hsflowd_py.flow import DIRECTION_IN, DIRECTION_OUT, Interface
from hsflowd_py.modules.tcp import TcpModule
from hsflowd_py.packet import parse

ROOT = Path(__file__).resolve().parent.parent
PORT = 5260
CHILD = """
import asyncio, json, pickle, sys
sys.path[:0] = ["tests", "bench"]
import tcp_lookup
with open(sys.argv[1], "rb") as f:
    frames, ifindex, samples, burst, with_tcp = pickle.load(f)
print(json.dumps(asyncio.run(tcp_lookup.run(frames, ifindex, samples, burst, with_tcp))))
"""
"""One ``run`` in a fresh process of the tree it starts in (its ``hsflowd_py`` first on the path)."""


def capture_frames(link: VethNamespace, clients: list[socket.socket], want: int) -> list[Frame]:
    frames: list[Frame] = []
    with Capture(link.host_dev) as cap:
        while len(frames) < want:
            for c in clients:
                c.sendall(bytes(20000))
            while (f := cap.read(0.05)) is not None and len(frames) < want:
                flow = parse(f.data, 1)
                if flow is not None and flow.proto == 6 and PORT in (flow.sport, flow.dport):
                    frames.append(f)
    return frames


async def run(frames: list[Frame], ifindex: int, samples: int, burst: int, with_tcp: bool) -> dict[str, float]:
    collector = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    collector.bind(("127.0.0.1", 0))
    collector.setblocking(False)
    loop = asyncio.get_running_loop()
    loop.add_reader(collector.fileno(), lambda: collector.recv(65536))
    target = f"collector {{ ip = 127.0.0.1 udpport = {collector.getsockname()[1]} }}"
    conf = f"sflow {{ {target} {'tcp { }' if with_tcp else ''} }}"
    agent = Agent(parse_config(conf))
    agent.apply_settings()
    await agent._sync_modules()
    await asyncio.sleep(0.1)
    tcp = agent.modules.get("tcp")
    annotated_before = tcp.stats["annotated"] if tcp else 0
    n = len(frames)
    emit = agent.flows.interface(ifindex, 10, True).emit
    t0 = time.process_time()
    w0 = time.perf_counter()
    for i in range(samples):
        f = frames[i % n]
        emit(
            sample_pool=0, drops=0, direction=DIRECTION_OUT if f.outgoing else DIRECTION_IN, frame_length=f.length + 4,
            header=f.data, start=0, length=len(f.data), timestamp_ns=time.time_ns(),
        )  # fmt: skip
        if i % burst == burst - 1:
            await asyncio.sleep(0)
    await agent.flows.held.drain()
    agent.flush()
    cpu = time.process_time() - t0
    wall = time.perf_counter() - w0
    out = {"cpu_us": cpu / samples * 1e6, "wall_s": wall, "samples": agent.stats["flow_samples"]}
    if tcp:
        out["annotated"] = (tcp.stats["annotated"] - annotated_before) / samples
        out["lookups_per_sample"] = tcp.stats["lookups"] / samples
        out["timeouts"] = agent.stats["enrich_timeouts"]
    for m in list(agent.modules.values()):
        await agent._stop_module(m)
    agent.receivers.close()
    loop.remove_reader(collector.fileno())
    collector.close()
    return out


async def enrich_alone(frames: list[Frame], ifindex: int, samples: int, burst: int) -> float:
    """CPU per sample of the module by itself, as the flow path asks it when it is the only enricher: the
    answer from the header (``at_once``), else parse, local test, look-up, reply, 2209 record (no core, no
    encoding)."""
    settings = parse_config("sflow { collector { ip = 127.0.0.1 } tcp { } }")
    module = TcpModule(Agent(settings).context, settings)
    await module.start()
    (enricher,) = module.enrichers()
    interface = Interface(ifindex, 10)
    n = len(frames)
    t0 = time.process_time()
    for start in range(0, samples, burst):
        holds = []
        for i in range(start, min(start + burst, samples)):
            f = frames[i % n]
            if enricher.at_once(interface, f.data, 0, len(f.data)) is not None:
                continue
            packet = sampled_packet(ifindex, f.data, rate=10, frame_length=f.length + 4, header_bytes=len(f.data))
            if (hold := enricher.enrich(packet)) is not None:
                holds.append(hold)
        await asyncio.gather(*holds)
        await asyncio.sleep(0)  # a turn of the loop, as between a sampler's bursts: first look-ups are answered
    cpu = time.process_time() - t0
    await module.stop()
    return cpu / samples * 1e6


def run_in(tree: Path, job: Path) -> dict[str, float]:
    """``run`` of the job pickled at ``job``, by the agent of source tree ``tree`` (``CHILD``)."""
    out = subprocess.run([sys.executable, "-c", CHILD, str(job)], cwd=tree, capture_output=True, text=True)
    if out.returncode:
        sys.exit(f"the run in {tree} failed:\n{out.stderr[-2000:]}")
    return json.loads(out.stdout.splitlines()[-1])


def profile(frames: list[Frame], ifindex: int, samples: int, burst: int) -> None:
    """Where the tcp path's time goes: cProfile of one in-process run, the top functions by own time."""
    prof = cProfile.Profile()
    prof.enable()
    asyncio.run(run(frames, ifindex, samples, burst, True))
    prof.disable()
    pstats.Stats(prof).sort_stats("tottime").print_stats(20)


def print_run(label: str, res: dict[str, float], plain: float | None) -> None:
    extra = ""
    if "annotated" in res:
        extra = (
            f"  {res['cpu_us'] / plain:.2f}x plain;" if plain else ""
        ) + (
            f" 2209 on {res['annotated']:.1%}, {res['lookups_per_sample']:.2f} look-ups/sample,"
            f" {res['timeouts']} held samples timed out"
        )  # fmt: skip
    print(f"{label}: {res['cpu_us']:.2f} us CPU per sample ({res['samples']} samples in {res['wall_s']:.2f} s){extra}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--samples", type=int, default=20000)
    ap.add_argument("--burst", type=int, default=20, help="samples handed over per loop iteration")
    ap.add_argument("--connections", type=int, default=8)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--old", type=Path, help="also run each round with the agent of this source tree")
    ap.add_argument("--profile", action="store_true", help="print where the tcp path's time goes")
    args = ap.parse_args()
    if os.geteuid() != 0:
        sys.exit("needs root (network namespace, AF_PACKET)")
    with VethNamespace("tcpb", 46) as link, sink(link, PORT):
        clients = [socket.create_connection((link.ns_ip, PORT)) for _ in range(args.connections)]
        try:
            frames = capture_frames(link, clients, 2000)
            outgoing = sum(f.outgoing for f in frames)
            print(f"{len(frames)} frames of {args.connections} connections ({outgoing} outgoing)")
            parse_us = timeit.timeit(lambda: [parse(f.data, 1) for f in frames], number=5) / (5 * len(frames)) * 1e6
            print(f"parse(): {parse_us:.2f} us per header")
            alone = asyncio.run(enrich_alone(frames, link.host_ifindex, args.samples, args.burst))
            print(f"the tcp module alone (enrich, look-up, reply, record): {alone:.2f} us CPU per sample")
            if args.profile:
                profile(frames, link.host_ifindex, args.samples, args.burst)
            trees = [(" (old)", args.old.resolve()), ("", ROOT)] if args.old else []
            with tempfile.TemporaryDirectory() as tmp:
                jobs = {}
                for with_tcp in (False, True):
                    jobs[with_tcp] = Path(tmp, f"job-{with_tcp}.pickle")
                    jobs[with_tcp].write_bytes(
                        pickle.dumps((frames, link.host_ifindex, args.samples, args.burst, with_tcp))
                    )
                for r in range(args.rounds):
                    for name, tree in trees or [("", None)]:
                        plain = None
                        for with_tcp in (False, True):
                            if tree is None:
                                res = asyncio.run(run(frames, link.host_ifindex, args.samples, args.burst, with_tcp))
                            else:
                                res = run_in(tree, jobs[with_tcp])
                            label = f"round {r + 1} {'tcp {}' if with_tcp else 'no tcp'}{name}"
                            print_run(f"{label:<22}", res, plain)
                            plain = res["cpu_us"]
        finally:
            for c in clients:
                c.close()


if __name__ == "__main__":
    main()
