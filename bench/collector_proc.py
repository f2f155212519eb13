"""``sflowtool-py --prometheus`` as a process for the benchmarks: its ports, its metrics, its memory and CPU."""

from __future__ import annotations

import os
import random
import re
import socket
import subprocess
import sys
import urllib.request
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families


class CollectorProcess:
    """The collector on a UDP port and a loopback HTTP port it picks itself, optionally pinned to one CPU."""

    def __init__(self, *flags: str, cpu: int | None = None) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "hsflowd_py.collector", "-p", "0", "--prometheus", "127.0.0.1:0", *flags],
            stderr=subprocess.PIPE,
            text=True,
        )
        if cpu is not None:
            os.sched_setaffinity(self.proc.pid, {cpu})
        self.udp = self.http = 0
        assert self.proc.stderr is not None
        while not (self.udp and self.http):
            line = self.proc.stderr.readline()
            if not line:
                sys.exit(f"the collector exited: {self.proc.wait()}")
            if m := re.search(r"listening on UDP \S*:(\d+)$", line.strip()):
                self.udp = int(m.group(1))
            if m := re.search(r"metrics on http://127.0.0.1:(\d+)/", line):
                self.http = int(m.group(1))

    def body(self) -> bytes:
        return urllib.request.urlopen(f"http://127.0.0.1:{self.http}/metrics", timeout=60).read()

    def metrics(self) -> dict[str, float]:
        """Every sample, keyed by its name and labels as Prometheus shows them."""
        out: dict[str, float] = {}
        for family in text_string_to_metric_families(self.body().decode()):
            for s in family.samples:
                labels = ",".join(f'{k}="{v}"' for k, v in sorted(s.labels.items()))
                out[f"{s.name}{{{labels}}}" if labels else s.name] = s.value
        return out

    def status_kib(self, field: str) -> int:
        """VmRSS (now) or VmHWM (peak) in KiB."""
        text = Path(f"/proc/{self.proc.pid}/status").read_text()
        return int(re.search(rf"{field}:\s+(\d+) kB", text).group(1))  # type: ignore[union-attr]

    def cpu_seconds(self) -> float:
        fields = Path(f"/proc/{self.proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def _udp_socket(self) -> list[str]:
        """The collector's UDP socket's line of /proc/net/udp6 (else udp), split."""
        for table in ("/proc/net/udp6", "/proc/net/udp"):
            for line in Path(table).read_text().splitlines()[1:]:
                parts = line.split()
                if int(parts[1].rsplit(":", 1)[1], 16) == self.udp:
                    return parts
        sys.exit(f"no UDP socket on port {self.udp}")

    def udp_drops(self) -> int:
        """The kernel's drop count for the collector's UDP socket."""
        return int(self._udp_socket()[-1])

    def udp_queued(self) -> int:
        """Bytes waiting in the collector's socket buffer."""
        return int(self._udp_socket()[4].split(":")[1], 16)

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(30)


def spoofed_loopback_senders(count: int, seed: int) -> list[socket.socket]:
    """UDP sockets bound to random addresses of 127.0.0.0/8: as many apparent senders as asked,
    all on this machine (the same seed gives the same addresses, run after run)."""
    rng = random.Random(seed)
    out = []
    for _ in range(count):
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.bind((f"127.{rng.randrange(1, 255)}.{rng.randrange(0, 256)}.{rng.randrange(1, 255)}", 0))
        out.append(s)
    return out
