"""The k8s module's cost with many pods: time to report them, agent CPU per polling round and per pod
sample, RSS; and pods that live one second.

Starts the test containerd (``tests/containerd.py``: Debian's containerd 1.6, CRI plugin, CNI bridge)
and N pods made over the CRI as kubelet makes them (default 200, each a pause sandbox and a
busybox ``sleep``), then the real agent with ``polling = 10`` and ``k8s { }`` sending to a UDP
socket this script decodes.  It prints:

* how long after its start the agent had reported every pod (connection, one listing, one status
  call, one cgroup and namespace probe per pod, first tick);
* over R polling rounds: the agent's CPU time per round and per pod sample, the pod samples per
  round, the agent's RSS (and its RSS without ``k8s { }``);
* K pods that live one second, started while the N run: how many were reported and closed by a
  final sample.

Run as root, under the heavy lock; everything is removed at the end.

    flock /tmp/hsflowd-heavy.lock .venv/bin/python bench/k8s_pods.py [--pods 200] [--rounds 3] [--brief 10]
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

import containerd  # noqa: E402 - the test runtime lives beside the tests
from containers import (  # noqa: E402 - bench/containers.py
    POLLING,
    Samples,
    cpu_per_round,
    idle_rss,
    launch_agent,
    print_status,
    rss_mib,
)
from cri_pods import Cri, Pod  # noqa: E402


def start_pods(cri: Cri, prefix: str, count: int, command: tuple[str, ...]) -> list[Pod]:
    with ThreadPoolExecutor(4) as pool:
        return list(pool.map(lambda i: cri.run_pod(f"{prefix}-{i}", "bench", command), range(count)))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--pods", type=int, default=200)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--brief", type=int, default=10)
    args = p.parse_args()
    prefix = f"bench{os.getpid()}"
    work = Path(tempfile.mkdtemp(prefix="hsflowd-bench-k8s-"))
    agent = None
    with containerd.running() as runtime:
        cri = Cri(runtime.socket)
        try:
            t = time.monotonic()
            start_pods(cri, prefix, args.pods, ("sleep", "3600"))
            print(f"started {args.pods} pods in {time.monotonic() - t:.0f} s")
            samples = Samples()
            print(f"agent RSS without k8s {{ }}: {idle_rss(work):.1f} MiB")
            launched = time.monotonic()
            agent = launch_agent(work, samples.port, f"k8s {{ unixsock = {runtime.socket} }}")
            while len(samples.mine(f"k8s__{prefix}")) < args.pods and time.monotonic() - launched < 120:
                samples.drain(0.1)
            print(
                f"agent reported all {len(samples.mine(f'k8s__{prefix}'))} pods"
                f" {time.monotonic() - launched:.1f} s after it was started"
            )

            per_round, received = cpu_per_round(agent.pid, samples, args.rounds)
            print(
                f"polling = {POLLING}: {per_round * 1000:.0f} ms of agent CPU per round"
                f" ({per_round / max(received, 1) * 1e6:.0f} us per pod sample, including the 0.5 s pod listings;"
                f" {per_round / POLLING * 100:.1f}% of one CPU), {received:.0f} pod samples per round"
            )
            print(f"agent RSS {rss_mib(agent.pid):.1f} MiB with {args.pods} pods tracked")

            if args.brief:
                brief_prefix = f"{prefix}b"
                brief = start_pods(cri, brief_prefix, args.brief, ("sleep", "3600"))
                time.sleep(1)
                with ThreadPoolExecutor(4) as pool:
                    list(pool.map(lambda pod: cri.remove_pod(pod.sandbox_id), brief))
                samples.drain(6)
                seen = samples.mine(f"k8s__{brief_prefix}")
                finals = sum(1 for got in seen.values() if got[-1][1] == 4)
                print(f"{args.brief} pods living ~1 s: {len(seen)} reported, {finals} closed by a final sample")
            print_status(work, "k8s")
        finally:
            if agent is not None:
                agent.terminate()
                agent.wait(30)
            cri.close()
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
