"""Datagrams per second the bundled collector decodes, prints and exports, on one core.

Two workloads, each a list of real datagram bytes:

* ``agent``: the reference captures of hsflowd (mostly flow samples, five to
  a datagram, with host and interface counter samples), replayed as they are;
* ``flows``: datagrams of eight flow samples each, every sample a new flow
  (random addresses and ports), the worst case for the exporter's top-N
  flow tables.

In-process (pinned to one CPU, no socket): decoding alone, decoding plus
each output (text, JSON, ``-l``, ``-t``) written to /dev/null, and decoding
plus the Prometheus exporter's bookkeeping.  Then the real process over UDP
on loopback: ``sflowtool-py --prometheus`` pinned to one CPU, fed as fast as
the sender can go for a few seconds; its own datagram counter (read over
HTTP) over the time gives what it kept up with, and what the sender sent
minus that is what the kernel dropped.  Run as root to let the collector
raise its socket buffer.

First, the issue's end-to-end figure: ``sflowtool-py -r`` on ``host-flows.pcap``
repeated 100 times (13,900 datagrams), text, JSON and ``-l`` lines to /dev/null, the best of
three runs; with ``--before DIR`` the same for another checkout (e.g. ``git
worktree add /tmp/before 21b9cc3``) and with ``--sflowtool PATH`` for the real
sflowtool, in the same run, so the ratios hold on a shared machine.  Before that, the same
capture exported to Prometheus, by this checkout and the ``--before`` one: through ``-r FILE
--prometheus 127.0.0.1:0`` (the collector's ``main``), and each datagram handed to the collector
as it receives one (decode and export only), in a fresh process with its imports done;
datagrams per second of wall time and of the process's CPU time, which on a shared box is the
fairer of the two (another process on the core stretches the wall time, not the CPU time).
``--export`` prints only this.

    .venv/bin/python bench/collector.py [--seconds 3] [--before DIR] [--sflowtool PATH] [--export]
"""

from __future__ import annotations

import argparse
import ipaddress
import os
import random
import re
import socket
import struct
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path

from hsflowd_py.collector.cli import DEFAULT_EXPIRY
from hsflowd_py.collector.exporter.state import ExportState
from hsflowd_py.collector.jsonout import format_json
from hsflowd_py.collector.outputs import LineOutput, ViewOutput
from hsflowd_py.collector.pcapfile import read_pcap
from hsflowd_py.collector.pcapout import PcapWriter
from hsflowd_py.collector.text import Received, format_text
from hsflowd_py.sflow.codec import decode_datagram, encode_datagram
from hsflowd_py.sflow.records import ExtendedTimestamp, SampledHeader
from hsflowd_py.sflow.samples import Datagram, FlowSample

VECTORS = Path(__file__).resolve().parent.parent.parent / "shared" / "vectors"
RECEIVED = Received("192.0.2.1", 1_700_000_000, 0)


def agent_workload() -> list[bytes]:
    out: list[bytes] = []
    for pcap in sorted(VECTORS.glob("*.pcap")):
        with open(pcap, "rb") as f:
            out.extend(p.payload for p in read_pcap(f))
    if not out:
        sys.exit(f"no reference captures in {VECTORS}")
    return out


def flows_workload(count: int = 2000, per_datagram: int = 8) -> list[bytes]:
    rng = random.Random(3)
    out = []
    for n in range(count):
        samples = []
        for _ in range(per_datagram):
            src, dst = rng.getrandbits(32).to_bytes(4), rng.getrandbits(32).to_bytes(4)
            ip = struct.pack(">BBHHHBBH4s4s", 0x45, 0, 1486, 0, 0, 64, 6, 0, src, dst)
            tcp = struct.pack(">HHIIHHHH", rng.randrange(1024, 65536), 443, 0, 0, 0x5010, 512, 0, 0)
            frame = bytes.fromhex("020000000001020000000002") + b"\x08\x00" + ip + tcp + bytes(60)
            records = [ExtendedTimestamp(time.time_ns()), SampledHeader(1, 1504, 4, frame)]
            samples.append(FlowSample(0, 3, 1000, n * 1000, 0, 3, 0x3FFFFFFF, records, n))
        out.append(encode_datagram(Datagram(ipaddress.ip_address("192.0.2.8"), 100000, n + 1, n, samples)))
    return out


class _Counts:
    datagrams = 0
    errors = 0


def rate(payloads: list[bytes], handle: Callable[[bytes], None], seconds: float) -> float:
    done, start = 0, time.perf_counter()
    while (elapsed := time.perf_counter() - start) < seconds:
        for payload in payloads:
            handle(payload)
        done += len(payloads)
    return done / elapsed


