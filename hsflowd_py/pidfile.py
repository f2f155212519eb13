"""``-p``: the agent's process id in a file, for init scripts.

The file is written while the agent is root (``safefile.replace``: a planted name cannot
redirect it or stop the start) and stays root's.  At exit it is removed if it is still the one
the agent wrote.  Once the agent has given up root it may not remove names from a root-owned
folder such as /run; it then empties the file through the descriptor it kept, so no stale pid
is left for an init script to signal.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os

from . import safefile

log = logging.getLogger("hsflowd.pidfile")


class PidFile:
    def __init__(self, path: str) -> None:
        """Write this process's id to ``path``; raises OSError (the old file left as it was)."""
        self.path = path
        self._fd: int | None = safefile.replace(path, f"{os.getpid()}\n".encode())

    def remove(self) -> None:
        """Remove the file (or empty it when the folder no longer lets the agent remove it)."""
        fd, self._fd = self._fd, None
        if fd is None:
            return
        try:
            dirfd = safefile.open_folder(self.path)
            try:
                ours, there = os.fstat(fd), os.stat(os.path.basename(self.path), dir_fd=dirfd, follow_symlinks=False)
                if (ours.st_dev, ours.st_ino) == (there.st_dev, there.st_ino):
                    os.unlink(os.path.basename(self.path), dir_fd=dirfd)
            finally:
                os.close(dirfd)
        except OSError as e:
            if e.errno in (errno.EACCES, errno.EPERM):
                with contextlib.suppress(OSError):
                    safefile.rewrite(fd, b"")
                    log.info("%s: emptied, not removed: its folder is root's and the agent is not", self.path)
            elif e.errno != errno.ENOENT:
                log.warning("cannot remove %s: %s", self.path, e)
        finally:
            os.close(fd)
