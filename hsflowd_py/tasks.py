"""Ending tasks and owning what threads produce: one way for every module.

``cancel`` ends tasks and waits for them without swallowing the caller's own cancellation (awaiting
a cancelled task under ``suppress(CancelledError)`` would: a stop that is itself being cancelled
would carry on as if nothing happened).  ``owned_by_thread`` runs blocking work that opens things
(a directory descriptor, netlink sockets) on a thread of its own; a caller that stops waiting --
cancelled, or timed out -- no longer leaks what the thread hands back later: it is released then.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any, TypeVar

from .netns import in_new_thread

T = TypeVar("T")

log = logging.getLogger("hsflowd")


async def cancel(*tasks: asyncio.Future[Any] | None) -> None:
    """Cancel ``tasks`` (None ones skipped) and wait until each has finished.

    A task's own failure is logged, not raised: it was being ended anyway.  A cancellation of the
    caller while it waits goes through."""
    pending = {task for task in tasks if task is not None}
    for task in pending:
        task.cancel()
    if not pending:
        return
    await asyncio.wait(pending)
    for task in pending:
        if not task.cancelled() and (err := task.exception()) is not None:
            name = task.get_name() if isinstance(task, asyncio.Task) else repr(task)
            log.error("%s failed while being ended: %r", name, err)


async def owned_by_thread(fn: Callable[..., T], *args: Any, release: Callable[[T], object], name: str) -> T:
    """``fn(*args)`` on a new thread started from the loop's (see ``netns.in_new_thread``), its
    result ``release``-d by the thread's completion if the caller stops waiting first."""
    done = in_new_thread(fn, *args, name=name)
    try:
        return await asyncio.shield(done)
    except asyncio.CancelledError:
        done.add_done_callback(lambda fut: _release(fut, release))
        raise


def _release(fut: asyncio.Future[T], release: Callable[[T], object]) -> None:
    if fut.cancelled() or fut.exception() is not None:
        return
    try:
        release(fut.result())
    except Exception:  # a release that fails must not end the loop's callback processing
        log.exception("releasing what a cancelled thread produced failed")
