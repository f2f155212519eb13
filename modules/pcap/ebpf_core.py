"""Loading the eBPF sampler from the BPF object built with the package, through libbpf, in-process.

``sampler_core.bpf.c`` is compiled once at build time (``setup.py``) into one object per byte
order; the generic libbpf binding (``hsflowd_py/bpf_loader.py``, shared with the drop monitor)
opens the host's one, sizes the two ring buffers, creates the maps and loads the three programs.  The object
reads only the stable ``__sk_buff`` context, so it loads on kernels with or without BTF
(``/sys/kernel/btf/vmlinux``), from 5.17 on (BPF ring buffers, and ``bpf_loop`` for the samples of
a GSO packet; its other needs, the spin lock of the datagram being built and ``bpf_ringbuf_query``,
are older); older kernels refuse it, and bcc's build of the same program, and the agent falls back
to classic BPF.  Programs and maps are handed on as duplicated descriptors: what the bcc path
(``ebpf_build.py``) hands over, then ``DATAGRAM_FDS``.  A failure becomes a
SamplerError, which the agent logs before falling back to bcc.
"""

from __future__ import annotations

import sys
from pathlib import Path

from hsflowd_py import bpf_loader

from .ebpf_build import FDS
from .sampler import SamplerError

DATAGRAM_FDS = ("hsflowd_flush", "datagrams", "assembly")
"""What this object has past bcc's build: datagrams built in the kernel (``sampler.bpf.h``), handed on
after ``FDS``."""

OBJECT = Path(__file__).with_name("sampler_core.bpfel.o" if sys.byteorder == "little" else "sampler_core.bpfeb.o")
"""The object for this host's byte order; a test points it elsewhere."""


def load(ring_bytes: int, datagram_ring_bytes: int) -> tuple[dict[str, dict[str, int]], list[int]]:
    """Open, size (the ring of samples, the ring of datagrams) and load the object; returns the maps'
    sizes and the descriptors in ``FDS`` then ``DATAGRAM_FDS`` order.

    Raises SamplerError saying why not (no libbpf, no object, a kernel that refuses it)."""
    try:
        return bpf_loader.load(OBJECT, FDS + DATAGRAM_FDS, {"samples": ring_bytes, "datagrams": datagram_ring_bytes})
    except bpf_loader.BpfError as e:
        raise SamplerError(str(e)) from None
