"""Who ran on the machine's CPUs in given windows: a system-wide trace of the kernel's context switches.

``bench/loop_stall.py --trace`` asks this for each of its stalls.  Per-thread schedstat tells
that the loop's thread waited on the run queue; only the scheduler's own record tells what ran
instead, in whichever process (the traffic generator, dockerd, a shim, a kernel thread, another
session's work).  ``perf record -a -e sched:sched_switch`` with the monotonic clock gives every
switch on every CPU, so the span between two switches on a CPU belongs to the thread switched
out by the second; summed over a window it is each thread's share of the CPUs in that window.

Needs root and perf (Debian's linux-perf); the trace of a 30 s window at 100,000 packets/s is
some tens of megabytes in /tmp, removed when read.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import tempfile
from collections import defaultdict
from dataclasses import dataclass, field

SWITCH = re.compile(
    r"^\s*(?P<comm>.+?)\s+(?P<tid>\d+)/\d+\s+\[(?P<cpu>\d+)\]\s+(?P<time>[\d.]+):\s+"
    r"prev_comm=.* prev_pid=(?P<prev>\d+) prev_prio=(?P<prio>-?\d+) prev_state=(?P<state>\S+) ==> "
    r"next_comm=(?P<next_comm>.+) next_pid=(?P<next>\d+)"
)
"""One ``perf script`` line of sched_switch: the switched-out thread is the line's own (comm, tid)."""


@dataclass
class Window:
    """What ran in [begin, end] (monotonic seconds): CPU ms by ``comm tid``, and how the loop's
    thread left its CPU last before and during the window."""

    begin: float
    end: float
    ran: dict[str, float] = field(default_factory=lambda: defaultdict(float))
    loop_left: list[str] = field(default_factory=list)

    def text(self, top: int = 6) -> str:
        busy = sorted(self.ran.items(), key=lambda item: -item[1])[:top]
        ran = ", ".join(f"{name} {ms:.0f}" for name, ms in busy if ms >= 0.5)
        left = f"; the loop left its CPU {', '.join(self.loop_left[-3:])}" if self.loop_left else ""
        return f"{(self.end - self.begin) * 1000:.0f} ms: ran (ms, both CPUs) {ran}{left}"


class SchedTrace:
    """``perf record`` of every context switch from construction to :meth:`stop`."""

    def __init__(self) -> None:
        fd, self.path = tempfile.mkstemp(prefix="sched-", suffix=".data")
        os.close(fd)
        self._perf = subprocess.Popen(
            ["perf", "record", "-q", "-a", "-k", "CLOCK_MONOTONIC", "-e", "sched:sched_switch", "-o", self.path],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )

    def stop(self) -> None:
        self._perf.send_signal(signal.SIGINT)
        self._perf.wait(60)

    def windows(self, spans: list[tuple[float, float]], loop_tid: int) -> list[Window]:
        """Each span's :class:`Window`; the loop's thread is named ``LOOP``."""
        out = [Window(b, e) for b, e in sorted(spans)]
        script = subprocess.run(
            ["perf", "script", "-i", self.path, "-F", "comm,tid,pid,cpu,time,trace"],
            capture_output=True,
            text=True,
            check=False,
        ).stdout
        os.unlink(self.path)
        since: dict[int, float] = {}  # per CPU: when its current thread got it
        for line in script.splitlines():
            m = SWITCH.match(line)
            if m is None:
                continue
            cpu, now, tid = int(m["cpu"]), float(m["time"]), int(m["prev"])
            began = since.get(cpu)
            since[cpu] = now
            if began is None:
                continue
            name = "LOOP" if tid == loop_tid else "idle" if tid == 0 else f"{m['comm'].strip()} {tid}"
            for w in out:
                if w.begin > now:
                    break
                overlap = min(now, w.end) - max(began, w.begin)
                if overlap > 0:
                    w.ran[name] += overlap * 1000
                if tid == loop_tid and w.begin - 0.05 <= now <= w.end:
                    w.loop_left.append(f"{m['state']} at {(now - w.begin) * 1000:+.0f} ms to {m['next_comm'].strip()}")
        return out
