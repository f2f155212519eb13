"""Loading a BPF object built with the package, through libbpf, in-process.

The objects (``modules/pcap/sampler_core.bpf.c``, ``modules/dropmon/dropmon.bpf.c``) are compiled
once at build time (``setup.py``) into one object per byte order.  At start-up libbpf (Debian's
``libbpf1``, ``libbpf.so.1``) opens the host's one, sizes its ring buffers, relocates whatever it
reads of kernel structures against the kernel's BTF (CO-RE), creates the maps and loads the
programs; no compiler, no kernel headers and no child process are involved, so this costs the
agent the library's own few hundred kB.

The binding is ctypes over the dozen libbpf calls used here, so the deb depends on ``libbpf1``
alone, with no compiled Python extension to build per Python version.  Programs and maps are
handed on as duplicated descriptors and the libbpf object is closed at once: what a module keeps
is plain descriptors (``bpf.py`` works on them).

libbpf's messages (with the verifier's log when a program is refused) are captured while loading
and the last ones become the error, which the module logs.  Modules load on threads of their own
(the verifier takes most of a second, which would stall the loop), one load or attach at a time
(``_one_at_a_time``): the capture is the library's, process-wide.
"""

from __future__ import annotations

import ctypes
import os
import re
import sys
import threading
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from .malloc_tuning import release_freed

LIBBPF = "libbpf.so.1"
_LIBBPF_DEBUG = 2

_INSTRUCTION = re.compile(r"\d+: |; ")
"""A verifier log line about one instruction (``12: (61) r1 = ...``) or its source (``; x = y @ file:3``)."""
_STATISTICS = ("processed ", "verification time", "stack depth")
_PRINT_FN = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.c_int, ctypes.c_char_p, ctypes.c_void_p)
"""libbpf_print_fn_t: level, format, va_list (a pointer on every ABI this runs on)."""


class BpfError(Exception):
    """Why a BPF object could not be loaded or attached: the step, the errno and libbpf's words."""


def object_path(directory: Path, stem: str) -> Path:
    """The object ``setup.py`` built from ``stem.bpf.c`` for this host's byte order."""
    return directory / f"{stem}.{'bpfel' if sys.byteorder == 'little' else 'bpfeb'}.o"


class _Libbpf:
    """libbpf.so.1 with the signatures of the calls used here, and a capture of its messages."""

    def __init__(self) -> None:
        lib = ctypes.CDLL(LIBBPF, use_errno=True)
        ptr, c_int, u32 = ctypes.c_void_p, ctypes.c_int, ctypes.c_uint32
        for name, restype, argtypes in (
            ("bpf_object__open_file", ptr, [ctypes.c_char_p, ptr]),
            ("bpf_object__load", c_int, [ptr]),
            ("bpf_object__close", None, [ptr]),
            ("bpf_object__find_map_by_name", ptr, [ptr, ctypes.c_char_p]),
            ("bpf_object__find_program_by_name", ptr, [ptr, ctypes.c_char_p]),
            ("bpf_map__set_max_entries", c_int, [ptr, u32]),
            ("bpf_map__fd", c_int, [ptr]),
            ("bpf_map__key_size", u32, [ptr]),
            ("bpf_map__value_size", u32, [ptr]),
            ("bpf_map__max_entries", u32, [ptr]),
            ("bpf_program__fd", c_int, [ptr]),
            ("bpf_raw_tracepoint_open", c_int, [ctypes.c_char_p, c_int]),
            ("libbpf_set_print", ptr, [_PRINT_FN]),
        ):
            function = getattr(lib, name)
            function.restype, function.argtypes = restype, argtypes
        self.lib = lib
        self.messages: list[str] = []
        libc = ctypes.CDLL(None)
        self._vsnprintf = libc.vsnprintf
        self._vsnprintf.argtypes = [ctypes.c_char_p, ctypes.c_size_t, ctypes.c_char_p, ctypes.c_void_p]
        self._buffer = ctypes.create_string_buffer(1024)
        self._printer = _PRINT_FN(self._print)  # kept: libbpf calls it for as long as the process lives
        lib.libbpf_set_print(self._printer)

    def _print(self, level: int, fmt: bytes, args: int) -> int:
        if level < _LIBBPF_DEBUG:
            self._vsnprintf(self._buffer, len(self._buffer), fmt, args)
            self.messages.extend(x for x in self._buffer.value.decode(errors="replace").splitlines() if x.strip())
            del self.messages[:-40]
        return 0

    def failure(self, what: str, err: int) -> BpfError:
        """An error naming the step, the errno and why: the verifier's conclusion when it refused a
        program, else libbpf's last words."""
        reason = os.strerror(err) if err else "failed"
        return BpfError("; ".join([f"{what}: {reason}", *(_verifier_verdict(self.messages) or self.messages[-3:])]))


