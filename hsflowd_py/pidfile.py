"""``-p``: the agent's process id in a file, for init scripts; and the lock that keeps a second agent
from taking over the first one's files.

The file is written while the agent is root (``safefile.replace``: a planted name cannot
redirect it or stop the start) and stays root's.  At exit it is removed if it is still the one
the agent wrote.  Once the agent has given up root it may not remove names from a root-owned
folder such as /run; it then empties the file through the descriptor it kept, so no stale pid
is left for an init script to signal.

The rule, then: whoever asks for a pid file in a folder only root may change removes it, as
Debian's init-script skeleton does after ``start-stop-daemon --stop`` (``rm -f $PIDFILE``) and
systemd does for ``PIDFile=``; removing it before the drop is no way out, since the file must
name the process while it runs.  A pid file the agent is to remove itself goes in a folder its
run user may write (``-p /run/hsflowd-py/hsflowd.pid`` with that folder the user's).  The unit
shipped with the package needs none: systemd knows the agent's pid.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import logging
import os
import stat

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


class AlreadyRunning(Exception):
    """Another agent holds the lock: starting would take its status socket and pid file."""


class InstanceLock:
    """An exclusive ``flock`` on ``path``, held from before the agent touches its status socket or
    pid file (while root) until after it has let go of both at exit.

    A second agent started with the same status socket would otherwise unlink the first one's
    socket (``status.serve`` replaces a stale one) and overwrite its pid file, leaving the running
    agent unreachable by ``--status`` and its init script signalling the wrong process.  The lock
    file is never removed: removing a lock file races with the next agent taking it.  The kernel
    drops the lock when the process ends, however it ends, so a crash leaves nothing stale.
    """

    def __init__(self, path: str) -> None:
        """Take the lock; raises AlreadyRunning if another process holds it, OSError if it cannot
        be made (a symlink planted at the name is refused, not followed)."""
        self.path = path
        os.makedirs(os.path.dirname(os.path.abspath(path)), mode=0o755, exist_ok=True)
        dirfd = safefile.open_folder(path)
        try:
            self._fd: int | None = os.open(
                os.path.basename(path), os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600, dir_fd=dirfd
            )
        finally:
            os.close(dirfd)
        try:
            if not stat.S_ISREG(os.fstat(self._fd).st_mode):
                raise OSError(errno.EINVAL, f"{path} is not a regular file")
            fcntl.flock(self._fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            self.release()
            raise AlreadyRunning(f"another hsflowd-py holds {path}") from None
        except BaseException:
            self.release()
            raise

    def release(self) -> None:
        fd, self._fd = self._fd, None
        if fd is not None:
            os.close(fd)
