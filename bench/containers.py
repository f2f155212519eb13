"""The docker module's cost with many running containers: agent CPU per polling round, and RSS.

Starts N busybox containers (default 200, ``sleep``, on the default bridge) in the test engine
(``tests/dockerd.py``: Debian's dockerd on its own socket, vfs), then the real agent with
``polling = 10`` and ``docker { }`` sending to a UDP socket this script counts.  It prints:

* how long the agent took from start to tracking every container (one inspect, one cgroup and
  one namespace probe per container);
* over R polling rounds after that: the agent's CPU time (user + system, from
  /proc/<pid>/stat) per round and per container sample, the container samples received per
  round, and the agent's RSS;
* the event path under load: K more containers started and stopped while the N run, and how
  many of them got a first and a final sample.

Run as root; it removes the containers it started (by id) at the end.  Creating 200
containers on vfs takes a minute or two.

    .venv/bin/python bench/containers.py [--containers 200] [--rounds 3] [--churn 20]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

import dockerd  # noqa: E402 - the test engine lives beside the tests

POLLING = 10
SO_RCVBUFFORCE = 33
CLK_TCK = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


class Samples:
    """Decodes the agent's datagrams (with the bundled codec) and counts the container samples."""

    def __init__(self) -> None:
        from hsflowd_py.sflow.codec import decode_datagram

        self.decode = decode_datagram
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.setsockopt(socket.SOL_SOCKET, SO_RCVBUFFORCE, 8 << 20)  # root: a burst of samples must not drop
        self.sock.bind(("127.0.0.1", 0))
        self.sock.settimeout(0.2)
        self.port = self.sock.getsockname()[1]
        self.by_index: dict[int, list[tuple[float, int]]] = {}
        """ds_index → (arrival, vcpu_state) of each container sample."""
        self.names: dict[int, str] = {}

    def drain(self, seconds: float) -> None:
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            try:
                data = self.sock.recv(65536)
            except TimeoutError:
                continue
            now = time.monotonic()
            for s in self.decode(data).samples:
                if getattr(s, "ds_class", None) == 3:
                    by_format = {getattr(r, "FORMAT", 0): r for r in s.records}
                    self.by_index.setdefault(s.ds_index, []).append((now, by_format[2101].state))
                    self.names[s.ds_index] = by_format[2000].hostname

    def mine(self, prefix: str) -> dict[str, list[tuple[float, int]]]:
        return {self.names[i]: got for i, got in self.by_index.items() if self.names[i].startswith(prefix)}

    def count_between(self, start: float, end: float) -> int:
        return sum(1 for got in self.by_index.values() for at, _ in got if start <= at < end)


def start_containers(
    engine: dockerd.Engine, prefix: str, count: int, command: list[str]
) -> dict[str, tuple[str, float]]:
    """name → (id, when ``docker run`` returned)."""

    def one(i: int) -> tuple[str, tuple[str, float]]:
        name = f"{prefix}-{i}"
        cid = engine.docker("run", "-d", "--name", name, dockerd.BUSYBOX_IMAGE, *command).stdout.strip()
        return name, (cid, time.monotonic())

    with ThreadPoolExecutor(4) as pool:
        return dict(pool.map(one, range(count)))


def idle_rss(work: Path) -> float:
    """RSS of the agent without docker {}, for comparison."""
    conf = work / "bare.conf"
    conf.write_text("sflow { polling = 10 collector { ip = 127.0.0.1 udpport = 9 } }\n")
    cmd = [sys.executable, "-m", "hsflowd_py", "-d", "-f", str(conf), "-o", str(work / "bare.auto")]
    bare = subprocess.Popen([*cmd, "-s", str(work / "bare.sock")], stderr=subprocess.DEVNULL, cwd=ROOT)
    time.sleep(3)
    rss = rss_mib(bare.pid)
    bare.terminate()
    bare.wait(30)
    return rss


def launch_agent(work: Path, port: int, block: str) -> subprocess.Popen[bytes]:
    """The agent as its own process, polling every ``POLLING`` s with ``block`` (a module's config
    block) and sending to ``port`` on loopback; its log in ``work/agent.log``."""
    conf = work / "hsflowd.conf"
    conf.write_text(f"sflow {{ polling = {POLLING} collector {{ ip = 127.0.0.1 udpport = {port} }} {block} }}\n")
    cmd = [sys.executable, "-m", "hsflowd_py", "-d", "-f", str(conf), "-o", str(work / "auto")]
    with open(work / "agent.log", "w") as log:  # the child keeps its own descriptor
        return subprocess.Popen([*cmd, "-s", str(work / "status.sock")], stderr=log, stdout=log, cwd=ROOT)