def in_process(payloads: list[bytes], seconds: float) -> dict[str, float]:
    devnull = open(os.devnull, "w")  # noqa: SIM115 - closed at the end
    devnull_bytes = open(os.devnull, "wb")  # noqa: SIM115
    outputs = {
        "text": ViewOutput(devnull, format_text),
        "json": ViewOutput(devnull, format_json),
        "lines (-l)": LineOutput(devnull),
        "pcap (-t)": PcapWriter(devnull_bytes),
    }
    figures = {"decode only": rate(payloads, decode_datagram, seconds)}
    for name, output in outputs.items():
        figures[f"decode + {name}"] = rate(
            payloads, lambda p, o=output: o.write(decode_datagram(p), len(p), RECEIVED), seconds
        )
    state = ExportState(_Counts(), flows=100, expiry=DEFAULT_EXPIRY, now=time.monotonic())
    exporting = lambda p: state.observe(decode_datagram(p, state.read), time.monotonic())  # noqa: E731
    figures["decode + exporter"] = rate(payloads, exporting, seconds)
    devnull.close()
    devnull_bytes.close()
    return figures


def over_udp(payloads: list[bytes], seconds: float) -> tuple[float, float]:
    """(datagrams/s the process took in, share the kernel dropped) with the sender flat out."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "hsflowd_py.collector", "-p", "0", "--prometheus", "127.0.0.1:0"],
        stderr=subprocess.PIPE,
        text=True,
    )
    os.sched_setaffinity(proc.pid, {0})
    ports: dict[str, int] = {}
    assert proc.stderr is not None
    while len(ports) < 2:
        line = proc.stderr.readline()
        if m := re.search(r"listening on UDP \S*:(\d+)$", line.strip()):
            ports["udp"] = int(m.group(1))
        if m := re.search(r"metrics on http://127.0.0.1:(\d+)/", line):
            ports["http"] = int(m.group(1))

    def taken_in() -> int:
        text = urllib.request.urlopen(f"http://127.0.0.1:{ports['http']}/metrics").read().decode()
        return int(float(re.search(r"^sflow_collector_datagrams_total (\S+)$", text, re.M).group(1)))  # type: ignore[union-attr]

    sent = 0
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        start = time.perf_counter()
        while time.perf_counter() - start < seconds:
            for payload in payloads:
                s.sendto(payload, ("127.0.0.1", ports["udp"]))
            sent += len(payloads)
        time.sleep(1.0)  # let it drain its socket buffer
        got = taken_in()
        elapsed = time.perf_counter() - start - 1.0
    proc.terminate()
    proc.wait()
    return got / elapsed, 1 - got / sent


def repeated_capture(times: int = 100) -> tuple[Path, int]:
    """host-flows.pcap with its packets repeated: (path of a temporary pcap, datagrams in it)."""
    raw = (VECTORS / "host-flows.pcap").read_bytes()
    with open(VECTORS / "host-flows.pcap", "rb") as f:
        count = sum(1 for _ in read_pcap(f))
    fd, name = tempfile.mkstemp(suffix=".pcap")
    with os.fdopen(fd, "wb") as out:
        out.write(raw[:24] + raw[24:] * times)
    return Path(name), count * times


def read_rate(command: list[str], cwd: str | None, datagrams: int) -> float:
    """Datagrams per second of a ``-r`` run to /dev/null, best of three."""
    best = float("inf")
    for _ in range(3):
        start = time.perf_counter()
        subprocess.run(command, cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True)
        best = min(best, time.perf_counter() - start)
    return datagrams / best


def end_to_end(before: str | None, sflowtool: str | None) -> None:
    capture, datagrams = repeated_capture()
    try:
        tools = {"sflowtool-py": ([sys.executable, "-m", "hsflowd_py.collector"], None)}
        if before:
            tools["sflowtool-py before"] = ([sys.executable, "-m", "hsflowd_py.collector"], before)
        if sflowtool:
            tools["sflowtool"] = ([sflowtool], None)
        print(f"-r host-flows.pcap x100 ({datagrams:,} datagrams) to /dev/null, best of 3:")
        for fmt, flags in (("text", []), ("JSON", ["-j"]), ("-l", ["-l"])):
            rates = {
                name: read_rate([*cmd, "-r", str(capture), *flags], cwd, datagrams)
                for name, (cmd, cwd) in tools.items()
            }
            shown = "  ".join(f"{name} {rate:,.0f}/s" for name, rate in rates.items())
            ours = rates["sflowtool-py"]
            ratios = [f"{ours / rates[other]:.2f}x {other}" for other in rates if other != "sflowtool-py"]
            print(f"  {fmt:<5} {shown}" + (f"  (sflowtool-py = {', '.join(ratios)})" if ratios else ""))
    finally:
        capture.unlink()


_EXPORT = """
import contextlib, io, os, sys, time
from hsflowd_py.collector import cli
from hsflowd_py.collector.exporter.state import ExportState
from hsflowd_py.collector.pcapfile import read_pcap
from hsflowd_py.collector.text import Received
capture, runs = sys.argv[1], int(sys.argv[2])
os.sched_setaffinity(0, {int(sys.argv[3])})
def best(run):
    wall = cpu = float("inf")
    for _ in range(runs):
        w, c = time.perf_counter(), time.process_time()
        run()
        wall, cpu = min(wall, time.perf_counter() - w), min(cpu, time.process_time() - c)
    return wall, cpu
