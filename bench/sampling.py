"""What packet sampling costs, end to end: 64-byte UDP across a veth pair, the real agent sampling it.

For each sampler and rate (1-in-10, 1-in-2), the agent runs as its own
process with ``pcap { dev = <host end of the veth> }`` and sends to a sink process that
counts the flow samples it receives.  iperf3 sends 64-byte frames (18 bytes of UDP payload)
from the root namespace into a namespace at a fixed rate.  Printed per run:

* packets: the interface's own packet count over the run, and the last sample's pool;
* expected (packets / N) and delivered (flow samples the sink received) samples;
* the agent's CPU time over the traffic (``/proc/PID/schedstat``, nanoseconds) and per
  delivered sample;
* what that CPU time goes on: the agent's wake-ups per second over the traffic (its threads'
  voluntary context switches: each costs it 150-300 µs of CPU on this project's machines) and
  the datagrams it sent (its status at stop; each one ~5.5 µs of its CPU in the kernel, which
  delivers a datagram to a collector on the same host in the sender's context);
* the agent's peak RSS (VmHWM);
* the run time of the agent's eBPF programs (all packets) per delivered sample, as the kernel
  counts it with ``kernel.bpf_stats_enabled`` (set for the runs, then restored): the part of the
  sampling done in the kernel on whichever CPU carried the packet, which the agent's CPU leaves out;
* the whole machine's busy CPU seconds over the traffic window, without the agent (a
  baseline run of the same traffic) and with it.  Sampling work done in softirq context
  (the tc program, the cBPF filter, cloning egress packets for AF_PACKET) never shows in
  the agent's own CPU time: the machine's total is where it shows.

Samplers: ``cbpf`` (classic BPF), ``core`` (eBPF from the BPF object built with the package,
loaded through libbpf in the agent's process) and ``ebpf`` (the same program compiled by bcc in a
child process); the last two are ``sampler = ebpf`` with ``HSFLOWD_PY_EBPF_LOADER`` set to
``libbpf`` or ``bcc``.

Other processes on the machine add noise to the machine's total; runs vary by about ±20%.
Needs root, iperf3, the built BPF object for ``core``, bcc with the running kernel's headers
for ``ebpf``.

With ``--old DIR`` each case also runs the agent from another source tree (``git archive`` of an
earlier commit, with ``hsflowd_py/modules`` a symlink to its ``modules`` and its BPF object
built), rows marked (old): old and new figures from one run, on the same traffic.

With ``--idle SECONDS`` each run also measures the agent for that long before the traffic, the link
quiet: its CPU (ms per second) and wake-ups per second while it has nothing to sample.

With ``--tcp`` each case also runs with ``tcp { udp = on }`` added (rows marked +tcp): the tcp
module then parses every sample and looks its socket up over sock_diag (the iperf3 client's UDP
socket; UDP sockets have no tcp_info, so no 0:2209 is added, but the look-up, its merging and the
sample's hold cost the same as for TCP).  ``bench/tcp_lookup.py`` measures TCP traffic with 2209.
With ``--docker`` each case also runs with ``docker { }`` (rows marked +docker): no markTraffic, so
the module adds no enricher and the samples should cost what they cost without it (the engine
need not run: the module only retries its connection in the background).

    .venv/bin/python bench/sampling.py [--seconds 20] [--pps 104000] [--samplers cbpf,core,ebpf] [--rates 10,2]
        [--tcp] [--docker] [--old DIR] [--idle SECONDS]
"""

from __future__ import annotations

import argparse
import contextlib
import math
import os
import re
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

from netns import VethNamespace  # noqa: E402
from pcap_netns import veth_pair  # noqa: E402

PAYLOAD = 18
"""UDP payload bytes of a 64-byte frame: 14 Ethernet + 20 IPv4 + 8 UDP + 18 + 4 FCS."""
PORT = 5239
EBPF_LOADERS = {"core": ("libbpf", "loaded through libbpf"), "ebpf": ("bcc", "compiled and loaded by bcc")}
"""Bench sampler name: the eBPF loader the agent is allowed, and what its log says when it used it."""