def cpu_per_round(pid: int, samples: Samples, rounds: int) -> tuple[float, float]:
    """(agent CPU seconds, data-source samples received) per polling round over ``rounds`` rounds,
    after one round that lets the start-up settle (every poller on its random phase)."""
    samples.drain(POLLING)
    cpu0, t0 = cpu_seconds(pid), time.monotonic()
    samples.drain(POLLING * rounds)
    cpu1, t1 = cpu_seconds(pid), time.monotonic()
    measured = (t1 - t0) / POLLING
    return (cpu1 - cpu0) / measured, samples.count_between(t0, t1) / measured


def print_status(work: Path, module: str) -> None:
    """The module's self-telemetry, from the agent's status socket in ``work``."""
    status = subprocess.run(
        [sys.executable, "-m", "hsflowd_py", "--status", "-s", str(work / "status.sock")],
        capture_output=True,
        text=True,
        cwd=ROOT,
    )
    if status.returncode == 0:
        print(f"{module} module status:", json.dumps(json.loads(status.stdout)["modules"].get(module, {})))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--containers", type=int, default=200)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--churn", type=int, default=20)
    args = p.parse_args()

    engine = dockerd.Engine()
    engine.start()
    dockerd.ensure_busybox_image(engine)
    prefix = f"bench-{os.getpid()}"
    ids: list[str] = []
    agent = None
    try:
        t = time.monotonic()
        ids += [cid for cid, _ in start_containers(engine, prefix, args.containers, ["sleep", "3600"]).values()]
        print(f"started {len(ids)} containers in {time.monotonic() - t:.0f} s")
        others = len(engine.docker("ps", "-q").stdout.split()) - len(ids)

        samples = Samples()
        work = Path(tempfile.mkdtemp(prefix="hsflowd-bench-"))
        print(f"agent RSS without docker {{ }}: {idle_rss(work):.1f} MiB")
        launched = time.monotonic()
        agent = launch_agent(work, samples.port, f"docker {{ socket = {engine.socket} }}")
        expected = args.containers + others
        while len(samples.mine(prefix)) < args.containers and time.monotonic() - launched < 120:
            samples.drain(0.5)
        print(
            f"agent reported all {len(samples.mine(prefix))} containers {time.monotonic() - launched:.1f} s after it"
            f" was started (start-up, connection, list, {args.containers} inspects and probes, first tick);"
            f" {others} containers of other sessions too"
        )

        per_round, received = cpu_per_round(agent.pid, samples, args.rounds)
        print(
            f"polling = {POLLING}: {per_round * 1000:.0f} ms of agent CPU per round "
            f"({per_round / max(received, 1) * 1e6:.0f} us per container sample, "
            f"{per_round / POLLING * 100:.1f}% of one CPU), {received:.0f} container samples per round"
        )
        print(f"agent RSS {rss_mib(agent.pid):.1f} MiB with {expected} containers tracked")

        if args.churn:
            churn = start_containers(engine, f"{prefix}-churn", args.churn, ["sleep", "2"])
            ids += [cid for cid, _ in churn.values()]
            samples.drain(8)
            seen = samples.mine(f"{prefix}-churn")
            finals = sum(1 for got in seen.values() if got[-1][1] == 4)
            delays = [got[0][0] - churn[name][1] for name, got in seen.items()]
            print(
                f"churn: {args.churn} containers living 2 s started while {expected} ran: {len(seen)} reported,"
                f" {finals} closed by a final sample; first sample {min(delays, default=0):.2f} to"
                f" {max(delays, default=0):.2f} s after `docker run` returned"
            )
        print_status(work, "docker")
    finally:
        if agent is not None:
            agent.terminate()
            agent.wait(30)
            shutil.rmtree(work, ignore_errors=True)
        for i in range(0, len(ids), 50):
            engine.docker("rm", "-f", *ids[i : i + 50], check=False)
        engine.stop()  # one this run started (a reused engine is left running)


if __name__ == "__main__":
    main()
