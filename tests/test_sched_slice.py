"""The loop thread's short scheduler slice, as the kernel reports it in /proc/<pid>/task/<tid>/sched."""

from __future__ import annotations

import os
import platform
import threading
from collections.abc import Callable

import pytest

from hsflowd_py.sched_slice import LOOP_SLICE_NS, SYSCALLS, request_slice

KERNEL = tuple(int(part) for part in platform.release().split(".")[:2])

pytestmark = [
    pytest.mark.skipif(KERNEL < (6, 12), reason="fair tasks choose their slice from Linux 6.12"),
    pytest.mark.skipif(platform.machine() not in SYSCALLS, reason="no sched_setattr number for this machine"),
]


def kernel_slice_ns() -> int:
    """se.slice of the calling thread, from the kernel's own account of it."""
    with open(f"/proc/self/task/{threading.get_native_id()}/sched") as f:
        return int(next(line for line in f if line.startswith("se.slice")).split(":")[1])


def run_thread(body: Callable[[], None]) -> None:
    thread = threading.Thread(target=body)
    thread.start()
    thread.join()


def as_loop(loop: Callable[[], None], child: Callable[[], None]) -> None:
    """``loop`` on a thread of its own (the test runner's keeps its slice and nice level), then
    ``child`` on a thread that one starts."""

    def body() -> None:
        loop()
        run_thread(child)

    run_thread(body)


def test_the_calling_thread_gets_the_short_slice_and_threads_it_starts_the_default() -> None:
    seen: dict[str, int | str | None] = {}

    def loop() -> None:
        seen["default"] = kernel_slice_ns()
        seen["refused"] = request_slice()
        seen["loop"] = kernel_slice_ns()

    as_loop(loop, lambda: seen.update(child=kernel_slice_ns()))
    assert seen["refused"] is None
    assert seen["loop"] == LOOP_SLICE_NS != seen["default"]
    assert seen["child"] == seen["default"], "reset on fork: a thread the loop starts has the default slice"


def test_a_negative_nice_level_is_kept_for_the_threads_the_loop_starts() -> None:
    if os.geteuid() != 0:
        pytest.skip("a negative nice level needs root")
    seen: dict[str, int | str | None] = {}

    def loop() -> None:
        os.setpriority(os.PRIO_PROCESS, 0, -3)  # this thread only (Linux: a tid)
        seen["refused"] = request_slice()
        seen["nice"] = os.getpriority(os.PRIO_PROCESS, 0)

    as_loop(loop, lambda: seen.update(child_nice=os.getpriority(os.PRIO_PROCESS, 0)))
    assert seen == {"refused": None, "nice": -3, "child_nice": -3}
