"""The core's task helpers: ending tasks, and owning what a thread opens after its caller left."""

from __future__ import annotations

import asyncio
import logging
import os
import threading
from pathlib import Path

import pytest

from hsflowd_py.tasks import cancel, owned_by_thread


def fd_open(fd: int) -> bool:
    try:
        os.fstat(fd)
    except OSError:
        return False
    return True


def test_a_caller_that_stops_waiting_leaves_no_descriptor_behind(tmp_path: Path) -> None:
    go_on = threading.Event()
    opened: list[int] = []

    def probe() -> int:  # as docker's prober: opens a directory, then works a while
        fd = os.open(tmp_path, os.O_RDONLY | os.O_DIRECTORY)
        opened.append(fd)
        go_on.wait(10)
        return fd

    async def run() -> None:
        waiting = asyncio.ensure_future(owned_by_thread(probe, release=os.close, name="test-probe"))
        while not opened:
            await asyncio.sleep(0.01)
        waiting.cancel()
        with pytest.raises(asyncio.CancelledError):
            await waiting
        assert fd_open(opened[0])  # the thread still holds it
        go_on.set()
        for _ in range(200):
            if not fd_open(opened[0]):
                return
            await asyncio.sleep(0.01)

    asyncio.run(run())
    assert opened and not fd_open(opened[0])


def test_a_caller_that_waits_gets_the_result_and_owns_it(tmp_path: Path) -> None:
    fd = asyncio.run(owned_by_thread(os.open, tmp_path, os.O_RDONLY, release=os.close, name="test-open"))
    try:
        assert fd_open(fd)
    finally:
        os.close(fd)


def test_a_timed_out_wait_releases_what_comes_later(tmp_path: Path) -> None:
    go_on = threading.Event()
    fds: list[int] = []

    def slow_open() -> int:
        go_on.wait(10)
        fds.append(os.open(tmp_path, os.O_RDONLY))
        return fds[-1]

    async def run() -> None:
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(owned_by_thread(slow_open, release=os.close, name="test-slow"), 0.05)
        go_on.set()
        for _ in range(200):
            if fds and not fd_open(fds[0]):
                return
            await asyncio.sleep(0.01)

    asyncio.run(run())
    assert fds and not fd_open(fds[0])


def test_cancel_ends_tasks_logs_their_failures_and_lets_its_own_cancellation_through(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async def stubborn() -> None:
        try:
            await asyncio.sleep(10)
        finally:
            raise RuntimeError("failed on the way out")

    async def stopper(slow: asyncio.Task[None]) -> None:
        await cancel(slow, None)

    async def run() -> None:
        plain = asyncio.ensure_future(asyncio.sleep(10))
        failing = asyncio.ensure_future(stubborn())
        failing.set_name("stubborn")
        await asyncio.sleep(0)
        await cancel(plain, failing, None)
        assert plain.cancelled() and failing.done()

        release = asyncio.Event()

        async def slow_to_end() -> None:
            try:
                await asyncio.sleep(10)
            except asyncio.CancelledError:
                await release.wait()  # takes its time ending
                raise

        slow = asyncio.ensure_future(slow_to_end())
        await asyncio.sleep(0)
        stopping = asyncio.ensure_future(stopper(slow))
        await asyncio.sleep(0.01)
        stopping.cancel()  # the stop itself is cancelled: it must not carry on as if done
        with pytest.raises(asyncio.CancelledError):
            await stopping
        release.set()
        await asyncio.wait({slow})
        assert slow.cancelled()

    with caplog.at_level(logging.ERROR, logger="hsflowd"):
        asyncio.run(run())
    assert "stubborn failed while being ended: RuntimeError('failed on the way out')" in caplog.text
