"""The few bpf(2) operations the agent needs on maps it received as file descriptors, and the BPF
ring buffer read in place.

The programs and maps reach the pcap sampler and the drop monitor as descriptors, from libbpf
(``bpf_loader.py``, which is then done with them) or from bcc's short-lived build process
(``modules/pcap/ebpf_build.py``), so map updates and look-ups are plain ``bpf()`` system calls
through ctypes, and the ring buffer is two ``mmap`` calls.
"""

from __future__ import annotations

import contextlib
import ctypes
import mmap
import os
import platform
import struct
from collections.abc import Iterator
from pathlib import Path
from typing import Any

BPF_MAP_LOOKUP_ELEM = 1
BPF_MAP_UPDATE_ELEM = 2
BPF_MAP_DELETE_ELEM = 3
BPF_ANY = 0

_SYSCALL_BPF = {"x86_64": 321, "aarch64": 280, "riscv64": 280, "ppc64le": 361, "s390x": 351}
_ELEM_ATTR = struct.Struct("=I4xQQQ")
"""union bpf_attr for the *_ELEM commands: map_fd, key, value, flags (pointers as u64)."""

_libc = ctypes.CDLL(None, use_errno=True)
_libc.syscall.restype = ctypes.c_long


def _bpf(cmd: int, attr: bytes) -> int:
    """bpf(cmd, attr); its result (a new descriptor for the commands that make one)."""
    number = _SYSCALL_BPF.get(platform.machine())
    if number is None:
        raise OSError(0, f"bpf() system call number unknown on {platform.machine()}")
    buf = ctypes.create_string_buffer(attr, len(attr))
    result = _libc.syscall(number, cmd, buf, len(attr))
    if result < 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err))
    return int(result)


BPF_LINK_CREATE = 28
BPF_TCX_INGRESS = 46
BPF_TCX_EGRESS = 47
_LINK_CREATE = struct.Struct("=IIII16x")
"""union bpf_attr for BPF_LINK_CREATE: prog_fd, target_ifindex, attach_type, flags; tcx's relative
descriptor and expected revision left 0 (append after the programs already there)."""


def tcx_attach(prog_fd: int, ifindex: int, attach_type: int) -> int:
    """Attach a program to an interface's tcx hook (kernel 6.6+); returns the link's descriptor, whose
    closing (or the process's end) detaches it.  EINVAL from a kernel without tcx."""
    return _bpf(BPF_LINK_CREATE, _LINK_CREATE.pack(prog_fd, ifindex, attach_type, 0))


BPF_PROG_TEST_RUN = 10
_TEST_RUN = struct.Struct("=IIIIQQIIIIQQIII4x")
"""union bpf_attr for BPF_PROG_TEST_RUN: prog_fd, retval, data_size_in, data_size_out, data_in, data_out,
repeat, duration, ctx_size_in, ctx_size_out, ctx_in, ctx_out, flags, cpu, batch_size."""
EMPTY_FRAME = bytes(14)
"""An Ethernet header of zeros: the least a tc program is run on."""


def run_program(prog_fd: int, data: bytes = EMPTY_FRAME, ctx: bytes = b"") -> None:
    """Run a tc program once on ``data`` (BPF_PROG_TEST_RUN), with these first bytes of its ``struct
    __sk_buff`` if given: how the agent has the kernel do what a program does on request, under the
    program's own locks (and how tests run a program on packets of their own)."""
    frame = ctypes.create_string_buffer(data, len(data))
    skb = ctypes.create_string_buffer(ctx, len(ctx)) if ctx else None
    attr = _TEST_RUN.pack(
        prog_fd, 0, len(data), 0, ctypes.addressof(frame), 0, 1, 0,
        len(ctx), 0, ctypes.addressof(skb) if skb else 0, 0, 0, 0, 0,
    )  # fmt: skip
    _bpf(BPF_PROG_TEST_RUN, attr)


def possible_cpus(root: Path = Path("/")) -> int:
    """Per-CPU maps hold one value per *possible* CPU (``0-3,8-11``), not per online one."""
    text = (root / "sys/devices/system/cpu/possible").read_text().strip()
    highest = max(int(part.split("-")[-1]) for part in text.split(","))
    return highest + 1


