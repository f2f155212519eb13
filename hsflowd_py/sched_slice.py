"""A short scheduler slice for the agent's loop thread: the kernel's latency knob for fair tasks.

The loop sleeps most of the time and runs in bursts of well under a millisecond (a ring's
samples, a tick), but it shares the CPUs with whatever else the host runs: traffic, the
container engine, other daemons.  Under the EEVDF scheduler (Linux 6.6 and later) a woken
task is picked by its virtual deadline, which lies one *slice* after its eligible time; with
the default slice (``base_slice_ns``, 0.7 ms times 1 + log2 of the CPU count: 1.4 ms read back
here on 2 CPUs) a busy box makes
the loop wait behind every other runnable task's turn.  Since Linux 6.12 a fair task may ask
for a shorter slice with ``sched_setattr`` and ``sched_runtime`` (0.1 to 100 ms): its deadlines
come sooner, so it is picked sooner after waking and may preempt the running task; it gets no
larger share of CPU time (weight stays its nice level's), and asking needs no privilege.  This is
what the knob is for (the kernel's "sched/eevdf: Use sched_attr::sched_runtime to set
request/slice suggestion": a task should ask for about its usual run length); it is neither a
nice level nor a real-time policy, which the agent does not take.

Only the calling thread gets it.  ``SCHED_FLAG_RESET_ON_FORK`` gives threads and processes
started from it the default slice again (the agent's reading threads are throughput work), except
under a negative nice level, which the flag would also reset to 0 for them: there they inherit
the short slice instead.  A policy other than SCHED_OTHER (an operator's SCHED_BATCH or
SCHED_IDLE) is left alone.  Kernels before 6.12 have no slice for a fair task to ask for: they
ignore ``sched_runtime`` there, and a refusal is only logged (debug); a kernel or architecture
without ``sched_setattr`` leaves the loop as it was.
"""

from __future__ import annotations

import ctypes
import os
import platform
import struct

SCHED_OTHER = 0
SCHED_FLAG_RESET_ON_FORK = 0x01
SCHED_ATTR = struct.Struct("=IIQiIQQQII")
"""struct sched_attr (SCHED_ATTR_SIZE_VER1): size, policy, flags, nice, priority, runtime,
deadline, period, util_min, util_max."""
SYSCALLS = {"x86_64": (314, 315), "aarch64": (274, 275), "riscv64": (274, 275)}
"""(sched_setattr, sched_getattr) by machine; the generic table's numbers for arm64 and riscv."""

LOOP_SLICE_NS = 500_000
"""About a third of the default on a 2-CPU host (1.4 ms): longer than the loop's usual burst, so the
loop is rarely cut off mid-burst by its own slice ending."""


def _syscall(number: int, *args: int | ctypes.Array[ctypes.c_char]) -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.syscall(number, *args) != 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err))


def current_slice_ns() -> int | None:
    """The calling thread's slice as the kernel reports it (``sched_runtime`` of a fair task,
    Linux 6.12 and later; 0 before), None where sched_getattr is unknown."""
    numbers = SYSCALLS.get(platform.machine())
    if numbers is None:
        return None
    buf = ctypes.create_string_buffer(SCHED_ATTR.size)
    _syscall(numbers[1], 0, buf, SCHED_ATTR.size, 0)
    return int(SCHED_ATTR.unpack(buf.raw)[5])


def request_slice(slice_ns: int = LOOP_SLICE_NS) -> str | None:
    """Ask for ``slice_ns`` slices for the calling thread (see the module's docstring; 0 asks for the
    kernel's default again); None when asked, else why not (for a debug log: nothing is lost without it)."""
    numbers = SYSCALLS.get(platform.machine())
    if numbers is None:
        return f"no sched_setattr number known for {platform.machine()}"
    setattr_nr, getattr_nr = numbers
    buf = ctypes.create_string_buffer(SCHED_ATTR.size)
    try:
        _syscall(getattr_nr, 0, buf, SCHED_ATTR.size, 0)
        _, policy, flags, nice, *_ = SCHED_ATTR.unpack(buf.raw)
        if policy != SCHED_OTHER:
            return f"scheduling policy {policy} is not SCHED_OTHER: left as it is"
        if nice >= 0:
            flags |= SCHED_FLAG_RESET_ON_FORK
        _syscall(
            setattr_nr,
            0,
            ctypes.create_string_buffer(SCHED_ATTR.pack(SCHED_ATTR.size, policy, flags, nice, 0, slice_ns, 0, 0, 0, 0)),
            0,
        )
    except OSError as e:
        return f"sched_setattr refused: {e}"
    return None
