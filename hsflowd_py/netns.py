"""Network namespaces and the threads that enter them, for modules that look inside containers.

A socket belongs for life to the namespace it was created in, and namespaces are per
thread, so a module creates a fresh thread, moves it into the container's namespace with
setns(2), opens its sockets or lists the links there, and lets the thread end: a thread
that never returns to the agent's namespace can never run unrelated work (a collector
name resolution, say) in the container's.  Python 3.11 has no ``os.setns``, hence ctypes.

Threads and privileges: once the agent has dropped root, capabilities are per thread; only
the main thread holds the ones modules declared (CAP_SYS_ADMIN for setns, CAP_SYS_PTRACE to
open another user's ``/proc/<pid>/ns/net``), and a thread inherits its creator's.  So such
work runs on a thread started from the event loop's (main) thread by :func:`in_new_thread`,
never on a pool thread that may predate the drop and hold nothing.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import os
import threading
from collections.abc import Callable
from typing import Any, TypeVar

T = TypeVar("T")

CLONE_NEWNET = 0x40000000
_libc = ctypes.CDLL(None, use_errno=True)


def enter_namespace(path: str | os.PathLike[str]) -> None:
    """Move the calling thread into the network namespace at ``path``; raises OSError."""
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        if _libc.setns(fd, CLONE_NEWNET) != 0:
            err = ctypes.get_errno()
            raise OSError(err, f"setns({os.fspath(path)}): {os.strerror(err)}")
    finally:
        os.close(fd)


def namespace_id(path: str | os.PathLike[str]) -> tuple[int, int]:
    """(device, inode) of a namespace file: equal for every path naming the same namespace."""
    st = os.stat(path)
    return st.st_dev, st.st_ino


def in_new_thread(fn: Callable[..., T], *args: Any, name: str = "hsflowd-netns") -> asyncio.Future[T]:
    """Run blocking ``fn(*args)`` on a new thread started from the calling (event loop) thread.

    A future, not a coroutine, so that a caller that stops waiting can still see what the
    thread produced later (and close the sockets it opened).
    """
    loop = asyncio.get_running_loop()
    done: asyncio.Future[T] = loop.create_future()

    def settle(result: Any, error: BaseException | None) -> None:
        if done.done():
            return
        if error is not None:
            done.set_exception(error)
        else:
            done.set_result(result)

    def body() -> None:
        try:
            result, error = fn(*args), None
        except BaseException as err:  # handed to the awaiting coroutine
            result, error = None, err
        with contextlib.suppress(RuntimeError):  # the loop closed while we worked
            loop.call_soon_threadsafe(settle, result, error)

    threading.Thread(target=body, name=name, daemon=True).start()
    return done