SINK = r"""
import socket, struct, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.setsockopt(socket.SOL_SOCKET, 33, 32 << 20)  # SO_RCVBUFFORCE (root), not in the socket module
s.bind(("127.0.0.1", 0))
print(s.getsockname()[1], flush=True)
unpack = struct.Struct(">II").unpack_from
flow = struct.Struct(">IIIIIIII").unpack_from
samples = pool = drops = 0
s.settimeout(None)
while True:
    b = s.recv(65536)
    if b == b"stop":
        break
    off = 28 if unpack(b, 4)[0] == 1 else 40
    for _ in range(struct.unpack_from(">I", b, off - 4)[0]):
        tag, length = unpack(b, off)
        if tag == 3:
            samples += 1
            pool, drops = flow(b, off)[6], flow(b, off)[7]
        off += 8 + length
print(samples, pool, drops, flush=True)
"""


@dataclass
class Run:
    label: str
    packets: int
    pool: int
    expected: float
    delivered: int
    drops: int
    agent_cpu_s: float
    rss_mb: float
    machine_cpu_s: float
    baseline_cpu_s: float
    sink_cpu_s: float
    sent: int
    wakeups: float
    """The agent's voluntary context switches per second over the traffic."""
    datagrams: int
    idle_ms: float = 0.0
    """With ``--idle``: the agent's CPU ms per second, and its wake-ups per second, before the traffic."""
    idle_wakeups: float = 0.0
    bpf_cpu_s: float = 0.0
    """The agent's eBPF programs' run time over the traffic (kernel.bpf_stats_enabled), on whichever CPU
    ran them: the kernel's part of the sampling, which the agent's CPU does not include."""


def busy_seconds() -> float:
    """The whole machine's non-idle CPU time (all CPUs), from /proc/stat."""
    fields = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    user, nice, system, idle, iowait, irq, softirq, steal = fields[:8]
    return (user + nice + system + irq + softirq + steal) / os.sysconf("SC_CLK_TCK")


def cpu_ns(pid: int) -> int:
    """CPU time of every thread of a process (schedstat: nanoseconds on CPU)."""
    return sum(
        int(Path(f"/proc/{pid}/task/{t}/schedstat").read_text().split()[0]) for t in os.listdir(f"/proc/{pid}/task")
    )


def wakeups(pid: int) -> int:
    """Voluntary context switches of every thread of a process: how often it went to sleep, so was woken."""
    total = 0
    for t in os.listdir(f"/proc/{pid}/task"):
        for line in Path(f"/proc/{pid}/task/{t}/status").read_text().splitlines():
            if line.startswith("voluntary_ctxt_switches:"):
                total += int(line.split()[1])
    return total


def bpf_run_ns(pid: int) -> int:
    """The run time of the BPF programs a process holds descriptors of (their fdinfo's run_time_ns, counted
    while kernel.bpf_stats_enabled is 1)."""
    total = 0
    for fd in os.listdir(f"/proc/{pid}/fdinfo"):
        try:
            info = Path(f"/proc/{pid}/fdinfo/{fd}").read_text()
        except OSError:
            continue
        total += sum(int(line.split()[1]) for line in info.splitlines() if line.startswith("run_time_ns:"))
    return total


@contextlib.contextmanager
def bpf_stats() -> Iterator[None]:
    """BPF programs' run time counted (kernel.bpf_stats_enabled) while the runs are measured."""
    knob = Path("/proc/sys/kernel/bpf_stats_enabled")
    before = knob.read_text().strip()
    knob.write_text("1")
    try:
        yield
    finally:
        knob.write_text(before)


def packets(dev: str) -> int:
    base = Path("/sys/class/net", dev, "statistics")
    return int((base / "rx_packets").read_text()) + int((base / "tx_packets").read_text())


def traffic(v: VethNamespace, seconds: float, pps: int, own_session: bool = False) -> None:
    """``own_session``: the sender in a session (so a scheduler autogroup) of its own, apart from the caller's."""
    subprocess.run(
        [
            "iperf3",
            "-u",
            "-c",
            v.ns_ip,
            "-p",
            str(PORT),
            "-l",
            str(PAYLOAD),
            "-b",
            str(pps * PAYLOAD * 8),
            "-t",
            str(seconds),
        ],
        check=True,
        capture_output=True,
        start_new_session=own_session,
    )


def baseline(v: VethNamespace, seconds: float, pps: int) -> tuple[int, float]:
    before, busy = packets(v.host_dev), busy_seconds()
    traffic(v, seconds, pps)
    return packets(v.host_dev) - before, busy_seconds() - busy


