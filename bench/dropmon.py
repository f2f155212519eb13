"""What dropmon { } costs: the agent's CPU per discard sample, the agent at a flood of drops with the
default limit, and the kernel-side cost of the BPF program per dropped packet.

UDP to a closed port in a namespace (a NO_SOCKET drop each) is sent from the root namespace, in two
cases, each with the real agent as its own process sending to a sink socket here that counts the
discard samples it receives:

* ``paced``: ``--paced`` drops a second, under ``limit = 10000``, so every drop is a sample: the
  agent's CPU time over the run divided by the samples received is its cost per discard sample;
* ``flood``: one sender as fast as it goes, under the default ``limit = 100`` (``max`` raised so the
  circuit breaker does not stop the module): the agent's CPU a second while the kernel drops a few
  hundred thousand packets a second.

The kernel's counts: drops from Udp NoPorts in the namespace; the program's own cost from the
kernel's BPF statistics (``kernel.bpf_stats_enabled`` is set for the run and restored; run_time_ns
over run_cnt of the attached program, which runs for every freed packet with a drop reason, drops
the limit refuses included).  The agent's CPU from /proc/PID/schedstat.

Needs root and the built BPF object; take the heavy lock (the machine is shared):

    flock /tmp/hsflowd-heavy.lock .venv/bin/python bench/dropmon.py [--seconds 5] [--paced 2000]
"""

from __future__ import annotations

import argparse
import json
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT))

from netns import VethNamespace  # noqa: E402
from procs import start_agent  # noqa: E402

from hsflowd_py.sflow.codec import decode_datagram  # noqa: E402
from hsflowd_py.sflow.samples import DiscardSample  # noqa: E402

PROGRAM = "hsflowd_kfree_s"
"""The program's name as the kernel keeps it (15 characters; bpftool may print all of hsflowd_kfree_skb)."""
PORT = 7100


class Sink:
    """A UDP socket counting the discard samples that arrive, on a thread."""

    def __init__(self) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.settimeout(0.2)
        self.port = self.sock.getsockname()[1]
        self.discards = 0
        self.stopped = False
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        while not self.stopped:
            try:
                data = self.sock.recv(65536)
            except TimeoutError:
                continue
            self.discards += sum(isinstance(s, DiscardSample) for s in decode_datagram(data).samples)

    def close(self) -> None:
        self.stopped = True
        self.thread.join()
        self.sock.close()


def cpu_ns(pid: int) -> int:
    return int(Path(f"/proc/{pid}/schedstat").read_text().split()[0])


def program_stats() -> tuple[int, int]:
    """run_time_ns and run_cnt of the attached dropmon program."""
    progs = json.loads(subprocess.run(["bpftool", "-j", "prog", "show"], capture_output=True, check=True).stdout)
    for p in progs:
        if p.get("name", "").startswith(PROGRAM):
            return p.get("run_time_ns", 0), p.get("run_cnt", 0)
    raise SystemExit(f"no BPF program {PROGRAM} loaded: did the agent start dropmon?")


def no_ports(v: VethNamespace) -> int:
    text = subprocess.run(v.exec("cat", "/proc/net/snmp"), capture_output=True, text=True, check=True).stdout
    rows = [line.split() for line in text.splitlines() if line.startswith("Udp:")]
    return int(rows[1][rows[0].index("NoPorts")])


def send(v: VethNamespace, seconds: float, pps: int | None) -> None:
    """UDP to the closed port for ``seconds``: ``pps`` a second, or as fast as one sender goes."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        start = time.monotonic()
        sent = 0
        while (now := time.monotonic()) < start + seconds:
            if pps is None:
                for _ in range(200):
                    s.sendto(b"x", (v.ns_ip, PORT))
                continue
            due = int((now - start) * pps)
            while sent < due:
                s.sendto(b"x", (v.ns_ip, PORT))
                sent += 1
            time.sleep(0.001)


def case(v: VethNamespace, tmp: Path, name: str, block: str, seconds: float, pps: int | None) -> None:
    sink = Sink()
    conf = tmp / f"{name}.conf"
    conf.write_text(
        f"sflow {{\n polling = 0\n collector {{ ip = 127.0.0.1 udpport = {sink.port} }}\n dropmon {{ {block} }}\n}}\n"
    )
    agent = start_agent(conf, tmp / f"{name}.auto")
    try:
        deadline = time.monotonic() + 20
        while not any("dropmon: BPF program" in line for line in agent.stderr):
            if time.monotonic() > deadline:
                raise SystemExit("".join(agent.stderr)[-2000:])
            time.sleep(0.1)
        time.sleep(1.0)
        run0, cnt0 = program_stats()
        drops0, cpu0, samples0, t0 = no_ports(v), cpu_ns(agent.p.pid), sink.discards, time.monotonic()
        send(v, seconds, pps)
        time.sleep(0.5)  # the last drain
        elapsed = time.monotonic() - t0
        drops, cpu = no_ports(v) - drops0, cpu_ns(agent.p.pid) - cpu0
        samples = sink.discards - samples0
        run, cnt = program_stats()
    finally:
        agent.stop()
        sink.close()
    runs = cnt - cnt0
    print(f"{name}: {block}")
    print(f"  drops (Udp NoPorts)       {drops:>10} in {elapsed:.1f} s = {drops / elapsed:,.0f}/s")
    print(f"  discard samples received  {samples:>10} = {samples / elapsed:,.1f}/s")
    print(f"  agent CPU                 {cpu / 1e9:>10.3f} s = {100 * cpu / 1e9 / elapsed:.1f}% of a core")
    if samples:
        print(f"  agent CPU per sample      {cpu / samples / 1e3:>10.1f} us")
    if runs:
        print(f"  BPF program runs          {runs:>10}, {(run - run0) / runs:.0f} ns each (kernel.bpf_stats_enabled)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--paced", type=int, default=2000, help="drops a second in the paced case")
    args = parser.parse_args()
    stats = Path("/proc/sys/kernel/bpf_stats_enabled")
    before = stats.read_text().strip()
    stats.write_text("1")
    try:
        with VethNamespace("dmb", subnet=94, ipv6=False) as v:
            tmp = Path(subprocess.run(["mktemp", "-d"], capture_output=True, text=True, check=True).stdout.strip())
            case(v, tmp, "paced", "limit = 10000 max = 100000000", args.seconds, args.paced)
            case(v, tmp, "flood", "limit = 100 max = 100000000", args.seconds, None)
            subprocess.run(["rm", "-rf", str(tmp)], check=False)
    finally:
        stats.write_text(before)
    print("(a shared 2-core machine: other processes add noise)")


if __name__ == "__main__":
    main()
