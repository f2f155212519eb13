"""Processes the tests start: the agent and the bundled collector, stopped by pid."""

from __future__ import annotations

import json
import os
import queue
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent


def free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def terminate(p: subprocess.Popen[Any], timeout: float = 10, sig: int = signal.SIGTERM) -> None:
    """Stop a process this test started, by its pid: ``sig``, then SIGKILL if it outlives ``timeout``."""
    if p.poll() is not None:
        return
    os.kill(p.pid, sig)
    try:
        p.wait(timeout)
    except subprocess.TimeoutExpired:
        os.kill(p.pid, signal.SIGKILL)
        p.wait()


class Proc:
    """A child process whose stdout lines are read on a thread; stopped by its own pid."""

    def __init__(self, args: list[str], env: dict[str, str] | None = None) -> None:
        self.args = args
        self.p = subprocess.Popen(
            args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env={**os.environ, **(env or {})}
        )
        self.lines: queue.Queue[str] = queue.Queue()
        self.stderr: list[str] = []
        threading.Thread(target=self._pump, args=(self.p.stdout, self.lines.put), daemon=True).start()
        threading.Thread(target=self._pump, args=(self.p.stderr, self.stderr.append), daemon=True).start()

    @staticmethod
    def _pump(stream: Any, sink: Any) -> None:
        for line in stream:
            sink(line)

    def lines_until(self, deadline_s: float, quiet_s: float | None = None) -> Iterator[str]:
        """Lines until ``deadline_s`` from now, or (with ``quiet_s``) until none came for that long: a
        process still catching up on a backlog (a collector behind its socket buffer on a loaded
        machine) is waited for as long as it keeps writing, within the deadline."""
        end = time.monotonic() + deadline_s
        while (left := end - time.monotonic()) > 0:
            try:
                yield self.lines.get(timeout=left if quiet_s is None else min(left, quiet_s))
            except queue.Empty:
                return

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 10) -> int:
        terminate(self.p, timeout, sig)
        time.sleep(0.05)
        return self.p.returncode

    def __enter__(self) -> Proc:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def python(*args: str) -> list[str]:
    return [sys.executable, *args]


def start_collector(port: int, *flags: str) -> Proc:
    c = Proc(python("-m", "hsflowd_py.collector", "-p", str(port), *flags))
    time.sleep(0.5)
    return c


def start_agent(config: Path, auto: Path, *flags: str, drop_root: bool = False, wrapper: tuple[str, ...] = ()) -> Proc:
    """The agent in the foreground; its status socket beside ``auto``; root kept unless ``drop_root``.

    ``wrapper`` runs it under another command, e.g. ``setpriv`` to take capabilities away."""
    args = ["-d", "-f", str(config), "-o", str(auto), "-s", str(auto.parent / "status.sock")]
    if not drop_root:
        args.append("-P")
    return Proc([*wrapper, *python("-m", "hsflowd_py", *args, *flags)])


def json_datagrams(proc: Proc, deadline_s: float, quiet_s: float | None = None) -> Iterator[dict[str, Any]]:
    for line in proc.lines_until(deadline_s, quiet_s):
        line = line.strip()
        if line.startswith("{"):
            yield json.loads(line)