def wait_for(proc: subprocess.Popen[str], log: Path, text: str, timeout: float = 60) -> str:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        for line in log.read_text().splitlines():
            if text in line:
                return line
        if proc.poll() is not None:
            break
        time.sleep(0.1)
    sys.exit(f"the agent never logged {text!r}:\n{log.read_text()[-2000:]}")


VARIANTS = {"tcp": "tcp { udp = on }", "docker": "docker { }"}
"""Module blocks a run may add to ``pcap {}`` (``--tcp``, ``--docker``): the row's label says which."""


def measure(
    v: VethNamespace,
    kind: str,
    rate: int,
    seconds: float,
    pps: int,
    tmp: Path,
    variant: str = "",
    tree: Path = ROOT,
    idle: float = 0,
) -> Run:
    """One run: the same traffic without the agent (the machine's baseline), then with it."""
    _, baseline_busy = baseline(v, seconds, pps)
    sink = subprocess.Popen([sys.executable, "-c", SINK], stdout=subprocess.PIPE, text=True)
    assert sink.stdout is not None
    port = int(sink.stdout.readline())
    old = " (old)" if tree != ROOT else ""
    name = f"{kind}-{rate}{'-' + variant if variant else ''}{'-old' if old else ''}"
    conf = tmp / f"{name}.conf"
    conf.write_text(
        f"sflow {{ polling = 0 collector {{ ip = 127.0.0.1 udpport = {port} }} "
        f"pcap {{ dev = {v.host_dev} sampling = {rate} sampler = {'cbpf' if kind == 'cbpf' else 'ebpf'} }} "
        f"{VARIANTS.get(variant, '')} }}"
    )
    log = tmp / f"{name}.log"
    args = ["-m", "hsflowd_py", "-d", "-P", "-f", str(conf), "-o", str(tmp / "auto"), "-s", str(tmp / "status.sock")]
    env = dict(os.environ)
    if kind in EBPF_LOADERS:
        env["HSFLOWD_PY_EBPF_LOADER"] = EBPF_LOADERS[kind][0]
    with open(log, "w") as err:
        agent = subprocess.Popen([sys.executable, *args], stderr=err, cwd=tree, text=True, env=env)
    try:
        line = wait_for(agent, log, f"sampling {v.host_dev} ")
    except SystemExit:  # the sink too: left running, it would hold the caller's pipe open
        sink.kill()
        agent.kill()
        raise
    try:
        if kind in EBPF_LOADERS and ("eBPF" not in line or EBPF_LOADERS[kind][1] not in log.read_text()):
            sink.kill()
            sys.exit(f"the {kind} eBPF sampler is unavailable: {log.read_text()[-1000:]}")
        time.sleep(1)
        idle_cpu, idle_woken = cpu_ns(agent.pid), wakeups(agent.pid)
        time.sleep(idle)
        idle_cpu, idle_woken = cpu_ns(agent.pid) - idle_cpu, wakeups(agent.pid) - idle_woken
        start_packets = packets(v.host_dev)
        cpu0, sink0, busy0, woken0 = cpu_ns(agent.pid), cpu_ns(sink.pid), busy_seconds(), wakeups(agent.pid)
        bpf0 = bpf_run_ns(agent.pid)
        traffic(v, seconds, pps)
        time.sleep(1.2)  # the last blocks retire, the last drain runs, the last datagram is flushed
        cpu1, sink1, busy1, woken1 = cpu_ns(agent.pid), cpu_ns(sink.pid), busy_seconds(), wakeups(agent.pid)
        bpf1 = bpf_run_ns(agent.pid)
        rss = int(
            next(
                x for x in Path(f"/proc/{agent.pid}/status").read_text().splitlines() if x.startswith("VmHWM")
            ).split()[1]
        )
        count = packets(v.host_dev) - start_packets
    finally:
        agent.terminate()
        agent.wait(10)
    stopped = re.search(r"'flow_samples': (\d+)", log.read_text())
    datagrams = re.search(r"'datagrams_sent': (\d+)", log.read_text())
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.sendto(b"stop", ("127.0.0.1", port))
    delivered, pool, drops = (int(x) for x in sink.communicate(timeout=30)[0].split())
    return Run(
        f"{kind} 1-in-{rate}{' +' + variant if variant else ''}{old}",
        count,
        pool,
        count / rate,
        delivered,
        drops,
        (cpu1 - cpu0) / 1e9,
        rss / 1024,
        busy1 - busy0,
        baseline_busy,
        (sink1 - sink0) / 1e9,
        int(stopped.group(1)) if stopped else -1,
        (woken1 - woken0) / (seconds + 1.2),
        int(datagrams.group(1)) if datagrams else -1,
        idle_cpu / 1e6 / idle if idle else 0.0,
        idle_woken / idle if idle else 0.0,
        (bpf1 - bpf0) / 1e9,
    )


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    p.add_argument("--seconds", type=float, default=20)
    p.add_argument("--pps", type=int, default=104_000)
    p.add_argument("--samplers", default="cbpf,core,ebpf")
    p.add_argument("--rates", default="10,2")
    p.add_argument("--tcp", action="store_true", help="also run each case with tcp { udp = on }")
    p.add_argument("--docker", action="store_true", help="also run each case with docker { } (no markTraffic)")
    p.add_argument("--old", type=Path, help="also run each case with the agent from this source tree")
    p.add_argument("--idle", type=float, default=0, help="also measure the agent this many seconds before the traffic")
    a = p.parse_args()
    if os.geteuid() != 0:
        sys.exit("needs root: namespaces, raw sockets, BPF")
    with veth_pair("pcbn", ipv6=False) as v, tempfile.TemporaryDirectory() as tmp, bpf_stats():
        server = subprocess.Popen(
            v.exec("iperf3", "-s", "-p", str(PORT)), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        try:
            time.sleep(0.5)
            print(f"{a.pps} packets/s of 64-byte UDP for {a.seconds:g} s across a veth pair; {os.cpu_count()} CPUs\n")
            runs = [
                measure(v, kind, int(rate), a.seconds, a.pps, Path(tmp), variant, tree, a.idle)
                for kind in a.samplers.split(",")
                for rate in a.rates.split(",")
                for variant in ("", *(name for name in VARIANTS if getattr(a, name)))
                for tree in ([a.old.resolve(), ROOT] if a.old else [ROOT])
            ]
        finally:
            server.terminate()
            server.wait(10)
    head = (
        f"{'run':<26}{'packets':>9}{'pool':>9}{'expected':>9}{'±sd':>6}{'sent':>8}{'delivered':>10}{'%':>8}"
        f"{'drops':>6}{'agent CPU s':>12}{'µs/sample':>10}{'RSS MB':>7}{'machine CPU s':>14}{'baseline':>9}"
        f"{'sink CPU s':>11}{'wakes/s':>8}{'datagrams':>10}{'BPF µs/sample':>14}"
    ) + (f"{'idle ms/s':>10}{'idle wakes/s':>13}" if a.idle else "")
    print(head)
    for r in runs:
        rate = r.packets / r.expected
        sigma = math.sqrt(r.packets * (1 / rate) * (1 - 1 / rate))
        print(
            f"{r.label:<26}{r.packets:>9}{r.pool:>9}{r.expected:>9.0f}{sigma:>6.0f}{r.sent:>8}{r.delivered:>10}"
            f"{100 * r.delivered / r.expected:>7.2f}%{r.drops:>6}{r.agent_cpu_s:>12.3f}"
            f"{1e6 * r.agent_cpu_s / max(r.delivered, 1):>10.2f}{r.rss_mb:>7.1f}{r.machine_cpu_s:>14.2f}"
            f"{r.baseline_cpu_s:>9.2f}{r.sink_cpu_s:>11.3f}{r.wakeups:>8.1f}{r.datagrams:>10}"
            f"{1e6 * r.bpf_cpu_s / max(r.delivered, 1):>14.2f}"
            + (f"{r.idle_ms:>10.2f}{r.idle_wakeups:>13.1f}" if a.idle else "")
        )
    print(
        "\nexpected is packets / N; the kernel draws each packet at random, so delivered varies around it by ±sd"
        "\n(binomial) even when nothing is lost: what the agent lost shows in sent vs delivered and in drops."
        "\nBPF µs/sample: the agent's eBPF programs' run time (all packets, sampled or not) per delivered sample,"
        "\ncounted by the kernel on the CPUs that ran them, not in the agent's CPU (0 for classic BPF)."
    )


if __name__ == "__main__":
    main()