class Map:
    """A BPF hash or array map (or a per-CPU one) of fixed key and value sizes, by descriptor."""

    def __init__(self, fd: int, key_size: int, value_size: int, per_cpu: int = 0) -> None:
        self.fd = fd
        self.key_size = key_size
        self.slot = (value_size + 7) & ~7 if per_cpu else value_size
        self.size = self.slot * per_cpu if per_cpu else value_size
        self.per_cpu = per_cpu
        self._value = ctypes.create_string_buffer(self.size)

    def _elem(self, cmd: int, key: bytes, value: Any = None, flags: int = 0) -> None:
        """One *_ELEM command; ``value`` is a buffer to read from or write into, None for delete
        (the kernel refuses a non-zero field beyond the last one a command uses)."""
        k = ctypes.create_string_buffer(key, self.key_size)
        address = 0 if value is None else ctypes.addressof(value)
        _bpf(cmd, _ELEM_ATTR.pack(self.fd, ctypes.addressof(k), address, flags))

    def update(self, key: bytes, value: bytes) -> None:
        """Set ``value`` (for a per-CPU map: the same value on every CPU)."""
        if self.per_cpu:
            value = value.ljust(self.slot, b"\0") * self.per_cpu
        self._elem(BPF_MAP_UPDATE_ELEM, key, ctypes.create_string_buffer(value, self.size), BPF_ANY)

    def lookup(self, key: bytes) -> list[bytes] | None:
        """The value, or one value per possible CPU; None when the key is absent."""
        try:
            self._elem(BPF_MAP_LOOKUP_ELEM, key, self._value)
        except FileNotFoundError:
            return None
        raw = self._value.raw
        if not self.per_cpu:
            return [raw]
        return [raw[i * self.slot : (i + 1) * self.slot] for i in range(self.per_cpu)]

    def delete(self, key: bytes) -> None:
        with contextlib.suppress(FileNotFoundError):
            self._elem(BPF_MAP_DELETE_ELEM, key)


BPF_RINGBUF_BUSY_BIT = 1 << 31
BPF_RINGBUF_DISCARD_BIT = 1 << 30
BPF_RINGBUF_HDR_SZ = 8
_RECORD_LENGTH = struct.Struct("=I")


class _PyBuffer(ctypes.Structure):
    """CPython's Py_buffer, as PyObject_GetBuffer fills it."""

    _fields_ = (
        ("buf", ctypes.c_void_p),
        ("obj", ctypes.py_object),
        ("len", ctypes.c_ssize_t),
        ("itemsize", ctypes.c_ssize_t),
        ("readonly", ctypes.c_int),
        ("ndim", ctypes.c_int),
        ("format", ctypes.c_char_p),
        ("shape", ctypes.c_void_p),
        ("strides", ctypes.c_void_p),
        ("suboffsets", ctypes.c_void_p),
        ("internal", ctypes.c_void_p),
    )


def mapping_address(mapping: mmap.mmap) -> int:
    """Where a mapping lies in memory.  The ring's data pages are mapped read-only (the kernel refuses
    more), which ctypes' ``from_buffer`` will not take: CPython's buffer protocol will.  The address
    stays good until the mapping is closed."""
    view = _PyBuffer()
    if ctypes.pythonapi.PyObject_GetBuffer(ctypes.py_object(mapping), ctypes.byref(view), 0) != 0:
        raise OSError(0, "the ring's mapping gave no buffer")
    try:
        return int(view.buf)
    finally:
        ctypes.pythonapi.PyBuffer_Release(ctypes.byref(view))


class RingBuffer:
    """A BPF_MAP_TYPE_RINGBUF mapped for reading in place.

    The kernel maps the consumer position (one writable page), then the producer position
    (one page) followed by the data area mapped twice in a row, so that a record that wraps
    around the end reads as one piece.  Each record is an 8-byte header (length with the
    busy and discard bits, page offset) and its data, padded to 8 bytes; the reader walks
    from the consumer to the producer position, stops at a busy record, and stores its new
    position in the consumer page (``ebpf.py`` does that walk inline: it is the hot loop).
    """

    def __init__(self, fd: int, size: int, twice: bool = True) -> None:
        """``twice=False`` maps the data area once (half the resident memory), for a reader whose
        records never lie across its end."""
        page = mmap.PAGESIZE
        self.size = size
        self.mask = size - 1
        self._consumer = mmap.mmap(fd, page, mmap.MAP_SHARED, mmap.PROT_READ | mmap.PROT_WRITE, offset=0)
        self.data_map = mmap.mmap(fd, page + (2 if twice else 1) * size, mmap.MAP_SHARED, mmap.PROT_READ, offset=page)
        self.consumer_pos = memoryview(self._consumer).cast("Q")
        self.producer_pos = memoryview(self.data_map).cast("Q")
        self.view = memoryview(self.data_map)
        self.data_offset = page
        """Where the data area starts in ``data_map``."""
        self.address = mapping_address(self.data_map)
        """Where ``data_map`` lies in the agent's memory: a record handed to the kernel in place (sendmmsg)."""

    def records(self) -> Iterator[int]:
        """Where each committed record's header starts in ``data_map``, oldest first, up to the first
        record still being written.  The consumer position is stored past every record handed out,
        also when the caller stops or fails: a record is never read twice."""
        cons = self.consumer_pos[0]
        prod = self.producer_pos[0]
        try:
            while cons < prod:
                pos = self.data_offset + (cons & self.mask)
                (length,) = _RECORD_LENGTH.unpack_from(self.data_map, pos)
                if length & BPF_RINGBUF_BUSY_BIT:
                    break
                cons += (length & ~BPF_RINGBUF_DISCARD_BIT) + BPF_RINGBUF_HDR_SZ + 7 & ~7
                if not length & BPF_RINGBUF_DISCARD_BIT:
                    yield pos
        finally:
            self.consumer_pos[0] = cons

    def close(self) -> None:
        for view in (self.consumer_pos, self.producer_pos, self.view):
            view.release()
        self._consumer.close()
        self.data_map.close()
