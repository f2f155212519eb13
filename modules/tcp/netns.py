"""Run a function inside another network namespace, for the sockets it opens there.

A socket belongs for life to the namespace it was created in, so switching a
thread into the namespace just long enough to create the sockets is all it
takes to query a container's kernel tables from the agent's own loop.  The
switch happens in a fresh thread that ends right after: a pooled thread would
stay in the container's namespace and later run unrelated work (a collector
name resolution, say) there.  Python 3.11 has no ``os.setns``, hence ctypes.
setns needs CAP_SYS_ADMIN.
"""

from __future__ import annotations

import ctypes
import os
import threading
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")

CLONE_NEWNET = 0x40000000
_libc = ctypes.CDLL(None, use_errno=True)


def setns(fd: int, nstype: int = CLONE_NEWNET) -> None:
    if _libc.setns(fd, nstype) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"setns: {os.strerror(err)}")


def namespace_id(path: str) -> tuple[int, int]:
    """(device, inode) of a namespace file: equal for every path naming the same namespace."""
    st = os.stat(path)
    return st.st_dev, st.st_ino


def run_in_namespace(path: str, fn: Callable[[], T], timeout: float = 5.0) -> T:
    """``fn()`` called in a new thread that has joined the network namespace at ``path``."""
    result: list[T] = []
    error: list[BaseException] = []

    def body() -> None:
        try:
            fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
            try:
                setns(fd)
            finally:
                os.close(fd)
            result.append(fn())
        except BaseException as e:  # handed to the caller's thread
            error.append(e)

    thread = threading.Thread(target=body, name="hsflowd-netns", daemon=True)
    thread.start()
    thread.join(timeout)
    if thread.is_alive():
        raise TimeoutError(f"opening sockets in {path} took over {timeout} s")
    if error:
        raise error[0]
    return result[0]