def read():
    with contextlib.redirect_stderr(io.StringIO()):
        assert cli.main(["-r", capture, "--prometheus", "127.0.0.1:0"]) == 0
with open(capture, "rb") as f:
    packets = [(p.payload, f"{p.source}:{p.source_port}") for p in read_pcap(f)]
received = Received("-", 0, 0, 0, 0)
class Counts:
    datagrams = errors = 0
def each():
    state = ExportState(Counts(), flows=100, expiry=300.0, now=time.monotonic())
    collector = cli.Collector(io.StringIO(), None, None, state)
    for payload, origin in packets:
        collector.datagram(payload, origin, received)
    assert collector.errors == 0 and state.failures == 0
print(*best(read), *best(each))
"""
"""Times, inside a process whose imports are done (so that any checkout on ``PYTHONPATH`` runs the
same measurement): ``sflowtool-py -r FILE --prometheus`` (its ``main``), and each datagram of the
file handed to the collector as it receives one, with the exporter only (``Collector.datagram``:
decode and export, no pcap reading)."""


def export_times(tree: Path, capture: Path, runs: int = 5) -> list[float]:
    """Wall and CPU seconds of the best of ``runs`` passes over ``capture`` by ``tree``: ``-r``, then in-process."""
    env = {**os.environ, "PYTHONPATH": str(tree)}
    cpu = "1" if (os.cpu_count() or 1) > 1 else "0"
    out = subprocess.run(
        [sys.executable, "-c", _EXPORT, str(capture), str(runs), cpu], env=env, cwd=tree, capture_output=True,
        text=True, check=True,
    ).stdout.split()
    return [float(x) for x in out]


def export(before: str | None) -> None:
    capture, datagrams = repeated_capture()
    try:
        trees = {"sflowtool-py": Path(__file__).resolve().parent.parent}
        if before:
            trees["sflowtool-py before"] = Path(before).resolve()
        times = {name: export_times(tree, capture) for name, tree in trees.items()}
        print(f"host-flows.pcap x100 ({datagrams:,} datagrams) exported to Prometheus, best of 5, datagrams/s:")
        for i, what in enumerate(("-r FILE --prometheus", "each datagram, decoded and exported")):
            print(f"  {what}:")
            for name, figures in times.items():
                wall, cpu = figures[2 * i : 2 * i + 2]
                ratio = ""
                if name != "sflowtool-py":
                    ours = times["sflowtool-py"][2 * i : 2 * i + 2]
                    ratio = f"  (sflowtool-py = {wall / ours[0]:.2f}x wall, {cpu / ours[1]:.2f}x CPU)"
                print(f"    {name:<20} {datagrams / wall:>9,.0f} wall  {datagrams / cpu:>9,.0f} CPU{ratio}")
    finally:
        capture.unlink()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--before", metavar="DIR", help="a checkout of another revision to time alongside")
    parser.add_argument("--sflowtool", metavar="PATH", help="the real sflowtool binary to time alongside")
    parser.add_argument("--export", action="store_true", help="only the -r --prometheus figures")
    args = parser.parse_args()
    os.sched_setaffinity(0, {1 if os.cpu_count() and os.cpu_count() > 1 else 0})  # type: ignore[operator]
    export(args.before)
    if args.export:
        return
    end_to_end(args.before, args.sflowtool)
    for name, payloads in (("agent", agent_workload()), ("flows", flows_workload())):
        samples = sum(len(decode_datagram(p).samples) for p in payloads)
        print(f"workload {name}: {len(payloads)} datagrams, {samples / len(payloads):.1f} samples each")
        for what, figure in in_process(payloads, args.seconds).items():
            print(f"  {what:<22} {figure:>9,.0f} datagrams/s  {figure * samples / len(payloads):>10,.0f} samples/s")
        kept, dropped = over_udp(payloads, args.seconds)
        shown = f"{kept:>9,.0f} datagrams/s  ({dropped:.0%} dropped by the kernel, sender flat out)"
        print(f"  {'process over UDP':<22} {shown}")


if __name__ == "__main__":
    main()
