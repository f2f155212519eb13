"""What loading the eBPF sampler costs at start-up, per loader: libbpf (the object built with the package,
in this process) and bcc (compiled in a child process against the kernel's headers).

Each round runs in a fresh process (so that neither loader finds the other's libraries already
mapped) and prints the wall time of ``ebpf.load()``, the process's peak RSS before and after, and
the peak RSS and CPU time of its children (bcc's compiler process; libbpf has none).  Needs root
(loading BPF programs), and bcc with the running kernel's headers for its rows.

    .venv/bin/python bench/ebpf_load.py [--rounds 2] [--loaders libbpf,bcc]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

ROUND = """
import asyncio, resource, sys, time
from hsflowd_py.modules.pcap import ebpf
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
started = time.monotonic()
loaded = asyncio.run(ebpf.load())
wall = time.monotonic() - started
loaded.close()
me, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
print(f"{loaded.loader:<8}{wall * 1000:>8.0f}{before / 1024:>12.1f}{me.ru_maxrss / 1024:>12.1f}"
      f"{kids.ru_maxrss / 1024:>14.1f}{kids.ru_utime + kids.ru_stime:>14.2f}")
"""


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument("--loaders", default="libbpf,bcc")
    a = p.parse_args()
    if os.geteuid() != 0:
        sys.exit("needs root: loading BPF programs")
    print(f"{'loader':<8}{'load ms':>8}{'RSS MB then':>12}{'peak RSS MB':>12}{'child RSS MB':>14}{'child CPU s':>14}")
    for _ in range(a.rounds):
        for loader in a.loaders.split(","):
            env = {**os.environ, "HSFLOWD_PY_EBPF_LOADER": loader}
            r = subprocess.run([sys.executable, "-c", ROUND], env=env, cwd=ROOT, capture_output=True, text=True)
            print(r.stdout.rstrip() if r.returncode == 0 else f"{loader:<8}failed: {r.stderr.strip()[-300:]}")


if __name__ == "__main__":
    main()
