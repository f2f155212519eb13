"""glibc's malloc set for the agent before it starts any thread: one arena, a fixed mmap threshold.

Two of glibc's defaults suit programs with many busy threads and big short-lived buffers, not an
agent with one loop and a few threads that work briefly (module imports, the eBPF load, /sys reads):

* every thread that allocates gets an arena of its own (up to 8 per core), and what a thread
  frees stays resident in its arena: the import and the eBPF-load threads left ~1 MB;
* the mmap threshold rises to the size of any mapped block freed (libbpf frees the kernel's
  BTF, megabytes, after the load), and the heap is trimmed only beyond twice that: the freed
  memory of start-up stayed resident for the agent's life.

With one arena and the threshold fixed at glibc's initial 128 kB (which also fixes the trim
threshold at its 128 kB default), the eBPF agent's peak RSS was ~1.4 MB lower.  The hot path
allocates no block that large, so no sample costs more.  Skipped when the environment tunes
malloc itself (``MALLOC_*``, ``GLIBC_TUNABLES``), and where the C library has no ``mallopt``.
"""

from __future__ import annotations

import ctypes
import os

M_MMAP_THRESHOLD = -3
M_ARENA_MAX = -8
"""mallopt parameters, from glibc's malloc.h."""
MMAP_THRESHOLD = 128 * 1024


def tune_malloc() -> None:
    """Apply the settings above, unless the environment sets its own."""
    if any(name.startswith("MALLOC_") or name == "GLIBC_TUNABLES" for name in os.environ):
        return
    mallopt = getattr(ctypes.CDLL(None), "mallopt", None)
    if mallopt is not None:
        mallopt(M_ARENA_MAX, 1)
        mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD)
