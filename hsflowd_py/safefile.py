"""Writing the agent's own files (``hsflowd.auto``, the pid file) safely against local users.

The folders these files live in may be writable by others (``-o`` and ``-p`` take any path), so
no name in them is trusted: the folder is opened once (``O_DIRECTORY|O_NOFOLLOW``) and every
name is used relative to that descriptor; the temporary file has a random name and is created
with ``O_CREAT|O_EXCL|O_NOFOLLOW``, so a symlink or a hard link planted there can neither
redirect the write nor stop it (a taken name is skipped, another is drawn).  The file is written
in full and fsynced before it is renamed over the old one, so a full disk leaves the old file,
never a truncated one.

Each write returns a descriptor on the file it put in place.  The agent keeps it: once it is no
longer root it cannot create files in ``/etc``, but it can still rewrite its own root-owned file
through that descriptor (:func:`rewrite`), without the file ever being handed to its user.
"""

from __future__ import annotations

import contextlib
import errno
import os

_TEMP_ATTEMPTS = 16
_FILE_FLAGS = os.O_RDWR | os.O_CLOEXEC | os.O_NOFOLLOW


def open_folder(path: str) -> int:
    """A descriptor on the folder holding ``path``; the folder itself must not be a symlink."""
    folder = os.path.dirname(os.path.abspath(path))
    return os.open(folder, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)


def _write_all(fd: int, data: bytes) -> None:
    """pwrite from offset 0 until everything is written (a short write is not an error)."""
    done = 0
    while done < len(data):
        done += os.pwrite(fd, data[done:], done)


def replace(path: str, data: bytes, mode: int = 0o644) -> int:
    """Put ``data`` at ``path`` (readers see the old file or the new one, never a mix); returns a
    descriptor open for reading and writing on the new file, which the caller closes.

    Raises OSError (ENOSPC, EACCES, EROFS…) with the old file left as it was.
    """
    dirfd = open_folder(path)
    try:
        base = os.path.basename(path)
        for _ in range(_TEMP_ATTEMPTS):
            # secrets.token_hex(8) is this, but importing secrets maps libcrypto (see lean_imports.py)
            tmp = f".{base}.{os.urandom(8).hex()}.tmp"
            try:
                fd = os.open(tmp, _FILE_FLAGS | os.O_CREAT | os.O_EXCL, mode, dir_fd=dirfd)
                break
            except FileExistsError:
                continue  # planted, or (vanishingly unlikely) drawn twice: draw again
        else:
            raise FileExistsError(errno.EEXIST, f"no free temporary name beside {path}")
        try:
            _write_all(fd, data)
            os.fsync(fd)
            os.replace(tmp, base, src_dir_fd=dirfd, dst_dir_fd=dirfd)
        except BaseException:
            os.close(fd)
            with contextlib.suppress(OSError):
                os.unlink(tmp, dir_fd=dirfd)
            raise
        with contextlib.suppress(OSError):
            os.fsync(dirfd)  # the rename itself survives a crash
        return fd
    finally:
        os.close(dirfd)


def open_own(path: str) -> int:
    """A descriptor for rewriting an existing ``path`` in place, when it cannot be replaced (a
    read-only /etc but for this file, as under the systemd unit).

    Only a regular file of this process's user with one link is accepted: a symlink, or a hard
    link to another file planted at the name, is refused (OSError) rather than written through.
    """
    fd = os.open(path, _FILE_FLAGS)
    st = os.fstat(fd)
    if not (st.st_mode & 0o170000 == 0o100000 and st.st_uid == os.geteuid() and st.st_nlink == 1):
        os.close(fd)
        raise PermissionError(errno.EPERM, f"{path}: not a regular file of ours with one link, not written")
    return fd


def rewrite(fd: int, data: bytes) -> None:
    """Replace the content of the file open at ``fd`` with ``data``, in place.

    The room for ``data`` is allocated first: on a full disk that fails and the old content stays
    whole.  Readers of ``hsflowd.auto`` tell a rewrite in progress by ``rev_start != rev_end``.
    """
    os.posix_fallocate(fd, 0, max(len(data), 1))
    _write_all(fd, data)
    os.ftruncate(fd, len(data))
    os.fsync(fd)


def create_empty(path: str, mode: int = 0o644) -> int:
    """Make ``path`` as an empty file of ours (none was there); returns a descriptor on it."""
    dirfd = open_folder(path)
    try:
        return os.open(os.path.basename(path), _FILE_FLAGS | os.O_CREAT | os.O_EXCL, mode, dir_fd=dirfd)
    finally:
        os.close(dirfd)