def _verifier_verdict(lines: list[str]) -> list[str]:
    """The lines in which the verifier says why it refused a program: in its log (which libbpf prints
    between BEGIN and END PROG LOAD LOG), the text after the last instruction it walked and before its
    statistics."""
    ends = [i for i, line in enumerate(lines) if "-- END PROG LOAD LOG --" in line]
    if not ends:
        return []
    verdict: list[str] = []
    for line in reversed(lines[: ends[-1]]):
        if _INSTRUCTION.match(line) or "-- BEGIN PROG LOAD LOG --" in line:
            break
        if not line.startswith(_STATISTICS):
            verdict.insert(0, line.strip())
    return verdict


_libbpf: _Libbpf | None = None
_one_at_a_time = threading.Lock()


def _library() -> _Libbpf:
    global _libbpf
    if _libbpf is None:
        try:
            _libbpf = _Libbpf()
        except OSError as e:
            raise BpfError(f"{LIBBPF} cannot be loaded (package libbpf1): {e}") from None
        except AttributeError as e:  # a libbpf older than 1.0
            raise BpfError(f"{LIBBPF} lacks a call this agent uses: {e}") from None
    return _libbpf


def load(
    path: Path, names: Sequence[str], max_entries: Mapping[str, int] | None = None
) -> tuple[dict[str, dict[str, int]], list[int]]:
    """Open ``path``, resize the maps in ``max_entries`` (ring buffers: bytes), load it; returns the
    maps' sizes and a descriptor for each program or map in ``names``, in that order.

    Raises BpfError saying why not (no libbpf, no object, a kernel that refuses it)."""
    with _one_at_a_time:
        try:
            return _load(path, names, max_entries)
        finally:
            release_freed()  # heap freed at start-up (.pyc reads, libbpf's object), before the ring is mapped


def _load(
    path: Path, names: Sequence[str], max_entries: Mapping[str, int] | None
) -> tuple[dict[str, dict[str, int]], list[int]]:
    if not path.exists():
        raise BpfError(f"no BPF object at {path} (setup.py builds it with clang)")
    bpf = _library()
    lib = bpf.lib
    bpf.messages.clear()
    obj = lib.bpf_object__open_file(str(path).encode(), None)
    if not obj:
        raise bpf.failure(f"opening {path}", ctypes.get_errno())
    fds: list[int] = []
    try:
        for name, entries in (max_entries or {}).items():
            handle = lib.bpf_object__find_map_by_name(obj, name.encode())
            if not handle or lib.bpf_map__set_max_entries(handle, entries) < 0:
                raise bpf.failure(f"sizing the map {name!r}", ctypes.get_errno())
        err = lib.bpf_object__load(obj)
        if err < 0:
            raise bpf.failure(f"loading {path.name}", -err)
        maps: dict[str, dict[str, int]] = {}
        for name in names:
            handle: Any = lib.bpf_object__find_program_by_name(obj, name.encode())
            if handle:
                fd = lib.bpf_program__fd(handle)
            else:
                handle = lib.bpf_object__find_map_by_name(obj, name.encode())
                if not handle:
                    raise BpfError(f"{path.name} has no program or map named {name!r}")
                fd = lib.bpf_map__fd(handle)
                maps[name] = {
                    "key_size": lib.bpf_map__key_size(handle),
                    "value_size": lib.bpf_map__value_size(handle),
                    "max_entries": lib.bpf_map__max_entries(handle),
                }
            fds.append(os.dup(fd))
    except BaseException:
        for fd in fds:
            os.close(fd)
        raise
    finally:
        lib.bpf_object__close(obj)
    return maps, fds


def attach_raw_tracepoint(name: str, program_fd: int) -> int:
    """Attach a loaded raw tracepoint program; closing the returned descriptor detaches it."""
    with _one_at_a_time:
        bpf = _library()
        bpf.messages.clear()
        fd = bpf.lib.bpf_raw_tracepoint_open(name.encode(), program_fd)
        if fd < 0:
            raise bpf.failure(f"attaching to the tracepoint {name}", -fd)
        return fd
