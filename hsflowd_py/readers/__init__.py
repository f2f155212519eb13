"""Readers of kernel files: one module per file, each a pure ``parse_*(text)`` and a ``read_*(root)``.

``root`` is always a value (``Path("/")`` in production, a fixture tree in tests); every reader
builds its path from it, so nothing here ever reads the live machine by accident.

Error policy, the same in every reader:

* A file the reader needs that is missing or unreadable raises :class:`ReaderError` with the path
  (``missing=True`` when it does not exist).  Optional facts, which only some kernels or devices
  provide (a link's speed, the DMI UUID), come back as ``None`` instead.
* A line is malformed only when it carries something the reader needs and that cannot be parsed;
  it raises :class:`ReaderError` naming the file and line.  There is no partial result: a sum
  that silently leaves out one disk or one interface looks like a plausible but wrong counter,
  while a record that is left out and logged is visible.
* Lines the reader does not need are ignored, whatever their shape, and names that an older
  kernel lacks read as 0, so parsers key on names (headers, ``Key:`` prefixes), never positions.
* Nothing else escapes a reader: OSError and ValueError become ReaderError.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TypeVar

T = TypeVar("T")


_OCTAL_ESCAPE = re.compile(r"\\([0-7]{3})")


def unescape_octal(text: str) -> str:
    """The kernel writes space, tab, newline and backslash in mount paths as octal escapes (``\\040``)."""
    return _OCTAL_ESCAPE.sub(lambda m: chr(int(m.group(1), 8)), text)


class ReaderError(Exception):
    """A kernel file that could not be read or parsed; ``str()`` gives ``path:line: reason``."""

    def __init__(self, reason: str, *, path: Path | None = None, line: int | None = None, missing: bool = False):
        super().__init__(reason)
        self.reason = reason
        self.path = path
        self.line = line
        self.missing = missing

    def __str__(self) -> str:
        where = str(self.path) if self.path is not None else "<text>"
        if self.line is not None:
            where += f":{self.line}"
        return f"{where}: {self.reason}"

    def at(self, path: Path) -> ReaderError:
        """The same error, located in ``path`` (parsers do not know which file they were given)."""
        return ReaderError(self.reason, path=path, line=self.line, missing=self.missing)


def _os_error(err: OSError, path: Path) -> ReaderError:
    if isinstance(err, FileNotFoundError | ProcessLookupError):  # ESRCH: the process exited mid-read
        return ReaderError("does not exist", path=path, missing=True)
    return ReaderError(err.strerror or str(err), path=path)


def read_text(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8", errors="replace")
    except OSError as err:
        raise _os_error(err, path) from None


def read_text_if_present(path: Path) -> str | None:
    """A file that may legitimately be absent (a process that exited, a table of a protocol the
    kernel lacks): None then; any other failure raises as read_text does."""
    try:
        return read_text(path)
    except ReaderError as err:
        if err.missing:
            return None
        raise


def list_dir(path: Path) -> list[str]:
    """Names in a directory the reader needs (/sys/block, /sys/class/net), sorted."""
    try:
        return sorted(os.listdir(path))
    except OSError as err:
        raise _os_error(err, path) from None


def read_optional(path: Path) -> str | None:
    """Stripped text of a file that may be absent or refuse a read.

    sysfs answers EINVAL rather than a value for some attributes (``speed`` and ``duplex`` of a
    link that is down, ``carrier`` of a device that is administratively down).
    """
    try:
        return path.read_text(encoding="utf-8", errors="replace").strip()
    except OSError:
        return None


def read_parsed(path: Path, parse: Callable[[str], T]) -> T:
    """Read ``path`` and parse it, locating any parse error in that file."""
    text = read_text(path)
    try:
        return parse(text)
    except ReaderError as err:
        raise err.at(path) from None


def read_per_process(root: Path, pids: Iterable[int], name: str, parse: Callable[[str], T]) -> dict[int, T]:
    """``parse`` of ``/proc/<pid>/<name>`` for each process still there: processes exit while a
    reader walks them, so one that is gone is left out; a malformed file raises, located."""
    out = {}
    for pid in pids:
        path = root / f"proc/{pid}/{name}"
        text = read_text_if_present(path)
        if text is None:
            continue
        try:
            out[pid] = parse(text)
        except ReaderError as err:
            raise err.at(path) from None
    return out


@contextmanager
def parsing(line_no: int, line: str) -> Iterator[None]:
    """Turn a conversion failure inside the block into a ReaderError for that line."""
    try:
        yield
    except (ValueError, IndexError) as err:
        raise ReaderError(f"cannot parse {line.strip()!r} ({err})", line=line_no) from None


def key_values(text: str, sep: str | None) -> Iterator[tuple[int, str, str]]:
    """``(line number, key, value)`` for each line of a ``key<sep>value`` file, both stripped.

    ``sep=None`` splits at the first run of whitespace (``/proc/vmstat``).  Lines without the
    separator carry nothing a reader can look up and are skipped (blank lines between the CPUs
    of ``/proc/cpuinfo``).
    """
    for n, line in enumerate(text.splitlines(), 1):
        if sep is None:
            parts = line.split(None, 1)
            if len(parts) == 2:
                yield n, parts[0], parts[1].strip()
        else:
            key, found, value = line.partition(sep)
            if found:
                yield n, key.strip(), value.strip()
